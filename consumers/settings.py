"""A consumer service's settings in one typed place, overridable by ``RUNSTREAM_*`` variables."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from runstream import schemas
from runstream.kafka import KafkaSettings


class ConsumerSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="RUNSTREAM_", extra="ignore")

    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    topics: list[str] = Field(default_factory=lambda: [schemas.document_topic("runstream")])
    topic_pattern: str | None = Field(None, description="Regex of topics to follow instead")
    group: str = "runstream"
    from_beginning: bool = Field(False, description="A new group starts at the oldest message")
    validate_documents: bool = Field(True, description="Check documents against event-model")
    idle_timeout: float = Field(3600.0, gt=0, description="Close a run with no news for this long")
    commit_interval: float = Field(1.0, gt=0)
    tick_interval: float = Field(0.2, gt=0)
    batch_size: int = Field(1000, ge=1)
    order_wait: float = Field(
        2.0,
        ge=0,
        description="Seconds a partition with nothing fetched yet may hold back the others' "
        "messages, which are handled in timestamp order across partitions.",
    )
    tune_gc: bool = Field(
        True,
        description="Freeze startup objects and collect young ones less often: every document "
        "makes short-lived containers, and default collection costs ~30% of replay speed.",
    )
    session_timeout_ms: int = Field(10_000, ge=1000)
    http_host: str = "127.0.0.1"
    http_port: int = Field(0, ge=0, le=65535, description="Health and metrics port; 0 = off")
