"""The engine panel's way to the engine: a small proxy for the few routes the panel uses.

Why a proxy rather than the browser calling the engine: the browser then needs
to reach only this service (one Ingress, one origin, no CORS to configure on
the engine), and the engine can stay on the cluster's network. The user's
token comes with each request in the ``Authorization`` header, is passed on
as it is and never stored or logged here; the browser keeps it in its session.
The engine's event stream (``/events``) is relayed as it comes, so the panel
updates when the engine changes rather than by polling.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Annotated, Any, Literal

import httpx
from fastapi import APIRouter, Body, Header, Path, Request, status
from fastapi.responses import JSONResponse, Response, StreamingResponse

from runstream.schemas.service import Control

log = logging.getLogger(__name__)

TIMEOUT = 10.0
# A device's reconnect takes up to the engine's connect timeout (a setting of the engine).
CONNECT_TIMEOUT = 120.0
DEVICE_NAME = Path(pattern=r"^[A-Za-z0-9_.:-]{1,200}$", description="A top-level device's name")
# The engine sends a comment every 15 s on a quiet stream: twice that without a byte
# means it is gone, and the panel is told so (the relay ends) rather than left waiting.
EVENTS_SILENCE = 30.0
Auth = Annotated[str | None, Header(description="Bearer token, passed on to the engine")]
Body_ = Annotated[dict[str, Any], Body(description="Passed on to the engine, which checks it")]
TaskId = Annotated[str, Path(pattern=r"^[A-Za-z0-9_.-]{1,100}$")]
ANSWERS: dict[int | str, dict[str, Any]] = {502: {"description": "the engine did not answer"}}
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


class EngineClient:
    """Requests to the engine with the caller's token; failures become the caller's 502."""

    def __init__(self, engine_url: str) -> None:
        self.url = engine_url.rstrip("/")
        self.client = httpx.AsyncClient(base_url=self.url, timeout=TIMEOUT)

    async def forward(self, method: str, path: str, authorization: str | None,
                      body: Any = None, timeout: float = TIMEOUT,
                      params: Any = None) -> JSONResponse:  # fmt: skip
        try:
            reply = await self.client.request(method, path, headers=_auth(authorization),
                                              json=body, timeout=timeout,
                                              params=params)  # fmt: skip
        except httpx.HTTPError as exc:
            return self._unanswered(method, path, exc)
        return _json(reply)

    async def relay_events(self, authorization: str | None) -> Response:
        """The engine's Server-Sent Events, passed on byte for byte while both ends listen."""
        timeout = httpx.Timeout(TIMEOUT, read=EVENTS_SILENCE)
        request = self.client.build_request("GET", "/events", headers=_auth(authorization),
                                            timeout=timeout)  # fmt: skip
        try:
            reply = await self.client.send(request, stream=True)
        except httpx.HTTPError as exc:
            return self._unanswered("GET", "/events", exc)
        if reply.status_code != status.HTTP_200_OK:  # refused (a token): the engine's answer
            await reply.aread()
            await reply.aclose()
            return _json(reply)
        return StreamingResponse(self._relay(reply), media_type="text/event-stream",
                                 headers=SSE_HEADERS)  # fmt: skip

    async def _relay(self, reply: httpx.Response) -> AsyncIterator[bytes]:
        try:
            async for chunk in reply.aiter_raw():
                yield chunk
        except httpx.HTTPError as exc:  # the engine went away: the stream ends, the page retries
            log.warning("the engine's event stream from %s broke: %s", self.url,
                        type(exc).__name__)  # fmt: skip
        finally:
            await reply.aclose()

    def _unanswered(self, method: str, path: str, exc: httpx.HTTPError) -> JSONResponse:
        log.warning("engine at %s did not answer %s %s: %s", self.url, method, path,
                    type(exc).__name__)  # fmt: skip
        return JSONResponse({"detail": f"the engine did not answer: {type(exc).__name__}"},
                            status.HTTP_502_BAD_GATEWAY)  # fmt: skip

    async def close(self) -> None:
        await self.client.aclose()


def _auth(authorization: str | None) -> dict[str, str]:
    return {"Authorization": authorization} if authorization else {}


def _json(reply: httpx.Response) -> JSONResponse:
    try:
        content = reply.json()
    except ValueError:
        content = {"detail": reply.text[:2000]}
    return JSONResponse(content, reply.status_code)


def routes(engine: EngineClient) -> APIRouter:
    """The panel's routes under /api/engine, each passed on to ``engine``."""
    router = APIRouter(prefix="/api/engine", tags=["engine"])
    _add_reads(router, engine)
    _add_queue_changes(router, engine)  # first: /queue/{action} would take /queue/move
    _add_controls(router, engine)
    return router


def _add_reads(router: APIRouter, engine: EngineClient) -> None:
    """What the panel shows: state, events, queue, history, caller, plans, devices."""

    @router.get("/status", responses=ANSWERS)
    async def engine_status(authorization: Auth = None) -> JSONResponse:
        """The engine's state, its current task and whether its queue runs."""
        return await engine.forward("GET", "/status", authorization)

    @router.get(
        "/events", response_class=StreamingResponse,
        responses={**ANSWERS, 200: {"content": {"text/event-stream": {}},
                                    "description": "the engine's events, as it sends them"}},
    )  # fmt: skip
    async def events(authorization: Auth = None) -> Response:
        """The engine's Server-Sent Events (its status first, then each change), relayed."""
        return await engine.relay_events(authorization)

    @router.get("/queue", responses=ANSWERS)
    async def queue(authorization: Auth = None) -> JSONResponse:
        return await engine.forward("GET", "/queue", authorization)

    @router.get("/whoami", responses=ANSWERS)
    async def whoami(authorization: Auth = None) -> JSONResponse:
        """The caller as the engine sees them: the panel offers what their role allows."""
        return await engine.forward("GET", "/whoami", authorization)

    @router.get("/auth/config", responses=ANSWERS)
    async def auth_config() -> JSONResponse:
        """The engine's OIDC provider and the web client the panel logs in with (or 404)."""
        return await engine.forward("GET", "/auth/config", None)

    @router.get("/history", responses=ANSWERS)
    async def history(request: Request, authorization: Auth = None) -> JSONResponse:
        """Ended tasks, paged and filtered as the engine's ``GET /history`` takes them."""
        return await engine.forward("GET", "/history", authorization,
                                    params=request.query_params.multi_items())  # fmt: skip

    @router.get("/plans", responses=ANSWERS)
    async def plans(authorization: Auth = None) -> JSONResponse:
        """The engine's plans with a JSON schema of their parameters (the form is built from it)."""
        return await engine.forward("GET", "/plans", authorization)

    @router.get("/devices", responses=ANSWERS)
    async def devices(authorization: Auth = None) -> JSONResponse:  # class, connected or error
        return await engine.forward("GET", "/devices", authorization)

    @router.get("/tasks/{task_id}", responses=ANSWERS)
    async def task(task_id: TaskId, authorization: Auth = None) -> JSONResponse:
        return await engine.forward("GET", f"/tasks/{task_id}", authorization)


def _add_queue_changes(router: APIRouter, engine: EngineClient) -> None:
    """Submitting, checking, editing, moving and removing tasks; clearing."""

    @router.delete("/history", responses=ANSWERS)
    async def clear_history(authorization: Auth = None) -> JSONResponse:
        return await engine.forward("DELETE", "/history", authorization)

    @router.delete("/queue", responses=ANSWERS)
    async def clear_queue(authorization: Auth = None) -> JSONResponse:
        return await engine.forward("DELETE", "/queue", authorization)

    @router.post("/queue/move", responses=ANSWERS)  # before /queue/{action}, which it would match
    async def move(request: Body_, authorization: Auth = None) -> JSONResponse:
        """``{"task_id", "before"|"after"|"position"}``, checked by the engine."""
        return await engine.forward("POST", "/queue/move", authorization, request)

    @router.post("/tasks", responses=ANSWERS)
    async def submit(request: Body_, authorization: Auth = None) -> JSONResponse:
        """Queue a plan: ``{"plan": name, "args": [...], "kwargs": {...}}``."""
        return await engine.forward("POST", "/tasks", authorization, request)

    @router.post("/tasks/validate", responses=ANSWERS)  # before /tasks/{task_id}
    async def validate(request: Body_, authorization: Auth = None) -> JSONResponse:
        """Check a request as a submission would; the engine queues nothing."""
        return await engine.forward("POST", "/tasks/validate", authorization, request)

    @router.patch("/tasks/{task_id}", responses=ANSWERS)
    async def edit(task_id: TaskId, request: Body_, authorization: Auth = None) -> JSONResponse:
        """Change a queued task's plan or arguments (checked again; its id and place kept)."""
        return await engine.forward("PATCH", f"/tasks/{task_id}", authorization, request)

    @router.delete("/tasks/{task_id}", responses=ANSWERS)
    async def remove(task_id: TaskId, authorization: Auth = None) -> JSONResponse:
        """Take a queued task off the queue."""
        return await engine.forward("DELETE", f"/tasks/{task_id}", authorization)


def _add_controls(router: APIRouter, engine: EngineClient) -> None:
    """The RunEngine's controls, the queue's start and stop, a device's reconnect."""

    @router.post("/devices/{name}/connect", responses=ANSWERS)
    async def connect(name: Annotated[str, DEVICE_NAME],
                      authorization: Auth = None) -> JSONResponse:  # fmt: skip
        """Ask the engine to connect a device again (its IOC restarted): its new state."""
        return await engine.forward("POST", f"/devices/{name}/connect", authorization,
                                    timeout=CONNECT_TIMEOUT)  # fmt: skip

    @router.post("/control/{action}", responses=ANSWERS)
    async def control(action: Control, authorization: Auth = None) -> JSONResponse:
        return await engine.forward("POST", f"/control/{action}", authorization,
                                    {"reason": "web view"})  # fmt: skip

    @router.post("/queue/{action}", responses=ANSWERS)
    async def queue_control(action: Literal["start", "stop"],
                            authorization: Auth = None) -> JSONResponse:  # fmt: skip
        return await engine.forward("POST", f"/queue/{action}", authorization)
