"""The task store: queue order, removal, and tasks cut short by a restart."""

from __future__ import annotations

from pathlib import Path

import pytest

from runstream.producer.engine.cli import parse_params
from runstream.producer.engine.store import RESTART_REASON, TaskStore
from runstream.schemas import CommandError


def test_queue_positions_and_removal(tmp_path: Path) -> None:
    store = TaskStore(tmp_path / "tasks.db")
    a, b, c = (store.add("count", [["det"]], {"num": n})["task_id"] for n in (1, 2, 3))
    assert [t["position"] for t in store.queue()] == [0, 1, 2]
    assert store.remove(b) is True and store.remove(b) is False
    assert store.queue_ids() == [a, c]
    assert store.get(c)["position"] == 1
    assert store.get(b)["state"] == "removed"


def test_a_task_started_while_it_is_read_is_read_whole(tmp_path: Path, monkeypatch) -> None:
    """The worker may start a task between reading its row and reading the queue."""
    store = TaskStore(tmp_path / "tasks.db")
    task_id = store.add("count", [["det"]], {})["task_id"]
    queue_ids = store.queue_ids

    def started_meanwhile() -> list[str]:
        store.update(task_id, state="running")
        return queue_ids()

    monkeypatch.setattr(store, "queue_ids", started_meanwhile)
    task = store.get(task_id)
    assert task["state"] == "queued" and task["position"] == 0  # one consistent reading


def test_running_task_is_interrupted_by_a_restart(tmp_path: Path) -> None:
    store = TaskStore(tmp_path / "tasks.db")
    running = store.add("nested_runs", [], {"npts": 3})["task_id"]
    waiting = store.add("count", [["det"]], {})["task_id"]
    runs = [{"uid": "u1", "run_key": "run_1", "scan_id": 1, "exit_status": None}]
    store.update(running, state="running", runs=runs)
    store.close()
    again = TaskStore(tmp_path / "tasks.db")
    assert again.recover() == [running]
    task = again.get(running)
    assert task["state"] == "interrupted"
    assert task["runs"][0]["exit_status"] == "abort"
    assert task["runs"][0]["reason"] == RESTART_REASON
    assert again.queue_ids() == [waiting]


def test_submit_parameters_parse_json_or_text() -> None:
    assert parse_params(["--npts", "5", "--detectors", '["det"]', "--note", "hi"]) == {
        "npts": 5,
        "detectors": ["det"],
        "note": "hi",
    }
    with pytest.raises(CommandError, match="--name value"):
        parse_params(["npts", "5"])
    with pytest.raises(CommandError):
        parse_params(["--npts"])
