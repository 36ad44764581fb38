"""Messages of several partitions handed on in timestamp order, as Kafka Streams merges them.

Kafka orders messages within a partition only; a consumer that owns several gets
them in fetch order, one partition's backlog before the next. Callbacks that
record creation order (a Tiled catalog's ``cat[-1]``) then see an old run last.
So the runtime keeps what it fetched per partition and hands on the message with
the oldest timestamp first. A partition with nothing buffered holds the others
back until it yields a message or librdkafka reports its end (partition EOF),
for at most ``max_wait`` seconds (then the others go on, said once in the log).

Live, every partition is at its end between messages, so a message passes at
once; with one partition assigned nothing is buffered at all. Timestamps are the
producer's (``KafkaPublisher`` stamps each document with the time the engine
emitted it and every start strictly after what the engine emitted before).
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable, Iterable

from confluent_kafka import KafkaError, Message

log = logging.getLogger(__name__)

TopicPart = tuple[str, int]


def _timestamp(msg: Message) -> int:
    return msg.timestamp()[1]


class TimestampMerge:
    """The assigned partitions' fetched messages, released oldest first (see the module)."""

    def __init__(self, max_wait: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.max_wait = max_wait
        self._clock = clock
        self._buffers: dict[TopicPart, deque[Message]] = {}
        self._at_end: set[TopicPart] = set()  # nothing fetched beyond what is buffered
        self._held_since: float | None = None
        self._waited_out = False

    # -- assignment ---------------------------------------------------------------

    def assigned(self, parts: Iterable[TopicPart]) -> None:
        for tp in parts:
            self._buffers[tp] = deque()
            self._at_end.discard(tp)

    def released(self, parts: Iterable[TopicPart]) -> None:
        """Forget revoked partitions: their buffered messages are the next owner's."""
        for tp in parts:
            self._buffers.pop(tp, None)
            self._at_end.discard(tp)

    @property
    def buffered(self) -> int:
        return sum(len(b) for b in self._buffers.values())

    # -- messages -----------------------------------------------------------------

    def arrange(self, messages: list[Message]) -> list[Message]:
        """Take what the consumer fetched; return what may be handled now, in order."""
        if len(self._buffers) <= 1 and not any(self._buffers.values()):  # nothing to merge
            if messages and self._note_end(messages[-1]):
                messages.pop()  # the end of the partition: news for the merge only
            return messages
        out: list[Message] = []
        for msg in messages:
            err = msg.error()
            if err is not None:
                if err.code() == KafkaError._PARTITION_EOF:
                    tp = (msg.topic(), msg.partition())
                    if tp in self._buffers:
                        self._at_end.add(tp)
                else:
                    out.append(msg)  # the runtime reports it
                continue
            tp = (msg.topic(), msg.partition())
            buffer = self._buffers.get(tp)
            if buffer is not None:  # else: revoked while the batch was in hand
                buffer.append(msg)
                self._at_end.discard(tp)
        self._release(out)
        return out

    def _note_end(self, last: Message) -> bool:
        """Note whether the partition is at its end; True when ``last`` says it is."""
        err = last.error()
        if err is None:
            self._at_end.discard((last.topic(), last.partition()))
            return False
        if err.code() != KafkaError._PARTITION_EOF:
            return False
        tp = (last.topic(), last.partition())
        if tp in self._buffers:
            self._at_end.add(tp)
        return True

    def _release(self, out: list[Message]) -> None:
        buffers, at_end = self._buffers, self._at_end
        while True:
            waiting = [tp for tp, b in buffers.items() if not b and tp not in at_end]
            if waiting and not self._waited_too_long(waiting, any(buffers.values())):
                return
            if not waiting:
                self._held_since, self._waited_out = None, False
            heads = sorted((_timestamp(b[0]), tp) for tp, b in buffers.items() if b)
            if not heads:
                return
            first = buffers[heads[0][1]]
            # Everything of the oldest partition up to the next partition's head goes now.
            limit = heads[1][0] if len(heads) > 1 else None
            while first and (limit is None or _timestamp(first[0]) <= limit):
                out.append(first.popleft())

    def _waited_too_long(self, waiting: list[TopicPart], holding: bool) -> bool:
        if not holding:
            self._held_since = None
            return False
        now = self._clock()
        if self._held_since is None:
            self._held_since = now
        if now - self._held_since < self.max_wait:
            return False
        if not self._waited_out:
            self._waited_out = True
            log.warning("no data from %s for %.1f s: handing on the other partitions' messages "
                        "without waiting for it", ", ".join(f"{t}/{p}" for t, p in waiting),
                        self.max_wait)  # fmt: skip
        return True
