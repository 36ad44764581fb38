"""Per-run routing: event-model's RunRouter, made safe for a long-running network consumer.

Differences from ``event_model.RunRouter``, each on purpose:

* a callback or factory that raises is logged with the run's uid and counted;
  the other callbacks, the other runs and the process carry on;
* a run whose factory raised is remembered: its later documents are counted as
  dropped and reported at its stop, never silently lost;
* a document whose ``seq`` was processed already is dropped (a replay or a
  producer retry); a jump in ``seq`` is logged and counted;
* runs can be dropped without a stop (``abandon``), telling their callbacks.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from runstream.schemas.errors import RunstreamError

from .metrics import ConsumerMetrics
from .protocols import Abandonable, Callback, CatchingUp, Factory, SubFactory, Ticking

log = logging.getLogger(__name__)

RECENTLY_CLOSED = 10_000


class RoutingError(RunstreamError):
    """The document cannot be routed; the message goes to the dead-letter topic."""


@dataclass
class Run:
    uid: str
    start: Mapping[str, Any]
    partition: Any
    callbacks: list[Callback] = field(default_factory=list)
    subfactories: list[SubFactory] = field(default_factory=list)
    by_descriptor: dict[str, list[Callback]] = field(default_factory=dict)
    sub_callbacks: list[Callback] = field(default_factory=list)
    last_seq: int = 0
    last_seen: float = 0.0
    factory_failed: bool = False
    dropped: int = 0

    def all_callbacks(self) -> list[Callback]:
        return self.callbacks + self.sub_callbacks

    def tickers(self) -> list[Ticking]:
        return [c for c in self.all_callbacks() if isinstance(c, Ticking)]

    def catching_up(self) -> list[CatchingUp]:
        return [c for c in self.all_callbacks() if isinstance(c, CatchingUp)]

    def abandoners(self) -> list[Abandonable]:
        return [c for c in self.all_callbacks() if isinstance(c, Abandonable)]


class Router:
    def __init__(
        self, factories: list[Factory], metrics: ConsumerMetrics, clock: Callable[[], float]
    ):
        self.factories = factories
        self.metrics = metrics
        self.clock = clock
        self.runs: dict[str, Run] = {}
        self.closed: OrderedDict[str, None] = OrderedDict()

    # -- routing --------------------------------------------------------------

    def route(
        self, partition: Any, run_uid: str, seq: int, name: str, doc: Mapping[str, Any]
    ) -> bool:
        """Hand one document to its run's callbacks; False when it was a duplicate."""
        if name == "start":
            return self._open(partition, run_uid, seq, doc)
        run = self.runs.get(run_uid)
        if run is None:
            if run_uid in self.closed:
                self.metrics.duplicates.inc()
                return False
            raise RoutingError(f"no start seen for run {run_uid}")
        if seq <= run.last_seq:
            self.metrics.duplicates.inc()
            return False
        if seq != run.last_seq + 1:
            self.metrics.gaps.inc()
            log.warning("run %s: seq jumped from %d to %d (%d documents missing)",
                        run_uid, run.last_seq, seq, seq - run.last_seq - 1)  # fmt: skip
        run.last_seq = seq
        run.last_seen = self.clock()
        if run.factory_failed:
            run.dropped += 1
            self.metrics.dropped.inc()
        if name in ("event", "event_page"):
            targets = run.by_descriptor.get(doc["descriptor"])
            if targets is None:
                raise RoutingError(
                    f"run {run_uid}: {name} for unknown descriptor {doc['descriptor']}"
                )
        elif name == "descriptor":
            if doc.get("run_start") != run_uid:
                raise RoutingError(f"descriptor names run {doc.get('run_start')}, keyed {run_uid}")
            targets = self._descriptor(run, doc)
        else:
            targets = run.all_callbacks()
        for callback in targets:
            self._call(run, callback, name, doc)
        if name == "stop":
            self._close(run)
        return True

    def _open(self, partition: Any, run_uid: str, seq: int, doc: Mapping[str, Any]) -> bool:
        if doc.get("uid") != run_uid:
            raise RoutingError(f"start uid {doc.get('uid')} does not match its key {run_uid}")
        if seq != 0:
            raise RoutingError(f"start of run {run_uid} has seq {seq}, not 0")
        if run_uid in self.runs:
            self.metrics.duplicates.inc()
            raise RoutingError(f"duplicate start for open run {run_uid}")
        if run_uid in self.closed:
            self.metrics.duplicates.inc()
            return False
        run = Run(run_uid, doc, partition, last_seen=self.clock())
        self.runs[run_uid] = run
        self.metrics.open_runs.set(len(self.runs))
        for factory in self.factories:
            try:
                callbacks, subfactories = factory("start", doc)
            except Exception:
                run.factory_failed = True
                self.metrics.callback_errors.inc()
                log.exception("run %s: factory %r failed on the start document; the run's "
                              "documents are counted as dropped", run_uid, factory)  # fmt: skip
                continue
            run.callbacks.extend(callbacks)
            run.subfactories.extend(subfactories)
            for callback in callbacks:
                self._call(run, callback, "start", doc)
        return True

    def _descriptor(self, run: Run, doc: Mapping[str, Any]) -> list[Callback]:
        for callback in run.callbacks:
            self._call(run, callback, "descriptor", doc)
        made: list[Callback] = []
        for subfactory in run.subfactories:
            try:
                made.extend(subfactory("descriptor", doc))
            except Exception:
                self.metrics.callback_errors.inc()
                log.exception("run %s: subfactory %r failed on descriptor %s",
                              run.uid, subfactory, doc.get("uid"))  # fmt: skip
        for callback in made:
            self._call(run, callback, "start", run.start)
            self._call(run, callback, "descriptor", doc)
        run.sub_callbacks.extend(made)
        run.by_descriptor[doc["uid"]] = run.callbacks + made
        return []

    def _call(self, run: Run, callback: Callback, name: str, doc: Mapping[str, Any]) -> None:
        try:
            callback(name, doc)
        except Exception:
            self.metrics.callback_errors.inc()
            log.exception("run %s: callback %r failed on %s", run.uid, callback, name)

    # -- closing --------------------------------------------------------------

    def _close(self, run: Run) -> None:
        self.runs.pop(run.uid, None)
        self.closed[run.uid] = None
        if len(self.closed) > RECENTLY_CLOSED:
            self.closed.popitem(last=False)
        self.metrics.open_runs.set(len(self.runs))
        if run.dropped:
            log.warning("run %s ended; %d of its documents were dropped because its factory failed",
                        run.uid, run.dropped)  # fmt: skip

    def abandon(self, run_uid: str, reason: str, remember: bool = True) -> None:
        """Drop a run without its stop, telling every callback that has ``abandon``."""
        run = self.runs.get(run_uid)
        if run is None:
            return
        log.warning("run %s abandoned without a stop: %s", run_uid, reason)
        self.metrics.abandoned.labels(reason.split(":", 1)[0]).inc()
        for callback in run.abandoners():
            try:
                callback.abandon(reason)
            except Exception:
                self.metrics.callback_errors.inc()
                log.exception("run %s: abandon of %r failed", run_uid, callback)
        self.runs.pop(run_uid, None)
        if remember:
            self.closed[run_uid] = None
        self.metrics.open_runs.set(len(self.runs))

    def tick(self) -> None:
        self._each("tick", Run.tickers)

    def caught_up(self) -> None:
        """Nothing more to read for now: each open run's callbacks may write what waits."""
        self._each("caught_up", Run.catching_up)

    def _each(self, hook: str, having: Callable[[Run], list[Any]]) -> None:
        for run in list(self.runs.values()):
            for callback in having(run):
                try:
                    getattr(callback, hook)()
                except Exception:
                    self.metrics.callback_errors.inc()
                    log.exception("run %s: %s of %r failed", run.uid, hook, callback)

    def idle_runs(self, timeout: float) -> list[str]:
        now = self.clock()
        return [uid for uid, run in self.runs.items() if now - run.last_seen > timeout]

    def runs_in(self, partition: Any) -> list[str]:
        return [uid for uid, run in self.runs.items() if run.partition == partition]
