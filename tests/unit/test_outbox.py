"""The outbox on its own: order, segments, trimming, torn tails, recovery of open runs."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from runstream.producer.outbox import Outbox, OutboxError, Record, SegmentReader
from tests.waiting import eventually


def _record(rid: int, run: str = "R", name: str = "event", seq: int | None = None) -> Record:
    return Record(rid, run, name, rid - 1 if seq is None else seq, run.encode(),
                  [("doc", name.encode())], b"v" * 50)  # fmt: skip


def test_records_read_back_in_order_across_segments(tmp_path: Path) -> None:
    box = Outbox(tmp_path, segment_bytes=1000)
    reader = SegmentReader(box, after=0)
    got: list[int] = []
    for rid in range(1, 101):
        box.append(_record(rid))
        if rid % 7 == 0:
            got += [r.id for r in reader.read()]
    got += [r.id for r in reader.read()]
    assert got == list(range(1, 101))
    assert len(box.segments()) > 5


def test_a_sync_never_makes_an_append_wait(tmp_path: Path, monkeypatch) -> None:
    """The fsync cannot finish until an append made during it has: no lock is shared."""
    import producer.outbox as outbox_module

    box = Outbox(tmp_path)
    box.append(_record(1))
    appended = threading.Event()
    real_fsync = outbox_module.os.fsync

    def slow_fsync(fd: int) -> None:
        assert appended.wait(10), "the append waited for the sync"
        real_fsync(fd)

    monkeypatch.setattr(outbox_module.os, "fsync", slow_fsync)
    syncer = threading.Thread(target=box.sync)
    syncer.start()
    eventually(lambda: box._fd is None, 10, "the sync to take the segment")
    box.append(_record(2))
    appended.set()
    syncer.join(10)
    assert not syncer.is_alive()
    assert [r.id for r in SegmentReader(box, after=0).read()] == [1, 2]
    box.close()


def test_reader_loses_nothing_while_syncs_roll_segments(tmp_path: Path) -> None:
    box = Outbox(tmp_path)
    reader = SegmentReader(box, after=0)
    got: list[int] = []
    done = threading.Event()

    def write() -> None:
        for rid in range(1, 3001):
            box.append(_record(rid))
            if rid % 50 == 0:
                box.sync()
        done.set()

    writer = threading.Thread(target=write)
    writer.start()
    while not done.is_set():
        got += [r.id for r in reader.read()]
    writer.join()
    got += [r.id for r in reader.read()]
    assert got == list(range(1, 3001))
    assert len(box.segments()) >= 50
    box.close()


def test_a_record_written_just_before_a_roll_is_read(tmp_path: Path, monkeypatch) -> None:
    """The reader sees the end of a segment, then the writer adds to it and moves on."""
    box = Outbox(tmp_path)
    reader = SegmentReader(box, after=0)
    box.append(_record(1))
    assert [r.id for r in reader.read()] == [1]
    real = reader._newer_exists
    raced: list[bool] = []

    def newer_after_a_race() -> bool:
        if not raced:
            raced.append(True)
            box.append(_record(2))  # into the segment the reader just found at its end
            box.sync()
            box.append(_record(3))  # into a new one
        return real()

    monkeypatch.setattr(reader, "_newer_exists", newer_after_a_race)
    assert [r.id for r in reader.read()] == [2, 3]
    box.close()


def test_acknowledged_segments_are_deleted(tmp_path: Path) -> None:
    box = Outbox(tmp_path, segment_bytes=1000)
    records = [_record(rid) for rid in range(1, 101)]
    for record in records:
        box.append(record)
    before = len(box.segments())
    box.advance(60, records[:60])
    after = box.segments()
    assert len(after) < before
    assert int(after[0].stem) <= 61  # nothing unacknowledged is gone
    box.close()
    reopened = Outbox(tmp_path)
    assert [r.id for r in reopened.pending] == list(range(61, 101))


def test_torn_tail_is_cut_and_the_rest_kept(tmp_path: Path) -> None:
    box = Outbox(tmp_path)
    for rid in range(1, 11):
        box.append(_record(rid))
    box.close()
    (segment,) = box.segments()
    segment.write_bytes(segment.read_bytes()[:-20])  # the engine died mid-write
    reopened = Outbox(tmp_path)
    assert [r.id for r in reopened.pending] == list(range(1, 10))
    reopened.append(_record(10))
    assert [r.id for r in SegmentReader(reopened, 0).read()] == list(range(1, 11))


def test_corruption_before_the_tail_is_refused(tmp_path: Path) -> None:
    box = Outbox(tmp_path, segment_bytes=500)
    for rid in range(1, 40):
        box.append(_record(rid))
    box.close()
    first = box.segments()[0]
    data = bytearray(first.read_bytes())
    data[30] ^= 0xFF
    first.write_bytes(bytes(data))
    with pytest.raises(OutboxError, match="corrupt"):
        Outbox(tmp_path)


def test_open_runs_survive_restart_with_their_last_seq(tmp_path: Path) -> None:
    box = Outbox(tmp_path)
    docs = [
        _record(1, "A", "start", 0), _record(2, "A", "event", 1), _record(3, "B", "start", 0),
        _record(4, "B", "event", 1), _record(5, "B", "stop", 2), _record(6, "A", "event", 2),
        _record(7, "C", "start", 0),
    ]  # fmt: skip
    for record in docs:
        box.append(record)
    box.advance(4, docs[:4])  # A and B were open as of record 4
    box.close()
    reopened = Outbox(tmp_path)
    assert reopened.open_runs.last_seq == {"A": 2, "C": 0}
    assert reopened.acked_id == 4 and reopened.last_id == 7


def test_a_state_file_of_an_older_publisher_still_loads(tmp_path: Path) -> None:
    """Older publishers wrote the acknowledged id as "watermark": read it, write the new key."""
    import json

    box = Outbox(tmp_path)
    docs = [_record(1, "A", "start", 0), _record(2, "A", "event", 1), _record(3, "A", "event", 2)]
    for record in docs:
        box.append(record)
    box.close()
    (tmp_path / "state.json").write_text(json.dumps({"watermark": 2, "open_runs": {"A": 1}}))
    reopened = Outbox(tmp_path)
    assert reopened.acked_id == 2 and reopened.last_id == 3
    assert [r.id for r in reopened.pending] == [3]
    assert reopened.open_runs.last_seq == {"A": 2}
    assert reopened.acked_open_runs.last_seq == {"A": 1}
    reopened.advance(3, reopened.pending)
    reopened.close()
    state = json.loads((tmp_path / "state.json").read_text())
    assert state == {"acked_id": 3, "open_runs": {"A": 2}}


def test_one_publisher_per_outbox(tmp_path: Path) -> None:
    first = Outbox(tmp_path)
    with pytest.raises(OutboxError, match="in use"):
        Outbox(tmp_path)
    first.close()
    Outbox(tmp_path).close()


def test_unusable_directory_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("x")
    with pytest.raises(OutboxError, match="not usable"):
        Outbox(tmp_path / "a-file" / "outbox")


def test_unreadable_state_is_a_clear_error(tmp_path: Path) -> None:
    Outbox(tmp_path).close()
    (tmp_path / "state.json").write_text("{not json")
    with pytest.raises(OutboxError, match="unreadable"):
        Outbox(tmp_path)


def test_a_record_keeps_its_kafka_timestamp_and_older_frames_still_parse() -> None:
    import msgpack

    stamped = Record(1, "R", "start", 0, b"R", [("doc", b"start")], b"v", 1_700_000_000_123)
    assert Record.parse(stamped.frame()[8:]) == stamped
    old = msgpack.packb([2, "R", "event", 1, b"R", [["doc", b"event"]], b"v"], use_bin_type=True)
    assert Record.parse(old).timestamp == 0  # the broker stamps it, as before
