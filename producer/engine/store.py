"""The queue and the task history in SQLite, so a restart of the engine loses neither.

One connection, serialised by a lock: the HTTP threads, the worker thread and the
RunEngine's callbacks all write here, and every write is small.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
import time
import uuid
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

QUEUED, RUNNING, PAUSED = "queued", "running", "paused"
FINAL = ("completed", "failed", "aborted", "stopped", "halted", "interrupted", "removed")
#: The reason written into the task history for runs of a task cut short by a restart.
RESTART_REASON = "engine restarted while the task ran; the outbox recovery closed the run"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS tasks (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT UNIQUE NOT NULL,
    plan TEXT NOT NULL,
    args TEXT NOT NULL,
    kwargs TEXT NOT NULL,
    state TEXT NOT NULL,
    submitted REAL NOT NULL,
    started REAL,
    ended REAL,
    exit_status TEXT,
    reason TEXT,
    runs TEXT NOT NULL DEFAULT '[]',
    submitted_by TEXT
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


class TaskStore:
    """Tasks by id; the queue is the queued tasks in submission order."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        self._lock = threading.Lock()
        with self._lock:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.executescript(_SCHEMA)
            columns = {r["name"] for r in self._db.execute("PRAGMA table_info(tasks)")}
            if "submitted_by" not in columns:  # a store from before identities
                self._db.execute("ALTER TABLE tasks ADD COLUMN submitted_by TEXT")

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # -- writes ------------------------------------------------------------------

    def add(
        self, plan: str, args: list[Any], kwargs: dict[str, Any], submitted_by: str | None = None
    ) -> dict[str, Any]:
        task_id = uuid.uuid4().hex
        with self._lock:
            self._db.execute(
                "INSERT INTO tasks (id, plan, args, kwargs, state, submitted, submitted_by) "
                "VALUES (?,?,?,?,?,?,?)",
                (
                    task_id,
                    plan,
                    json.dumps(args),
                    json.dumps(kwargs),
                    QUEUED,
                    time.time(),
                    submitted_by,
                ),
            )
        return self.get(task_id)  # type: ignore[return-value]

    def update(self, task_id: str, **fields: Any) -> None:
        if "runs" in fields:
            fields["runs"] = json.dumps(fields["runs"])
        names = ", ".join(f"{k} = ?" for k in fields)
        with self._lock:
            self._db.execute(f"UPDATE tasks SET {names} WHERE id = ?", (*fields.values(), task_id))  # noqa: S608

    def remove(self, task_id: str) -> bool:
        """Take a queued task off the queue; False when it is not queued."""
        with self._lock:
            cur = self._db.execute(
                "UPDATE tasks SET state = 'removed', ended = ? WHERE id = ? AND state = ?",
                (time.time(), task_id, QUEUED),
            )
        return cur.rowcount == 1

    def recover(self) -> list[str]:
        """Mark tasks that were running when the process died as interrupted."""
        now = time.time()
        lost = [t for t in self.list() if t["state"] in (RUNNING, PAUSED)]
        for task in lost:
            runs = [
                {**r, "exit_status": "abort", "reason": RESTART_REASON}
                if r.get("exit_status") is None
                else r
                for r in task["runs"]
            ]
            self.update(
                task["task_id"],
                state="interrupted",
                ended=now,
                exit_status="abort",
                reason=RESTART_REASON,
                runs=runs,
            )
            log.warning("task %s (%s) was interrupted by a restart", task["task_id"], task["plan"])
        return [t["task_id"] for t in lost]

    def set_meta(self, key: str, value: Any) -> None:
        with self._lock:
            self._db.execute(
                "INSERT INTO meta (key, value) VALUES (?, ?) "
                "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                (key, json.dumps(value)),
            )

    # -- reads -------------------------------------------------------------------

    def meta(self, key: str, default: Any = None) -> Any:
        with self._lock:
            row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return default if row is None else json.loads(row["value"])

    def get(self, task_id: str) -> dict[str, Any] | None:
        with self._lock:  # the row and its position read together: the worker may start it
            row = self._db.execute("SELECT * FROM tasks WHERE id = ?", (task_id,)).fetchone()
            if row is None:
                return None
            task = _task(row)
            if task["state"] == QUEUED:
                task["position"] = self._queued().index(task_id)
        return task

    def queue_ids(self) -> list[str]:
        with self._lock:
            return self._queued()

    def _queued(self) -> list[str]:
        """The queued tasks' ids in queue order; the caller holds the lock."""
        rows = self._db.execute(
            "SELECT id FROM tasks WHERE state = ? ORDER BY seq", (QUEUED,)
        ).fetchall()
        return [r["id"] for r in rows]

    def queue(self) -> list[dict[str, Any]]:
        with self._lock:
            rows = self._db.execute(
                "SELECT * FROM tasks WHERE state = ? ORDER BY seq", (QUEUED,)
            ).fetchall()
        return [{**_task(r), "position": i} for i, r in enumerate(rows)]

    def list(self, state: str | None = None, limit: int = 1000) -> list[dict[str, Any]]:
        query, params = "SELECT * FROM tasks", ()
        if state is not None:
            query, params = query + " WHERE state = ?", (state,)
        with self._lock:
            rows = self._db.execute(f"{query} ORDER BY seq DESC LIMIT ?", (*params, limit))
            return [_task(r) for r in rows.fetchall()][::-1]

    def counts(self) -> dict[str, int]:
        with self._lock:
            rows = self._db.execute("SELECT state, COUNT(*) AS n FROM tasks GROUP BY state")
            return {r["state"]: r["n"] for r in rows.fetchall()}


def _task(row: sqlite3.Row) -> dict[str, Any]:
    return {
        "task_id": row["id"],
        "plan": row["plan"],
        "args": json.loads(row["args"]),
        "kwargs": json.loads(row["kwargs"]),
        "state": row["state"],
        "submitted": row["submitted"],
        "started": row["started"],
        "ended": row["ended"],
        "exit_status": row["exit_status"],
        "reason": row["reason"],
        "runs": json.loads(row["runs"]),
        "submitted_by": row["submitted_by"],
    }
