"""Legacy messages (bluesky-kafka's): run and seq from the documents and partition order."""

from __future__ import annotations

from collections import defaultdict

import pytest

from runstream.consumers.commitpoint import CommitPoint
from runstream.consumers.legacy import LegacyRuns
from runstream.consumers.metrics import ConsumerMetrics
from runstream.consumers.router import Router
from tests.seed_documents import seed_documents
from tests.unlabeled_runs import by_run, emitted, old_style

P = ("t", 0)


class RefusedError(Exception):
    pass


def _identify(legacy: LegacyRuns, partition, name: str, doc: dict) -> tuple[str, int]:
    """``(run, seq)`` of a document ready at once; `RefusedError` with the reason if none."""
    ready, lost = legacy.sort(partition, name, doc)
    if lost:
        raise RefusedError(lost[0].reason)
    assert len(ready) == 1 and ready[0].doc is doc
    return ready[0].run, ready[0].seq


def _interleaved() -> list[tuple[str, dict]]:
    """The seed's runs one after another, as one bluesky-kafka partition holds them."""
    return [doc for docs in seed_documents().values() for doc in docs]


def test_every_document_gets_its_run_and_the_next_seq() -> None:
    legacy = LegacyRuns()
    seen: dict[str, list[int]] = {}
    for name, doc in _interleaved():
        run, seq = _identify(legacy, P, name, doc)
        if name == "start":
            assert run == doc["uid"] and seq == 0
        seen.setdefault(run, []).append(seq)
    for seqs in seen.values():
        assert seqs == list(range(len(seqs)))  # 0..n-1, nested runs counted apart


def test_a_replay_from_the_committed_offset_numbers_runs_the_same() -> None:
    """A consumer dies mid-topic; the next one starts at the committed offset with nothing
    remembered, and gives every document it reads the seq the first one gave."""
    docs = _interleaved()
    first, point = LegacyRuns(), CommitPoint()
    numbered = []
    cut = len(docs) * 2 // 3
    for offset, (name, doc) in enumerate(docs[:cut]):
        run, seq = _identify(first, P, name, doc)
        numbered.append((run, seq))
        if name == "start":
            point.run_opened(run, offset)
        if name == "stop":
            point.run_closed(run, offset)
        point.processed(offset)
    committed = point.safe_offset()
    assert committed is not None and committed < cut  # runs were open at the cut
    again = LegacyRuns()
    for offset in range(committed, cut):
        name, doc = docs[offset]
        assert _identify(again, P, name, doc) == numbered[offset], offset


def test_documents_pointing_at_nothing_seen_are_refused() -> None:
    legacy = LegacyRuns()
    event = {"uid": "e", "descriptor": "nowhere", "seq_num": 1, "time": 1.0, "data": {},
             "timestamps": {}}  # fmt: skip
    with pytest.raises(RefusedError, match="descriptor 'nowhere', never seen"):
        _identify(legacy, P, "event", event)
    with pytest.raises(RefusedError, match="resource 'r', never seen"):
        _identify(legacy, P, "datum", {"datum_id": "r/0", "resource": "r", "datum_kwargs": {}})
    with pytest.raises(KeyError):
        _identify(legacy, P, "event", {"uid": "e"})


def test_partitions_and_given_up_runs_are_forgotten() -> None:
    legacy = LegacyRuns()
    start = {"uid": "r", "time": 1.0}
    desc = {"uid": "d", "run_start": "r", "time": 1.0, "data_keys": {}}
    _identify(legacy, P, "start", start)
    _identify(legacy, P, "descriptor", desc)
    assert _identify(legacy, P, "start", start) == ("r", 0)  # a second start: the router refuses
    assert _identify(legacy, ("t", 1), "start", start) == ("r", 0)  # partitions apart
    legacy.forget_run(P, "r")
    with pytest.raises(RefusedError):
        _identify(legacy, P, "event", {"uid": "e", "descriptor": "d"})
    _identify(legacy, ("t", 1), "descriptor", desc)
    legacy.forget_partition(("t", 1))
    with pytest.raises(RefusedError):
        _identify(legacy, ("t", 1), "event", {"uid": "e", "descriptor": "d"})


def test_resources_without_run_start_reach_their_runs_callbacks(tmp_path) -> None:
    """Old-style resources of nested runs, through the legacy reader and the router: each
    run's callbacks get their own documents, in order, with consecutive seqs."""
    docs = emitted(tmp_path)
    legacy, metrics = LegacyRuns(), ConsumerMetrics()
    received: dict[str, list] = defaultdict(list)

    def factory(name, start):
        def record(n, d, u=start["uid"]):
            received[u].append((n, d.get("uid") or d.get("datum_id")))

        return [record], []

    router = Router([factory], metrics, clock=lambda: 0.0)
    seqs: dict[str, list[int]] = defaultdict(list)
    for offset, (name, doc) in enumerate(docs):
        ready, lost = legacy.sort(P, name, old_style(name, doc), offset)
        assert lost == []
        for item in ready:
            assert router.route(P, item.run, item.seq, item.name, item.doc)
            seqs[item.run].append(item.seq)
    assert received == by_run(docs)
    assert all(s == list(range(len(s))) for s in seqs.values())
    assert metrics.gaps._value.get() == 0


def test_an_unresolvable_resource_comes_back_with_its_message() -> None:
    legacy = LegacyRuns()
    ready, lost = legacy.sort(P, "resource", {"uid": "S"}, "msg-1")
    reason = "legacy resource S names no run_start and no run is open in this partition"
    assert ready == [] and [(u.tag, u.reason) for u in lost] == [("msg-1", reason)]
    for run in ("a", "b"):
        legacy.sort(P, "start", {"uid": run})
    assert legacy.sort(P, "resource", {"uid": "S2"}, "msg-2") == ([], [])
    assert legacy.forget_run(P, "a") == []
    assert [u.tag for u in legacy.forget_run(P, "b")] == ["msg-2"]
