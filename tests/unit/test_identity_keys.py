"""The API key store: only hashes kept, keys refused once revoked or expired, every
process on the same file seeing the same keys."""

from __future__ import annotations

import datetime as dt
import hashlib
import sqlite3
import time
from pathlib import Path

import pytest

from runstream.producer.engine.identity.cli import expiry
from runstream.producer.engine.identity.keys import PREFIX, KeyRequestError, KeyStore
from runstream.schemas import CommandError
from tests.waiting import eventually


@pytest.fixture
def store(tmp_path: Path):
    keys = KeyStore(tmp_path / "state" / "keys.db")
    yield keys
    keys.close()


def test_a_key_identifies_with_its_highest_scope(store: KeyStore) -> None:
    key, record = store.create("robot", ["observer", "expert"], None, "ada")
    assert key.startswith(PREFIX) and len(key) > 40
    assert record["scopes"] == ["observer", "expert"] and record["created_by"] == "ada"
    who = store.identify(key)
    assert (who.subject, who.via, who.role, who.expires) == ("key:robot", "key", "expert", None)
    assert who.details["key_id"] == record["key_id"]
    with pytest.raises(LookupError, match="unknown API key"):
        store.identify(key[:-1] + ("A" if key[-1] != "A" else "B"))


def test_only_the_hash_is_on_disk(store: KeyStore) -> None:
    key, record = store.create("robot", ["user"], time.time() + 60, "cli")
    on_disk = b"".join(p.read_bytes() for p in store.path.parent.glob("keys.db*"))
    assert key.encode() not in on_disk
    assert hashlib.sha256(key.encode()).hexdigest().encode() in on_disk
    assert "hash" not in record and all(key not in str(v) for v in record.values())
    assert store.path.stat().st_mode & 0o077 == 0


def test_revoked_and_expired_keys_are_refused(store: KeyStore) -> None:
    key, record = store.create("robot", ["user"], None, "cli")
    brief, brief_record = store.create("brief", ["user"], time.time() + 0.5, "cli")
    assert store.active() == 2
    first = store.revoke(record["key_id"])["revoked"]
    assert store.revoke(record["key_id"])["revoked"] == first  # the first time stays
    with pytest.raises(LookupError, match=f"API key {record['key_id']} was revoked"):
        store.identify(key)
    eventually(lambda: time.time() > brief_record["expires"], 10, "the brief key's expiry")
    with pytest.raises(LookupError, match="expired"):
        store.identify(brief)
    assert store.active() == 0
    assert [r["name"] for r in store.list()] == ["robot", "brief"]


@pytest.mark.parametrize(
    ("name", "scopes", "expires", "why"),
    [
        ("  ", ["user"], None, "needs a name"),
        ("robot", [], None, "scopes must be among"),
        ("robot", ["user", "root"], None, "scopes must be among"),
        ("robot", ["user"], 1.0, "in the past"),
    ],
)
def test_bad_requests_are_refused(store: KeyStore, name, scopes, expires, why) -> None:
    with pytest.raises(KeyRequestError, match=why):
        store.create(name, scopes, expires, "cli")
    with pytest.raises(KeyRequestError, match="no API key"):
        store.revoke("nope")
    assert store.list() == []


def test_another_process_sees_keys_made_and_revoked(store: KeyStore) -> None:
    other = KeyStore(store.path)
    try:
        key, record = other.create("robot", ["admin"], None, "cli")
        assert store.identify(key).role == "admin"
        other.revoke(record["key_id"])
        with pytest.raises(LookupError, match="revoked"):
            store.identify(key)
    finally:
        other.close()
    rows = sqlite3.connect(store.path).execute("SELECT COUNT(*) FROM api_keys").fetchone()
    assert rows == (1,)


def test_expiry_takes_durations_and_dates() -> None:
    now = 1_800_000_000.0
    assert expiry(None, now) is None
    assert expiry("90d", now) == now + 90 * 86400
    assert expiry("1.5h", now) == now + 5400
    assert expiry("30s", now) == now + 30
    midnight = dt.datetime(2027, 1, 31, tzinfo=dt.UTC).timestamp()
    assert expiry("2027-01-31", now) == midnight  # a bare date is UTC
    assert expiry("2027-01-31T01:00:00+01:00", now) == midnight
    with pytest.raises(CommandError, match="give 90d"):
        expiry("soon", now)
