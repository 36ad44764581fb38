"""The live model of runs behind the web view: bounded, versioned, safe across threads.

The consumer thread feeds documents in (`RunFeed`, one per run, a RunRouter
callback); the HTTP threads read. Every change bumps a global version, so a
push loop asks "what changed since version v" instead of diffing. Numeric
columns are kept in typed arrays (8 bytes a value), 2-D frames only as the
latest one plus a summary per row, so a thousand runs of a thousand events
stay small. Closed runs beyond a count or an age are dropped.
"""

from __future__ import annotations

import logging
import threading
import time
from array import array
from collections import OrderedDict, deque
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import numpy as np

from ..cellformat import cell_text
from ..plotchoice import PlotChoice, choose
from .settings import RetentionSettings

log = logging.getLogger(__name__)

OPEN = "open"
INCOMPLETE = "incomplete"
REMOVALS_KEPT = 10_000


class Column:
    """One field's values in event order: a typed array while every value fits, else a list."""

    __slots__ = ("kind", "values")

    def __init__(self, kind: str | None, padding: int = 0) -> None:
        self.kind = kind  # "d" float, "q" integer, None anything
        self.values: array | list = array(kind) if kind else []
        for _ in range(padding):
            self.append(None)

    def append(self, value: Any) -> None:
        if self.kind == "d" and isinstance(value, float):
            self.values.append(value)
        elif self.kind == "q" and isinstance(value, int) and not isinstance(value, bool):
            try:
                self.values.append(value)
            except OverflowError:
                self._widen(value)
        elif self.kind is None:
            self.values.append(value)
        else:
            self._widen(value)

    def _widen(self, value: Any) -> None:
        self.values = self.values.tolist() if isinstance(self.values, array) else self.values
        self.kind = None
        self.values.append(value)

    def numbers(self) -> np.ndarray:
        """The values as floats (NaN where a value is not a number)."""
        if isinstance(self.values, array):
            return np.frombuffer(self.values, dtype=np.float64 if self.kind == "d" else np.int64)
        return np.array(
            [float(v) if isinstance(v, int | float) else np.nan for v in self.values], dtype=float
        )

    def __len__(self) -> int:
        return len(self.values)


def _column_kind(data_key: Mapping[str, Any]) -> str | None:
    if data_key.get("shape") or data_key.get("external"):
        return None
    return {"number": "d", "integer": "q"}.get(data_key.get("dtype", ""))


def _stored(value: Any) -> Any:
    """What a row keeps of a value: scalars as they are, arrays as their summary text."""
    if isinstance(value, np.ndarray | list | tuple | dict):
        return cell_text(value)[0]
    if isinstance(value, np.generic):
        return value.item()
    return value


class StreamState:
    def __init__(self, start: Mapping[str, Any], descriptor: Mapping[str, Any]) -> None:
        self.name: str = descriptor.get("name", "primary")
        self.descriptors: list[Mapping[str, Any]] = []
        self.data_keys: dict[str, Mapping[str, Any]] = {}
        self.seq_num = array("q")
        self.time = array("d")
        self.columns: dict[str, Column] = {}
        self.frames: dict[str, np.ndarray] = {}  # latest 2-D frame per field
        self.plot: PlotChoice = choose(start, descriptor)
        self.add_descriptor(start, descriptor)

    def add_descriptor(self, start: Mapping[str, Any], descriptor: Mapping[str, Any]) -> None:
        self.descriptors.append(descriptor)
        for key, data_key in descriptor.get("data_keys", {}).items():
            if key not in self.columns:
                self.data_keys[key] = data_key
                self.columns[key] = Column(_column_kind(data_key), padding=len(self.seq_num))
        merged = {**descriptor, "data_keys": self.data_keys}
        self.plot = choose(start, merged)

    @property
    def count(self) -> int:
        return len(self.seq_num)

    def add(self, seq_num: int, t: float, data: Mapping[str, Any]) -> None:
        self.seq_num.append(int(seq_num))
        self.time.append(float(t))
        for key, column in self.columns.items():
            value = data.get(key)
            if isinstance(value, np.ndarray | list) and self.plot.image_field == key:
                frame = np.asarray(value)
                if frame.ndim == 2:
                    self.frames[key] = frame
            column.append(_stored(value))

    def rows(self, offset: int, limit: int) -> list[dict[str, Any]]:
        end = min(self.count, offset + limit)
        keys = list(self.columns)
        out = []
        for i in range(offset, end):
            values = {k: self.columns[k].values[i] for k in keys}
            out.append(
                {
                    "seq_num": self.seq_num[i],
                    "time": self.time[i],
                    "data": {k: _json_value(v) for k, v in values.items()},
                    "cells": {k: cell_text(v)[0] for k, v in values.items()},
                }
            )
        return out


def _json_value(value: Any) -> Any:
    if isinstance(value, float) and not np.isfinite(value):
        return None
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)


class RunState:
    def __init__(self, start: Mapping[str, Any], version: int) -> None:
        self.start = start
        self.uid: str = start["uid"]
        self.stop: Mapping[str, Any] | None = None
        self.status = OPEN
        self.reason: str | None = None
        self.streams: dict[str, StreamState] = {}  # by stream name
        self.by_descriptor: dict[str, StreamState] = {}
        self.other: deque[dict[str, Any]] = deque()
        self.other_count = 0
        self.version = version
        self.closed_at: float | None = None  # monotonic
        self.source = "live"  # "tiled" for a run read back from Tiled

    @property
    def started(self) -> float:
        return float(self.start.get("time", 0.0))

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
            "version": self.version,
        }


class RunStore:
    """Every run the view knows, with its change history as versions."""

    def __init__(self, retention: RetentionSettings | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:  # fmt: skip
        self.retention = retention or RetentionSettings()
        self.clock = clock
        self.lock = threading.Lock()
        self.version = 0
        self.runs: OrderedDict[str, RunState] = OrderedDict()  # least recently changed first
        self.closed: OrderedDict[str, None] = OrderedDict()  # oldest closed first
        self.removed: deque[tuple[int, str]] = deque(maxlen=REMOVALS_KEPT)
        self.documents = 0

    # -- writing (the consumer thread) ----------------------------------------

    def _touch(self, run: RunState) -> None:
        self.version += 1
        run.version = self.version
        self.runs.move_to_end(run.uid)

    def apply(self, uid: str, name: str, doc: Mapping[str, Any]) -> None:
        with self.lock:
            self.documents += 1
            if name == "start":
                self._start(doc)
                return
            run = self.runs.get(uid)
            if run is None:
                log.warning("run %s: %s for a run the view does not hold", uid, name)
                return
            if name == "descriptor":
                self._descriptor(run, doc)
            elif name == "event":
                self._event(run, doc)
            elif name == "event_page":
                self._event_page(run, doc)
            elif name == "stop":
                self._stop(run, doc)
            else:
                self._other(run, name, doc)
            self._touch(run)

    def _start(self, doc: Mapping[str, Any]) -> None:
        uid = doc["uid"]
        if uid in self.runs:  # the run replayed from its start: begin again
            log.info("run %s: start seen again, its view starts over", uid)
            self.closed.pop(uid, None)
        run = RunState(doc, self.version)
        self.runs[uid] = run
        self._touch(run)

    def _descriptor(self, run: RunState, doc: Mapping[str, Any]) -> None:
        name = doc.get("name", "primary")
        stream = run.streams.get(name)
        if stream is None:
            stream = run.streams[name] = StreamState(run.start, doc)
        else:
            stream.add_descriptor(run.start, doc)
        run.by_descriptor[doc["uid"]] = stream

    def _stream_of(self, run: RunState, name: str, doc: Mapping[str, Any]) -> StreamState | None:
        stream = run.by_descriptor.get(doc.get("descriptor", ""))
        if stream is None:
            log.warning("run %s: %s for unknown descriptor %s", run.uid, name,
                        doc.get("descriptor"))  # fmt: skip
        return stream

    def _event(self, run: RunState, doc: Mapping[str, Any]) -> None:
        stream = self._stream_of(run, "event", doc)
        if stream is not None:
            stream.add(doc["seq_num"], doc["time"], doc["data"])

    def _event_page(self, run: RunState, page: Mapping[str, Any]) -> None:
        stream = self._stream_of(run, "event_page", page)
        if stream is None:
            return
        data = page["data"]
        for i, (seq_num, t) in enumerate(zip(page["seq_num"], page["time"], strict=True)):
            stream.add(seq_num, t, {k: v[i] for k, v in data.items()})

    def _stop(self, run: RunState, doc: Mapping[str, Any]) -> None:
        run.stop = doc
        run.status = str(doc.get("exit_status") or "unknown")
        run.reason = doc.get("reason") or None
        self._closed(run)

    def _other(self, run: RunState, name: str, doc: Mapping[str, Any]) -> None:
        run.other_count += 1
        if len(run.other) < self.retention.keep_other_documents:
            run.other.append({"name": name, "doc": doc})

    def abandon(self, uid: str, reason: str) -> None:
        with self.lock:
            run = self.runs.get(uid)
            if run is None or run.status != OPEN:
                return
            run.status, run.reason = INCOMPLETE, reason
            self._closed(run)
            self._touch(run)

    def _closed(self, run: RunState) -> None:
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

    def read(self, uid: str, reader: Callable[[RunState], Any]) -> Any:
        """``reader(run)`` under the lock, or KeyError when the view does not hold the run."""
        with self.lock:
            return reader(self.runs[uid])

    def __len__(self) -> int:
        return len(self.runs)


def _newest_first(runs: OrderedDict[str, RunState]) -> Iterator[RunState]:
    for uid in reversed(runs):
        yield runs[uid]


class RunFeed:
    """A RunRouter callback feeding one run's documents into the store."""

    def __init__(self, store: RunStore) -> None:
        self.store = store
        self.uid: str | None = None

    def __call__(self, name: str, doc: Mapping[str, Any]) -> None:
        if name == "start":
            self.uid = doc["uid"]
        if self.uid is not None:
            self.store.apply(self.uid, name, doc)

    def abandon(self, reason: str) -> None:
        if self.uid is not None:
            self.store.abandon(self.uid, reason)
