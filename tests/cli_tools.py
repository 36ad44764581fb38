"""Running the ``runstream`` command as a user would: a process of its own, its output kept."""

from __future__ import annotations

import subprocess
import sys
import threading
from typing import IO

#: The command, from this interpreter's environment (the checkout under test).
RUNSTREAM = [sys.executable, "-m", "runstream.cli"]


def run_runstream(env: dict, *args: str, timeout: float = 180) -> subprocess.CompletedProcess:
    """``runstream ARGS`` to its end, with ``env`` as its whole environment."""
    return subprocess.run(
        [*RUNSTREAM, *args], env=env, capture_output=True, text=True, timeout=timeout
    )


class Output:
    """What a running process writes to one pipe, kept line by line by a thread, so that a
    test waits on what it said (`tests.waiting.eventually`) without blocking on the pipe."""

    def __init__(self, pipe: IO[str]) -> None:
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, args=(pipe,), daemon=True)
        self._reader.start()

    def _read(self, pipe: IO[str]) -> None:
        for line in pipe:
            self.lines.append(line)

    def text(self) -> str:
        """What it said so far."""
        return "".join(self.lines)

    def line_with(self, needle: str) -> str | None:
        """The first line said so far that holds ``needle``."""
        return next((line for line in self.lines if needle in line), None)

    def whole(self, timeout: float = 30) -> str:
        """Everything it said, once the pipe closed (the process ended)."""
        self._reader.join(timeout)
        assert not self._reader.is_alive(), f"the pipe is still open:\n{self.text()}"
        return self.text()
