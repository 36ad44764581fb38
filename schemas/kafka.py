"""Kafka client settings and topic creation, shared by the publisher and the consumers.

The one module of `schemas` that imports confluent-kafka: the producer and the
consumers share only `schemas`, and both make topics and read the same client
settings (bootstrap, the librdkafka config file, security options).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic
from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from .errors import CommandError

log = logging.getLogger(__name__)

#: librdkafka settings an admin client shares with the producer or consumer it serves.
ADMIN_PREFIXES = ("security.", "sasl.", "ssl.", "socket.", "client.", "broker.", "bootstrap.")
#: librdkafka settings that are objects, not text: passed to every client as they are.
CALLBACK_KEYS = ("logger", "error_cb", "throttle_cb", "stats_cb", "oauth_cb")
#: Replication runstream asks for when not told: as many copies as there are brokers, up to 3.
MAX_DEFAULT_REPLICATION = 3


class KafkaConfigError(CommandError, ValueError):
    """Kafka client settings runstream cannot use (an unreadable config file, bad values)."""


class ReplicationSettings(BaseSettings):
    """Replication of the topics runstream makes (``RUNSTREAM_REPLICATION_FACTOR``, ...)."""

    model_config = SettingsConfigDict(env_prefix="RUNSTREAM_", extra="ignore")

    replication_factor: int | None = Field(
        None, ge=1, description="Copies of each new topic; default min(3, brokers)."
    )
    min_insync_replicas: int | None = Field(
        None, ge=1, description="min.insync.replicas of new topics; default replication - 1, >= 1."
    )

    @model_validator(mode="after")
    def _isr_fits(self) -> ReplicationSettings:
        check_replication(self.replication_factor, self.min_insync_replicas)
        return self

    def wanted(self) -> Replication:
        return Replication(self.replication_factor, self.min_insync_replicas)


class KafkaSettings(BaseSettings):
    """How to reach Kafka and how to make topics: composed into every service's settings.

    ``RUNSTREAM_KAFKA_*`` variables; replication is `ReplicationSettings`.
    """

    model_config = SettingsConfigDict(env_prefix="RUNSTREAM_KAFKA_", extra="ignore")

    bootstrap: str = "127.0.0.1:9092"
    config_file: Path | None = Field(
        None, description="JSON object of extra librdkafka settings (SASL/SSL credentials)."
    )
    security_protocol: str | None = Field(None, description="librdkafka security.protocol")
    sasl_mechanism: str | None = Field(None, description="librdkafka sasl.mechanism")
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    ssl_ca_location: Path | None = Field(None, description="CA file of the brokers' certificates")
    replication: ReplicationSettings = Field(default_factory=ReplicationSettings)

    def client_config(self) -> dict[str, Any]:
        """librdkafka settings of every client: bootstrap, the config file, security options."""
        conf: dict[str, Any] = {"bootstrap.servers": self.bootstrap}
        if self.config_file is not None:
            conf.update(read_config_file(self.config_file))
        explicit = {
            "security.protocol": self.security_protocol,
            "sasl.mechanism": self.sasl_mechanism,
            "sasl.username": self.sasl_username,
            "sasl.password": self.sasl_password.get_secret_value() if self.sasl_password else None,
            "ssl.ca.location": str(self.ssl_ca_location) if self.ssl_ca_location else None,
        }
        conf.update({k: v for k, v in explicit.items() if v is not None})
        return conf


def check_replication(factor: int | None, min_isr: int | None) -> None:
    if factor is not None and factor < 1:
        raise KafkaConfigError(f"replication factor must be at least 1, not {factor}")
    if min_isr is not None and min_isr < 1:
        raise KafkaConfigError(f"min.insync.replicas must be at least 1, not {min_isr}")
    if factor is not None and min_isr is not None and min_isr > factor:
        raise KafkaConfigError(
            f"min.insync.replicas {min_isr} exceeds the replication factor {factor}: "
            "no write could ever be acknowledged"
        )


def read_config_file(path: Path) -> dict[str, Any]:
    """The librdkafka settings in a JSON file (``RUNSTREAM_KAFKA_CONFIG_FILE``)."""
    try:
        extra = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise KafkaConfigError(f"cannot read the Kafka config file {path}: {exc}") from None
    if not isinstance(extra, dict):
        raise KafkaConfigError(f"the Kafka config file {path} must hold a JSON object")
    for key, value in extra.items():
        if not isinstance(value, str | int | float | bool):
            raise KafkaConfigError(
                f"the Kafka config file {path}: {key} is a {type(value).__name__}, "
                "librdkafka takes text, numbers or booleans"
            )
    return extra


def admin_config(client_config: dict[str, Any]) -> dict[str, Any]:
    """The part of a producer's or consumer's settings an admin client takes."""
    return {
        k: v for k, v in client_config.items() if k.startswith(ADMIN_PREFIXES) or k in CALLBACK_KEYS
    }


@dataclass(frozen=True)
class Replication:
    """Wanted replication of new topics; None means runstream's default for the cluster."""

    factor: int | None = None
    min_insync: int | None = None

    def __post_init__(self) -> None:
        check_replication(self.factor, self.min_insync)

    def resolve(self, brokers: int) -> tuple[int, int]:
        """(replication factor, min.insync.replicas) on a cluster of ``brokers`` brokers."""
        factor = self.factor or max(1, min(MAX_DEFAULT_REPLICATION, brokers))
        min_isr = self.min_insync or (factor - 1 if factor >= 2 else 1)
        return factor, min_isr


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
