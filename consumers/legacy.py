"""Legacy messages: documents bluesky-kafka's Publisher wrote, read as if they had our headers.

bluesky-kafka writes ``msgpack([name, doc])`` with msgpack-numpy's layout (our value
format), one fixed key for every run (so one partition) and no headers. Such a
message has no ``v`` header. Its run comes from the document itself (the key
rule of `schemas.RunIndex`: the start's uid, ``run_start``, descriptor -> run,
resource -> run, stream_resource -> run), and partition order stands in for
``seq``: a counter per run, 0 at its start, +1 per document.

The numbers are the same on every replay. The runtime commits offsets behind
the start of every run whose documents may follow (`commitpoint`), so a consumer
that resumes from a committed offset sees each such run from its start again and
numbers it afresh. Per partition, since a partition is replayed on its own.
A bluesky-kafka producer that wrote a message twice (no idempotence) shows it
twice: without a ``seq`` in the message, partition order cannot tell.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from runstream.schemas import RunIndex

from .router import RoutingError

_POINTER = {
    "event": "descriptor",
    "event_page": "descriptor",
    "datum": "resource",
    "datum_page": "resource",
    "stream_datum": "stream_resource",
}


@dataclass
class _PartitionRuns:
    index: RunIndex = field(default_factory=RunIndex)
    next_seq: dict[str, int] = field(default_factory=dict)


class LegacyRuns:
    """The run and ``seq`` of each legacy document, per partition."""

    def __init__(self) -> None:
        self._partitions: dict[Any, _PartitionRuns] = {}

    def identify(self, partition: Any, name: str, doc: Mapping[str, Any]) -> tuple[str, int]:
        """``(run uid, seq)`` of a legacy document; `RoutingError` when it names no run seen.

        A field routing needs and the document lacks raises KeyError.
        """
        runs = self._partitions.get(partition)
        if runs is None:
            runs = self._partitions[partition] = _PartitionRuns()
        if name == "start" and doc["uid"] in runs.next_seq:
            return doc["uid"], 0  # a second start of an open run: the router refuses it
        run = runs.index.run_of(name, doc)
        if run is None:
            pointer = _POINTER.get(name, "run_start")
            raise RoutingError(
                f"legacy {name} points at {pointer} {doc.get(pointer)!r}, never seen in this "
                "partition"
            )
        seq = runs.next_seq.get(run, 0 if name == "start" else 1)
        if name == "stop":
            runs.next_seq.pop(run, None)
        else:
            runs.next_seq[run] = seq + 1
        return run, seq

    def forget_run(self, partition: Any, run: str) -> None:
        """A run given up without its stop (idle): its numbers and pointers go."""
        runs = self._partitions.get(partition)
        if runs is not None:
            runs.index.forget(run)
            runs.next_seq.pop(run, None)

    def forget_partition(self, partition: Any) -> None:
        """A partition gone to another member: its next owner numbers its runs afresh."""
        self._partitions.pop(partition, None)
