"""Offsets committed behind the start of every open run."""

from __future__ import annotations

from runstream.consumers.commitpoint import CommitPoint


def test_nothing_processed_nothing_to_commit() -> None:
    assert CommitPoint().to_commit() is None


def test_commit_stays_behind_open_runs() -> None:
    w = CommitPoint()
    w.run_opened("outer", 10)
    w.processed(10)
    w.run_opened("inner", 15)
    w.processed(30)
    assert w.safe_offset() == 10
    w.run_closed("inner", 20)  # nested: ended inside outer
    assert w.safe_offset() == 10
    w.run_closed("outer", 30)
    assert w.safe_offset() == 31


def test_a_run_that_ended_after_an_open_one_began_holds_the_offset_back() -> None:
    # a starts at 10, b at 15, a ends at 20 while b is open: a replay from 15 would meet
    # a's documents 16..20 without a's start, so the offset stays at 10 until b ends
    w = CommitPoint()
    w.run_opened("a", 10)
    w.run_opened("b", 15)
    w.processed(20)
    w.run_closed("a", 20)
    w.processed(25)
    assert w.safe_offset() == 10
    w.run_opened("c", 26)  # c begins while b is open: b's end at 27 holds it back, and a's
    w.processed(27)
    w.run_closed("b", 27)
    assert w.safe_offset() == 10
    w.processed(29)
    w.run_closed("c", 29)  # the last open run ends: nothing can be cut any more
    w.run_opened("d", 30)
    w.processed(30)
    assert w.safe_offset() == 30
    assert w.closed_spans == []  # the spans behind the offset are forgotten


def test_to_commit_only_when_moved() -> None:
    w = CommitPoint()
    w.processed(4)
    assert w.to_commit() == 5
    w.committed = 5
    assert w.to_commit() is None
    w.processed(5)
    assert w.to_commit() == 6
