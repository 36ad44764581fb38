"""One way for a test to wait: poll what it waits for until it holds, never a fixed sleep."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

#: The shortest pause between two looks at a condition: a test goes on soon after it holds.
INTERVAL = 0.02
#: How much of the last value or exception seen a failure shows.
SHOWN = 2000


def eventually(
    condition: Callable[[], T],
    timeout: float,
    message: str | Callable[[], str],
    *,
    fail_fast: Callable[[], object] | None = None,
    ignoring: type[BaseException] | tuple[type[BaseException], ...] = (),
    interval: float = INTERVAL,
) -> T:
    """The first truthy value of ``condition()``, polled for up to ``timeout`` seconds.

    Fails the test (AssertionError) saying what it waited for (``message``, a phrase, or
    a callable giving one when it fails, e.g. with a log) and the last value or exception
    seen; at once when ``fail_fast()`` is truthy (e.g. `process_ended`), with that value.
    Exceptions of the ``ignoring`` types mean "not yet"; any other is raised at once.
    The pause between polls is ``interval``, or as long as the last poll took if longer,
    so a slow condition (a Tiled read, a container exec) takes at most half the machine.
    """
    deadline = time.monotonic() + timeout
    while True:
        began = time.monotonic()
        try:
            last: object = condition()
        except ignoring as exc:
            last = exc
        else:
            if last:
                return last  # type: ignore[return-value]
        if fail_fast is not None and (why := fail_fast()):
            _fail(f"gave up waiting for {_said(message)}: {why}", last)
        now = time.monotonic()
        if now >= deadline:
            _fail(f"timed out after {timeout:g} s waiting for {_said(message)}", last)
        time.sleep(min(max(interval, now - began), max(deadline - now, 0.0)))


def process_ended(
    proc: subprocess.Popen, output: Callable[[], str] | None = None
) -> Callable[[], str | None]:
    """A ``fail_fast``: the process that was to make the condition true has ended (its exit
    code and, from ``output``, e.g. its log, what it said)."""

    def ended() -> str | None:
        if proc.poll() is None:
            return None
        said = output() if output is not None else ""
        return f"the process ended with code {proc.returncode}" + (f":\n{said}" if said else "")

    return ended


def _said(message: str | Callable[[], str]) -> str:
    return message() if callable(message) else message


def _fail(reason: str, last: object) -> None:
    shown = repr(last)
    if len(shown) > SHOWN:
        shown = shown[:SHOWN] + " ..."
    raise AssertionError(f"{reason}\nlast seen: {shown}")
