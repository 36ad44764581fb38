"""API keys for services and scripts: a name, scopes (roles) and an expiry.

The store (SQLite, shared by the engine and ``runstream keys``) holds only the SHA-256 of
each key. A key is ``rsk_`` and 32 random bytes (URL-safe), shown once when made; it stays
valid until it expires or is revoked.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

from .roles import ROLES, Identity, highest

logger = logging.getLogger(__name__)

PREFIX = "rsk_"
_SCHEMA = """
CREATE TABLE IF NOT EXISTS api_keys (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    scopes TEXT NOT NULL,
    hash TEXT UNIQUE NOT NULL,
    created REAL NOT NULL,
    created_by TEXT NOT NULL,
    expires REAL,
    revoked REAL
);
"""


class KeyRequestError(ValueError):
    """A key request the store refuses (bad scopes, a past expiry, an unknown id)."""


def digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


class KeyStore:
    """The API keys by hash; every process opening the same file sees the same keys."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=10)
        self._db.row_factory = sqlite3.Row
        self._lock = threading.Lock()
        with self._lock:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.executescript(_SCHEMA)
        path.chmod(0o600)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def create(
        self, name: str, scopes: list[str], expires: float | None, created_by: str
    ) -> tuple[str, dict[str, Any]]:
        """A new key and its record; the key itself is never stored and never shown again."""
        if not name.strip():
            raise KeyRequestError("a key needs a name")
        unknown = sorted(set(scopes) - set(ROLES))
        if unknown or not scopes:
            raise KeyRequestError(f"scopes must be among {list(ROLES)}, got {scopes}")
        if expires is not None and expires <= time.time():
            raise KeyRequestError("the expiry is in the past")
        key, key_id = PREFIX + secrets.token_urlsafe(32), secrets.token_hex(8)
        with self._lock:
            self._db.execute(
                "INSERT INTO api_keys (id, name, scopes, hash, created, created_by, expires) "
                "VALUES (?,?,?,?,?,?,?)",
                (key_id, name, " ".join(scopes), digest(key), time.time(), created_by, expires),
            )
        logger.info("API key %s (%s) issued by %s, scopes %s", key_id, name, created_by, scopes)
        return key, self.get(key_id)  # type: ignore[return-value]

    def revoke(self, key_id: str) -> dict[str, Any]:
        """Revoke a key now (revoking twice keeps the first time)."""
        with self._lock:
            cur = self._db.execute(
                "UPDATE api_keys SET revoked = COALESCE(revoked, ?) WHERE id = ?",
                (time.time(), key_id),
            )
        if cur.rowcount != 1:
            raise KeyRequestError(f"no API key {key_id!r}")
        logger.info("API key %s revoked", key_id)
        return self.get(key_id)  # type: ignore[return-value]

    def get(self, key_id: str) -> dict[str, Any] | None:
        with self._lock:
            row = self._db.execute("SELECT * FROM api_keys WHERE id = ?", (key_id,)).fetchone()
        return None if row is None else _record(row)

    def list(self) -> list[dict[str, Any]]:
        with self._lock:
            rows = self._db.execute("SELECT * FROM api_keys ORDER BY created").fetchall()
        return [_record(r) for r in rows]

    def active(self) -> int:
        """How many keys can still authenticate."""
        with self._lock:
            row = self._db.execute(
                "SELECT COUNT(*) FROM api_keys WHERE revoked IS NULL "
                "AND (expires IS NULL OR expires > ?)",
                (time.time(),),
            ).fetchone()
        return int(row[0])

    def identify(self, key: str) -> Identity:
        """The key's identity; `LookupError` saying why when it does not authenticate."""
        with self._lock:
            row = self._db.execute(
                "SELECT * FROM api_keys WHERE hash = ?", (digest(key),)
            ).fetchone()
        if row is None:
            raise LookupError("unknown API key")
        if row["revoked"] is not None:
            raise LookupError(f"API key {row['id']} was revoked")
        if row["expires"] is not None and row["expires"] <= time.time():
            raise LookupError(f"API key {row['id']} expired")
        scopes = row["scopes"].split()
        return Identity(
            subject=f"key:{row['name']}",
            via="key",
            role=highest(scopes),
            name=row["name"],
            expires=row["expires"],
            details={"key_id": row["id"], "scopes": scopes},
        )


def _record(row: sqlite3.Row) -> dict[str, Any]:
    """A key's record as listed: everything but the hash."""
    return {
        "key_id": row["id"],
        "name": row["name"],
        "scopes": row["scopes"].split(),
        "created": row["created"],
        "created_by": row["created_by"],
        "expires": row["expires"],
        "revoked": row["revoked"],
    }
