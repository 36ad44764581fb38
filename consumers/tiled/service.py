"""``runstream consume tiled``: the consumer runtime with a Tiled writer per run."""

from __future__ import annotations

import argparse

import httpx
from pydantic import Field, SecretStr, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from runstream.kafka import settings_problem
from runstream.schemas.errors import CommandError

from ..services import ConsumerService

KEY_VARIABLE = "RUNSTREAM_TILED_API_KEY"


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
    parser.add_argument("--max-array-size", type=int,
                        help="internal arrays with more elements become array nodes, "
                        "smaller ones table columns (default: TiledWriter's, 16); 0: all "
                        "arrays as nodes, for SQLite table storage (the local server)")  # fmt: skip


def _factories(args: argparse.Namespace) -> list:
    try:
        settings = TiledWriterSettings()
    except ValidationError as exc:
        raise ValueError(f"bad Tiled settings: {settings_problem(exc)}") from None
    url = args.tiled_url or settings.url
    if not url:
        raise ValueError("give --tiled-url or RUNSTREAM_TILED_URL")
    if args.batch_rows < 1 or args.max_latency <= 0:
        raise ValueError("--batch-rows and --max-latency must be positive")
    if args.max_array_size is not None and args.max_array_size < 0:
        raise ValueError("--max-array-size must be 0 or more")
    from .writer import tiled_factory  # Tiled's clients load in seconds: only when used

    catalog = _connect(url, _api_key(args, url, settings), args.catalog)
    arrays = {} if args.max_array_size is None else {"max_array_size": args.max_array_size}
    return [tiled_factory(catalog, args.batch_rows, args.max_latency, args.stop_event, **arrays)]


def _api_key(args: argparse.Namespace, url: str, settings: TiledWriterSettings) -> str | None:
    """RUNSTREAM_TILED_API_KEY, else the key of the local server when the URL is its own."""
    if settings.api_key:
        return settings.api_key.get_secret_value()
    local_key = getattr(args, "local_tiled_key", None)
    return local_key(url) if local_key is not None else None


def _connect(url: str, api_key: str | None, catalog: str) -> object:
    """The catalog, or a one-line `CommandError` saying what to set or start."""
    refused = (
        f"Tiled at {url} refused the API key given: set {KEY_VARIABLE} to a key of that server"
    )
    from .writer import connect_catalog

    try:
        return connect_catalog(url, api_key, catalog)
    except httpx.HTTPStatusError as exc:
        code = exc.response.status_code
        if code in (401, 403):
            raise CommandError(f"{refused} (HTTP {code})") from None
        raise CommandError(f"Tiled at {url} answered HTTP {code}") from None
    except httpx.HTTPError as exc:
        raise CommandError(f"cannot reach Tiled at {url}: {exc}") from None
    except RuntimeError as exc:  # tiled's client: the server wants a key it was not given
        if "api key" not in str(exc).lower():
            raise
        if api_key:
            raise CommandError(refused) from None
        raise CommandError(f"Tiled at {url} needs an API key: set {KEY_VARIABLE}") from None


SERVICE = ConsumerService(
    "tiled", "write every run into a Tiled catalog (BlueskyRun layout), live and exactly once",
    _arguments, _factories,
)  # fmt: skip
