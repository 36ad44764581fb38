"""The web view's settings: where it listens, what it keeps, what it links to."""

from __future__ import annotations

from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from ..settings import ConsumerSettings


class RetentionSettings(BaseSettings):
    """How many closed runs the live model keeps, and for how long (open runs are always kept)."""

    model_config = SettingsConfigDict(env_prefix="RUNSTREAM_WEB_", extra="ignore")

    keep_runs: int = Field(1000, ge=1, description="Closed runs kept, newest first")
    keep_seconds: float = Field(86_400.0, gt=0, description="Closed runs older than this go")
    keep_other_documents: int = Field(
        200, ge=0, description="Resource, datum and other documents kept per run as raw JSON"
    )


class WebSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="RUNSTREAM_WEB_", extra="ignore")

    host: str = Field("127.0.0.1", description="Address to listen on")
    port: int = Field(8700, ge=0, le=65535, description="Port of the web app (0: any free one)")
    engine_url: str | None = Field(None, description="The engine's HTTP API, for the panel")
    tiled_url: str | None = Field(
        None,
        validation_alias=AliasChoices(
            "RUNSTREAM_WEB_TILED_URL", "RUNSTREAM_TILED_URL", "tiled_url"
        ),
        description="Tiled server whose catalog holds these runs: links, and runs not kept",
    )
    tiled_read_url: str | None = Field(
        None,
        description="Tiled as this service reaches it, if not as browsers do (default: tiled_url)",
    )
    tiled_api_key: SecretStr | None = Field(
        None,
        validation_alias=AliasChoices(
            "RUNSTREAM_WEB_TILED_API_KEY", "RUNSTREAM_TILED_API_KEY", "tiled_api_key"
        ),
        description="API key for reading runs from Tiled (never logged)",
    )
    tiled_catalog: str = Field("raw", description="The runs' container in Tiled")
    tiled_timeout: float = Field(10.0, gt=0, description="Seconds to wait for Tiled")
    push_interval: float = Field(0.1, gt=0, le=5, description="Seconds between pushes")
    plot_points: int = Field(2000, ge=10, le=100_000, description="Points per curve at most")


class WebServiceSettings(ConsumerSettings):
    """``runstream consume web``: the consumer's settings, the view's and what it keeps."""

    web: WebSettings = Field(default_factory=WebSettings)
    retention: RetentionSettings = Field(default_factory=RetentionSettings)
