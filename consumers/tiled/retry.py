"""Calls to Tiled that wait out an outage: retried with backoff, never given up silently.

Blocking the consumer while Tiled is away is the point: the runtime commits no
offset past data that is not written, so nothing is lost.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import TypeVar

import httpx
from runstream.schemas.errors import RunstreamError

log = logging.getLogger(__name__)
T = TypeVar("T")
MAX_BACKOFF = 10.0
#: A server that answers 5xx this many times in a row is failing on this request, not away.
SERVER_ERROR_TRIES = 5


class WriterStoppingError(RunstreamError, RuntimeError):
    """The service is shutting down while Tiled is unreachable; the run will be replayed."""


def _server_error(exc: BaseException) -> bool:
    if isinstance(exc, httpx.HTTPStatusError):
        code = exc.response.status_code
        return code >= 500 or code == 429
    return False


def with_retry(call: Callable[[], T], what: str, run: str, stopping: threading.Event) -> T:
    """Retry while Tiled is unreachable (for as long as it takes) or answers 5xx (a few times)."""
    delay = 0.5
    server_errors = 0
    while True:
        try:
            return call()
        except Exception as exc:
            if _server_error(exc):
                server_errors += 1
                if server_errors >= SERVER_ERROR_TRIES:
                    raise
            elif not isinstance(exc, httpx.TransportError):
                raise
            if stopping.is_set():
                raise WriterStoppingError(f"run {run}: {what} not done, shutting down") from exc
            log.warning("run %s: %s failed (%s); retrying in %.1f s", run, what, exc, delay)
            stopping.wait(delay)
            delay = min(delay * 2, MAX_BACKOFF)
