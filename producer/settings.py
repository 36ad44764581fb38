"""The publisher's settings in one typed place, overridable by ``RUNSTREAM_*`` variables."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import platformdirs
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from runstream import schemas
from runstream.kafka import KafkaSettings

FsyncPolicy = Literal["always", "interval", "never"]


class PublisherSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="RUNSTREAM_", extra="ignore")

    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    topic_prefix: str = "runstream"
    topic: str | None = Field(None, description="Full topic name; default <prefix>.bluesky...")
    outbox_dir: Path = Field(
        default_factory=lambda: Path(platformdirs.user_state_dir("runstream")) / "outbox"
    )
    partitions: int = Field(6, ge=1)
    max_message_bytes: int = Field(1_048_576, ge=4096)
    retention_ms: int | None = Field(None, ge=-1)
    fsync: FsyncPolicy = "interval"
    fsync_interval: float = Field(1.0, gt=0)
    max_outbox_bytes: int = Field(1 << 30, ge=1)

    @property
    def resolved_topic(self) -> str:
        return self.topic or schemas.document_topic(self.topic_prefix)
