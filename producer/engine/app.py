"""The engine's HTTP API (FastAPI; the OpenAPI document is served at /openapi.json)."""

from __future__ import annotations

import logging
from typing import Annotated, Any, Literal

from fastapi import Body, Depends, FastAPI, HTTPException, Request, status
from fastapi.exception_handlers import http_exception_handler
from fastapi.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from .auth import TokenGuard
from .queue import ControlError, Engine
from .registry import RequestError, UnknownPlanError
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
    position: int = Field(description="Place in the queue, 0 is next")


class RunRecord(BaseModel):
    """A run a task opened, and how it ended (null while open)."""

    uid: str
    scan_id: int | None = None
    run_key: str | None = None
    parent_uid: str | None = None
    exit_status: str | None = None
    reason: str | None = None


class Task(BaseModel):
    task_id: str
    plan: str
    args: list[Any]
    kwargs: dict[str, Any]
    state: TaskState
    submitted: float
    started: float | None = None
    ended: float | None = None
    exit_status: str | None = None
    reason: str | None = None
    runs: list[RunRecord]
    position: int | None = Field(None, description="Place in the queue while queued")


class Queue(BaseModel):
    running: bool = Field(description="False: tasks wait until the queue is started")
    tasks: list[Task]


class EngineStatus(BaseModel):
    re_state: str = Field(description="The RunEngine's state (idle, running, paused...)")
    task_id: str | None = Field(description="The task the RunEngine is on")
    queue_running: bool
    queued: int


class PlanDescription(BaseModel):
    model_config = ConfigDict(populate_by_name=True)
    name: str
    description: str
    parameters: dict[str, Any] = Field(
        alias="schema", description="JSON schema of the plan's keyword arguments"
    )
    positional: list[str] = Field(description="Parameters that may be given in args, in order")
    var_positional: str | None = Field(description="The *args parameter, if any")


class DeviceDescription(BaseModel):
    model_config = ConfigDict(populate_by_name=True)
    name: str
    type: str = Field(alias="class")
    movable: bool
    description: str


class Alive(BaseModel):
    alive: bool


class Readiness(BaseModel):
    ready: bool
    problems: list[str] = Field(description="Why the engine cannot take work; empty when ready")


class Problem(BaseModel):
    """Every error answer: what went wrong (a list of field errors for a malformed request)."""

    detail: str | list[dict[str, Any]]


def _answers(*codes: int) -> dict[int | str, dict[str, Any]]:
    """The error answers a route documents, each with the `Problem` body."""
    return {code: {"model": Problem, "description": _MEANING[code]} for code in codes}


_MEANING = {
    400: "a body that cannot be read (not UTF-8 JSON)",
    401: "no bearer token",
    403: "wrong bearer token",
    404: "no such plan or task",
    409: "refused in the engine's present state",
    413: "request body too large",
    422: "malformed request, or arguments the plan refuses",
}


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
        code = 404 if isinstance(exc, UnknownPlanError) else 422
        return JSONResponse({"detail": str(exc)}, code)

    @app.exception_handler(ControlError)
    async def refused(_: Request, exc: ControlError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status.HTTP_409_CONFLICT)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        if exc.status_code == status.HTTP_405_METHOD_NOT_ALLOWED:
            exc.headers = {"Allow": ", ".join(_methods_of(request))}
        return await http_exception_handler(request, exc)

    guarded = _answers(401, 403)
    with_body = _answers(400, 401, 403, 413, 422)

    @app.get("/healthz", tags=["health"])
    def healthz() -> Alive:
        """The process answers."""
        return Alive(alive=True)

    @app.get(
        "/readyz", tags=["health"], response_model=Readiness,
        responses={503: {"model": Readiness, "description": "not ready"}},
    )  # fmt: skip
    def readyz() -> JSONResponse:
        """The RunEngine can run a plan and its documents can be delivered or kept."""
        problems = engine.readiness()
        code = status.HTTP_503_SERVICE_UNAVAILABLE if problems else status.HTTP_200_OK
        return JSONResponse({"ready": not problems, "problems": problems}, code)

    @app.get(
        "/metrics", tags=["health"], dependencies=read, response_class=PlainTextResponse,
        responses=guarded,
    )  # fmt: skip
    def metrics() -> PlainTextResponse:
        """Prometheus figures of the engine and its publisher."""
        body = b"".join(generate_latest(r) for r in registries)
        return PlainTextResponse(body, media_type="text/plain; version=0.0.4")

    @app.get("/plans", tags=["catalog"], dependencies=read, responses=guarded)
    def plans() -> list[PlanDescription]:
        """Every allowed plan with its description and a JSON schema of its parameters."""
        return [PlanDescription(**e.describe()) for e in engine.registry.plans.values()]

    @app.get("/plans/{name}", tags=["catalog"], dependencies=read,
             responses=_answers(401, 403, 404, 422))  # fmt: skip
    def plan(name: str) -> PlanDescription:
        entry = engine.registry.plans.get(name)
        if entry is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"unknown plan {name!r}")
        return PlanDescription(**entry.describe())

    @app.get("/devices", tags=["catalog"], dependencies=read, responses=guarded)
    def devices() -> list[DeviceDescription]:
        return [
            DeviceDescription(
                name=name,
                type=type(device).__name__,
                movable=hasattr(device, "set"),
                description=(type(device).__doc__ or "").strip().split("\n")[0],
            )
            for name, device in sorted(engine.registry.devices.items())
        ]

    @app.post(
        "/tasks", tags=["tasks"], dependencies=write, status_code=201,
        responses={**with_body, **_answers(404, 409)},
    )  # fmt: skip
    def submit(request: TaskRequest) -> Submitted:
        """Queue a plan by name; the arguments are checked (422) before it is queued.

        404: no plan of that name; 409: the queue is full.
        """
        task = engine.submit(request.plan, request.args, request.kwargs)
        return Submitted(task_id=task["task_id"], position=task.get("position", 0))

    @app.get("/tasks", tags=["tasks"], dependencies=read, responses=_answers(401, 403, 422))
    def tasks(state: TaskState | None = None) -> list[Task]:
        return [Task(**t) for t in engine.store.list(state)]

    @app.get("/tasks/{task_id}", tags=["tasks"], dependencies=read,
             responses=_answers(401, 403, 404, 422))  # fmt: skip
    def task(task_id: str) -> Task:
        found = engine.store.get(task_id)
        if found is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"unknown task {task_id!r}")
        return Task(**found)

    @app.delete("/tasks/{task_id}", tags=["tasks"], dependencies=write,
                responses=_answers(401, 403, 404, 409, 422))  # fmt: skip
    def remove(task_id: str) -> Task:
        """Take a queued task off the queue (a running one is stopped by the controls)."""
        found = engine.store.get(task_id)
        if found is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"unknown task {task_id!r}")
        if not engine.remove(task_id):
            raise HTTPException(
                status.HTTP_409_CONFLICT, f"task {task_id} is {found['state']}, not queued"
            )
        return Task(**engine.store.get(task_id))  # type: ignore[arg-type]

    @app.get("/queue", tags=["queue"], dependencies=read, responses=guarded)
    def queue() -> Queue:
        return Queue(running=engine.queue_running, tasks=[Task(**t) for t in engine.store.queue()])

    @app.post("/queue/{action}", tags=["queue"], dependencies=write,
              responses=_answers(401, 403, 422))  # fmt: skip
    def queue_control(action: Literal["start", "stop"]) -> EngineStatus:
        """Start or stop taking tasks from the queue (a running task is not touched)."""
        engine.set_queue_running(action == "start")
        return EngineStatus(**engine.status())

    @app.post("/control/{action}", tags=["control"], dependencies=write,
              responses={**with_body, **_answers(409)})  # fmt: skip
    def control(
        action: Control, request: Annotated[ControlRequest | None, Body()] = None
    ) -> EngineStatus:
        """Pause (deferred or not), resume, stop, abort or halt, as the RunEngine allows.

        409: the RunEngine refuses that control in its present state.
        """
        request = request or ControlRequest()
        return EngineStatus(**engine.control(action, request.reason, request.defer))

    @app.get("/status", tags=["control"], dependencies=read, responses=guarded)
    def engine_status() -> EngineStatus:
        return EngineStatus(**engine.status())

    @app.get(
        "/events", tags=["control"], dependencies=read, response_class=StreamingResponse,
        responses={**guarded, 200: {"content": {"text/event-stream": {}},
                                    "description": "an endless event stream"}},
    )  # fmt: skip
    async def events() -> StreamingResponse:
        """Server-Sent Events: engine state, task changes, runs opened and closed."""
        first = {"event": "status", **engine.status()}
        return StreamingResponse(engine.events.stream(first), media_type="text/event-stream")

    return app


def _methods_of(request: Request) -> list[str]:
    """Every method some route serves at this path (Starlette names only the first route's)."""
    probe = {**request.scope, "method": ""}
    methods: set[str] = set()
    for route in request.app.router.routes:
        match, _ = route.matches(probe)
        if match is not Match.NONE:
            methods |= getattr(route, "methods", None) or set()
    return sorted(methods)
