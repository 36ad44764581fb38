"""The Tiled writer's one retry policy: wait out an outage, give up on a failing request, stop
when the service stops.

Blocking the consumer while Tiled is away is the point: the runtime commits no
offset past data that is not written, so nothing is lost. The policy lives here
only: tiled's client would otherwise retry each request again inside (stamina,
up to 45 s, deaf to shutdown), so the service switches that off
(`client_retries_off`) and every request the writer makes goes through
`TiledRetry`:

* unreachable (transport errors): retried for as long as it takes, backoff
  from 0.5 s doubling to 10 s with jitter;
* 5xx or 429 answers: a server failing on this request, retried 5 times in all;
* anything else (4xx): raised at once;
* shutdown: the wait between tries ends at once and `WriterStoppingError` is
  raised (the run is replayed by the next owner of its partition).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import TypeVar

import httpx
import stamina
from runstream.schemas.errors import RunstreamError
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception,
    wait_exponential_jitter,
)

log = logging.getLogger(__name__)
T = TypeVar("T")
FIRST_BACKOFF = 0.5
MAX_BACKOFF = 10.0
#: A server that answers 5xx this many times in a row is failing on this request, not away.
SERVER_ERROR_TRIES = 5


class WriterStoppingError(RunstreamError, RuntimeError):
    """The service is shutting down while Tiled is unreachable; the run will be replayed."""


def client_retries_off() -> None:
    """Switch off tiled's client-side retries (stamina, process-wide): `TiledRetry` decides."""
    stamina.set_active(False)


def _server_error(exc: BaseException) -> bool:
    if isinstance(exc, httpx.HTTPStatusError):
        code = exc.response.status_code
        return code >= 500 or code == 429
    return False


def _retryable(exc: BaseException) -> bool:
    return isinstance(exc, httpx.TransportError) or _server_error(exc)


class TiledRetry:
    """Calls to Tiled under the policy of this module, interrupted by ``stopping``."""

    def __init__(self, stopping: threading.Event) -> None:
        self.stopping = stopping

    def __call__(self, call: Callable[[], T], what: str, run: str) -> T:
        def give_up(state: RetryCallState) -> bool:
            exc = state.outcome.exception() if state.outcome else None
            if _server_error(exc) and state.attempt_number >= SERVER_ERROR_TRIES:
                return True
            if self.stopping.is_set():
                raise WriterStoppingError(f"run {run}: {what} not done, shutting down") from exc
            return False

        def waiting(state: RetryCallState) -> None:
            if state.attempt_number == 1:  # said once, not per try
                exc = state.outcome.exception() if state.outcome else None
                log.warning("run %s: %s failed (%s); retrying until Tiled answers", run, what, exc)

        retrying = Retrying(
            retry=retry_if_exception(_retryable),
            stop=give_up,
            wait=wait_exponential_jitter(initial=FIRST_BACKOFF, max=MAX_BACKOFF, jitter=0.5),
            sleep=self.stopping.wait,
            before_sleep=waiting,
            reraise=True,
        )
        result = retrying(call)
        if retrying.statistics.get("attempt_number", 1) > 1:
            log.info("run %s: %s done after %d tries", run, what,
                     retrying.statistics["attempt_number"])  # fmt: skip
        return result
