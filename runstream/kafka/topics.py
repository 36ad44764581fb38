"""Topics as runstream makes them, and the admin client settings that make them.

A topic that exists already is used as it is; differences are said once, never fixed.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic

from .settings import Replication

log = logging.getLogger(__name__)

#: librdkafka settings an admin client shares with the producer or consumer it serves.
ADMIN_PREFIXES = ("security.", "sasl.", "ssl.", "socket.", "client.", "broker.", "bootstrap.")
#: librdkafka settings that are objects, not text: passed to every client as they are.
CALLBACK_KEYS = ("logger", "error_cb", "throttle_cb", "stats_cb", "oauth_cb")


def admin_config(client_config: dict[str, Any]) -> dict[str, Any]:
    """The part of a producer's or consumer's settings an admin client takes."""
    return {
        k: v for k, v in client_config.items() if k.startswith(ADMIN_PREFIXES) or k in CALLBACK_KEYS
    }


@dataclass(frozen=True)
class TopicSpec:
    """A topic as runstream would make it."""

    name: str
    partitions: int
    replication: Replication = field(default_factory=Replication)
    config: dict[str, str] = field(default_factory=dict)


def ensure_topic(admin: AdminClient, spec: TopicSpec, timeout: float = 10.0) -> bool:
    """Make ``spec``'s topic if it is missing; True when it was made.

    A topic that exists already is used as it is: when its partitions, replication
    or min.insync.replicas differ from ``spec`` one warning says so, nothing changes.
    Raises `KafkaException` when the cluster cannot be asked or refuses.
    """
    metadata = admin.list_topics(spec.name, timeout=timeout)
    factor, min_isr = spec.replication.resolve(len(metadata.brokers))
    found = metadata.topics.get(spec.name)
    if found is not None and found.error is None:
        _report_differences(admin, spec, found, factor, min_isr, timeout)
        return False
    config = {**spec.config, "min.insync.replicas": str(min_isr)}
    new = NewTopic(spec.name, spec.partitions, factor, config=config)
    try:
        admin.create_topics([new], request_timeout=timeout)[spec.name].result(timeout=timeout)
    except KafkaException as exc:
        if exc.args[0].code() == KafkaError.TOPIC_ALREADY_EXISTS:  # made meanwhile by another
            return False
        raise
    log.info("created topic %s (%d partitions, replication %d, min.insync.replicas %d)",
             spec.name, spec.partitions, factor, min_isr)  # fmt: skip
    return True


def _report_differences(
    admin: AdminClient, spec: TopicSpec, found: Any, factor: int, min_isr: int, timeout: float
) -> None:
    differences = []
    partitions = len(found.partitions)
    if partitions != spec.partitions:
        differences.append(f"{partitions} partitions (runstream would make {spec.partitions})")
    replicas = min((len(p.replicas) for p in found.partitions.values()), default=0)
    if replicas != factor:
        differences.append(f"replication {replicas} (runstream would make {factor})")
    actual_isr = _min_insync(admin, spec.name, timeout)
    if actual_isr is not None and actual_isr != min_isr:
        differences.append(f"min.insync.replicas {actual_isr} (runstream would make {min_isr})")
    if differences:
        log.warning("topic %s exists with %s; it is used as it is", spec.name,
                    ", ".join(differences))  # fmt: skip


def _min_insync(admin: AdminClient, topic: str, timeout: float) -> int | None:
    """The topic's min.insync.replicas, or None when the cluster does not let us read it."""
    resource = ConfigResource(ConfigResource.Type.TOPIC, topic)
    try:
        configs = admin.describe_configs([resource], request_timeout=timeout)[resource]
        entry = configs.result(timeout=timeout).get("min.insync.replicas")
    except KafkaException:
        return None
    return int(entry.value) if entry is not None and entry.value is not None else None
