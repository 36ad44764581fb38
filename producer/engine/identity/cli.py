"""``runstream keys create|list|revoke``: API keys in the engine's key store, on its machine.

The store is the file the engine reads (``RUNSTREAM_API_KEYS_FILE``, default
``<home>/engine/keys.db``), so a key made here works at once, and the first admin key can
be made before any other credential exists. ``create`` prints the key last, once.
"""

from __future__ import annotations

import argparse
import datetime as dt
import getpass
import logging
import re
import socket
import time

from .roles import ROLES

logger = logging.getLogger(__name__)

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("keys", help="issue, list and revoke the engine's API keys")
    verbs = p.add_subparsers(dest="verb", required=True, metavar="VERB")
    q = verbs.add_parser("create", help="issue a key (printed last, shown only this once)")
    q.add_argument("--name", required=True, help="who or what uses it, e.g. the scan robot")
    q.add_argument(
        "--scopes",
        required=True,
        nargs="+",
        choices=ROLES,
        metavar="ROLE",
        help=f"its roles, among {', '.join(ROLES)}",
    )
    q.add_argument(
        "--expires",
        help="after a duration (90d, 12h, 30m) or at a date "
        "(2027-01-31 or an ISO time); default: never",
    )
    q.set_defaults(func=create)
    q = verbs.add_parser("list", help="every key issued (never the keys themselves)")
    q.set_defaults(func=list_keys)
    q = verbs.add_parser("revoke", help="revoke a key by its id")
    q.add_argument("key_id")
    q.set_defaults(func=revoke)


def expiry(text: str | None, now: float | None = None) -> float | None:
    """Unix time of ``--expires``: a duration from now, or an ISO date or time (UTC if bare)."""
    from runstream.schemas import CommandError

    if text is None:
        return None
    now = time.time() if now is None else now
    duration = re.fullmatch(r"(\d+(?:\.\d+)?)([smhdw])", text.strip())
    if duration:
        return now + float(duration[1]) * _UNITS[duration[2]]
    try:
        when = dt.datetime.fromisoformat(text.strip())
    except ValueError:
        raise CommandError(f"--expires {text!r}: give 90d, 12h, 30m or an ISO date") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return when.timestamp()


def _settings():  # -> EngineSettings (imported late: `runstream --help` stays fast)
    from pydantic import ValidationError

    from runstream.schemas import CommandError

    from ..settings import EngineSettings

    try:
        return EngineSettings()
    except (ValidationError, ValueError) as exc:
        raise CommandError(f"cannot read the engine's settings: {exc}") from None


def _store():  # -> KeyStore
    from runstream.schemas import CommandError

    from .keys import KeyStore

    try:
        return KeyStore(_settings().keys_path)
    except (ValueError, OSError) as exc:
        raise CommandError(f"cannot open the API key store: {exc}") from None


def _audit(action: str, key_id: str, status: int) -> None:
    """A key issued or revoked here is in the engine's audit log too, as the API's are: by
    the machine's user, ``via`` cli (the engine sees these the next time it reads the log)."""
    from .audit import AuditLog

    log = AuditLog(_settings().audit_path)
    try:
        log.record(subject=f"cli:{getpass.getuser()}", via="cli", method="CLI",
                   path=f"keys {action}", key_id=key_id, status=status,
                   client=socket.gethostname())  # fmt: skip
    finally:
        log.close()


def _when(stamp: float | None) -> str:
    if stamp is None:
        return "never"
    return dt.datetime.fromtimestamp(stamp, dt.UTC).isoformat(timespec="seconds")


def create(args: argparse.Namespace) -> int:
    from runstream.schemas import CommandError

    from .keys import KeyRequestError

    store = _store()
    try:
        key, record = store.create(args.name, args.scopes, expiry(args.expires), "cli")
    except KeyRequestError as exc:
        raise CommandError(str(exc)) from None
    finally:
        store.close()
    _audit("create", record["key_id"], 201)
    print(
        f"key_id   {record['key_id']}\nname     {record['name']}\n"
        f"scopes   {' '.join(record['scopes'])}\nexpires  {_when(record['expires'])}\n"
        "the key (shown only now; the engine keeps only its hash):"
    )
    print(key)
    return 0


def list_keys(args: argparse.Namespace) -> int:
    store = _store()
    try:
        records = store.list()
    finally:
        store.close()
    print(f"{'KEY_ID':<16}  {'NAME':<24}  {'SCOPES':<20}  {'EXPIRES':<25}  REVOKED")
    for r in records:
        print(
            f"{r['key_id']:<16}  {r['name'][:24]:<24}  {' '.join(r['scopes']):<20}  "
            f"{_when(r['expires']):<25}  {_when(r['revoked']) if r['revoked'] else '-'}"
        )
    return 0


def revoke(args: argparse.Namespace) -> int:
    from runstream.schemas import CommandError

    from .keys import KeyRequestError

    store = _store()
    try:
        record = store.revoke(args.key_id)
    except KeyRequestError as exc:
        raise CommandError(str(exc)) from None
    finally:
        store.close()
    _audit("revoke", record["key_id"], 200)
    print(f"revoked {record['key_id']} ({record['name']}) at {_when(record['revoked'])}")
    return 0
