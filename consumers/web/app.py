"""The web app: pages, static assets, the JSON API, the push channel, health and metrics."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from importlib.resources import files
from pathlib import Path

from fastapi import APIRouter, FastAPI
from fastapi.responses import FileResponse, JSONResponse, PlainTextResponse
from fastapi.staticfiles import StaticFiles
from prometheus_client import CollectorRegistry, Gauge, generate_latest

from runstream.schemas.service import Health

from .. import health
from . import api, engine_proxy, frameapi, older_runs, push
from .headers import SecurityHeaders
from .model import RunStore
from .settings import WebSettings
from .tiled_runs import TiledRuns

STATIC = Path(str(files(__package__).joinpath("static")))
NO_STORE = {"Cache-Control": "no-store"}
HEALTH_ANSWERS: dict[int | str, dict] = {200: {"model": Health}, 503: {"model": Health}}


def tiled_runs(settings: WebSettings) -> TiledRuns | None:
    """Where runs the view does not hold are read from: Tiled, when its URL is given."""
    url = settings.tiled_read_url or settings.tiled_url
    if not url:
        return None
    key = settings.tiled_api_key.get_secret_value() if settings.tiled_api_key else None
    return TiledRuns(url, settings.tiled_catalog, key,
                     timeout=settings.tiled_timeout)  # fmt: skip


def page_routes() -> APIRouter:
    """The two pages; their scripts and styles are under /static."""
    router = APIRouter(include_in_schema=False)

    @router.get("/")
    def runs_page() -> FileResponse:
        return FileResponse(STATIC / "index.html", headers=NO_STORE)

    @router.get("/runs/{uid}")
    def run_page(uid: str) -> FileResponse:
        return FileResponse(STATIC / "run.html", headers=NO_STORE)

    return router


def health_routes(alive: Callable[[], bool], ready: Callable[[], bool],
                  registries: list[CollectorRegistry]) -> APIRouter:  # fmt: skip
    """/healthz and /readyz with the body every runstream service answers; /metrics."""
    router = APIRouter(tags=["health"])

    @router.get("/healthz", response_class=JSONResponse, responses=HEALTH_ANSWERS)
    def healthz() -> JSONResponse:
        """The consumer loop turns: ``{"ok", "problems"}``, 503 with the problems when not."""
        code, body = health.liveness(alive)
        return JSONResponse(body, code)

    @router.get("/readyz", response_class=JSONResponse, responses=HEALTH_ANSWERS)
    def readyz() -> JSONResponse:
        """The consumer has its partitions and polls: the same body as ``/healthz``."""
        code, body = health.readiness(ready)
        return JSONResponse(body, code)

    @router.get("/metrics", response_class=PlainTextResponse)
    def metrics() -> PlainTextResponse:
        body = b"".join(generate_latest(r) for r in registries)
        return PlainTextResponse(body, media_type="text/plain; version=0.0.4")

    return router


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
    engine = engine_proxy.EngineClient(settings.engine_url) if settings.engine_url else None
    tiled = tiled_runs(settings)

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        if tiled is not None:
            tiled.close()
        if engine is not None:
            await engine.close()

    app = FastAPI(
        title="runstream web view",
        description="Live runs (nested ones under their parent), per-run tables and plots.",
        version="1",
        lifespan=lifespan,
        docs_url=None,  # FastAPI's docs pages load their scripts from a CDN: none offline
        redoc_url=None,
    )
    app.include_router(older_runs.routes(store, tiled))
    app.include_router(api.routes(store, settings, tiled))
    app.include_router(frameapi.routes(store, tiled))
    app.include_router(push.routes(store, settings.push_interval, push_metrics))
    if engine is not None:
        app.include_router(engine_proxy.routes(engine))
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    app.include_router(page_routes())
    app.include_router(health_routes(alive, ready, [registry, *registries]))
    app.add_middleware(SecurityHeaders)
    return app
