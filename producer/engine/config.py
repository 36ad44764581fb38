"""The engine's settings in one typed place, overridable by ``RUNSTREAM_*`` variables."""

from __future__ import annotations

from pathlib import Path

import platformdirs
from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict
from runstream.schemas.errors import RunstreamError

#: The demo's plans (the seed's multi-run plans) and devices (`ophyd.sim`): served unless
#: the plan and device module settings name others.
DEMO_MODULES = ("runstream.producer.plans",)


class EngineSettingsError(RunstreamError, ValueError):
    """A setting the engine cannot start with."""


class EngineSettings(BaseSettings):
    """HTTP binding, credentials, plans and where the state lives.

    Kafka (bootstrap, topic, outbox) is configured as for the publisher
    (`producer.PublisherSettings`); the outbox defaults to ``<home>/engine/outbox``.
    """

    model_config = SettingsConfigDict(env_prefix="RUNSTREAM_", extra="ignore")

    home: Path = Field(
        default_factory=lambda: Path(platformdirs.user_state_dir("runstream")),
        description="State directory; the engine keeps <home>/engine/tasks.db there.",
    )
    engine_host: str = "127.0.0.1"
    engine_port: int = Field(8600, ge=0, le=65535)
    api_token: SecretStr | None = Field(None, description="Bearer token for state changes.")
    api_token_file: Path | None = Field(None, description="File holding the bearer token.")
    open_reads: bool = Field(True, description="Allow reads (GET) without the token.")
    allowed_plans: list[str] = Field(
        default_factory=list, description="Plan allow-list; empty allows every registered plan."
    )
    plan_modules: list[str] = Field(
        default_factory=lambda: list(DEMO_MODULES),
        description="Modules (dotted names or .py files) of plans; the default is the demo's.",
    )
    device_modules: list[str] = Field(
        default_factory=lambda: list(DEMO_MODULES),
        description="Modules (dotted names or .py files) of devices; the default is the demo's "
        "(ophyd.sim).",
    )
    max_body_bytes: int = Field(64 * 1024, ge=256)
    max_queue: int = Field(1000, ge=1)
    detector_files: Path | None = Field(
        None,
        description="Where ophyd.sim's file-backed detectors write (default <home>/files); "
        "the Tiled server must be allowed to read it.",
    )

    @property
    def files_dir(self) -> Path:
        return self.detector_files or self.home / "files"

    @property
    def state_dir(self) -> Path:
        return self.home / "engine"

    @property
    def db_path(self) -> Path:
        return self.state_dir / "tasks.db"

    def token(self) -> str:
        """The bearer token, from the variable or the file; the engine refuses to run without."""
        if self.api_token is not None and self.api_token.get_secret_value():
            return self.api_token.get_secret_value()
        if self.api_token_file is not None:
            try:
                value = self.api_token_file.read_text().strip()
            except OSError as exc:
                raise EngineSettingsError(f"cannot read the API token file: {exc}") from None
            if value:
                return value
            raise EngineSettingsError(f"the API token file {self.api_token_file} is empty")
        raise EngineSettingsError(
            "no API token: set RUNSTREAM_API_TOKEN or RUNSTREAM_API_TOKEN_FILE"
        )
