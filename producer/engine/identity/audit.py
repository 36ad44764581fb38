"""The audit log: who changed what, when, from where, and what the engine answered.

Every request that may change state (any method but GET, HEAD and OPTIONS) and reaches a
route is recorded by one ASGI middleware once the answer is sent: refusals (401, 403, 422)
as well as changes, since an attempt is worth knowing about too. An entry holds the
caller's subject and role (``anonymous`` when no credential authenticated), the method and
path (never the query string), the task or key id the change concerns, the status code,
the refusal's message, and the client address. Headers, bodies, tokens and keys are never
stored. The log is a SQLite file of its own (``<home>/engine/audit.db`` by default).
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

#: Methods that only read: not audited.
READS = frozenset({"GET", "HEAD", "OPTIONS"})
#: Most of an answer's body read for the ids it names (answers that change state are small).
BODY_LIMIT = 256 * 1024
#: Longest refusal message kept.
DETAIL_LIMIT = 500

_SCHEMA = """
CREATE TABLE IF NOT EXISTS audit (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    time REAL NOT NULL,
    subject TEXT NOT NULL,
    role TEXT,
    via TEXT,
    method TEXT NOT NULL,
    path TEXT NOT NULL,
    task_id TEXT,
    key_id TEXT,
    status INTEGER NOT NULL,
    detail TEXT,
    client TEXT
);
CREATE INDEX IF NOT EXISTS audit_subject ON audit (subject);
"""
_COLUMNS = ("time", "subject", "role", "via", "method", "path", "task_id", "key_id",
            "status", "detail", "client")  # fmt: skip


class AuditLog:
    """Entries in SQLite; ``path=None`` keeps them in memory (tests, embedded apps)."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
        target = str(path) if path is not None else ":memory:"
        self._db = sqlite3.connect(target, check_same_thread=False, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        self._lock = threading.Lock()
        with self._lock:
            if path is not None:  # NORMAL: no fsync per entry (5 ms here), safe from crashes
                self._db.execute("PRAGMA journal_mode=WAL")
                self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(_SCHEMA)
        if path is not None:
            path.chmod(0o600)

    def record(self, **entry: Any) -> None:
        """Add an entry (the keys of `_COLUMNS`; ``time`` defaults to now)."""
        entry.setdefault("time", time.time())
        values = tuple(entry.get(c) for c in _COLUMNS)
        with self._lock:
            self._db.execute(
                f"INSERT INTO audit ({', '.join(_COLUMNS)}) "  # noqa: S608 - fixed names
                f"VALUES ({', '.join('?' * len(_COLUMNS))})",
                values,
            )

    def page(
        self, page: int = 1, size: int = 100, subject: str | None = None
    ) -> tuple[list[dict[str, Any]], int]:
        """One page of entries, newest first, and how many there are in all."""
        where, params = ("WHERE subject = ?", (subject,)) if subject else ("", ())
        with self._lock:
            count = f"SELECT COUNT(*) FROM audit {where}"  # noqa: S608 - fixed text
            total = self._db.execute(count, params).fetchone()[0]
            rows = self._db.execute(
                f"SELECT * FROM audit {where} ORDER BY seq DESC LIMIT ? OFFSET ?",  # noqa: S608
                (*params, size, (page - 1) * size),
            ).fetchall()
        return [dict(r) for r in rows], int(total)

    def close(self) -> None:
        with self._lock:
            self._db.close()


class AuditTrail:
    """ASGI middleware: records each state-changing request that reached a route."""

    def __init__(self, app: Any, log: AuditLog) -> None:
        self.app, self.log = app, log

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["method"] in READS:
            return await self.app(scope, receive, send)
        answer: dict[str, Any] = {"status": 500, "json": False}
        body = bytearray()

        async def watched(message: dict) -> None:
            if message["type"] == "http.response.start":
                answer["status"] = message["status"]
                headers = dict(message.get("headers", ()))
                answer["json"] = headers.get(b"content-type", b"").startswith(b"application/json")
            elif message["type"] == "http.response.body" and len(body) < BODY_LIMIT:
                body.extend(message.get("body", b""))
            await send(message)

        try:
            await self.app(scope, receive, watched)
        finally:
            if "endpoint" in scope and answer["status"] != 405:
                self._record(scope, answer["status"], bytes(body) if answer["json"] else b"")

    def _record(self, scope: dict, status: int, body: bytes) -> None:
        identity = scope.get("state", {}).get("identity")
        named = _named(body)
        params = scope.get("path_params") or {}
        client = scope.get("client")
        try:
            self.log.record(
                subject=identity.subject if identity is not None else "anonymous",
                role=identity.role if identity is not None else None,
                via=identity.via if identity is not None else None,
                method=scope["method"],
                path=scope.get("path", ""),
                task_id=params.get("task_id") or named.get("task_id"),
                key_id=params.get("key_id") or named.get("key_id"),
                status=status,
                detail=named.get("detail") if status >= 400 else None,
                client=client[0] if client else None,
            )
        except sqlite3.Error:
            logger.exception("could not record %s %s in the audit log", scope["method"],
                             scope.get("path"))  # fmt: skip


def _named(body: bytes) -> dict[str, str]:
    """The task and key ids an answer names (several space-separated for a batch or a cleared
    queue), and an error answer's message if text (field errors may echo the request)."""
    try:
        data = json.loads(body) if body else None
    except ValueError:
        return {}
    items = [data] if isinstance(data, dict) else data if isinstance(data, list) else []
    if isinstance(data, dict):  # a batch answer: {"tasks": [...]} and the like
        items += [v for value in data.values() if isinstance(value, list) for v in value]
    found: dict[str, str] = {}
    for field in ("task_id", "key_id"):
        ids = [i[field] for i in items if isinstance(i, dict) and isinstance(i.get(field), str)]
        listed = data.get(f"{field}s") if isinstance(data, dict) else None  # {"task_ids": [...]}
        ids += [i for i in listed if isinstance(i, str)] if isinstance(listed, list) else []
        if ids:
            found[field] = " ".join(dict.fromkeys(ids))[:2000]
    if isinstance(data, dict) and isinstance(data.get("detail"), str):
        found["detail"] = data["detail"][:DETAIL_LIMIT]
    return found
