"""The outbox: every document on local disk before Kafka sees it, until Kafka has it.

Layout of an outbox directory::

    segments/<first id>.log   records appended in id order (ids are 1, 2, 3, ...)
    state.json                the acknowledged id and the runs open as of it
    refused/<run>.log         documents Kafka can never take (oversize, no run): kept, not sent
    lock                      flock held by the one publisher using this outbox

A record is ``u32 length | u32 crc32 | msgpack [id, run, name, seq, key, headers, value,
timestamp]`` (the Kafka timestamp in ms; records of older outboxes lack it and go with 0).
The RunEngine's thread appends with one ``write`` (so a SIGKILL of the engine
loses nothing that was emitted: the bytes are in the kernel); the delivery
thread reads the segments back in order, fsyncs by policy (a synced segment is
closed and appends go on in a new one, so the RunEngine never waits for a sync)
and moves the *acknowledged id* (``acked_id``): Kafka has acknowledged every record
with ``id <= acked_id``. Segments whose records are all acknowledged are deleted.

Open runs after a crash: ``state.json`` holds the runs open among the acknowledged
records, with their last seq; replaying the records above ``acked_id`` (which
are still on disk) gives the runs open at the moment of the crash, so the next
publisher can close each with an abort stop document. A torn last record (the
engine died mid-write) fails its length or checksum and is cut off.
"""

from __future__ import annotations

import fcntl
import itertools
import json
import logging
import os
import struct
import threading
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import msgpack

from runstream.schemas.errors import RunstreamError

log = logging.getLogger(__name__)

_FRAME = struct.Struct("<II")
SEGMENT_BYTES = 64 * 1024 * 1024
#: What ``state.json`` called the acknowledged id before it had its name: read, never written.
_OLD_ACKED_KEY = "watermark"


class OutboxError(RunstreamError, RuntimeError):
    """The outbox cannot be used (locked by another publisher, unwritable, corrupt)."""


@dataclass(slots=True)
class Record:
    id: int
    run: str
    name: str
    seq: int
    key: bytes
    headers: list[tuple[str, bytes]]
    value: bytes
    timestamp: int = 0  # ms since the epoch; 0: the broker's clock at produce time

    def frame(self) -> bytes:
        body = msgpack.packb(
            [self.id, self.run, self.name, self.seq, self.key, self.headers, self.value,
             self.timestamp],
            use_bin_type=True,
        )  # fmt: skip
        return _FRAME.pack(len(body), zlib.crc32(body)) + body

    @classmethod
    def parse(cls, body: bytes) -> Record:
        rid, run, name, seq, key, headers, value, *stamp = msgpack.unpackb(body, raw=False)
        return cls(rid, run, name, seq, key, [tuple(h) for h in headers], value, *stamp[:1])


def _frames(data: bytes) -> Iterator[tuple[int, bytes]]:
    """(end offset, body) of each whole, intact record at the start of ``data``."""
    pos = 0
    while pos + _FRAME.size <= len(data):
        length, crc = _FRAME.unpack_from(data, pos)
        end = pos + _FRAME.size + length
        if end > len(data):
            return
        body = data[pos + _FRAME.size : end]
        if zlib.crc32(body) != crc:
            return
        yield end, body
        pos = end


@dataclass
class OpenRuns:
    """The runs open after some record, each with its last seq: enough to go on and close it."""

    last_seq: dict[str, int] = field(default_factory=dict)

    def apply(self, record: Record) -> None:
        if record.name == "stop":
            self.last_seq.pop(record.run, None)
        else:
            self.last_seq[record.run] = record.seq


class Outbox:
    """Append on the RunEngine's thread; read, sync and trim on the delivery thread."""

    def __init__(self, directory: Path, segment_bytes: int = SEGMENT_BYTES) -> None:
        self.dir = Path(directory)
        self.segment_bytes = segment_bytes
        try:
            (self.dir / "segments").mkdir(parents=True, exist_ok=True)
            (self.dir / "refused").mkdir(exist_ok=True)
            self._lock_fd = os.open(self.dir / "lock", os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise OutboxError(f"outbox directory {self.dir} is not usable: {exc}") from exc
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._lock_fd)
            raise OutboxError(
                f"outbox {self.dir} is in use by another publisher; give each its own directory"
            ) from None
        if not os.access(self.dir / "segments", os.W_OK):
            raise OutboxError(f"outbox directory {self.dir} is not writable")
        self._append_lock = threading.Lock()
        state = self._read_state()
        self.acked_id: int = state["acked_id"]
        self.acked_open_runs = OpenRuns(dict(state["open_runs"]))  # as of acked_id
        self.open_runs = OpenRuns(dict(state["open_runs"]))  # as of the last appended record
        self.last_id = self.acked_id
        self.pending: list[Record] = []  # records above acked_id found at open
        self._recover()
        self._fd: int | None = None
        self._segment: Path | None = None
        self._segment_size = 0
        self.bytes = sum(p.stat().st_size for p in self.segments())
        self.unsynced = False

    # -- opening --------------------------------------------------------------

    def _read_state(self) -> dict:
        """``state.json``, also as older publishers wrote it (`_OLD_ACKED_KEY`)."""
        path = self.dir / "state.json"
        if not path.exists():
            return {"acked_id": 0, "open_runs": {}}
        try:
            state = json.loads(path.read_text())
            acked_id = state["acked_id"] if "acked_id" in state else state[_OLD_ACKED_KEY]
            return {"acked_id": int(acked_id), "open_runs": state["open_runs"]}
        except (ValueError, KeyError, TypeError) as exc:
            raise OutboxError(f"outbox state {path} is unreadable: {exc}") from exc

    def segments(self) -> list[Path]:
        return sorted((self.dir / "segments").glob("*.log"), key=lambda p: int(p.stem))

    def _recover(self) -> None:
        """Cut a torn tail, collect the unacknowledged records, rebuild open runs."""
        segments = self.segments()
        for i, path in enumerate(segments):
            data = path.read_bytes()
            end = 0
            for frame_end, body in _frames(data):
                end = frame_end
                record = Record.parse(body)
                self.last_id = max(self.last_id, record.id)
                if record.id > self.acked_id:
                    self.pending.append(record)
                    self.open_runs.apply(record)
            if end < len(data):
                if i != len(segments) - 1:
                    raise OutboxError(
                        f"outbox segment {path} is corrupt at byte {end} (not its tail); "
                        "move it aside to let the publisher start"
                    )
                log.warning("outbox %s: cutting a torn record at byte %d", path, end)
                with open(path, "r+b") as f:
                    f.truncate(end)

    # -- the RunEngine's side -------------------------------------------------

    def append(self, record: Record) -> int:
        """Write one record (one syscall); returns the outbox's size in bytes."""
        frame = record.frame()
        with self._append_lock:
            if self._fd is None or self._segment_size + len(frame) > self.segment_bytes:
                self._roll(record.id)
            assert self._fd is not None
            os.write(self._fd, frame)
            self._segment_size += len(frame)
            self.bytes += len(frame)
            self.last_id = record.id
            self.open_runs.apply(record)
            self.unsynced = True
            return self.bytes

    def _roll(self, first_id: int) -> None:
        if self._fd is not None:
            os.fsync(self._fd)
            os.close(self._fd)
        self._segment = self.dir / "segments" / f"{first_id:020d}.log"
        self._fd = os.open(self._segment, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        self._segment_size = 0

    def refuse(self, record: Record, reason: str) -> Path:
        """Keep a document Kafka will never take, beside the outbox, never dropped."""
        safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in record.run or "no-run")
        path = self.dir / "refused" / f"{safe}.log"
        with open(path, "ab") as f:
            f.write(record.frame())
        with open(path.with_suffix(".reasons"), "a") as f:
            f.write(f"{record.id}\t{record.name}\tseq {record.seq}\t{reason}\n")
        return path

    # -- the delivery thread's side ---------------------------------------------

    def sync(self) -> None:
        """Make what was appended durable without making the RunEngine wait for it.

        The current segment is closed for writing (the next append starts a new
        one) and synced outside the lock: an fsync holds the file's inode lock,
        so syncing the file being appended to would stall the RunEngine's write.
        """
        with self._append_lock:
            if self._fd is None or not self.unsynced:
                return
            fd, self._fd = self._fd, None
            self.unsynced = False
        os.fsync(fd)
        os.close(fd)

    @property
    def unacknowledged(self) -> int:
        """Records appended that Kafka has not acknowledged yet."""
        return self.last_id - self.acked_id

    def advance(self, acked_id: int, acked: list[Record]) -> None:
        """Kafka has every record up to ``acked_id``: persist that, drop what is done."""
        for record in acked:
            self.acked_open_runs.apply(record)
        self.acked_id = acked_id
        state = {"acked_id": acked_id, "open_runs": self.acked_open_runs.last_seq}
        tmp = self.dir / "state.json.part"
        tmp.write_text(json.dumps(state))
        os.replace(tmp, self.dir / "state.json")
        self._trim()

    def _trim(self) -> None:
        segments = self.segments()
        for path, following in itertools.pairwise(segments):
            if int(following.stem) - 1 <= self.acked_id and path != self._segment:
                size = path.stat().st_size
                path.unlink()
                with self._append_lock:
                    self.bytes -= size

    def close(self) -> None:
        with self._append_lock:
            if self._fd is not None:
                os.fsync(self._fd)
                os.close(self._fd)
                self._fd = None
        os.close(self._lock_fd)


class SegmentReader:
    """Reads records back in id order as they are appended (the delivery thread's tail)."""

    def __init__(self, outbox: Outbox, after: int) -> None:
        self.outbox = outbox
        self.after = after  # the last id handed out
        self._path: Path | None = None
        self._pos = 0
        self._buffer = b""

    def rewind(self, after: int) -> None:
        self.after, self._path, self._pos, self._buffer = after, None, 0, b""

    def read(self, limit: int = 1000) -> list[Record]:
        out: list[Record] = []
        while len(out) < limit:
            if self._path is None and not self._open_next():
                return out
            assert self._path is not None
            try:
                with open(self._path, "rb") as f:
                    f.seek(self._pos)
                    chunk = f.read(4 * 1024 * 1024)
            except FileNotFoundError:  # trimmed under us: everything in it was acknowledged
                self._path = None
                continue
            self._pos += len(chunk)
            self._buffer += chunk
            consumed = 0
            for end, body in _frames(self._buffer):
                consumed = end
                record = Record.parse(body)
                if record.id > self.after:
                    out.append(record)
                    self.after = record.id
            self._buffer = self._buffer[consumed:]
            if not chunk:
                if not self._newer_exists():
                    return out
                # The writer has moved on. Anything it wrote here after our empty
                # read is not lost: the next segment is found by id, so a record
                # above `after` that is still in this one brings us back to it.
                self._path = None
        return out

    def _open_next(self) -> bool:
        for path in self.outbox.segments():
            # the segment holding `after + 1`: the last one whose first id is <= it
            if int(path.stem) <= self.after + 1:
                self._path = path
        if self._path is None:
            segments = self.outbox.segments()
            if not segments:
                return False
            self._path = segments[0]
        self._pos, self._buffer = 0, b""
        return True

    def _newer_exists(self) -> bool:
        assert self._path is not None
        return any(int(p.stem) > int(self._path.stem) for p in self.outbox.segments())
