"""Topics as runstream makes them on a real broker: replication settings, existing topics."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from confluent_kafka.admin import AdminClient, ConfigResource

from runstream.producer import KafkaPublisher
from tests.kafka_tools import create_topic, unique_prefix


def _describe(bootstrap: str, topic: str) -> tuple[int, int, object]:
    """(partitions, replicas, the min.insync.replicas config entry) of ``topic``."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    meta = admin.list_topics(topic, timeout=10).topics[topic]
    resource = ConfigResource(ConfigResource.Type.TOPIC, topic)
    configs = admin.describe_configs([resource])[resource].result(timeout=10)
    replicas = min(len(p.replicas) for p in meta.partitions.values())
    return len(meta.partitions), replicas, configs["min.insync.replicas"]


def test_the_publisher_makes_its_topic_with_replication_settings(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    topic = unique_prefix("made")
    publisher = KafkaPublisher(topic, kafka_bootstrap, tmp_path / "outbox", partitions=3)
    try:
        assert publisher.wait_for_topic(30)
    finally:
        publisher.close()
    partitions, replicas, min_isr = _describe(kafka_bootstrap, topic)
    brokers = len(AdminClient({"bootstrap.servers": kafka_bootstrap}).list_topics().brokers)
    assert (partitions, replicas) == (3, min(3, brokers))
    assert min_isr.value == str(max(1, replicas - 1))
    assert not min_isr.is_default  # set on the topic, not the broker's default


def test_an_existing_topic_with_other_settings_is_reported_not_changed(
    kafka_bootstrap: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    topic = create_topic(kafka_bootstrap, unique_prefix("theirs"), partitions=1)
    caplog.set_level(logging.INFO, logger="runstream")
    publisher = KafkaPublisher(topic, kafka_bootstrap, tmp_path / "outbox", partitions=4)
    try:
        assert publisher.wait_for_topic(30)
    finally:
        publisher.close()
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == [
        f"topic {topic} exists with 1 partitions (runstream would make 4); it is used as it is"
    ]
    assert _describe(kafka_bootstrap, topic)[0] == 1


def test_a_replication_the_cluster_cannot_give_keeps_documents_in_the_outbox(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    brokers = len(AdminClient({"bootstrap.servers": kafka_bootstrap}).list_topics().brokers)
    topic = unique_prefix("toomany")
    publisher = KafkaPublisher(topic, kafka_bootstrap, tmp_path / "outbox",
                               replication_factor=brokers + 1)  # fmt: skip
    try:
        publisher("start", {"uid": "r1", "time": 1.0})
        assert not publisher.wait_for_topic(3)
        assert publisher.unacknowledged == 1
    finally:
        assert publisher.close(1) == 1
