"""Offsets committed behind the start of every open run."""

from __future__ import annotations

from runstream.consumers.watermark import PartitionWatermark


def test_nothing_processed_nothing_to_commit() -> None:
    assert PartitionWatermark().to_commit() is None


def test_commit_stays_behind_open_runs() -> None:
    w = PartitionWatermark()
    w.run_opened("outer", 10)
    w.processed(10)
    w.run_opened("inner", 15)
    w.processed(30)
    assert w.safe_offset() == 10
    w.run_closed("outer")
    assert w.safe_offset() == 15
    w.run_closed("inner")
    assert w.safe_offset() == 31


def test_to_commit_only_when_moved() -> None:
    w = PartitionWatermark()
    w.processed(4)
    assert w.to_commit() == 5
    w.committed = 5
    assert w.to_commit() is None
    w.processed(5)
    assert w.to_commit() == 6
