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
from collections.abc import Iterator
from contextlib import contextmanager
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
    submitted_by TEXT,
    rank REAL,
    edits TEXT NOT NULL DEFAULT '[]'
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


#: Columns added since the first stores, with their definitions (added when missing).
_ADDED = {
    "submitted_by": "TEXT",
    "rank": "REAL",
    "edits": "TEXT NOT NULL DEFAULT '[]'",
}


class NotQueuedError(ValueError):
    """A queue change names a task that is not (or no longer) queued."""


class TaskStore:
    """Tasks by id; the queue is the queued tasks by rank (submission order unless moved).

    A moved task takes a rank between its new neighbours', so a move writes one row; only
    when floats leave no room between two ranks is the queue numbered again.
    """

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
            for name, definition in _ADDED.items():  # a store from before that column
                if name not in columns:
                    self._db.execute(f"ALTER TABLE tasks ADD COLUMN {name} {definition}")
            self._db.execute("UPDATE tasks SET rank = seq WHERE rank IS NULL")
            self._db.execute("CREATE INDEX IF NOT EXISTS tasks_queue ON tasks (state, rank)")

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # -- writes ------------------------------------------------------------------

    def add(
        self, plan: str, args: list[Any], kwargs: dict[str, Any], submitted_by: str | None = None
    ) -> dict[str, Any]:
        return self.add_many([(plan, args, kwargs)], submitted_by)[0]

    def add_many(
        self, requests: list[tuple[str, list[Any], dict[str, Any]]], submitted_by: str | None
    ) -> list[dict[str, Any]]:
        """Queue every request (plan, args, kwargs) in order, in one transaction: all or none."""
        ids = [uuid.uuid4().hex for _ in requests]
        now = time.time()
        rows = [
            (task_id, plan, json.dumps(args), json.dumps(kwargs), QUEUED, now, submitted_by)
            for task_id, (plan, args, kwargs) in zip(ids, requests, strict=True)
        ]
        with self._lock, self._transaction():
            self._db.executemany(
                "INSERT INTO tasks (id, plan, args, kwargs, state, submitted, submitted_by, rank) "
                "VALUES (?,?,?,?,?,?,?,"  # ranked after every queued task
                "(SELECT COALESCE(MAX(rank), 0) + 1 FROM tasks WHERE state = 'queued'))",
                rows,
            )
        return [self.get(task_id) for task_id in ids]  # type: ignore[misc]

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

    def claim(self, task_id: str) -> dict[str, Any] | None:
        """Mark a queued task running, at once: no edit slips in between; None if not queued."""
        with self._lock:
            cur = self._db.execute(
                "UPDATE tasks SET state = ?, started = ? WHERE id = ? AND state = ?",
                (RUNNING, time.time(), task_id, QUEUED),
            )
        return self.get(task_id) if cur.rowcount == 1 else None

    def edit(self, task_id: str, fields: dict[str, Any], record: dict[str, Any]) -> bool:
        """Change a queued task's plan/args/kwargs and append ``record`` to its edits;
        False when it is not queued (any more)."""
        values = {k: v if k == "plan" else json.dumps(v) for k, v in fields.items()}
        names = "".join(f"{k} = ?, " for k in values)
        with self._lock:
            cur = self._db.execute(
                f"UPDATE tasks SET {names}edits = json_insert(edits, '$[#]', json(?)) "  # noqa: S608
                "WHERE id = ? AND state = ?",
                (*values.values(), json.dumps(record), task_id, QUEUED),
            )
        return cur.rowcount == 1

    def move(
        self,
        task_id: str,
        *,
        before: str | None = None,
        after: str | None = None,
        position: int | None = None,
    ) -> int:
        """Move a queued task before or after another queued one, or to a position (past the
        end: last); its new position. `NotQueuedError` names a task that is not queued."""
        with self._lock, self._transaction():
            ranked = self._db.execute(
                "SELECT id, rank FROM tasks WHERE state = ? ORDER BY rank, seq", (QUEUED,)
            ).fetchall()
            ids = [r["id"] for r in ranked]
            for name in (task_id, before, after):
                if name is not None and name not in ids:
                    raise NotQueuedError(f"task {name} is not queued")
            anchor = before or after
            if anchor == task_id:  # before or after itself: where it is
                return ids.index(task_id)
            del ranked[ids.index(task_id)]
            ids.remove(task_id)
            if anchor is not None:
                position = ids.index(anchor) + (after is not None)
            place = min(position or 0, len(ids))
            ranks = [r["rank"] for r in ranked]
            rank = _between(ranks, place)
            if rank is None:  # no float between the neighbours' ranks: number them again
                ranks = [float(i) for i in range(1, len(ids) + 1)]
                renumbered = zip(ranks, ids, strict=True)
                self._db.executemany("UPDATE tasks SET rank = ? WHERE id = ?", renumbered)
                rank = _between(ranks, place)
            self._db.execute("UPDATE tasks SET rank = ? WHERE id = ?", (rank, task_id))
        return place

    def clear_queue(self) -> list[str]:
        """Take every queued task off the queue (as removed); their ids in queue order."""
        with self._lock, self._transaction():
            ids = self._queued()
            self._db.execute(
                "UPDATE tasks SET state = 'removed', ended = ? WHERE state = ?",
                (time.time(), QUEUED),
            )
        return ids

    def clear_history(self) -> int:
        """Forget every task that has ended; how many."""
        marks = ",".join("?" * len(FINAL))
        with self._lock:
            cur = self._db.execute(f"DELETE FROM tasks WHERE state IN ({marks})", FINAL)  # noqa: S608
        return cur.rowcount

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        """One SQLite transaction (the caller holds the lock): committed whole or not at all."""
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

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
                task["position"] = self._db.execute(
                    "SELECT COUNT(*) FROM tasks WHERE state = ? "
                    "AND (rank < ? OR (rank = ? AND seq < ?))",
                    (QUEUED, row["rank"], row["rank"], row["seq"]),
                ).fetchone()[0]
        return task

    def queue_ids(self) -> list[str]:
        with self._lock:
            return self._queued()

    def _queued(self) -> list[str]:
        """The queued tasks' ids in queue order; the caller holds the lock."""
        rows = self._db.execute(
            "SELECT id FROM tasks WHERE state = ? ORDER BY rank, seq", (QUEUED,)
        ).fetchall()
        return [r["id"] for r in rows]

    def queue(self) -> list[dict[str, Any]]:
        return json.loads(self.queue_json())

    def queue_json(self) -> str:
        """The queued tasks with their positions, as a JSON array made without parsing a row:
        the columns holding JSON are spliced in as they are (1,000 tasks in a few ms)."""
        with self._lock:
            cursor = self._db.cursor()
            cursor.row_factory = None  # plain tuples: no sqlite3.Row per task
            rows = cursor.execute(_QUEUE_JSON, (QUEUED,)).fetchall()
        return "[" + ",".join(_task_json(row, i) for i, row in enumerate(rows)) + "]"

    def list(self, state: str | None = None, limit: int = 1000) -> list[dict[str, Any]]:
        query, params = "SELECT * FROM tasks", ()
        if state is not None:
            query, params = query + " WHERE state = ?", (state,)
        with self._lock:
            rows = self._db.execute(f"{query} ORDER BY seq DESC LIMIT ?", (*params, limit))
            return [_task(r) for r in rows.fetchall()][::-1]

    def history(
        self,
        *,
        user: str | None = None,
        plan: str | None = None,
        state: str | None = None,
        offset: int = 0,
        limit: int = 50,
    ) -> tuple[int, list[dict[str, Any]]]:
        """Ended tasks, newest first, filtered by submitter, plan and state: (total, page)."""
        marks = ",".join("?" * len(FINAL))
        where, params = [f"state IN ({marks})"], list(FINAL)
        for column, value in (("submitted_by", user), ("plan", plan), ("state", state)):
            if value is not None:
                where.append(f"{column} = ?")
                params.append(value)
        clause = " AND ".join(where)
        with self._lock:
            total = self._db.execute(
                f"SELECT COUNT(*) FROM tasks WHERE {clause}",  # noqa: S608 - columns are constants
                params,
            ).fetchone()[0]
            rows = self._db.execute(
                f"SELECT * FROM tasks WHERE {clause} "  # noqa: S608
                "ORDER BY COALESCE(ended, submitted) DESC, seq DESC LIMIT ? OFFSET ?",
                (*params, limit, offset),
            ).fetchall()
        return int(total), [_task(r) for r in rows]

    def counts(self) -> dict[str, int]:
        with self._lock:
            rows = self._db.execute("SELECT state, COUNT(*) AS n FROM tasks GROUP BY state")
            return {r["state"]: r["n"] for r in rows.fetchall()}


def _between(ranks: list[float], place: int) -> float | None:
    """A rank for a task put at ``place`` among ``ranks`` (in order); None if none is left."""
    if not ranks:
        return 1.0
    if place == 0:
        return ranks[0] - 1
    if place >= len(ranks):
        return ranks[-1] + 1
    low, high = ranks[place - 1], ranks[place]
    middle = (low + high) / 2
    return middle if low < middle < high else None


#: A task's columns for `_task_json`: strings quoted as JSON by SQLite, JSON columns as held.
_QUEUE_JSON = (
    "SELECT json_quote(id), json_quote(plan), args, kwargs, json_quote(state), submitted, "
    "started, ended, json_quote(exit_status), json_quote(reason), runs, "
    "json_quote(submitted_by), edits FROM tasks WHERE state = ? ORDER BY rank, seq"
)


def _task_json(row: tuple, position: int) -> str:
    """`_task` of a `_QUEUE_JSON` row with its position, as JSON text."""
    (task_id, plan, args, kwargs, state, submitted, started, ended, exit_status, reason, runs,
     submitted_by, edits) = row  # fmt: skip
    return (
        f'{{"task_id": {task_id}, "plan": {plan}, "args": {args}, "kwargs": {kwargs}, '
        f'"state": {state}, "submitted": {_number(submitted)}, "started": {_number(started)}, '
        f'"ended": {_number(ended)}, "exit_status": {exit_status}, "reason": {reason}, '
        f'"runs": {runs}, "submitted_by": {submitted_by}, "edits": {edits}, '
        f'"position": {position}}}'
    )


def _number(value: float | None) -> str:
    return "null" if value is None else repr(value)


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
        "edits": json.loads(row["edits"]),
    }
