"""Legacy messages (bluesky-kafka's): run and seq from the documents and partition order."""

from __future__ import annotations

import pytest

from runstream.consumers.commitpoint import CommitPoint
from runstream.consumers.legacy import LegacyRuns
from runstream.consumers.router import RoutingError
from tests.seed_documents import seed_documents

P = ("t", 0)


def _interleaved() -> list[tuple[str, dict]]:
    """The seed's runs one after another, as one bluesky-kafka partition holds them."""
    return [doc for docs in seed_documents().values() for doc in docs]


def test_every_document_gets_its_run_and_the_next_seq() -> None:
    legacy = LegacyRuns()
    seen: dict[str, list[int]] = {}
    for name, doc in _interleaved():
        run, seq = legacy.identify(P, name, doc)
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
        run, seq = first.identify(P, name, doc)
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
        assert again.identify(P, name, doc) == numbered[offset], offset


def test_documents_pointing_at_nothing_seen_are_refused() -> None:
    legacy = LegacyRuns()
    event = {"uid": "e", "descriptor": "nowhere", "seq_num": 1, "time": 1.0, "data": {},
             "timestamps": {}}  # fmt: skip
    with pytest.raises(RoutingError, match="descriptor 'nowhere', never seen"):
        legacy.identify(P, "event", event)
    with pytest.raises(RoutingError, match="resource 'r', never seen"):
        legacy.identify(P, "datum", {"datum_id": "r/0", "resource": "r", "datum_kwargs": {}})
    with pytest.raises(KeyError):
        legacy.identify(P, "event", {"uid": "e"})


def test_partitions_and_given_up_runs_are_forgotten() -> None:
    legacy = LegacyRuns()
    start = {"uid": "r", "time": 1.0}
    desc = {"uid": "d", "run_start": "r", "time": 1.0, "data_keys": {}}
    legacy.identify(P, "start", start)
    legacy.identify(P, "descriptor", desc)
    assert legacy.identify(P, "start", start) == ("r", 0)  # a second start: the router refuses
    assert legacy.identify(("t", 1), "start", start) == ("r", 0)  # partitions apart
    legacy.forget_run(P, "r")
    with pytest.raises(RoutingError):
        legacy.identify(P, "event", {"uid": "e", "descriptor": "d"})
    legacy.identify(("t", 1), "descriptor", desc)
    legacy.forget_partition(("t", 1))
    with pytest.raises(RoutingError):
        legacy.identify(("t", 1), "event", {"uid": "e", "descriptor": "d"})
