"""A fan-out of engine events (state, task changes, runs opened and closed) to live streams.

Events are published from any thread; each listener is an asyncio queue drained by
one Server-Sent Events response. A listener that falls behind is dropped rather
than let it hold memory or slow the RunEngine.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections.abc import AsyncIterator
from typing import Any

log = logging.getLogger(__name__)

LISTENER_BACKLOG = 1000


class EventHub:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._listeners: dict[asyncio.Queue, asyncio.AbstractEventLoop] = {}

    def publish(self, kind: str, **data: Any) -> None:
        event = {"event": kind, "time": time.time(), **data}
        with self._lock:
            listeners = list(self._listeners.items())
        for queue, loop in listeners:
            try:
                loop.call_soon_threadsafe(self._offer, queue, event)
            except RuntimeError:  # the listener's loop is closed
                self._drop(queue)

    def _offer(self, queue: asyncio.Queue, event: dict[str, Any]) -> None:
        try:
            queue.put_nowait(event)
        except asyncio.QueueFull:
            log.warning("an event listener fell %d events behind; dropped", LISTENER_BACKLOG)
            self._drop(queue)
            queue.put_nowait(None) if not queue.full() else None

    def _drop(self, queue: asyncio.Queue) -> None:
        with self._lock:
            self._listeners.pop(queue, None)

    async def stream(self, first: dict[str, Any]) -> AsyncIterator[str]:
        """SSE lines: ``first`` (the current state), then every event as it happens."""
        queue: asyncio.Queue = asyncio.Queue(LISTENER_BACKLOG)
        with self._lock:
            self._listeners[queue] = asyncio.get_running_loop()
        try:
            yield _sse(first)
            while True:
                try:
                    event = await asyncio.wait_for(queue.get(), timeout=15)
                except TimeoutError:
                    yield ": keep-alive\n\n"
                    continue
                if event is None:
                    return
                yield _sse(event)
        finally:
            self._drop(queue)


def _sse(event: dict[str, Any]) -> str:
    return f"event: {event['event']}\ndata: {json.dumps(event, default=str)}\n\n"
