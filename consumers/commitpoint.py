"""The offset a partition may commit: behind the start of every run whose documents may follow.

A consumer that dies or loses a partition mid-run then leaves every open run to
be replayed from its start document by the partition's next owner. A run that
ended after a still-open run began holds the offset back too: replaying from the
open run's start would otherwise meet the tail of the ended one without its start
(and, for legacy messages, without the descriptors that name its run).
"""

from __future__ import annotations


class CommitPoint:
    """One partition's commit point: the offset below which no open run's documents lie.

    (Not Kafka's high watermark, the offset after a partition's last message.)
    """

    def __init__(self) -> None:
        self.next_offset: int | None = None  # after the last processed message
        self.open_starts: dict[str, int] = {}  # run uid -> offset of its start
        self.closed_spans: list[tuple[int, int]] = []  # (start, last offset) of ended runs
        self.committed: int | None = None

    def processed(self, offset: int) -> None:
        self.next_offset = offset + 1

    def run_opened(self, run: str, offset: int) -> None:
        self.open_starts[run] = offset

    def run_closed(self, run: str, offset: int | None = None) -> None:
        """``run`` ended at ``offset`` (its stop; default: the last processed message)."""
        start = self.open_starts.pop(run, None)
        if start is None or not self.open_starts:
            return  # with no run open, the commit passes every ended one
        end = offset if offset is not None else (self.next_offset or start + 1) - 1
        self.closed_spans.append((start, end))

    def safe_offset(self) -> int | None:
        """The committable offset, or None before anything was processed."""
        if self.next_offset is None:
            return None
        offset = min(self.open_starts.values(), default=self.next_offset)
        offset = min(offset, self.next_offset)
        moved = True
        while moved:  # step back to the start of any ended run the offset would cut
            moved = False
            for start, end in self.closed_spans:
                if start < offset <= end:
                    offset, moved = start, True
        # the offset never goes back, so spans wholly before it can no longer matter
        self.closed_spans = [span for span in self.closed_spans if span[1] >= offset]
        return offset

    def to_commit(self) -> int | None:
        """The safe offset if it moved since the last commit."""
        offset = self.safe_offset()
        return None if offset is None or offset == self.committed else offset
