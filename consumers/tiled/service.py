"""``runstream consume tiled``: the consumer runtime with a Tiled writer per run."""

from __future__ import annotations

import argparse

import httpx
from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from runstream.schemas.errors import CommandError

from ..services import ConsumerService, LocalTiledKey, ServiceContext
from ..settings import ConsumerSettings

KEY_VARIABLE = "RUNSTREAM_TILED_API_KEY"


class TiledWriterSettings(BaseSettings):
    """Which Tiled server the writer writes to, its key, and how (``RUNSTREAM_TILED_*``)."""

    model_config = SettingsConfigDict(env_prefix="RUNSTREAM_TILED_", extra="ignore")

    url: str | None = Field(None, description="Tiled server the writer writes to")
    api_key: SecretStr | None = Field(None, description="its API key")
    catalog: str = Field("raw", description="The runs' container in the catalog")
    batch_rows: int = Field(10_000, description="Rows per table write at most")
    max_latency: float = Field(0.5, description="Seconds a row may wait to be written")
    max_array_size: int | None = Field(
        None, description="Internal arrays with more elements become array nodes (default 16)"
    )


class TiledServiceSettings(ConsumerSettings):
    tiled: TiledWriterSettings = Field(default_factory=TiledWriterSettings)


def _arguments(parser: argparse.ArgumentParser) -> None:
    S = argparse.SUPPRESS  # unset options keep TiledWriterSettings' values (env or defaults)
    parser.add_argument("--tiled-url", default=S, help="Tiled server (RUNSTREAM_TILED_URL); API "
                        "key from RUNSTREAM_TILED_API_KEY")  # fmt: skip
    parser.add_argument("--catalog", default=S, help="catalog container "
                        "(default raw; RUNSTREAM_TILED_CATALOG)")  # fmt: skip
    parser.add_argument("--batch-rows", type=int, default=S, help="rows per table write at "
                        "most (default 10000; RUNSTREAM_TILED_BATCH_ROWS)")  # fmt: skip
    parser.add_argument("--max-latency", type=float, default=S, help="seconds a row may wait "
                        "to be written (default 0.5; RUNSTREAM_TILED_MAX_LATENCY)")  # fmt: skip
    parser.add_argument("--max-array-size", type=int, default=S,
                        help="internal arrays with more elements become array nodes, "
                        "smaller ones table columns (default: TiledWriter's, 16); 0: all "
                        "arrays as nodes, for SQLite table storage (the local server; "
                        "RUNSTREAM_TILED_MAX_ARRAY_SIZE)")  # fmt: skip


def _factories(context: ServiceContext[TiledServiceSettings]) -> list:
    tiled = context.settings.tiled
    if not tiled.url:
        raise ValueError("give --tiled-url or RUNSTREAM_TILED_URL")
    if tiled.batch_rows < 1 or tiled.max_latency <= 0:
        raise ValueError("--batch-rows and --max-latency must be positive")
    if tiled.max_array_size is not None and tiled.max_array_size < 0:
        raise ValueError("--max-array-size must be 0 or more")
    from .writer import tiled_factory  # Tiled's clients load in seconds: only when used

    catalog = _connect(tiled.url, _api_key(tiled, context.local_tiled_key), tiled.catalog)
    arrays = {} if tiled.max_array_size is None else {"max_array_size": tiled.max_array_size}
    return [tiled_factory(catalog, tiled.batch_rows, tiled.max_latency, context.stop, **arrays)]


def _api_key(tiled: TiledWriterSettings, local_key: LocalTiledKey | None) -> str | None:
    """RUNSTREAM_TILED_API_KEY, else the key of the local server when the URL is its own."""
    if tiled.api_key:
        return tiled.api_key.get_secret_value()
    return local_key(tiled.url) if local_key is not None and tiled.url else None


def _connect(url: str, api_key: str | None, catalog: str) -> object:
    """The catalog, or a one-line `CommandError` saying what to set or start."""
    refused = (
        f"Tiled at {url} refused the API key given: set {KEY_VARIABLE} to a key of that server"
    )
    from .run import connect_catalog

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
    TiledServiceSettings, _arguments, _factories,
)  # fmt: skip
