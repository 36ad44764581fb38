"""``runstream login`` and ``logout``: the OAuth 2.0 device authorization grant (RFC 8628)
with the provider the engine names at ``GET /auth/config``.

The engine says which provider and which public client; the provider's discovery document
says where to start the flow and where to poll. The user opens the address printed and
approves there, in any browser; this polls the token endpoint at the interval the provider
asks (longer on ``slow_down``) until it answers with tokens, a refusal, or the code's
expiry. The tokens go to the login file (`logins`), never to the terminal or a log.
``logout`` revokes the refresh token at the provider (RFC 7009) and deletes the file.
Client code: httpx only, no FastAPI.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

import httpx

from .logins import Login, LoginError, engine_key, load, login_file, remove, save

logger = logging.getLogger(__name__)

DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
#: RFC 8628 3.5: a ``slow_down`` answer adds five seconds to the interval, for good.
SLOW_DOWN = 5.0
EXPIRED = "the login code expired before it was approved: run runstream login again"


@dataclass
class Provider:
    """Where the device flow of one engine's provider happens, and for which client."""

    engine: str
    issuer: str
    client_id: str
    device_endpoint: str
    token_endpoint: str


def register(sub: argparse._SubParsersAction) -> None:
    for name, func, what in (
        ("login", login, "log in to an engine through its OIDC provider (device code)"),
        ("logout", logout, "forget the login to an engine"),
    ):
        q = sub.add_parser(name, help=what)
        q.add_argument(
            "--engine", "--url", dest="engine",
            help="the engine (RUNSTREAM_ENGINE_URL, default http://127.0.0.1:8600)",
        )  # fmt: skip
        q.set_defaults(func=func)


def _engine(args: argparse.Namespace) -> str:
    from pydantic import ValidationError

    from ..settings import EngineClientSettings

    if args.engine:
        return engine_key(args.engine)
    try:
        return engine_key(EngineClientSettings().engine_url)
    except ValidationError as exc:
        raise LoginError(f"bad engine client settings: {exc}") from None


def login(args: argparse.Namespace) -> int:
    engine = _engine(args)
    with httpx.Client(timeout=30.0) as http:
        made = device_login(http, discover(http, engine), say=_say)
        me = _whoami(http, engine, made.access_token)
    made.subject = str(me.get("subject", ""))
    path = save(made)
    who = f" as {made.subject} ({me.get('role') or 'no role'})" if me else ""
    _say(f"logged in to {engine}{who}; the login is kept in {path}")
    return 0


def logout(args: argparse.Namespace) -> int:
    engine = _engine(args)
    try:
        stored = load(engine)
    except LoginError:
        stored = None  # unreadable: removed all the same
    if stored is not None:
        with httpx.Client(timeout=30.0) as http:
            _revoke(http, stored)
    gone = remove(engine)
    _say(f"logged out of {engine}" if gone else f"no login to {engine} ({login_file(engine)})")
    return 0


def _revoke(http: httpx.Client, stored: Login) -> None:
    """Ask the provider to end the login's session (RFC 7009, the refresh token); the
    file goes either way, so a provider out of reach only earns a warning."""
    token = stored.refresh_token or stored.access_token
    hint = "refresh_token" if stored.refresh_token else "access_token"
    url = f"{stored.issuer.rstrip('/')}/.well-known/openid-configuration"
    try:
        endpoint = http.get(url).raise_for_status().json().get("revocation_endpoint")
        if endpoint:
            data = {"token": token, "token_type_hint": hint, "client_id": stored.client_id}
            http.post(endpoint, data=data).raise_for_status()
    except (httpx.HTTPError, ValueError, AttributeError) as exc:
        logger.warning("could not revoke the login at %s (%s)", stored.issuer, type(exc).__name__)


def _say(line: str) -> None:
    """One line for the person at the terminal, on stderr (stdout stays for results)."""
    print(line, file=sys.stderr, flush=True)


def _json(reply: httpx.Response, what: str) -> dict:
    try:
        doc = reply.json()
    except ValueError:
        doc = None
    if not isinstance(doc, dict):
        raise LoginError(f"{what} answered {reply.status_code} with no JSON object")
    return doc


def _get(http: httpx.Client, url: str, what: str) -> httpx.Response:
    try:
        return http.get(url)
    except httpx.HTTPError as exc:
        raise LoginError(f"cannot reach {what} at {url}: {type(exc).__name__}: {exc}") from None


def discover(http: httpx.Client, engine: str) -> Provider:
    """The engine's provider and CLI client, and the provider's device and token endpoints."""
    reply = _get(http, f"{engine}/auth/config", "the engine")
    if reply.status_code == 404:
        raise LoginError(
            f"the engine at {engine} has no OIDC provider to log in with: "
            "use RUNSTREAM_API_TOKEN or an API key (RUNSTREAM_API_TOKEN=rsk_...)"
        )
    if reply.status_code != 200:
        raise LoginError(f"the engine at {engine} answered {reply.status_code} to /auth/config")
    config = _json(reply, "the engine's /auth/config")
    issuer, client_id = config.get("issuer"), config.get("cli_client_id")
    if not issuer:
        raise LoginError(f"the engine at {engine} names no OIDC issuer")
    if not client_id:
        raise LoginError(
            f"the engine at {engine} names no client for runstream login: its operator sets "
            "RUNSTREAM_OIDC_CLI_CLIENT_ID (a public client with the device grant)"
        )
    url = f"{str(issuer).rstrip('/')}/.well-known/openid-configuration"
    reply = _get(http, url, "the OIDC provider")
    doc = _json(reply, f"the provider's discovery document {url}")
    if reply.status_code != 200 or doc.get("issuer") != issuer:
        raise LoginError(f"the discovery document at {url} is not the issuer {issuer}'s")
    device = doc.get("device_authorization_endpoint")
    if not device:
        raise LoginError(f"the provider {issuer} offers no device login (RFC 8628)")
    return Provider(engine, str(issuer), str(client_id), str(device), str(doc["token_endpoint"]))


def device_login(
    http: httpx.Client,
    provider: Provider,
    *,
    say: Callable[[str], None],
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> Login:
    """Start the device flow, tell the user where to approve it, and poll until it ends."""
    start = _start(http, provider)
    complete = start.get("verification_uri_complete")
    if complete:
        say(f"To log in, open in a browser: {complete}")
        say(f"and check that it shows the code: {start['user_code']}")
    else:
        say(f"To log in, open in a browser: {start['verification_uri']}")
        say(f"and enter the code: {start['user_code']}")
    interval = float(start.get("interval") or 5)
    deadline = clock() + float(start.get("expires_in") or 600)
    while True:
        sleep(interval)
        if clock() > deadline:
            raise LoginError(EXPIRED)
        answer = _poll(http, provider, start["device_code"])
        if answer is None:  # the poll timed out: the next may answer
            continue
        if "access_token" in answer:
            return Login.from_grant(
                answer, engine=provider.engine, issuer=provider.issuer,
                client_id=provider.client_id, token_endpoint=provider.token_endpoint,
            )  # fmt: skip
        error = answer.get("error")
        if error == "authorization_pending":
            continue
        if error == "slow_down":
            interval += SLOW_DOWN
            continue
        if error == "access_denied":
            raise LoginError("the login was denied at the provider")
        if error == "expired_token":
            raise LoginError(EXPIRED)
        raise LoginError(f"the provider refused the login: {_error(answer)}")


def _start(http: httpx.Client, provider: Provider) -> dict:
    """The device authorization answer (RFC 8628 3.2): codes, address, interval, expiry."""
    try:
        reply = http.post(
            provider.device_endpoint, data={"client_id": provider.client_id, "scope": "openid"}
        )
    except httpx.HTTPError as exc:
        raise LoginError(f"cannot reach the provider: {type(exc).__name__}: {exc}") from None
    start = _json(reply, "the provider's device authorization endpoint")
    if reply.status_code != 200:
        raise LoginError(
            f"the provider refused to start a device login for client {provider.client_id}: "
            f"{_error(start)}"
        )
    missing = {"device_code", "user_code", "verification_uri"} - set(start)
    if missing:
        raise LoginError(f"the provider's device authorization answer lacks {sorted(missing)}")
    return start


def _poll(http: httpx.Client, provider: Provider, device_code: str) -> dict | None:
    """One poll of the token endpoint: tokens, or an OAuth error; None if it timed out."""
    try:
        reply = http.post(
            provider.token_endpoint,
            data={"grant_type": DEVICE_GRANT, "device_code": device_code,
                  "client_id": provider.client_id},
        )  # fmt: skip
    except httpx.TimeoutException:
        return None
    except httpx.HTTPError as exc:
        raise LoginError(f"cannot reach the provider: {type(exc).__name__}: {exc}") from None
    answer = _json(reply, "the provider's token endpoint")
    if reply.status_code != 200 and "error" not in answer:
        raise LoginError(f"the provider's token endpoint answered {reply.status_code}")
    return answer


def _error(answer: dict) -> str:
    """The OAuth error of an answer, with its description, for one line."""
    said = str(answer.get("error") or "no error code")
    if answer.get("error_description"):
        said += f" ({answer['error_description']})"
    return said


def _whoami(http: httpx.Client, engine: str, token: str) -> dict:
    """Who the engine takes the new token for; empty (and a warning) if it refuses it."""
    try:
        reply = http.get(f"{engine}/whoami", headers={"Authorization": f"Bearer {token}"})
        me = reply.json() if reply.status_code == 200 else None
    except (httpx.HTTPError, ValueError):
        me = None
    if not isinstance(me, dict):
        logger.warning("the engine at %s did not accept the new login (GET /whoami)", engine)
        return {}
    return me
