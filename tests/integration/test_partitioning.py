"""librdkafka with murmur2_random puts every key where `partition_for` says (real broker)."""

from __future__ import annotations

import uuid

import pytest
from confluent_kafka import Producer

from runstream.schemas import partition_for
from tests.kafka_tools import read_all

KEYS = 10_000


@pytest.mark.parametrize("partitions", [1, 3, 7, 16])
def test_keys_land_where_partition_for_predicts(kafka_bootstrap: str, new_topic, partitions: int):
    topic = new_topic(partitions=partitions)
    producer = Producer(
        {"bootstrap.servers": kafka_bootstrap, "partitioner": "murmur2_random", "linger.ms": 20}
    )
    keys = [str(uuid.uuid4()) for _ in range(KEYS - 2)] + ["", "ünïcødé-ключ"]
    for key in keys:
        producer.produce(topic, key=key.encode(), value=b"x")
        producer.poll(0)
    assert producer.flush(30) == 0
    records = read_all(kafka_bootstrap, topic, expect=len(keys))
    assert len(records) == len(keys)
    wrong = [r for r in records if r.partition != partition_for(r.key or b"", partitions)]
    assert wrong == []
    assert len({r.partition for r in records}) == partitions
