"""The engine panel's way to the engine: a small proxy for the few routes the panel uses.

Why a proxy rather than the browser calling the engine: the browser then needs
to reach only this service (one Ingress, one origin, no CORS to configure on
the engine), and the engine can stay on the cluster's network. The user's
token comes with each request in the ``Authorization`` header, is passed on
as it is and never stored or logged here; the browser keeps it in its session.
"""

from __future__ import annotations

import logging
from typing import Annotated, Any, Literal

import httpx
from fastapi import APIRouter, Body, Header, Path, status
from fastapi.responses import JSONResponse

log = logging.getLogger(__name__)

TIMEOUT = 10.0
Control = Literal["pause", "resume", "stop", "abort", "halt"]
Auth = Annotated[str | None, Header(description="Bearer token, passed on to the engine")]


def create_router(engine_url: str) -> APIRouter:
    router = APIRouter(prefix="/api/engine", tags=["engine"])
    client = httpx.AsyncClient(base_url=engine_url.rstrip("/"), timeout=TIMEOUT)

    async def forward(method: str, path: str, authorization: str | None,
                      body: Any = None) -> JSONResponse:  # fmt: skip
        headers = {"Authorization": authorization} if authorization else {}
        try:
            reply = await client.request(method, path, headers=headers, json=body)
        except httpx.HTTPError as exc:
            log.warning("engine at %s did not answer %s %s: %s", engine_url, method, path,
                        type(exc).__name__)  # fmt: skip
            return JSONResponse({"detail": f"the engine did not answer: {type(exc).__name__}"},
                                status.HTTP_502_BAD_GATEWAY)  # fmt: skip
        try:
            content = reply.json()
        except ValueError:
            content = {"detail": reply.text[:2000]}
        return JSONResponse(content, reply.status_code)

    answers = {502: {"description": "the engine did not answer"}}

    @router.get("/status", responses=answers)
    async def engine_status(authorization: Auth = None) -> JSONResponse:
        """The engine's state, its current task and whether its queue runs."""
        return await forward("GET", "/status", authorization)

    @router.get("/queue", responses=answers)
    async def queue(authorization: Auth = None) -> JSONResponse:
        return await forward("GET", "/queue", authorization)

    @router.get("/plans", responses=answers)
    async def plans(authorization: Auth = None) -> JSONResponse:
        """The engine's plans with a JSON schema of their parameters (the form is built from it)."""
        return await forward("GET", "/plans", authorization)

    @router.get("/tasks/{task_id}", responses=answers)
    async def task(task_id: Annotated[str, Path(pattern=r"^[A-Za-z0-9_.-]{1,100}$")],
                   authorization: Auth = None) -> JSONResponse:  # fmt: skip
        return await forward("GET", f"/tasks/{task_id}", authorization)

    @router.post("/tasks", responses=answers)
    async def submit(request: Annotated[dict[str, Any], Body()],
                     authorization: Auth = None) -> JSONResponse:  # fmt: skip
        """Queue a plan: ``{"plan": name, "args": [...], "kwargs": {...}}``."""
        return await forward("POST", "/tasks", authorization, request)

    @router.post("/control/{action}", responses=answers)
    async def control(action: Control, authorization: Auth = None) -> JSONResponse:
        return await forward("POST", f"/control/{action}", authorization, {"reason": "web view"})

    @router.post("/queue/{action}", responses=answers)
    async def queue_control(action: Literal["start", "stop"],
                            authorization: Auth = None) -> JSONResponse:  # fmt: skip
        return await forward("POST", f"/queue/{action}", authorization)

    router.client = client  # type: ignore[attr-defined]  # closed with the app
    return router
