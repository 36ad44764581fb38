"""Waiting for an engine task to reach a state, over any HTTP client."""

from __future__ import annotations

import time
from collections.abc import Callable


def wait_for_task(get: Callable[[str], dict], task_id: str, states: tuple[str, ...],
                  timeout: float, pause: float = 0.05) -> dict:  # fmt: skip
    """Poll ``GET /tasks/{task_id}`` (through ``get(path) -> json``) until a state in ``states``."""
    deadline = time.monotonic() + timeout
    task: dict = {}
    while time.monotonic() < deadline:
        task = get(f"/tasks/{task_id}")
        if task["state"] in states:
            return task
        time.sleep(pause)
    raise AssertionError(f"task {task_id} never reached {states}: {task}")
