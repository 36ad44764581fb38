"""The engine's HTTP API (FastAPI; the OpenAPI document is served at /openapi.json).

The routes are in `routes`, their bodies in `models`; here the app is put together:
the error answers, the body limit, the audit trail of every change and the Prometheus
figures read at scrape time.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request, status
from fastapi.encoders import jsonable_encoder
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from prometheus_client import CollectorRegistry
from prometheus_client.core import GaugeMetricFamily
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from .auth import Guard
from .identity.audit import AuditTrail
from .identity.routes import add_identity_routes
from .models import as_json
from .queue import ControlError, Engine
from .registry import RequestError, UnknownPlanError
from .routes import (
    add_catalog_routes,
    add_control_routes,
    add_health_routes,
    add_queue_routes,
    add_task_routes,
)
from .store import FINAL, PAUSED, QUEUED, RUNNING

log = logging.getLogger(__name__)


class BodyLimit:
    """Refuse request bodies over ``limit`` bytes (413) before they reach a route."""

    def __init__(self, app: Any, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        for name, value in scope.get("headers", ()):
            if name == b"content-length" and (not value.isdigit() or int(value) > self.limit):
                return await self._refuse(send)
        seen = 0

        async def limited() -> dict:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.limit:
                raise _TooLargeError
            return message

        try:
            await self.app(scope, limited, send)
        except _TooLargeError:
            await self._refuse(send)

    async def _refuse(self, send: Any) -> None:
        response = JSONResponse(
            {"detail": f"request body over {self.limit} bytes"},
            status.HTTP_413_CONTENT_TOO_LARGE,
        )
        await response({"type": "http"}, None, send)  # type: ignore[arg-type]


class _TooLargeError(Exception):
    pass


class EngineCollector:
    """Prometheus figures read from the engine at scrape time."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def collect(self) -> Any:
        tasks = GaugeMetricFamily("runstream_engine_tasks", "Tasks by state", labels=["state"])
        counts = self.engine.store.counts()
        for state in (QUEUED, RUNNING, PAUSED, *FINAL):
            tasks.add_metric([state], counts.get(state, 0))
        yield tasks
        runs = GaugeMetricFamily("runstream_engine_runs", "Runs since start", labels=["event"])
        runs.add_metric(["opened"], self.engine.runs_opened)
        runs.add_metric(["closed"], self.engine.runs_closed)
        yield runs
        re_state = GaugeMetricFamily(
            "runstream_engine_re_state", "1 for the RunEngine's present state", labels=["state"]
        )
        now = str(self.engine.RE.state)
        for state in ("idle", "running", "pausing", "paused", "suspending", "aborting",
                      "stopping", "halting", "panicked"):  # fmt: skip
            re_state.add_metric([state], 1.0 if state == now else 0.0)
        yield re_state
        devices = self.engine.registry.devices
        yield GaugeMetricFamily("runstream_engine_devices", "Devices the engine serves",
                                value=len(devices))  # fmt: skip
        yield GaugeMetricFamily("runstream_engine_devices_connected", "Devices connected",
                                value=devices.connected)  # fmt: skip


def create_app(
    engine: Engine,
    guard: Guard,
    *,
    max_body_bytes: int = 64 * 1024,
    metric_registries: list[CollectorRegistry] = (),  # type: ignore[assignment]
) -> FastAPI:
    app = FastAPI(
        title="runstream engine",
        description="A RunEngine that takes plans over HTTP and publishes every run to Kafka.",
        version="1",
    )
    app.add_middleware(BodyLimit, limit=max_body_bytes)
    app.add_middleware(AuditTrail, log=guard.audit)  # outermost: it sees the final answer
    _answer_errors(app)
    registry = CollectorRegistry()
    registry.register(EngineCollector(engine))
    add_health_routes(app, engine, guard, [registry, *metric_registries])
    add_catalog_routes(app, engine, guard)
    add_task_routes(app, engine, guard)
    add_queue_routes(app, engine, guard)
    add_control_routes(app, engine, guard)
    add_identity_routes(app, guard)
    return app


def _answer_errors(app: FastAPI) -> None:
    """The engine's refusals as HTTP answers: 404/422 for a bad request, 409 for a control."""

    @app.exception_handler(RequestError)
    async def bad_request(_: Request, exc: RequestError) -> JSONResponse:
        code = 404 if isinstance(exc, UnknownPlanError) else 422
        return JSONResponse({"detail": str(exc)}, code)

    @app.exception_handler(ControlError)
    async def refused(_: Request, exc: ControlError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status.HTTP_409_CONFLICT)

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        # The answer echoes what was given, which may hold NaN (Python's JSON reads it)
        return JSONResponse({"detail": as_json(jsonable_encoder(exc.errors()))}, 422)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        if exc.status_code == status.HTTP_405_METHOD_NOT_ALLOWED:
            exc.headers = {"Allow": ", ".join(_methods_of(request))}
        return await http_exception_handler(request, exc)


def _methods_of(request: Request) -> list[str]:
    """Every method the routes of this path serve (Starlette names only the first route's).

    The path's own routes, those with the fewest parameters: at ``/tasks/batch``, ``POST``,
    not also the methods of ``/tasks/{task_id}``, which would take it as a task id.
    """
    probe = {**request.scope, "method": ""}
    methods: dict[int, set[str]] = {}
    for route in request.app.router.routes:
        match, _ = route.matches(probe)
        if match is not Match.NONE:
            found = methods.setdefault(getattr(route, "path", "").count("{"), set())
            found |= getattr(route, "methods", None) or set()
    return sorted(methods[min(methods)]) if methods else []
