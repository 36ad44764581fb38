"""The engine's HTTP API (FastAPI; the OpenAPI document is served at /openapi.json)."""

from __future__ import annotations

import logging
from typing import Annotated, Any, Literal

from fastapi import Body, Depends, FastAPI, HTTPException, Request, status
from fastapi.responses import JSONResponse, PlainTextResponse, StreamingResponse
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily
from pydantic import BaseModel, ConfigDict, Field

from .auth import TokenGuard
from .queue import ControlError, Engine
from .registry import RequestError
from .store import FINAL, PAUSED, QUEUED, RUNNING

log = logging.getLogger(__name__)

TaskState = Literal[QUEUED, RUNNING, PAUSED, *FINAL]  # type: ignore[valid-type]
Control = Literal["pause", "resume", "stop", "abort", "halt"]


class TaskRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    plan: str = Field(min_length=1, max_length=200, description="A name from GET /plans")
    args: list[Any] = Field(default_factory=list, max_length=1000)
    kwargs: dict[str, Any] = Field(default_factory=dict)


class ControlRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: str = Field("", max_length=2000, description="Recorded in the stop documents")
    defer: bool = Field(False, description="pause only: wait for the next checkpoint")


class Submitted(BaseModel):
    task_id: str
    position: int


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


def create_app(
    engine: Engine,
    guard: TokenGuard,
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
    read, write = [Depends(guard.read)], [Depends(guard.write)]
    registry = CollectorRegistry()
    registry.register(EngineCollector(engine))
    registries = [registry, *metric_registries]

    @app.exception_handler(RequestError)
    async def bad_request(_: Request, exc: RequestError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status.HTTP_422_UNPROCESSABLE_CONTENT)

    @app.exception_handler(ControlError)
    async def refused(_: Request, exc: ControlError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status.HTTP_409_CONFLICT)

    @app.get("/healthz", tags=["health"])
    def healthz() -> dict[str, bool]:
        """The process answers."""
        return {"alive": True}

    @app.get("/readyz", tags=["health"], responses={503: {"description": "not ready"}})
    def readyz() -> JSONResponse:
        """The RunEngine can run a plan and its documents can be delivered or kept."""
        problems = engine.readiness()
        code = status.HTTP_503_SERVICE_UNAVAILABLE if problems else status.HTTP_200_OK
        return JSONResponse({"ready": not problems, "problems": problems}, code)

    @app.get("/metrics", tags=["health"], dependencies=read, response_class=PlainTextResponse)
    def metrics() -> PlainTextResponse:
        body = b"".join(generate_latest(r) for r in registries)
        return PlainTextResponse(body, media_type="text/plain; version=0.0.4")

    @app.get("/plans", tags=["catalog"], dependencies=read)
    def plans() -> list[dict[str, Any]]:
        """Every allowed plan with its description and a JSON schema of its parameters."""
        return [entry.describe() for entry in engine.registry.plans.values()]

    @app.get("/plans/{name}", tags=["catalog"], dependencies=read)
    def plan(name: str) -> dict[str, Any]:
        entry = engine.registry.plans.get(name)
        if entry is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"unknown plan {name!r}")
        return entry.describe()

    @app.get("/devices", tags=["catalog"], dependencies=read)
    def devices() -> list[dict[str, Any]]:
        return [
            {
                "name": name,
                "class": type(device).__name__,
                "movable": hasattr(device, "set"),
                "description": (type(device).__doc__ or "").strip().split("\n")[0],
            }
            for name, device in sorted(engine.registry.devices.items())
        ]

    @app.post("/tasks", tags=["tasks"], dependencies=write, status_code=201)
    def submit(request: TaskRequest) -> Submitted:
        """Queue a plan by name; the arguments are checked before it is queued."""
        task = engine.submit(request.plan, request.args, request.kwargs)
        return Submitted(task_id=task["task_id"], position=task.get("position", 0))

    @app.get("/tasks", tags=["tasks"], dependencies=read)
    def tasks(state: TaskState | None = None) -> list[dict[str, Any]]:
        return engine.store.list(state)

    @app.get("/tasks/{task_id}", tags=["tasks"], dependencies=read)
    def task(task_id: str) -> dict[str, Any]:
        found = engine.store.get(task_id)
        if found is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"unknown task {task_id!r}")
        return found

    @app.delete("/tasks/{task_id}", tags=["tasks"], dependencies=write)
    def remove(task_id: str) -> dict[str, Any]:
        """Take a queued task off the queue (a running one is stopped by the controls)."""
        found = engine.store.get(task_id)
        if found is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"unknown task {task_id!r}")
        if not engine.remove(task_id):
            raise HTTPException(
                status.HTTP_409_CONFLICT, f"task {task_id} is {found['state']}, not queued"
            )
        return engine.store.get(task_id)  # type: ignore[return-value]

    @app.get("/queue", tags=["queue"], dependencies=read)
    def queue() -> dict[str, Any]:
        return {"running": engine.queue_running, "tasks": engine.store.queue()}

    @app.post("/queue/{action}", tags=["queue"], dependencies=write)
    def queue_control(action: Literal["start", "stop"]) -> dict[str, Any]:
        """Start or stop taking tasks from the queue (a running task is not touched)."""
        engine.set_queue_running(action == "start")
        return engine.status()

    @app.post("/control/{action}", tags=["control"], dependencies=write)
    def control(
        action: Control, request: Annotated[ControlRequest | None, Body()] = None
    ) -> dict[str, Any]:
        """Pause (deferred or not), resume, stop, abort or halt, as the RunEngine allows."""
        request = request or ControlRequest()
        return engine.control(action, request.reason, request.defer)

    @app.get("/status", tags=["control"], dependencies=read)
    def engine_status() -> dict[str, Any]:
        return engine.status()

    @app.get("/events", tags=["control"], dependencies=read)
    async def events() -> StreamingResponse:
        """Server-Sent Events: engine state, task changes, runs opened and closed."""
        first = {"event": "status", **engine.status()}
        return StreamingResponse(engine.events.stream(first), media_type="text/event-stream")

    return app
