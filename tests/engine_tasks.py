"""Waiting for an engine task to reach a state, over any HTTP client."""

from __future__ import annotations

from collections.abc import Callable

from tests.waiting import eventually


def wait_for_task(get: Callable[[str], dict], task_id: str, states: tuple[str, ...],
                  timeout: float) -> dict:  # fmt: skip
    """``GET /tasks/{task_id}`` (through ``get(path) -> json``) once its state is in ``states``."""
    task: dict = {}

    def reached() -> dict | None:
        task.clear()
        task.update(get(f"/tasks/{task_id}"))
        return dict(task) if task["state"] in states else None

    return eventually(reached, timeout, lambda: f"task {task_id} to reach {states}: {task}")
