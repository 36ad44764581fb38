"""The offset a partition may commit: behind the start of every run still open in it.

A consumer that dies or loses a partition mid-run then leaves every open run to
be replayed from its start document by the partition's next owner.
"""

from __future__ import annotations


class PartitionWatermark:
    def __init__(self) -> None:
        self.next_offset: int | None = None  # after the last processed message
        self.open_starts: dict[str, int] = {}  # run uid -> offset of its start
        self.committed: int | None = None

    def processed(self, offset: int) -> None:
        self.next_offset = offset + 1

    def run_opened(self, run: str, offset: int) -> None:
        self.open_starts[run] = offset

    def run_closed(self, run: str) -> None:
        self.open_starts.pop(run, None)

    def safe_offset(self) -> int | None:
        """The committable offset, or None before anything was processed."""
        if self.next_offset is None:
            return None
        if self.open_starts:
            return min(min(self.open_starts.values()), self.next_offset)
        return self.next_offset

    def to_commit(self) -> int | None:
        """The safe offset if it moved since the last commit."""
        offset = self.safe_offset()
        return None if offset is None or offset == self.committed else offset
