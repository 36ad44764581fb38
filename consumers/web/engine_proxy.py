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
from fastapi import APIRouter, Body, Header, Path, status
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
ANSWERS: dict[int | str, dict[str, Any]] = {502: {"description": "the engine did not answer"}}
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


class EngineClient:
    """Requests to the engine with the caller's token; failures become the caller's 502."""

    def __init__(self, engine_url: str) -> None:
        self.url = engine_url.rstrip("/")
        self.client = httpx.AsyncClient(base_url=self.url, timeout=TIMEOUT)

    async def forward(self, method: str, path: str, authorization: str | None,
                      body: Any = None, timeout: float = TIMEOUT) -> JSONResponse:  # fmt: skip
        try:
            reply = await self.client.request(method, path, headers=_auth(authorization),
                                              json=body, timeout=timeout)  # fmt: skip
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

    @router.get("/plans", responses=ANSWERS)
    async def plans(authorization: Auth = None) -> JSONResponse:
        """The engine's plans with a JSON schema of their parameters (the form is built from it)."""
        return await engine.forward("GET", "/plans", authorization)

    @router.get("/devices", responses=ANSWERS)
    async def devices(authorization: Auth = None) -> JSONResponse:  # class, connected or error
        return await engine.forward("GET", "/devices", authorization)

    @router.post("/devices/{name}/connect", responses=ANSWERS)
    async def connect(name: Annotated[str, DEVICE_NAME],
                      authorization: Auth = None) -> JSONResponse:  # fmt: skip
        """Ask the engine to connect a device again (its IOC restarted): its new state."""
        return await engine.forward("POST", f"/devices/{name}/connect", authorization,
                                    timeout=CONNECT_TIMEOUT)  # fmt: skip

    @router.get("/tasks/{task_id}", responses=ANSWERS)
    async def task(task_id: Annotated[str, Path(pattern=r"^[A-Za-z0-9_.-]{1,100}$")],
                   authorization: Auth = None) -> JSONResponse:  # fmt: skip
        return await engine.forward("GET", f"/tasks/{task_id}", authorization)

    @router.post("/tasks", responses=ANSWERS)
    async def submit(request: Annotated[dict[str, Any], Body()],
                     authorization: Auth = None) -> JSONResponse:  # fmt: skip
        """Queue a plan: ``{"plan": name, "args": [...], "kwargs": {...}}``."""
        return await engine.forward("POST", "/tasks", authorization, request)

    @router.post("/control/{action}", responses=ANSWERS)
    async def control(action: Control, authorization: Auth = None) -> JSONResponse:
        return await engine.forward("POST", f"/control/{action}", authorization,
                                    {"reason": "web view"})  # fmt: skip

    @router.post("/queue/{action}", responses=ANSWERS)
    async def queue_control(action: Literal["start", "stop"],
                            authorization: Auth = None) -> JSONResponse:  # fmt: skip
        return await engine.forward("POST", f"/queue/{action}", authorization)

    return router
