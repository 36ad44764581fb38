"""The timestamp merge of several partitions' messages (`consumers.ordering`).

The messages are stand-ins with confluent-kafka's accessors; the real consumer
and broker are in `tests/integration/test_tiled_parity.py`.
"""

from __future__ import annotations

from confluent_kafka import KafkaError

from runstream.consumers.ordering import TimestampMerge

T = "topic"


class Msg:
    def __init__(self, partition: int, ts: int, eof: bool = False) -> None:
        self._partition, self._ts = partition, ts
        self._error = KafkaError(KafkaError._PARTITION_EOF) if eof else None

    def error(self):
        return self._error

    def topic(self) -> str:
        return T

    def partition(self) -> int:
        return self._partition

    def timestamp(self) -> tuple[int, int]:
        return (1, self._ts)

    def __repr__(self) -> str:
        return f"{self._partition}@{self._ts}"


def _eof(partition: int) -> Msg:
    return Msg(partition, -1, eof=True)


def _merge(parts: int = 3, wait: float = 2.0, clock=lambda: 0.0) -> TimestampMerge:
    merge = TimestampMerge(wait, clock)
    merge.assigned((T, p) for p in range(parts))
    return merge


def _stamps(messages) -> list[tuple[int, int]]:
    return [(m.partition(), m.timestamp()[1]) for m in messages if m.error() is None]


def test_a_backlog_over_partitions_comes_out_oldest_first() -> None:
    merge = _merge()
    backlog = {0: [1, 4, 7], 1: [2, 5, 8], 2: [3, 6, 9]}
    out = merge.arrange([Msg(0, t) for t in backlog[0]] + [_eof(0)])
    assert out == []  # partitions 1 and 2 have data still to fetch
    out += merge.arrange([Msg(1, t) for t in backlog[1]] + [_eof(1)])
    out += merge.arrange([Msg(2, t) for t in backlog[2]] + [_eof(2)])
    assert [ts for _, ts in _stamps(out)] == list(range(1, 10))
    assert merge.buffered == 0


def test_a_partition_drained_but_not_at_its_end_holds_the_others_back() -> None:
    merge = _merge(parts=2)
    out = merge.arrange([Msg(0, 1), Msg(1, 2), Msg(1, 3), _eof(1)])
    assert _stamps(out) == [(0, 1)]  # partition 0 may have older messages still
    out = merge.arrange([Msg(0, 4), _eof(0)])
    assert _stamps(out) == [(1, 2), (1, 3), (0, 4)]


def test_live_messages_pass_at_once() -> None:
    merge = _merge()
    merge.arrange([_eof(0), _eof(1), _eof(2)])
    for ts, partition in enumerate([2, 0, 1, 1, 2]):
        assert _stamps(merge.arrange([Msg(partition, ts), _eof(partition)])) == [(partition, ts)]


def test_a_silent_partition_holds_back_at_most_the_wait() -> None:
    now = [0.0]
    merge = _merge(parts=2, wait=2.0, clock=lambda: now[0])
    assert merge.arrange([Msg(0, 1), Msg(0, 2)]) == []
    now[0] = 1.9
    assert merge.arrange([]) == []
    now[0] = 2.1
    assert _stamps(merge.arrange([])) == [(0, 1), (0, 2)]


def test_one_partition_passes_everything_through() -> None:
    merge = _merge(parts=1)
    first, second = Msg(0, 5), Msg(0, 1)
    assert merge.arrange([first, second, _eof(0)]) == [first, second]


def test_a_revoked_partitions_messages_are_dropped_and_the_rest_go_on() -> None:
    merge = _merge(parts=3)
    out = merge.arrange([Msg(1, 1), Msg(1, 3), Msg(0, 2), Msg(0, 4)])
    assert _stamps(out) == []  # partition 2: nothing fetched yet
    merge.released([(T, 1), (T, 2)])  # (1, 1) and (1, 3) are the next owner's
    assert _stamps(merge.arrange([])) == [(0, 2), (0, 4)]
    assert merge.buffered == 0
    assert _stamps(merge.arrange([Msg(0, 5)])) == [(0, 5)]


def test_errors_other_than_the_end_of_a_partition_are_handed_on() -> None:
    merge = _merge(parts=2)
    failure = Msg(0, 0)
    failure._error = KafkaError(KafkaError._TRANSPORT)
    assert merge.arrange([failure]) == [failure]
