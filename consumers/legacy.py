"""Legacy messages: documents bluesky-kafka's Publisher wrote, read as if they had our headers.

bluesky-kafka writes ``msgpack([name, doc])`` with msgpack-numpy's layout (our value
format), one fixed key for every run (so one partition) and no headers. Such a
message has no ``v`` header. Its run comes from the document itself (the key
rule of `schemas.RunKeys`: the start's uid, ``run_start``, descriptor -> run,
resource -> run, stream_resource -> run; a resource without ``run_start`` goes to
the one run open, or waits for the event that refers to it), and partition order
stands in for ``seq``: a counter per run, 0 at its start, +1 per document routed.

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

from runstream.schemas import RunKeys, Unkeyed


@dataclass(frozen=True)
class Numbered:
    """A legacy document with the run and ``seq`` partition order gives it."""

    run: str
    seq: int
    name: str
    doc: Mapping[str, Any]
    tag: Any = None


@dataclass
class _PartitionRuns:
    keys: RunKeys = field(default_factory=RunKeys)
    next_seq: dict[str, int] = field(default_factory=dict)


class LegacyRuns:
    """The run and ``seq`` of each legacy document, per partition."""

    def __init__(self) -> None:
        self._partitions: dict[Any, _PartitionRuns] = {}

    def sort(
        self, partition: Any, name: str, doc: Mapping[str, Any], tag: Any = None
    ) -> tuple[list[Numbered], list[Unkeyed]]:
        """The documents ready for their runs (held ones first) and those no run can take.

        ``tag`` (the message) comes back with each. A resource without ``run_start``
        may wait for the event that refers to it (`schemas.unlabeled`). A field
        routing needs and the document lacks raises KeyError.
        """
        runs = self._partitions.get(partition)
        if runs is None:
            runs = self._partitions[partition] = _PartitionRuns()
        if name == "start" and doc["uid"] in runs.next_seq:
            return [Numbered(doc["uid"], 0, name, doc, tag)], []  # the router refuses it
        keyed, unkeyed = runs.keys.sort(name, doc, tag)
        numbered = []
        for item in keyed:
            seq = runs.next_seq.get(item.run, 0 if item.name == "start" else 1)
            if item.name == "stop":
                runs.next_seq.pop(item.run, None)
            else:
                runs.next_seq[item.run] = seq + 1
            numbered.append(Numbered(item.run, seq, item.name, item.doc, item.tag))
        return numbered, [_in_partition(u) for u in unkeyed]

    def forget_run(self, partition: Any, run: str) -> list[Unkeyed]:
        """A run given up without its stop (idle): its numbers and pointers go.

        Returns the held documents that can no longer find their run.
        """
        runs = self._partitions.get(partition)
        if runs is None:
            return []
        runs.next_seq.pop(run, None)
        return [_in_partition(u) for u in runs.keys.forget(run)]

    def forget_partition(self, partition: Any) -> None:
        """A partition gone to another member: its next owner numbers its runs afresh."""
        self._partitions.pop(partition, None)


def _in_partition(lost: Unkeyed) -> Unkeyed:
    return Unkeyed(lost.name, lost.doc, f"legacy {lost.reason} in this partition", lost.tag)
