"""Running the ``runstream`` command as a user would: a process of its own, its output kept."""

from __future__ import annotations

import subprocess
import sys

#: The command, from this interpreter's environment (the checkout under test).
RUNSTREAM = [sys.executable, "-m", "runstream.cli"]


def run_runstream(env: dict, *args: str, timeout: float = 180) -> subprocess.CompletedProcess:
    """``runstream ARGS`` to its end, with ``env`` as its whole environment."""
    return subprocess.run(
        [*RUNSTREAM, *args], env=env, capture_output=True, text=True, timeout=timeout
    )
