"""Server-Sent Events: the summaries of runs that changed, pushed every ``push_interval``.

A browser holds one EventSource. Each message is one JSON object
``{"version": v, "runs": [summary...], "removed": [uid...]}`` covering every
change after the version the client last saw, so nothing is missed however
slowly a client reads; pages fetch rows and plots when a run's counts move.
The ``Last-Event-ID`` header (sent by EventSource on reconnect) resumes.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import StreamingResponse
from prometheus_client import CollectorRegistry, Gauge

from .model import RunStore

log = logging.getLogger(__name__)

KEEPALIVE = 15.0  # seconds: a comment line so proxies keep the connection


class PushMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.clients = Gauge("runstream_web_push_clients", "Browsers listening", registry=registry)


def routes(store: RunStore, interval: float, metrics: PushMetrics) -> APIRouter:
    """``/api/events``: the changes of ``store``'s runs, looked at every ``interval`` seconds."""
    router = APIRouter(prefix="/api", tags=["push"])

    async def changes(request: Request, version: int, uid: str | None) -> AsyncIterator[str]:
        metrics.clients.inc()
        quiet = 0.0
        try:
            yield "retry: 1000\n\n"
            while not await request.is_disconnected():
                current, runs, removed = store.changes_since(version, uid)
                if runs or removed or current < version:
                    if current < version:  # the service restarted: the client starts over
                        current, runs, removed = store.changes_since(-1, uid)
                    body = json.dumps({"version": current, "runs": runs, "removed": removed})
                    yield f"id: {current}\ndata: {body}\n\n"
                    quiet = 0.0
                elif quiet >= KEEPALIVE:
                    yield ": keepalive\n\n"
                    quiet = 0.0
                version = current
                await asyncio.sleep(interval)
                quiet += interval
        finally:
            metrics.clients.dec()

    @router.get(
        "/events",
        response_class=StreamingResponse,
        responses={200: {"content": {"text/event-stream": {}},
                         "description": "one JSON object per message"}},
    )  # fmt: skip
    async def events(
        request: Request,
        run: Annotated[str | None, Query(description="Only this run's changes")] = None,
        since: Annotated[int, Query(ge=-1, description="Version already seen (-1: all)")] = -1,
        last_event_id: Annotated[str | None, Header()] = None,
    ) -> StreamingResponse:
        """Changes of runs as Server-Sent Events, from version ``since`` on."""
        version = since
        if last_event_id and last_event_id.isdigit():
            version = int(last_event_id)
        headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
        return StreamingResponse(changes(request, version, run), media_type="text/event-stream",
                                 headers=headers)  # fmt: skip

    return router
