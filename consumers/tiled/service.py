"""``runstream consume tiled``: the consumer runtime with a Tiled writer per run."""

from __future__ import annotations

import argparse

from pydantic import Field, SecretStr, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from ..services import ConsumerService
from .writer import connect_catalog, tiled_factory


class TiledWriterSettings(BaseSettings):
    """Which Tiled server the writer writes to, and its key (``RUNSTREAM_TILED_*``)."""

    model_config = SettingsConfigDict(env_prefix="RUNSTREAM_TILED_", extra="ignore")

    url: str | None = Field(None, description="Tiled server the writer writes to")
    api_key: SecretStr | None = Field(None, description="its API key")


def _arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--tiled-url", help="Tiled server (RUNSTREAM_TILED_URL); API key from "
                        "RUNSTREAM_TILED_API_KEY")  # fmt: skip
    parser.add_argument("--catalog", default="raw", help="catalog container (default raw)")
    parser.add_argument("--batch-rows", type=int, default=10_000,
                        help="rows per table write at most (default 10000)")  # fmt: skip
    parser.add_argument("--max-latency", type=float, default=0.5,
                        help="seconds a row may wait to be written (default 0.5)")  # fmt: skip


def _factories(args: argparse.Namespace) -> list:
    try:
        settings = TiledWriterSettings()
    except ValidationError as exc:
        raise ValueError(f"bad Tiled settings: {exc}") from None
    url = args.tiled_url or settings.url
    if not url:
        raise ValueError("give --tiled-url or RUNSTREAM_TILED_URL")
    if args.batch_rows < 1 or args.max_latency <= 0:
        raise ValueError("--batch-rows and --max-latency must be positive")
    key = settings.api_key.get_secret_value() if settings.api_key else None
    catalog = connect_catalog(url, key, args.catalog)
    return [tiled_factory(catalog, args.batch_rows, args.max_latency, args.stop_event)]


SERVICE = ConsumerService(
    "tiled", "write every run into a Tiled catalog (BlueskyRun layout), live and exactly once",
    _arguments, _factories,
)  # fmt: skip
