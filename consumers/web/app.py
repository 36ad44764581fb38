"""The web app: pages, static assets, the JSON API, the push channel, health and metrics."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from importlib.resources import files
from pathlib import Path

from fastapi import FastAPI, HTTPException, status
from fastapi.responses import FileResponse, PlainTextResponse
from fastapi.staticfiles import StaticFiles
from prometheus_client import CollectorRegistry, Gauge, generate_latest
from pydantic import BaseModel

from . import api, engine_proxy, push
from .model import RunStore
from .settings import WebSettings
from .tiled_runs import TiledRuns

STATIC = Path(str(files(__package__).joinpath("static")))
NO_STORE = {"Cache-Control": "no-store"}


class Health(BaseModel):
    ok: bool


def tiled_runs(settings: WebSettings) -> TiledRuns | None:
    """Where runs the view does not hold are read from: Tiled, when its URL is given."""
    url = settings.tiled_read_url or settings.tiled_url
    if not url:
        return None
    key = settings.tiled_api_key.get_secret_value() if settings.tiled_api_key else None
    return TiledRuns(url, settings.tiled_catalog, key,
                     timeout=settings.tiled_timeout)  # fmt: skip


def create_app(
    store: RunStore,
    settings: WebSettings,
    *,
    alive: Callable[[], bool] = lambda: True,
    ready: Callable[[], bool] = lambda: True,
    registries: list[CollectorRegistry] = (),  # type: ignore[assignment]
) -> FastAPI:
    registry = CollectorRegistry()
    runs = Gauge("runstream_web_runs", "Runs the view holds", registry=registry)
    runs.set_function(lambda: len(store))
    push_metrics = push.PushMetrics(registry)
    proxy = engine_proxy.create_router(settings.engine_url) if settings.engine_url else None
    tiled = tiled_runs(settings)

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        if tiled is not None:
            tiled.close()
        if proxy is not None:
            await proxy.client.aclose()  # type: ignore[attr-defined]

    app = FastAPI(
        title="runstream web view",
        description="Live runs (nested ones under their parent), per-run tables and plots.",
        version="1",
        lifespan=lifespan,
        docs_url=None,  # FastAPI's docs pages load their scripts from a CDN: none offline
        redoc_url=None,
    )
    app.include_router(api.create_router(store, settings, tiled))
    app.include_router(push.create_router(store, settings.push_interval, push_metrics))
    if proxy is not None:
        app.include_router(proxy)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/", include_in_schema=False)
    def runs_page() -> FileResponse:
        return FileResponse(STATIC / "index.html", headers=NO_STORE)

    @app.get("/runs/{uid}", include_in_schema=False)
    def run_page(uid: str) -> FileResponse:
        return FileResponse(STATIC / "run.html", headers=NO_STORE)

    @app.get("/healthz", tags=["health"], responses={503: {"model": Health}})
    def healthz() -> Health:
        """The consumer loop turns."""
        if not alive():
            raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, "consumer loop stalled")
        return Health(ok=True)

    @app.get("/readyz", tags=["health"], responses={503: {"model": Health}})
    def readyz() -> Health:
        """The consumer has its partitions and polls."""
        if not ready():
            raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, "not ready")
        return Health(ok=True)

    @app.get("/metrics", tags=["health"], response_class=PlainTextResponse)
    def metrics() -> PlainTextResponse:
        body = b"".join(generate_latest(r) for r in [registry, *registries])
        return PlainTextResponse(body, media_type="text/plain; version=0.0.4")

    return app
