"""Kafka client settings, composed into every service's settings model.

Both sides read the same client settings (bootstrap, the librdkafka config file,
security options) and ask for the same replication of the topics they make.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from runstream.schemas.errors import CommandError


def settings_problem(exc: Exception, prefix: str = "RUNSTREAM_") -> str:
    """A pydantic settings error as one line naming each field's variable and the problem."""
    errors = getattr(exc, "errors", None)
    if not callable(errors):
        return " ".join(str(exc).split())
    problems = []
    for error in errors():
        field = ".".join(str(part) for part in error.get("loc", ())) or "value"
        given = repr(error.get("input"))
        given = given if len(given) <= 40 else given[:37] + "..."
        problems.append(f"{field} ({prefix}{field.upper()}): {error['msg']}, got {given}")
    return "; ".join(problems)


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
