"""Per-run routing without Kafka: isolation, failing factories, duplicates, gaps, hooks."""

from __future__ import annotations

import io
from collections import defaultdict

import pytest
from bluesky import RunEngine
from bluesky.callbacks import LiveTable

from runstream import schemas
from runstream.consumers.metrics import ConsumerMetrics
from runstream.consumers.router import Router, RoutingError
from runstream.producer import lineage
from runstream.producer.plans import nested_runs, recursive_runs, sim_hw


def _emit(plan) -> list[tuple[str, str, int, dict]]:
    """(run, name, seq, doc) as the producer would key and number them."""
    RE = RunEngine({})
    RE.preprocessors.append(lineage)
    docs: list[tuple[str, dict]] = []
    RE.subscribe(lambda n, d: docs.append((n, d)))
    RE(plan)
    index, seqs, out = schemas.RunIndex(), defaultdict(int), []
    for name, doc in docs:
        run = index.run_of(name, doc)
        out.append((run, name, seqs[run], doc))
        seqs[run] += 1
    return out


class Recorder:
    def __init__(self) -> None:
        self.docs: list[tuple[str, dict]] = []
        self.abandoned: list[str] = []
        self.ticks = 0
        self.catch_ups = 0

    def __call__(self, name: str, doc: dict) -> None:
        self.docs.append((name, doc))

    def abandon(self, reason: str) -> None:
        self.abandoned.append(reason)

    def tick(self) -> None:
        self.ticks += 1

    def caught_up(self) -> None:
        self.catch_ups += 1


def _router(*factories) -> tuple[Router, ConsumerMetrics]:
    metrics = ConsumerMetrics()
    return Router(list(factories), metrics, clock=lambda: 0.0), metrics


def _send(router: Router, emitted_doc) -> bool:
    run, name, seq, doc = emitted_doc
    return router.route("p0", run, seq, name, doc)


def _route_all(router: Router, emitted) -> None:
    for e in emitted:
        _send(router, e)


def test_each_run_gets_exactly_its_documents_in_order() -> None:
    recorders: dict[str, Recorder] = {}

    def factory(name, start):
        recorders[start["uid"]] = Recorder()
        return [recorders[start["uid"]]], []

    emitted = _emit(recursive_runs(3))
    router, _ = _router(factory)
    _route_all(router, emitted)
    assert len(recorders) == 3
    for uid, recorder in recorders.items():
        assert recorder.docs == [(n, d) for run, n, _, d in emitted if run == uid]
    assert router.runs == {}


def test_subfactories_get_start_descriptor_and_their_events() -> None:
    got: list[tuple[str, str]] = []

    def subfactory(name, descriptor):
        return [lambda n, d: got.append((n, descriptor["uid"]))]

    router, _ = _router(lambda name, start: ([], [subfactory]))
    emitted = _emit(nested_runs(2))
    _route_all(router, emitted)
    names = [n for n, _ in got]
    assert names.count("start") == 2 and names.count("descriptor") == 2 and names.count("stop") == 2
    assert names.count("event") == 5  # 2 outer + 3 inner


def test_a_failing_callback_touches_no_other_run() -> None:
    good: dict[str, Recorder] = {}

    def factory(name, start):
        if start.get("run_key") == "run_2":

            def explode(n, d):
                raise RuntimeError("boom")

            return [explode], []
        good[start["uid"]] = Recorder()
        return [good[start["uid"]]], []

    emitted = _emit(nested_runs(4))
    router, metrics = _router(factory)
    _route_all(router, emitted)
    (outer,) = good.values()
    assert [n for n, _ in outer.docs].count("event") == 4 and outer.docs[-1][0] == "stop"
    assert metrics.callback_errors._value.get() == 1 + 1 + 5 + 1  # start, descriptor, events, stop


def test_a_failing_factory_counts_its_runs_documents_as_dropped() -> None:
    def factory(name, start):
        raise ValueError("bad factory")

    emitted = _emit(nested_runs(2))
    router, metrics = _router(factory)
    _route_all(router, emitted)
    assert metrics.dropped._value.get() == len(emitted) - 2  # all but the two starts
    assert metrics.callback_errors._value.get() == 2


def test_duplicates_are_dropped_and_gaps_counted() -> None:
    recorder = Recorder()
    router, metrics = _router(lambda name, start: ([recorder], []))
    emitted = _emit(nested_runs(2))
    outer = [e for e in emitted if e[0] == emitted[0][0]]
    for e in outer[:3]:
        _send(router, e)
    assert _send(router, outer[2]) is False  # the same seq again
    _send(router, outer[4])  # seq 3 skipped
    assert metrics.duplicates._value.get() == 1
    assert metrics.gaps._value.get() == 1
    assert len(recorder.docs) == 4


def test_unknown_run_and_duplicate_start_are_refused() -> None:
    router, _ = _router(lambda name, start: ([Recorder()], []))
    with pytest.raises(RoutingError, match="no start seen"):
        router.route("p", "nope", 3, "event", {"descriptor": "d"})
    router.route("p", "R", 0, "start", {"uid": "R", "time": 0})
    with pytest.raises(RoutingError, match="duplicate start"):
        router.route("p", "R", 0, "start", {"uid": "R", "time": 0})
    with pytest.raises(RoutingError, match="does not match"):
        router.route("p", "S", 0, "start", {"uid": "other", "time": 0})
    with pytest.raises(RoutingError, match="unknown descriptor"):
        router.route("p", "R", 1, "event", {"descriptor": "ghost"})


def test_a_completed_run_replayed_is_dropped_quietly() -> None:
    recorder = Recorder()
    router, metrics = _router(lambda name, start: ([recorder], []))
    emitted = _emit(nested_runs(2))
    _route_all(router, emitted)
    before = len(recorder.docs)
    _route_all(router, emitted)
    assert len(recorder.docs) == before
    assert metrics.duplicates._value.get() == len(emitted)


def test_abandon_and_tick_hooks() -> None:
    recorder = Recorder()
    router, _ = _router(lambda name, start: ([recorder], []))
    router.route("p", "R", 0, "start", {"uid": "R", "time": 0})
    router.tick()
    router.caught_up()
    router.caught_up()
    router.abandon("R", "idle: 5 s")
    assert recorder.ticks == 1 and recorder.catch_ups == 2
    assert recorder.abandoned == ["idle: 5 s"]
    assert router.runs == {}


def test_a_failing_hook_is_counted_and_the_other_runs_still_get_theirs() -> None:
    class Failing(Recorder):
        def caught_up(self) -> None:
            raise RuntimeError("boom")

    failing, fine = Failing(), Recorder()
    router, metrics = _router(lambda name, start: ([failing if start["uid"] == "A" else fine], []))
    router.route("p", "A", 0, "start", {"uid": "A", "time": 0})
    router.route("p", "B", 0, "start", {"uid": "B", "time": 0})
    router.caught_up()
    assert fine.catch_ups == 1 and metrics.callback_errors._value.get() == 1


def test_a_plain_function_is_a_callback_without_hooks() -> None:
    got: list[str] = []
    router, metrics = _router(lambda name, start: ([lambda n, d: got.append(n)], []))
    emitted = _emit(nested_runs(2))
    outer = [e for e in emitted if e[0] == emitted[0][0]]
    for e in outer[:3]:
        _send(router, e)
    router.tick()
    router.caught_up()
    router.abandon(outer[0][0], "shutdown")
    assert got == [n for _, n, _, _ in outer[:3]] and router.runs == {}
    assert metrics.callback_errors._value.get() == 0


def test_existing_runrouter_factories_work_unchanged() -> None:
    hw = sim_hw()
    out = io.StringIO()

    def seed_factory(name, doc):  # the tutorial's factory, LiveTable per run key
        if doc["run_key"] == "run_1":
            return [LiveTable([hw.motor, hw.det], out=out.write)], []
        return [LiveTable([hw.motor1, hw.motor2, hw.det2], out=out.write)], []

    router, metrics = _router(seed_factory)
    _route_all(router, _emit(nested_runs(4)))
    text = out.getvalue()
    assert metrics.callback_errors._value.get() == 0
    assert text.count("motor2") >= 1 and text.count("| det ") + text.count("|        det |") >= 1
