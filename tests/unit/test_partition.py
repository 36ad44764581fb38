"""Java's murmur2, bit for bit (vectors from Kafka's own UtilsTest)."""

from __future__ import annotations

import pytest

from runstream.schemas import murmur2, partition_for

KAFKA_VECTORS = {
    b"21": -973932308,
    b"foobar": -790332482,
    b"a-little-bit-long-string": -985981536,
    b"a-little-bit-longer-string": -1486304829,
    b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8": -58897971,
    b"abc": 479470107,
}


@pytest.mark.parametrize("key,expected", KAFKA_VECTORS.items())
def test_kafka_murmur2_vectors(key: bytes, expected: int) -> None:
    assert murmur2(key) == expected


def test_str_and_bytes_keys_agree() -> None:
    assert partition_for("foobar", 7) == partition_for(b"foobar", 7)
    assert partition_for("foobar", 7) == (-790332482 & 0x7FFFFFFF) % 7


def test_bad_partition_count() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        partition_for("x", 0)
