"""The logins ``runstream login`` keeps: one file per engine URL, mode 0600, under the
user's state directory, and the access token the client commands take from it.

A file is created with its mode (``os.open`` with 0o600, then renamed over the old one),
never loosened and then tightened, so no other user can read a token even for an instant.
An expired access token is refreshed with the refresh token (and the new one stored); a
login that cannot be refreshed says to run ``runstream login`` again. Client code: it needs
httpx and platformdirs, not the engine. Nothing here logs or prints a token.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import stat
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import platformdirs

from runstream.schemas.errors import CommandError

logger = logging.getLogger(__name__)

#: An access token this close to its expiry is refreshed first (clock skew, slow calls).
MARGIN = 30.0


class LoginError(CommandError):
    """A login that cannot be made, read or refreshed; one line saying what to do."""


@dataclass
class Login:
    """What a login keeps: the tokens, when they expire, and where to refresh them."""

    engine: str
    issuer: str
    client_id: str
    token_endpoint: str
    access_token: str = dataclasses.field(repr=False)
    expires_at: float
    refresh_token: str | None = dataclasses.field(default=None, repr=False)
    refresh_expires_at: float | None = None
    subject: str = ""

    @classmethod
    def from_grant(cls, grant: dict, *, previous: Login | None = None, **where: str) -> Login:
        """A login from a token endpoint's answer (RFC 6749 5.1), taking over from
        ``previous`` what the answer leaves out (a refresh token that was not rotated)."""
        now = time.time()
        base = dataclasses.asdict(previous) if previous is not None else {}
        base.update(where)
        refresh, refresh_at = base.get("refresh_token"), base.get("refresh_expires_at")
        if grant.get("refresh_token"):
            refresh = str(grant["refresh_token"])
            refresh_in = grant.get("refresh_expires_in")  # Keycloak's; 0 or absent: unbounded
            refresh_at = now + float(refresh_in) if refresh_in else None
        return cls(
            **{k: base[k] for k in ("engine", "issuer", "client_id", "token_endpoint")},
            access_token=str(grant["access_token"]),
            expires_at=now + float(grant.get("expires_in") or 300),
            refresh_token=refresh,
            refresh_expires_at=refresh_at,
            subject=base.get("subject", ""),
        )


def engine_key(engine: str) -> str:
    """The engine URL as logins are filed under: without a trailing slash."""
    return engine.strip().rstrip("/")


def login_dir() -> Path:
    """Where logins live: ``<user state dir>/runstream/logins`` ($XDG_STATE_HOME on Linux)."""
    return Path(platformdirs.user_state_dir("runstream")) / "logins"


def login_file(engine: str, directory: Path | None = None) -> Path:
    """The file of the login to ``engine``: named by a hash of its URL."""
    digest = hashlib.sha256(engine_key(engine).encode()).hexdigest()[:24]
    return (directory or login_dir()) / f"{digest}.json"


def save(login: Login, directory: Path | None = None) -> Path:
    """Write the login with mode 0600 (created so, then renamed into place)."""
    path = login_file(login.engine, directory)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    scratch = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    try:
        fd = os.open(scratch, flags, 0o600)
    except FileExistsError:  # left by a process that died: it was ours, made 0600
        scratch.unlink()
        fd = os.open(scratch, flags, 0o600)
    try:
        with os.fdopen(fd, "w") as out:
            json.dump(dataclasses.asdict(login), out)
            out.flush()
            os.fsync(out.fileno())
        os.replace(scratch, path)
    except BaseException:
        scratch.unlink(missing_ok=True)
        raise
    return path


def load(engine: str, directory: Path | None = None) -> Login | None:
    """The stored login to ``engine``; None if there is none."""
    path = login_file(engine, directory)
    try:
        mode = path.stat().st_mode
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise LoginError(
                f"the login file {path} is open to other users (mode {stat.S_IMODE(mode):o}): "
                f"delete it and run runstream login --engine {engine_key(engine)}"
            )
        data = json.loads(path.read_text())
        return Login(**data)
    except FileNotFoundError:
        return None
    except (OSError, ValueError, TypeError) as exc:
        raise LoginError(
            f"cannot read the login file {path} ({type(exc).__name__}): "
            f"run runstream login --engine {engine_key(engine)}"
        ) from None


def remove(engine: str, directory: Path | None = None) -> bool:
    """Forget the login to ``engine``; whether there was one."""
    try:
        login_file(engine, directory).unlink()
    except FileNotFoundError:
        return False
    return True


def token_for(engine: str, directory: Path | None = None, timeout: float = 30.0) -> str | None:
    """The access token of the stored login to ``engine``, refreshed (and stored) when it
    has expired; None without a login. LoginError when it has expired for good."""
    login = load(engine, directory)
    if login is None:
        return None
    now = time.time()
    if login.expires_at - MARGIN > now:
        return login.access_token
    again = f"the login to {login.engine} has expired: run runstream login --engine {login.engine}"
    if not login.refresh_token or (
        login.refresh_expires_at is not None and login.refresh_expires_at <= now
    ):
        raise LoginError(again)
    try:
        reply = httpx.post(
            login.token_endpoint,
            data={
                "grant_type": "refresh_token",
                "refresh_token": login.refresh_token,
                "client_id": login.client_id,
            },
            timeout=timeout,
        )
    except httpx.HTTPError as exc:
        raise LoginError(
            f"cannot refresh the login to {login.engine} at {login.token_endpoint}: "
            f"{type(exc).__name__}"
        ) from None
    if reply.status_code != 200:
        raise LoginError(again)
    try:
        fresh = Login.from_grant(reply.json(), previous=login)
    except (ValueError, KeyError, TypeError):
        raise LoginError(f"the provider's refresh answer for {login.engine} is malformed") from None
    save(fresh, directory)
    logger.debug("refreshed the login to %s", login.engine)
    return fresh.access_token
