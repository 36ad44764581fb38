"""The Tiled writer's retry policy (`consumers.tiled.retry`) against a Tiled that is not there.

Real transport errors (a closed loopback port) through tiled's own client retries
and ours; what is checked is that shutdown ends both at once.
"""

from __future__ import annotations

import threading
import time

import httpx
import pytest
from tiled.client.utils import retry_context

from runstream.consumers.tiled.retry import TiledRetry, WriterStoppingError
from tests.kafka_tools import free_port


def _unreachable() -> None:
    httpx.get(f"http://127.0.0.1:{free_port()}/api/v1/", timeout=1)


def _stop_soon(stopping: threading.Event, after: float = 0.5) -> None:
    threading.Timer(after, stopping.set).start()


def test_an_outage_is_waited_out_until_shutdown_ends_the_wait() -> None:
    stopping = threading.Event()
    retry = TiledRetry(stopping)
    _stop_soon(stopping, 1.5)
    began = time.monotonic()
    with pytest.raises(WriterStoppingError, match="run R: create run not done"):
        retry(_unreachable, "create run", "R")
    assert time.monotonic() - began < 5


def _client_retrying(fail_first: int) -> int:
    """A call as tiled's client makes it, under its own retries: its tries."""
    tries = 0
    for attempt in retry_context():
        with attempt:
            tries += 1
            if tries <= fail_first:
                _unreachable()
    return tries


def test_shutdown_interrupts_the_clients_own_retries() -> None:
    """Without the hook tiled's client would go on for up to 45 s."""
    stopping = threading.Event()
    retry = TiledRetry(stopping)  # installs the hook for the process
    _stop_soon(stopping)
    began = time.monotonic()
    with pytest.raises(WriterStoppingError):
        retry(lambda: _client_retrying(fail_first=1000), "read", "R")
    assert time.monotonic() - began < 10


def test_a_stopped_writer_leaves_the_others_retries_alone() -> None:
    """The hook is the process's; a writer stopped before must not cut another's tries."""
    stopped = threading.Event()
    TiledRetry(stopped)
    stopped.set()
    assert TiledRetry(threading.Event())(lambda: _client_retrying(2), "read", "R") == 3


def test_a_refused_request_is_not_retried() -> None:
    calls = []

    def refused() -> None:
        calls.append(1)
        request = httpx.Request("POST", "http://127.0.0.1/")
        raise httpx.HTTPStatusError("403", request=request,
                                    response=httpx.Response(403, request=request))  # fmt: skip

    with pytest.raises(httpx.HTTPStatusError):
        TiledRetry(threading.Event())(refused, "append", "R")
    assert len(calls) == 1


def test_a_request_that_succeeds_on_a_later_try_returns_its_answer() -> None:
    answers = iter([httpx.ConnectError("down"), httpx.ConnectError("down"), "ok"])

    def flaky() -> str:
        answer = next(answers)
        if isinstance(answer, Exception):
            raise answer
        return answer

    assert TiledRetry(threading.Event())(flaky, "read", "R") == "ok"
