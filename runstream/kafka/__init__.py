"""Kafka plumbing that the engine side and the consumer side both use.

The wire contract (`runstream.schemas`) says what a message is; this layer knows
how to reach Kafka: client settings composed into every service's settings model,
topics as runstream makes them, and the connection report that says each change of a
client's connection once. It sits just above the contract, below producer and consumers.
"""

from .connection import ConnectionReport
from .settings import (
    KafkaConfigError,
    KafkaSettings,
    Replication,
    ReplicationSettings,
    read_config_file,
    settings_problem,
)
from .topics import TopicSpec, admin_config, ensure_topic

__all__ = [
    "ConnectionReport",
    "KafkaConfigError",
    "KafkaSettings",
    "Replication",
    "ReplicationSettings",
    "TopicSpec",
    "admin_config",
    "ensure_topic",
    "read_config_file",
    "settings_problem",
]
