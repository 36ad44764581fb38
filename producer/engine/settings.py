"""The engine's settings in one typed place, overridable by ``RUNSTREAM_*`` variables."""

from __future__ import annotations

from pathlib import Path

import platformdirs
from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from runstream.schemas.errors import RunstreamError

from ..settings import PublisherSettings
from .identity.settings import IdentitySettings

DEFAULT_URL = "http://127.0.0.1:8600"
#: The demo's plans (the seed's multi-run plans) and devices (`ophyd.sim`): served unless
#: the plan and device module settings name others.
DEMO_MODULES = ("runstream.producer.plans",)


class EngineSettingsError(RunstreamError, ValueError):
    """A setting the engine cannot start with."""


class TokenSettings(BaseSettings):
    """The engine's bearer token, from a variable or a file (the engine and its clients)."""

    model_config = SettingsConfigDict(env_prefix="RUNSTREAM_", extra="ignore")

    api_token: SecretStr | None = Field(None, description="Bearer token for state changes.")
    api_token_file: Path | None = Field(None, description="File holding the bearer token.")

    def read_token(self) -> str | None:
        """The token from the variable, else from the file; None when neither is set."""
        if self.api_token is not None and self.api_token.get_secret_value():
            return self.api_token.get_secret_value()
        if self.api_token_file is None:
            return None
        try:
            value = self.api_token_file.read_text().strip()
        except OSError as exc:
            raise EngineSettingsError(f"cannot read the API token file: {exc}") from None
        if not value:
            raise EngineSettingsError(f"the API token file {self.api_token_file} is empty")
        return value


class EngineClientSettings(TokenSettings):
    """What ``runstream submit``, ``tasks``, ``pause``... talk to."""

    engine_url: str = DEFAULT_URL


class EngineSettings(TokenSettings):
    """HTTP binding, credentials, plans, where the state lives, and the publisher.

    The publisher's settings (Kafka, topic, outbox) are composed in; the outbox
    defaults to ``<home>/engine/outbox``.
    """

    home: Path = Field(
        default_factory=lambda: Path(platformdirs.user_state_dir("runstream")),
        description="State directory; the engine keeps <home>/engine/tasks.db there.",
    )
    engine_host: str = "127.0.0.1"
    engine_port: int = Field(8600, ge=0, le=65535)
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
    device_connect_timeout: float = Field(
        10.0,
        gt=0,
        description="Seconds each ophyd-async device has to connect at start or when retried.",
    )
    device_call_timeout: float = Field(
        30.0,
        gt=0,
        description="Seconds a device has to answer one call of a plan (read, locate, set, "
        "trigger, stage...); past it the plan fails naming the device (e.g. its IOC died).",
    )
    device_wait_timeout: float = Field(
        600.0,
        ge=0,
        description="Seconds a plan may wait for moves and acquisitions to finish before it "
        "fails naming the devices; 0 for no bound (long exposures, slow motors).",
    )
    max_body_bytes: int = Field(64 * 1024, ge=256)
    max_queue: int = Field(1000, ge=1)
    detector_files: Path | None = Field(
        None,
        description="Where ophyd.sim's file-backed detectors write (default <home>/files); "
        "the Tiled server must be allowed to read it.",
    )
    publisher: PublisherSettings = Field(default_factory=PublisherSettings)
    identity: IdentitySettings = Field(default_factory=IdentitySettings)

    @model_validator(mode="after")
    def _outbox_under_home(self) -> EngineSettings:
        if "outbox_dir" not in self.publisher.model_fields_set:
            self.publisher.outbox_dir = self.state_dir / "outbox"
        return self

    @property
    def files_dir(self) -> Path:
        return self.detector_files or self.home / "files"

    @property
    def state_dir(self) -> Path:
        return self.home / "engine"

    @property
    def db_path(self) -> Path:
        return self.state_dir / "tasks.db"

    @property
    def keys_path(self) -> Path:
        return self.identity.api_keys_file or self.state_dir / "keys.db"

    @property
    def audit_path(self) -> Path:
        return self.identity.audit_file or self.state_dir / "audit.db"

    def token(self) -> str:
        """The bearer token, from the variable or the file; the engine refuses to run without."""
        value = self.read_token()
        if value is not None:
            return value
        raise EngineSettingsError(
            "no API token: set RUNSTREAM_API_TOKEN or RUNSTREAM_API_TOKEN_FILE"
        )
