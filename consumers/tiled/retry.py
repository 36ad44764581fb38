"""The Tiled writer's retry policy, decided here: wait out an outage, give up on a failing
request, stop when the service stops.

Blocking the consumer while Tiled is away is the point: the runtime commits no
offset past data that is not written, so nothing is lost. Two layers, each doing
what only it can:

* tiled's client retries each request itself (stamina; its own settings,
  ``TILED_RETRY_ATTEMPTS`` = 10 tries within ``TILED_RETRY_TIMEOUT`` = 45 s) and
  knows which requests are safe to repeat: a create whose answer was lost is
  adopted, an append that may have been applied is not sent twice. Shutdown
  interrupts it: a retry hook raises `WriterStoppingError` before its next try.
* past that window (Tiled down for longer), `TiledRetry` calls again for as long
  as it takes, backoff from 0.5 s doubling to 10 s with jitter, the wait ended at
  once by shutdown. A request Tiled still answers with 5xx or 429 is a server
  failing on it: tried once more (appends, which the client does not repeat, are
  made safe to repeat by the writer), then given up. Anything else (4xx) is
  raised at once.

Each outage is said once per request (when it starts and when it is over), not
per try.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from contextvars import ContextVar
from typing import TypeVar

import httpx
import stamina.instrumentation
from tenacity import RetryCallState, Retrying, retry_if_exception, wait_exponential, wait_random

from runstream.schemas.errors import RunstreamError

log = logging.getLogger(__name__)
T = TypeVar("T")
FIRST_BACKOFF = 0.5
MAX_BACKOFF = 10.0
#: Rounds (each the client's own tries) after which a 5xx answer means a failing request.
SERVER_ERROR_TRIES = 2


class WriterStoppingError(RunstreamError, RuntimeError):
    """The service is shutting down while Tiled is unreachable; the run will be replayed."""


#: The stopping event of the writer whose call is under way in this thread: a client's
#: retry hook is global to the process, and must stop only that writer's retries.
_calling: ContextVar[threading.Event | None] = ContextVar("runstream_tiled_call", default=None)
_hook_lock = threading.Lock()


def _stop_client_retries(details: stamina.instrumentation.RetryDetails) -> None:
    """A stamina retry hook: no further try of tiled's client once its writer stops."""
    stopping = _calling.get()
    if stopping is not None and stopping.is_set():
        raise WriterStoppingError(f"not retrying {details.name}: shutting down")


def _interrupt_client_retries() -> None:
    with _hook_lock:
        hooks = stamina.instrumentation.get_on_retry_hooks()
        if _stop_client_retries not in hooks:
            stamina.instrumentation.set_on_retry_hooks([*hooks, _stop_client_retries])


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
        _interrupt_client_retries()

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
                log.warning("run %s: %s failed (%s); retrying until Tiled answers",
                            run, what, exc)  # fmt: skip

        retrying = Retrying(
            retry=retry_if_exception(_retryable),
            stop=give_up,
            wait=wait_exponential(multiplier=FIRST_BACKOFF, max=MAX_BACKOFF) + wait_random(0, 0.5),
            sleep=self.stopping.wait,
            before_sleep=waiting,
            reraise=True,
        )
        calling = _calling.set(self.stopping)
        try:
            result = retrying(call)
        finally:
            _calling.reset(calling)
        if retrying.statistics.get("attempt_number", 1) > 1:
            log.info("run %s: %s done after %d tries", run, what,
                     retrying.statistics["attempt_number"])  # fmt: skip
        return result
