"""The tests' one way to wait (tests/waiting.py)."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from tests.waiting import eventually, process_ended


def test_returns_the_first_truthy_value() -> None:
    values = iter([None, 0, [], {"state": "done"}, "later"])
    assert eventually(lambda: next(values), 5, "a value") == {"state": "done"}


def test_fails_with_the_message_and_the_last_value_on_timeout() -> None:
    began = time.monotonic()
    with pytest.raises(AssertionError) as failed:
        eventually(lambda: [], 0.2, "the runs to show")
    took = time.monotonic() - began
    assert "timed out after 0.2 s waiting for the runs to show" in str(failed.value)
    assert "last seen: []" in str(failed.value)
    assert 0.2 <= took < 2


def test_a_message_may_be_computed_when_it_fails() -> None:
    log = ["starting"]
    with pytest.raises(AssertionError, match="the engine ready; its log: starting, stalled"):
        eventually(lambda: log.append("stalled"), 0.1, lambda: f"the engine ready; its log: "
                   f"{', '.join(dict.fromkeys(log))}")  # fmt: skip


def _refused() -> str:
    raise ConnectionError("refused")


def test_ignored_exceptions_mean_not_yet_and_others_are_raised() -> None:
    tries = iter([ConnectionError("refused"), ConnectionError("refused"), "up"])

    def answer() -> str:
        value = next(tries)
        if isinstance(value, Exception):
            raise value
        return value

    assert eventually(answer, 5, "the server", ignoring=ConnectionError) == "up"
    with pytest.raises(AssertionError, match=r"last seen: ConnectionError\('refused'\)"):
        eventually(_refused, 0.1, "the server", ignoring=(ConnectionError,))
    with pytest.raises(KeyError):
        eventually(lambda: {}["missing"], 5, "the key")


def test_fails_fast_when_asked() -> None:
    began = time.monotonic()
    with pytest.raises(AssertionError, match="gave up waiting for the ready file: it died"):
        eventually(lambda: False, 30, "the ready file", fail_fast=lambda: "it died")
    assert time.monotonic() - began < 1


def test_fails_fast_when_the_process_ended_saying_how() -> None:
    proc = subprocess.Popen([sys.executable, "-c", "raise SystemExit(3)"])
    proc.wait(30)
    with pytest.raises(AssertionError, match="the process ended with code 3:\nno such port"):
        eventually(lambda: False, 30, "readiness",
                   fail_fast=process_ended(proc, lambda: "no such port"))  # fmt: skip
    running = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        assert process_ended(running)() is None
    finally:
        running.kill()
        running.wait(30)


def test_a_slow_condition_is_polled_no_more_often_than_it_takes() -> None:
    calls: list[float] = []

    def slow() -> bool:
        calls.append(time.monotonic())
        time.sleep(0.1)
        return False

    with pytest.raises(AssertionError):
        eventually(slow, 0.5, "the slow thing")
    assert len(calls) >= 2 and calls[1] - calls[0] >= 0.19  # 0.1 s to poll, as long to pause
