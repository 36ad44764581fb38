"""Small tools the tests use to look at a real broker."""

from __future__ import annotations

import socket
import time
import uuid
from dataclasses import dataclass

from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient

from runstream.kafka import Replication, TopicSpec, ensure_topic
from tests.waiting import eventually


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def unique_prefix(label: str = "t") -> str:
    return f"{label}-{uuid.uuid4().hex[:10]}"


def create_topic(
    bootstrap: str,
    name: str,
    partitions: int = 1,
    config: dict | None = None,
    replication: Replication | int | None = None,
    client: dict | None = None,
) -> str:
    """Make a topic as runstream would (default replication: min(3, brokers)), and wait
    until every partition shows in the metadata (``client``: extra librdkafka settings,
    e.g. a secure broker's)."""
    if isinstance(replication, int):
        replication = Replication(replication)
    admin = AdminClient({"bootstrap.servers": bootstrap, **(client or {})})
    spec = TopicSpec(name, partitions, replication or Replication(), config or {})
    ensure_topic(admin, spec, timeout=30)

    def shown() -> bool:
        meta = admin.list_topics(name, timeout=5).topics.get(name)
        return bool(meta and meta.error is None and len(meta.partitions) == partitions)

    eventually(shown, 30, f"topic {name}'s {partitions} partitions in the metadata")
    return name


@dataclass
class Record:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: dict[str, bytes]


def read_all(
    bootstrap: str,
    topic: str,
    expect: int | None = None,
    timeout: float = 30,
    client: dict | None = None,
) -> list[Record]:
    """Every record of ``topic`` from the start, in (partition, offset) order.

    Reads until ``expect`` records arrived, or until the end of every partition
    when ``expect`` is None.
    """
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"reader-{uuid.uuid4().hex}",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "enable.partition.eof": True,
            **(client or {}),
        }
    )
    try:
        meta = consumer.list_topics(topic, timeout=10).topics[topic]
        parts = [TopicPartition(topic, p, 0) for p in meta.partitions]
        consumer.assign(parts)
        records: list[Record] = []
        at_eof: set[int] = set()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if expect is not None and len(records) >= expect:
                break
            if expect is None and len(at_eof) == len(parts):
                break
            msg = consumer.poll(0.5)
            if msg is None:
                continue
            if msg.error():
                if msg.error().code() == -191:  # _PARTITION_EOF
                    at_eof.add(msg.partition())
                continue
            at_eof.discard(msg.partition())
            records.append(
                Record(
                    msg.topic(), msg.partition(), msg.offset(), msg.key(), msg.value(),
                    dict(msg.headers() or []),
                )
            )  # fmt: skip
        records.sort(key=lambda r: (r.partition, r.offset))
        return records
    finally:
        consumer.close()


def free_ports(count: int) -> int:
    """The first of ``count`` consecutive free ports on loopback (a cluster's nodes)."""
    from runstream.process import port_free

    for _ in range(200):
        first = free_port()
        if first + count < 65536 and all(port_free(first + i) for i in range(count)):
            return first
    raise RuntimeError(f"no {count} consecutive free ports found")


def partition_replicas(bootstrap: str, topic: str, client: dict | None = None) -> dict:
    """Partition -> (leader, replicas, in-sync replicas), as the cluster's metadata says."""
    admin = AdminClient({"bootstrap.servers": bootstrap, **(client or {})})
    meta = admin.list_topics(topic, timeout=10).topics[topic]
    return {p.id: (p.leader, sorted(p.replicas), sorted(p.isrs)) for p in meta.partitions.values()}
