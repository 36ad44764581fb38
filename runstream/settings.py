"""Settings of the local stack, overridable by ``RUNSTREAM_*`` environment variables."""

from __future__ import annotations

from pathlib import Path

import platformdirs
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

# The broker's pom and logging config ship inside the package, so a wheel install runs it.
KAFKA_RESOURCES = Path(__file__).resolve().parent / "resources" / "kafka"


class LocalSettings(BaseSettings):
    """Where the local broker and servers keep their state, and their ports."""

    model_config = SettingsConfigDict(env_prefix="RUNSTREAM_", extra="ignore")

    home: Path = Field(
        default_factory=lambda: Path(platformdirs.user_state_dir("runstream")),
        description="State directory: broker data and logs, pid files, outboxes.",
    )
    cache: Path = Field(
        default_factory=lambda: Path(platformdirs.user_cache_dir("runstream")),
        description="Download cache (Kafka's jars), shared by every state directory.",
    )
    kafka_version: str = "4.1.1"
    broker_port: int = Field(default=9092, ge=1, le=65535)
    broker_controller_port: int = Field(default=9093, ge=1, le=65535)
    broker_nodes: int | None = Field(
        default=None, ge=1, le=9,
        description="Nodes of the local broker (a KRaft cluster when > 1); default: as the "
        "state directory holds, else 1.",
    )  # fmt: skip
    broker_secure: bool | None = Field(
        default=None,
        description="Serve the client listener with TLS and SCRAM-SHA-512; default: as the "
        "state directory holds, else plaintext.",
    )
    broker_heap: str | None = Field(
        default=None, description="JVM heap of each node; default 512m alone, 384m in a cluster."
    )
    broker_start_timeout: float = Field(default=90.0, gt=0)
    kafka_pom: Path = KAFKA_RESOURCES / "pom.xml"
    tiled_port: int = Field(default=8765, ge=1, le=65535)
    web_port: int = Field(default=8700, ge=1, le=65535, description="The demo's web view")
    tiled_api_key: str | None = Field(
        default=None,
        description="API key of the local Tiled server; generated into the state directory "
        "(tiled/api_key, mode 0600) when unset.",
    )
    tiled_start_timeout: float = Field(default=60.0, gt=0)
    tiled_readable: list[Path] = Field(
        default_factory=list,
        description="Directories the local Tiled server may read detector files from (external "
        "data registered by the Tiled writer); <home>/files is always one of them.",
    )

    @property
    def tiled_read_dirs(self) -> list[Path]:
        return [self.home / "files", *self.tiled_readable]
