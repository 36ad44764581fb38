"""The publisher's settings in one typed place, overridable by ``RUNSTREAM_*`` variables.

`PublisherOptions` is the one check of a publisher's options: `KafkaPublisher`'s
arguments go through it, and `PublisherSettings` (the same options read from the
environment, with Kafka, topic and outbox) is made of it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import platformdirs
from pydantic import BaseModel, Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from runstream import schemas
from runstream.kafka import KafkaSettings
from runstream.schemas.errors import RunstreamError

FsyncPolicy = Literal["always", "interval", "never"]


class PublisherConfigError(RunstreamError, ValueError):
    """A setting the publisher cannot work with; raised at construction."""


class PublisherOptions(BaseModel):
    """How a publisher makes its topic and keeps its outbox."""

    partitions: int = Field(6, ge=1)
    max_message_bytes: int = Field(1_048_576, ge=4096)
    retention_ms: int | None = Field(None, ge=-1)
    fsync: FsyncPolicy = "interval"
    fsync_interval: float = Field(1.0, gt=0)
    max_outbox_bytes: int = Field(1 << 30, ge=1)

    @classmethod
    def checked(cls, **options: Any) -> PublisherOptions:
        """The options, or a `PublisherConfigError` naming each one that cannot be used."""
        try:
            return cls(**options)
        except ValidationError as exc:
            raise PublisherConfigError(_problems(exc)) from None


def _problems(exc: ValidationError) -> str:
    """One line: each refused option, why, and what was given."""
    return "; ".join(
        f"{'.'.join(str(part) for part in error['loc'])}: {error['msg']}, not {error['input']!r}"
        for error in exc.errors()
    )


class PublisherSettings(BaseSettings, PublisherOptions):
    model_config = SettingsConfigDict(env_prefix="RUNSTREAM_", extra="ignore")

    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    topic_prefix: str = "runstream"
    topic: str | None = Field(None, description="Full topic name; default <prefix>.bluesky...")
    outbox_dir: Path = Field(
        default_factory=lambda: Path(platformdirs.user_state_dir("runstream")) / "outbox"
    )

    @property
    def resolved_topic(self) -> str:
        return self.topic or schemas.document_topic(self.topic_prefix)
