"""The live model of runs behind the web view: bounded, versioned, safe across threads.

The consumer thread feeds documents in (`RunFeed`, one per run, a `RunCallback`);
the HTTP threads read. Every change bumps a global version, so a push loop asks
"what changed since version v" instead of diffing. A run's streams keep their
values compactly (`livestream.LiveStream`), so a thousand runs of a thousand
events stay small. Closed runs beyond a count or an age are dropped.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from ..callback import RunCallback
from .frames import RunFrames
from .livestream import LiveStream
from .settings import RetentionSettings

log = logging.getLogger(__name__)

OPEN = "open"
INCOMPLETE = "incomplete"
REMOVALS_KEPT = 10_000


class LiveRun:
    """One run as the view holds it: its start and stop, streams by name, other documents."""

    def __init__(self, start: Mapping[str, Any], version: int) -> None:
        self.start = start
        self.uid: str = start["uid"]
        self.stop: Mapping[str, Any] | None = None
        self.status = OPEN
        self.reason: str | None = None
        self.streams: dict[str, LiveStream] = {}  # by stream name
        self.by_descriptor: dict[str, LiveStream] = {}
        self.other: deque[dict[str, Any]] = deque()
        self.other_count = 0
        self.version = version
        self.closed_at: float | None = None  # monotonic
        self.source = "live"  # "tiled" for a run read back from Tiled
        self.frames = RunFrames(self.uid)  # stream resources and datums: the detector frames

    @property
    def started(self) -> float:
        return float(self.start.get("time", 0.0))

    def add_descriptor(self, doc: Mapping[str, Any]) -> None:
        name = doc.get("name", "primary")
        stream = self.streams.get(name)
        if stream is None:
            stream = self.streams[name] = LiveStream(self.start, doc)
        else:
            stream.add_descriptor(self.start, doc)
        self.by_descriptor[doc["uid"]] = stream

    def add_event(self, doc: Mapping[str, Any]) -> None:
        stream = self._stream_of("event", doc)
        if stream is not None:
            stream.add(doc["seq_num"], doc["time"], doc["data"])

    def add_event_page(self, page: Mapping[str, Any]) -> None:
        stream = self._stream_of("event_page", page)
        if stream is not None:
            stream.add_page(page)

    def _stream_of(self, name: str, doc: Mapping[str, Any]) -> LiveStream | None:
        stream = self.by_descriptor.get(doc.get("descriptor", ""))
        if stream is None:
            log.warning("run %s: %s for unknown descriptor %s", self.uid, name,
                        doc.get("descriptor"))  # fmt: skip
        return stream

    def add_stream_resource(self, doc: Mapping[str, Any]) -> None:
        self.frames.add_resource(doc)

    def add_stream_datum(self, doc: Mapping[str, Any]) -> None:
        stream = self._stream_of("stream_datum", doc)
        if stream is not None:
            self.frames.add_datum(stream.name, doc)

    def end(self, stop: Mapping[str, Any]) -> None:
        self.stop = stop
        self.status = str(stop.get("exit_status") or "unknown")
        self.reason = stop.get("reason") or None

    def keep_other(self, name: str, doc: Mapping[str, Any], limit: int) -> None:
        """A document that is neither start, descriptor, event nor stop: counted, the first kept."""
        self.other_count += 1
        if len(self.other) < limit:
            self.other.append({"name": name, "doc": doc})

    def summary(self) -> dict[str, Any]:
        s = self.start
        return {
            "uid": self.uid,
            "parent_uid": s.get("parent_uid"),
            "run_key": s.get("run_key"),
            "scan_id": s.get("scan_id"),
            "plan_name": s.get("plan_name"),
            "status": self.status,
            "reason": self.reason,
            "time": self.started,
            "stop_time": self.stop.get("time") if self.stop else None,
            "streams": {name: stream.count for name, stream in self.streams.items()},
            "other_documents": self.other_count,
            "frames": self.frames.counts(),
            "resources": len(self.frames.resources),
            "version": self.version,
            "source": self.source,
        }


class RunStore:
    """Every run the view knows, with its change history as versions."""

    def __init__(self, retention: RetentionSettings | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:  # fmt: skip
        self.retention = retention or RetentionSettings()
        self.clock = clock
        self.lock = threading.Lock()
        self.version = 0
        self.runs: OrderedDict[str, LiveRun] = OrderedDict()  # least recently changed first
        self.closed: OrderedDict[str, None] = OrderedDict()  # oldest closed first
        self.removed: deque[tuple[int, str]] = deque(maxlen=REMOVALS_KEPT)
        self.documents = 0

    # -- writing (the consumer thread) ----------------------------------------

    def _touch(self, run: LiveRun) -> None:
        self.version += 1
        run.version = self.version
        self.runs.move_to_end(run.uid)

    def begin(self, start: Mapping[str, Any]) -> None:
        """A run's start: a new run, or the run replayed from its start beginning again."""
        with self.lock:
            self.documents += 1
            uid = start["uid"]
            if uid in self.runs:
                log.info("run %s: start seen again, its view starts over", uid)
                self.closed.pop(uid, None)
            run = LiveRun(start, self.version)
            self.runs[uid] = run
            self._touch(run)

    def change(self, uid: str, name: str, update: Callable[..., None], *args: Any) -> None:
        """One document ``name`` of run ``uid``: ``update(run, *args)`` under the lock.

        A run the update took out of ``open`` (its stop) is closed: it may now be evicted.
        """
        with self.lock:
            self.documents += 1
            run = self.runs.get(uid)
            if run is None:
                log.warning("run %s: %s for a run the view does not hold", uid, name)
                return
            update(run, *args)
            if run.status != OPEN and run.closed_at is None:
                self._closed(run)
            self._touch(run)

    def abandon(self, uid: str, reason: str) -> None:
        with self.lock:
            run = self.runs.get(uid)
            if run is None or run.status != OPEN:
                return
            run.status, run.reason = INCOMPLETE, reason
            self._closed(run)
            self._touch(run)

    def _closed(self, run: LiveRun) -> None:
        run.closed_at = self.clock()
        self.closed[run.uid] = None
        self._evict()

    def _evict(self) -> None:
        keep, age = self.retention.keep_runs, self.retention.keep_seconds
        now = self.clock()
        while self.closed:
            uid = next(iter(self.closed))
            run = self.runs.get(uid)
            too_old = run is None or run.closed_at is None or now - run.closed_at > age
            if len(self.closed) <= keep and not too_old:
                break
            self.closed.popitem(last=False)
            if self.runs.pop(uid, None) is not None:
                self.version += 1
                self.removed.append((self.version, uid))

    def expire(self) -> None:
        """Drop closed runs past their age (called now and then, not only at a close)."""
        with self.lock:
            self._evict()

    # -- reading (the HTTP threads) -------------------------------------------

    def summaries(self) -> list[dict[str, Any]]:
        """Every run, newest start first."""
        with self.lock:
            runs = sorted(self.runs.values(), key=lambda r: r.started, reverse=True)
            return [r.summary() for r in runs]

    def changes_since(self, version: int, uid: str | None = None) -> tuple[int, list, list]:
        """(current version, summaries of runs changed after ``version``, uids removed)."""
        with self.lock:
            changed = []
            for run in _newest_first(self.runs):
                if run.version <= version:
                    break
                if uid is None or run.uid == uid:
                    changed.append(run.summary())
            removed = [u for v, u in self.removed if v > version and (uid is None or u == uid)]
            return self.version, changed, removed

    def read(self, uid: str, reader: Callable[[LiveRun], Any]) -> Any:
        """``reader(run)`` under the lock, or KeyError when the view does not hold the run."""
        with self.lock:
            return reader(self.runs[uid])

    def __len__(self) -> int:
        return len(self.runs)


def _newest_first(runs: OrderedDict[str, LiveRun]) -> Iterator[LiveRun]:
    for uid in reversed(runs):
        yield runs[uid]


class RunFeed(RunCallback):
    """One run's documents into the store; an event page goes in a column at a time."""

    def __init__(self, store: RunStore) -> None:
        super().__init__()
        self.store = store
        self.uid = ""  # the run's, from its start

    def start(self, doc: Mapping[str, Any]) -> None:
        self.uid = doc["uid"]
        self.store.begin(doc)

    def descriptor(self, doc: Mapping[str, Any]) -> None:
        self.store.change(self.uid, "descriptor", LiveRun.add_descriptor, doc)

    def event(self, doc: Mapping[str, Any]) -> None:
        self.store.change(self.uid, "event", LiveRun.add_event, doc)

    def event_page(self, doc: Mapping[str, Any]) -> None:
        self.store.change(self.uid, "event_page", LiveRun.add_event_page, doc)

    def stop(self, doc: Mapping[str, Any]) -> None:
        self.store.change(self.uid, "stop", LiveRun.end, doc)

    def resource(self, doc: Mapping[str, Any]) -> None:
        self._keep("resource", doc)

    def datum(self, doc: Mapping[str, Any]) -> None:
        self._keep("datum", doc)

    def datum_page(self, doc: Mapping[str, Any]) -> None:
        self._keep("datum_page", doc)

    def stream_resource(self, doc: Mapping[str, Any]) -> None:
        self.store.change(self.uid, "stream_resource", LiveRun.add_stream_resource, doc)

    def stream_datum(self, doc: Mapping[str, Any]) -> None:
        self.store.change(self.uid, "stream_datum", LiveRun.add_stream_datum, doc)

    def abandon(self, reason: str) -> None:
        if self.uid:
            self.store.abandon(self.uid, reason)

    def _keep(self, name: str, doc: Mapping[str, Any]) -> None:
        limit = self.store.retention.keep_other_documents
        self.store.change(self.uid, name, LiveRun.keep_other, name, doc, limit)
