"""The engine API's routes, in the groups its OpenAPI document tags them with.

Each group is added to the app itself (not through an ``APIRouter``): the app's
route list stays flat, as the 405 answer's Allow header and the deployment checks read it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Literal

from fastapi import Body, Depends, FastAPI, HTTPException, Request, status
from fastapi.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from prometheus_client import CollectorRegistry, generate_latest

from runstream.schemas.service import Control, Health, health

from .auth import Guard, caller
from .devices import DeviceEntry, UnknownDeviceError
from .edit_routes import add_history_routes, add_queue_edit_routes
from .models import (
    ControlRequest,
    DeviceDescription,
    EngineStatus,
    PlanDescription,
    Queue,
    Submitted,
    Task,
    TaskRequest,
    TaskState,
    answers,
)
from .queue import Engine

GUARDED = answers(401, 403)
WITH_BODY = answers(400, 401, 403, 413, 422)


def add_health_routes(
    app: FastAPI, engine: Engine, guard: Guard, registries: Sequence[CollectorRegistry]
) -> None:
    """Liveness, readiness and the Prometheus figures."""

    @app.get("/healthz", tags=["health"], response_model=Health)
    def healthz() -> JSONResponse:
        """The process answers."""
        code, body = health()
        return JSONResponse(body, code)

    @app.get(
        "/readyz", tags=["health"], response_model=Health,
        responses={503: {"model": Health, "description": "not ready"}},
    )  # fmt: skip
    def readyz() -> JSONResponse:
        """The RunEngine can run a plan and its documents can be delivered or kept."""
        code, body = health(engine.readiness())
        return JSONResponse(body, code)

    @app.get(
        "/metrics", tags=["health"], dependencies=[Depends(guard.read)],
        response_class=PlainTextResponse, responses=GUARDED,
    )  # fmt: skip
    def metrics() -> PlainTextResponse:
        """Prometheus figures of the engine and its publisher."""
        body = b"".join(generate_latest(r) for r in registries)
        return PlainTextResponse(body, media_type="text/plain; version=0.0.4")


def add_catalog_routes(app: FastAPI, engine: Engine, guard: Guard) -> None:
    """The plans and devices the engine offers."""
    read = [Depends(guard.read)]

    @app.get("/plans", tags=["catalog"], dependencies=read, responses=GUARDED)
    def plans(request: Request) -> list[PlanDescription]:
        """Every plan the caller may submit (the permissions file's plan rules for their
        role), with its description and a JSON schema of its parameters."""
        who = guard.known(request)
        return [
            PlanDescription(**e.describe())
            for name, e in engine.registry.plans.items()
            if guard.permissions.offers(who, name)
        ]

    @app.get(
        "/plans/{name}", tags=["catalog"], dependencies=read, responses=answers(401, 403, 404, 422)
    )
    def plan(name: str) -> PlanDescription:
        entry = engine.registry.plans.get(name)
        if entry is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"unknown plan {name!r}")
        return PlanDescription(**entry.describe())

    @app.get("/devices", tags=["catalog"], dependencies=read, responses=GUARDED)
    def devices() -> list[DeviceDescription]:
        """Every device, connected or not (with the error that keeps plans from it)."""
        entries = engine.registry.devices.entries
        return [_described(entries[name]) for name in sorted(entries)]

    @app.post(
        "/devices/{name}/connect", tags=["catalog"], dependencies=[Depends(guard.expert)],
        responses=answers(401, 403, 404, 422),
    )  # fmt: skip
    def connect(name: str) -> DeviceDescription:
        """Try to connect a device again (e.g. after its IOC restarted); answers its new state.

        404: no device of that name.
        """
        try:
            return _described(engine.connect_device(name))
        except UnknownDeviceError as exc:
            raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from None


def _described(entry: DeviceEntry) -> DeviceDescription:
    device = entry.device
    return DeviceDescription(
        name=entry.name,
        type=type(device).__name__,
        movable=hasattr(device, "set"),
        description=(type(device).__doc__ or "").strip().split("\n")[0],
        ophyd_async=entry.asynchronous,
        connected=entry.connected,
        error=entry.problem,
    )


def add_task_routes(app: FastAPI, engine: Engine, guard: Guard) -> None:
    """Submit, list, read and remove tasks."""
    read = [Depends(guard.read)]

    @app.post(
        "/tasks", tags=["tasks"], dependencies=[Depends(guard.user)], status_code=201,
        responses={**WITH_BODY, **answers(404, 409)},
    )  # fmt: skip
    def submit(request: TaskRequest, http: Request) -> Submitted:
        """Queue a plan by name (user); the arguments are checked (422) before it is queued.

        403: the permissions file keeps the caller's role from the plan or a device (the
        answer names the rule); 404: no plan of that name; 409: the queue is full.
        """
        guard.permit(caller(http), request.plan, request.args, request.kwargs, engine.registry)
        task = engine.submit(request.plan, request.args, request.kwargs, caller(http).subject)
        return Submitted(task_id=task["task_id"], position=task.get("position", 0))

    @app.get("/tasks", tags=["tasks"], dependencies=read, responses=answers(401, 403, 422))
    def tasks(state: TaskState | None = None) -> list[Task]:
        return [Task(**t) for t in engine.store.list(state)]

    @app.get(
        "/tasks/{task_id}", tags=["tasks"], dependencies=read, responses=answers(401, 403, 404, 422)
    )
    def task(task_id: str) -> Task:
        return Task(**_known_task(engine, task_id))

    @app.delete(
        "/tasks/{task_id}",
        tags=["tasks"],
        dependencies=[Depends(guard.user)],
        responses=answers(401, 403, 404, 409, 422),
    )
    def remove(task_id: str, request: Request) -> Task:
        """Take a queued task off the queue: one's own (user), anyone's (expert).

        A running one is stopped by the controls.
        """
        found = _known_task(engine, task_id)
        if found.get("submitted_by") != caller(request).subject:
            guard.require(caller(request), "expert")
        if not engine.remove(task_id):
            raise HTTPException(
                status.HTTP_409_CONFLICT, f"task {task_id} is {found['state']}, not queued"
            )
        return Task(**engine.store.get(task_id))  # type: ignore[arg-type]


def _known_task(engine: Engine, task_id: str) -> dict:
    found = engine.store.get(task_id)
    if found is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"unknown task {task_id!r}")
    return found


def add_queue_routes(app: FastAPI, engine: Engine, guard: Guard) -> None:
    """The queue, whether tasks are taken from it, its edits, and the history."""
    add_queue_edit_routes(app, engine, guard)  # first: /queue/{action} would take /queue/move
    add_history_routes(app, engine, guard)

    @app.get(
        "/queue", tags=["queue"], dependencies=[Depends(guard.read)], response_model=Queue,
        responses=GUARDED,
    )  # fmt: skip
    def queue() -> Response:
        """The queued tasks in order. Their rows are JSON in the store already and are
        answered as they are: a queue of 1,000 tasks lists in milliseconds."""
        running = "true" if engine.queue_running else "false"
        body = f'{{"running": {running}, "tasks": {engine.store.queue_json()}}}'
        return Response(body, media_type="application/json")

    @app.post(
        "/queue/{action}",
        tags=["queue"],
        dependencies=[Depends(guard.expert)],
        responses=answers(401, 403, 422),
    )
    def queue_control(action: Literal["start", "stop"]) -> EngineStatus:
        """Start or stop taking tasks from the queue (expert; a running task is not touched)."""
        engine.set_queue_running(action == "start")
        return EngineStatus(**engine.status())


def add_control_routes(app: FastAPI, engine: Engine, guard: Guard) -> None:
    """The RunEngine's controls, its status and the live event stream."""
    read = [Depends(guard.read)]

    @app.post(
        "/control/{action}", tags=["control"], dependencies=[Depends(guard.user)],
        responses={**WITH_BODY, **answers(409)},
    )  # fmt: skip
    def control(
        action: Control, http: Request, request: Annotated[ControlRequest | None, Body()] = None
    ) -> EngineStatus:
        """Pause (user; deferred or not), resume, stop, abort or halt (expert), as the
        RunEngine allows.

        409: the RunEngine refuses that control in its present state.
        """
        if action != "pause":
            guard.require(caller(http), "expert")
        request = request or ControlRequest()
        return EngineStatus(**engine.control(action, request.reason, request.defer))

    @app.get("/status", tags=["control"], dependencies=read, responses=GUARDED)
    def engine_status() -> EngineStatus:
        return EngineStatus(**engine.status())

    @app.get(
        "/events", tags=["control"], dependencies=read, response_class=StreamingResponse,
        responses={**GUARDED, 200: {"content": {"text/event-stream": {}},
                                    "description": "an endless event stream"}},
    )  # fmt: skip
    async def events() -> StreamingResponse:
        """Server-Sent Events: engine state, task changes, runs opened and closed."""
        first = {"event": "status", **engine.status()}
        return StreamingResponse(engine.events.stream(first), media_type="text/event-stream")
