"""Identities against a real Keycloak: the engine configured by RUNSTREAM_OIDC_* as deployed.

One engine (real RunEngine, ophyd.sim devices, its key store and audit log in a temporary
home) serves the module; its guard is `guard_for` reading the same variables a facility
sets, with no shared token. Every token comes from Keycloak's password grant; the forged
ones are Keycloak's tokens altered, never tokens signed here. Every credential handed
out is remembered, and no log record at INFO or above may contain one. Every request
the audit log's rule covers is remembered too, and once the module's tests are done the
audit log must hold exactly those.
"""

from __future__ import annotations

import base64
import getpass
import hashlib
import json
import logging
import os
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import jwt
import pytest
from fastapi.testclient import TestClient
from starlette.routing import Match

from runstream.producer import lineage
from runstream.producer.engine import Engine, PlanRegistry, TaskStore
from runstream.producer.engine.app import create_app
from runstream.producer.engine.auth import Guard
from runstream.producer.engine.identity.audit import READS
from tests.cli_tools import run_runstream
from tests.engine_roles import configured_guard
from tests.engine_tasks import wait_for_task
from tests.keycloak import (
    AUDIENCE,
    KEEPER,
    OTHER_CLIENT,
    SHORT_CLIENT,
    USERS,
    Keycloak,
    add_signing_key,
    assert_nothing_secret_in,
    remove_signing_key,
)
from tests.waiting import eventually

pytestmark = [pytest.mark.oidc, pytest.mark.timeout(900)]  # the first test waits for Keycloak

COUNT = {"plan": "count", "args": [["det"]], "kwargs": {"num": 2}}


@dataclass
class Service:
    """The engine's API, its Keycloak, every credential the tests were given and every
    change they asked for."""

    client: TestClient
    engine: Engine
    guard: Guard
    keycloak: Keycloak
    home: Path
    env: dict[str, str]
    docs: list[tuple[str, dict]]
    secrets: set[str] = field(default_factory=set)
    #: (method, path, status) of each request the audit log is to record, in order.
    changes: list[tuple[str, str, int]] = field(default_factory=list)

    def token(self, user: str, **how: str) -> str:
        token = self.keycloak.token(user, **how)
        self.secrets.add(token)
        return token

    def keep(self, secret: str) -> str:
        self.secrets.add(secret)
        return secret

    def call(self, method: str, path: str, secret: str, **kwargs):
        reply = self.client.request(
            method, path, headers={"Authorization": f"Bearer {secret}"}, **kwargs
        )
        if self.audited(method, path, reply.status_code):
            self.changes.append((method.upper(), path.split("?")[0], reply.status_code))
        return reply

    def audited(self, method: str, path: str, status: int) -> bool:
        """The audit log's rule (identity/audit.py): any method but a read's, on a path one
        of the app's routes takes, answered anything but 405 (refusals too)."""
        scope = {"type": "http", "method": method.upper(), "path": path.split("?")[0]}
        routes = self.client.app.routes  # type: ignore[attr-defined]
        reached = any(route.matches(scope)[0] == Match.FULL for route in routes)
        return method.upper() not in READS and reached and status != 405


@pytest.fixture(scope="module")
def service(keycloak: Keycloak, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    home = tmp_path_factory.mktemp("engine-home")
    env = {
        "RUNSTREAM_HOME": str(home),
        "RUNSTREAM_OIDC_ISSUER": keycloak.issuer,
        "RUNSTREAM_OIDC_AUDIENCE": AUDIENCE,
        "RUNSTREAM_OIDC_ROLES_CLAIM": "realm_access.roles",
        "RUNSTREAM_OIDC_LEEWAY": "0",  # the expiry test waits for exp itself, not exp + skew
        "RUNSTREAM_OIDC_JWKS_MIN_REFETCH": "5",  # the rotation test waits for it
        "RUNSTREAM_OPEN_READS": "false",
    }
    settings, guard = configured_guard(env)
    docs: list[tuple[str, dict]] = []
    engine = Engine(
        TaskStore(settings.db_path),
        PlanRegistry.default(),
        subscribers=[lambda name, doc: docs.append((name, doc))],
        preprocessors=[lineage],
    )
    engine.start()
    try:
        with TestClient(create_app(engine, guard)) as client:
            yield Service(client, engine, guard, keycloak, home, env, docs)
    finally:
        engine.close()
        engine.store.close()
        guard.close()


@pytest.fixture(scope="module", autouse=True)
def every_change_audited(service: Service) -> Iterator[None]:
    """After the module's last test: GET /audit, read page by page, holds one entry per
    change the tests asked for (method, path, status; refusals too) and nothing more."""
    yield
    assert service.changes, "the tests changed nothing: nothing to compare"
    reader, entries, page = service.token("erik"), [], 1
    while True:  # pages of 10: the paging is read too
        reply = service.call("GET", "/audit", reader, params={"page": page, "size": 10})
        assert reply.status_code == 200, reply.text
        entries += reply.json()["entries"]
        if not reply.json()["entries"] or len(entries) >= reply.json()["total"]:
            break
        page += 1
    assert len(entries) == reply.json()["total"], (page, reply.json())
    logged = Counter((e["method"], e["path"], e["status"]) for e in entries)
    asked = Counter(service.changes)
    assert logged == asked, {"not logged": asked - logged, "logged, not asked": logged - asked}


@pytest.fixture(autouse=True)
def nothing_secret_logged(service: Service, caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """Every record at INFO or above, from any logger, during the test: none holds a credential."""
    caplog.set_level(logging.INFO)
    yield
    assert_nothing_secret_in(caplog.records, service.secrets)


def _claims(token: str) -> dict:
    return jwt.decode(token, options={"verify_signature": False})


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def test_each_role_is_who_keycloak_says(service: Service) -> None:
    for user, group in USERS.items():
        reply = service.call("GET", "/whoami", service.token(user))
        assert reply.status_code == 200, reply.text
        me = reply.json()
        assert (me["subject"], me["via"], me["role"]) == (user, "oidc", group)
        assert me["name"] == f"{user.title()} Test"
        assert me["allowed"][-1] == group and me["allowed"][0] == "observer"
    assert service.guard.oidc.fetches == 1, "the signing keys were fetched once, then cached"  # type: ignore[union-attr]


def test_forged_tokens_are_refused(service: Service) -> None:
    token = service.token("uma")
    head, body, signature = token.split(".")
    claims = _claims(token)
    claims["realm_access"] = {"roles": ["admin"]}
    promoted = f"{head}.{_b64(json.dumps(claims).encode())}.{signature}"
    raw = bytearray(base64.urlsafe_b64decode(signature + "=" * (-len(signature) % 4)))
    raw[len(raw) // 2] ^= 0x01
    flipped = f"{head}.{body}.{_b64(bytes(raw))}"
    as_hmac = jwt.encode(claims, "a shared secret the engine never had", algorithm="HS256",
                         headers={"kid": jwt.get_unverified_header(token)["kid"]})  # fmt: skip
    unsigned = f"{_b64(json.dumps({'alg': 'none', 'typ': 'JWT'}).encode())}.{body}."
    other_kid = {**jwt.get_unverified_header(token), "kid": "not-a-key-of-keycloak"}
    unknown_key = f"{_b64(json.dumps(other_kid).encode())}.{body}.{signature}"
    for forged, why in (
        (promoted, "signature does not verify"),
        (flipped, "signature does not verify"),
        (as_hmac, "algorithm 'HS256' is not accepted"),
        (unsigned, "algorithm 'none' is not accepted"),
        (unknown_key, "signed with an unknown key"),
    ):
        reply = service.call("GET", "/whoami", service.keep(forged))
        assert reply.status_code == 401, (why, reply.text)
        assert why in reply.json()["detail"]
        assert reply.headers["www-authenticate"] == "Bearer"
    assert service.call("GET", "/whoami", token).json()["role"] == "user"


def test_expired_token_is_refused(service: Service) -> None:
    token = service.token("uma", client=SHORT_CLIENT)
    assert service.call("GET", "/whoami", token).status_code == 200
    expires = _claims(token)["exp"]
    eventually(lambda: time.time() > expires, 30, "the short-lived token's exp to pass")
    reply = service.call("GET", "/whoami", token)
    assert reply.status_code == 401 and reply.json()["detail"] == "token expired"


def test_token_for_another_audience_is_refused(service: Service) -> None:
    token = service.token("uma", client=OTHER_CLIENT)
    assert AUDIENCE not in str(_claims(token).get("aud"))
    reply = service.call("GET", "/whoami", token)
    assert reply.status_code == 401
    assert reply.json()["detail"] in (
        "token not for this audience",
        "token refused: MissingRequiredClaimError",
    )


def test_token_from_another_issuer_is_refused(service: Service) -> None:
    # The same realm and signing key reached by another name: Keycloak (no fixed hostname)
    # names the issuer after the address asked, so only the issuer is wrong.
    other = service.keycloak.url.replace("127.0.0.1", "localhost")
    token = service.token("uma", base=other)
    assert _claims(token)["iss"] == other + "/realms/runstream"
    reply = service.call("GET", "/whoami", token)
    assert reply.status_code == 401 and reply.json()["detail"] == "token from another issuer"


def test_a_user_without_a_role_may_not_even_read(service: Service) -> None:
    token = service.token(KEEPER)
    me = service.call("GET", "/whoami", token).json()
    assert (me["subject"], me["role"], me["allowed"]) == (KEEPER, None, [])
    assert service.call("GET", "/status", token).status_code == 403
    assert service.call("POST", "/tasks", token, json=COUNT).status_code == 403


def test_rotated_signing_keys_are_fetched_once_needed(service: Service) -> None:
    """A new key signs: the verifier reads the JWKS again on the first token it signed (at
    most once per RUNSTREAM_OIDC_JWKS_MIN_REFETCH), and tokens of the old key still pass."""
    verifier = service.guard.oidc
    assert verifier is not None
    before = service.token("uma")
    assert service.call("GET", "/whoami", before).status_code == 200
    fetched = verifier.fetches
    component = add_signing_key(service.keycloak)
    try:
        after = service.token("uma")
        kid = jwt.get_unverified_header(after)["kid"]
        assert kid != jwt.get_unverified_header(before)["kid"]
        eventually(
            lambda: service.call("GET", "/whoami", after).status_code == 200,
            verifier.min_refetch + 30,
            "the engine to accept a token of the new key",
        )
        assert verifier.fetches == fetched + 1
        assert service.call("GET", "/whoami", before).status_code == 200
    finally:
        remove_signing_key(service.keycloak, component)


def test_each_role_is_refused_what_it_may_not(service: Service) -> None:
    olga, uma, erik = (service.token(u) for u in ("olga", "uma", "erik"))
    ursula = service.token("ursula")
    refused = [
        (olga, "POST", "/tasks", {"json": COUNT}),
        (olga, "POST", "/control/pause", {}),
        (uma, "POST", "/queue/stop", {}),
        (uma, "POST", "/control/abort", {}),
        (uma, "POST", "/control/resume", {}),
        (uma, "POST", "/keys", {"json": {"name": "mine", "scopes": ["user"]}}),
        (uma, "GET", "/audit", {}),
        (erik, "POST", "/keys", {"json": {"name": "mine", "scopes": ["expert"]}}),
        (erik, "GET", "/keys", {}),
    ]
    for secret, method, path, kwargs in refused:
        reply = service.call(method, path, secret, **kwargs)
        assert reply.status_code == 403, (method, path, reply.text)
    # An observer still reads; a user may not take someone else's task off the queue.
    assert service.call("GET", "/status", olga).status_code == 200
    assert service.call("POST", "/queue/stop", erik).status_code == 200
    try:
        theirs = service.call("POST", "/tasks", ursula, json=COUNT).json()["task_id"]
        reply = service.call("DELETE", f"/tasks/{theirs}", uma)
        assert reply.status_code == 403, reply.text
        assert service.call("DELETE", f"/tasks/{theirs}", ursula).status_code == 200
    finally:
        assert service.call("POST", "/queue/start", erik).status_code == 200


def test_every_task_records_its_submitter_in_its_start_document(service: Service) -> None:
    key = service.keep(
        service.call(
            "POST", "/keys", service.token("ada"), json={"name": "robot", "scopes": ["user"]}
        ).json()["key"]
    )
    for secret, who in ((service.token("uma"), "uma"), (key, "key:robot")):
        reply = service.call("POST", "/tasks", secret, json=COUNT)
        assert reply.status_code == 201, reply.text
        task_id = reply.json()["task_id"]
        task = wait_for_task(
            lambda path, secret=secret: service.call("GET", path, secret).json(),
            task_id,
            ("completed", "failed"),
            60,
        )
        assert task["state"] == "completed" and task["submitted_by"] == who, task
        starts = [d for n, d in service.docs if n == "start" and d.get("task_id") == task_id]
        assert len(starts) == 1 and starts[0]["submitted_by"] == who, starts


def _key_files(service: Service) -> bytes:
    """The key store as on disk: the database and its write-ahead log."""
    return b"".join(p.read_bytes() for p in (service.home / "engine").glob("keys.db*"))


def test_cli_key_works_until_revoked_and_only_its_hash_is_kept(service: Service) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RUNSTREAM_")}
    env.update(service.env)
    made = run_runstream(env, "keys", "create", "--name", "scan robot", "--scopes", "user",
                         "--expires", "1h", timeout=60)  # fmt: skip
    assert made.returncode == 0, made.stderr
    service.changes.append(("CLI", "keys create", 201))  # the command is audited as the API is
    key = service.keep(made.stdout.strip().splitlines()[-1])
    assert key.startswith("rsk_") and key not in made.stderr
    key_id = made.stdout.split()[1]
    me = service.call("GET", "/whoami", key).json()
    assert (me["subject"], me["via"], me["role"]) == ("key:scan robot", "key", "user")
    assert me["expires"] == pytest.approx(time.time() + 3600, abs=120)
    assert service.call("POST", "/tasks", key, json=COUNT).status_code == 201
    stored = _key_files(service)
    assert key.encode() not in stored
    assert hashlib.sha256(key.encode()).hexdigest().encode() in stored
    listed = run_runstream(env, "keys", "list", timeout=60)
    assert key_id in listed.stdout and key not in listed.stdout
    revoked = run_runstream(env, "keys", "revoke", key_id, timeout=60)
    assert revoked.returncode == 0, revoked.stderr
    service.changes.append(("CLI", "keys revoke", 200))
    reply = service.call("GET", "/whoami", key)
    assert reply.status_code == 401 and reply.json()["detail"] == f"API key {key_id} was revoked"
    past = run_runstream(env, "keys", "create", "--name", "late", "--scopes", "user",
                         "--expires", "2020-01-01", timeout=60)  # fmt: skip
    assert past.returncode != 0 and "past" in past.stderr  # refused before the store: no entry
    cli = service.guard.audit.page(subject=f"cli:{getpass.getuser()}")[0]
    assert [(e["path"], e["key_id"], e["via"]) for e in cli] == [
        ("keys revoke", key_id, "cli"),
        ("keys create", key_id, "cli"),
    ]


def test_api_key_from_the_api_expires_and_is_revocable(service: Service) -> None:
    ada = service.token("ada")
    reply = service.call("POST", "/keys", ada, json={"name": "brief", "scopes": ["observer"],
                                                     "expires_in": 2})  # fmt: skip
    assert reply.status_code == 201, reply.text
    brief = reply.json()
    service.keep(brief["key"])
    assert brief["created_by"] == "ada"
    assert service.call("GET", "/whoami", brief["key"]).json()["role"] == "observer"
    eventually(lambda: time.time() > brief["expires"], 30, "the key's expiry to pass")
    reply = service.call("GET", "/whoami", brief["key"])
    assert reply.status_code == 401 and "expired" in reply.json()["detail"]

    blank = service.call("POST", "/keys", ada, json={"name": "  ", "scopes": ["user"]})
    assert blank.status_code == 422 and "needs a name" in blank.text
    made = service.call("POST", "/keys", ada, json={"name": "expert robot", "scopes": ["expert"]})
    key = service.keep(made.json()["key"])
    assert service.call("POST", "/queue/start", key).status_code == 200
    listed = service.call("GET", "/keys", ada).json()
    assert {k["key_id"] for k in listed} >= {brief["key_id"], made.json()["key_id"]}
    assert all("key" not in k for k in listed)
    assert service.call("DELETE", f"/keys/{made.json()['key_id']}", ada).status_code == 200
    assert service.call("POST", "/queue/start", key).status_code == 401
    assert key.encode() not in _key_files(service)


def test_refusals_are_logged_without_the_credential(
    service: Service, caplog: pytest.LogCaptureFixture
) -> None:
    token = service.token("uma", client=OTHER_CLIENT)
    assert service.call("GET", "/whoami", token).status_code == 401
    assert service.call("GET", "/whoami", service.keep("rsk_" + "x" * 43)).status_code == 401
    refusals = [r.getMessage() for r in caplog.records if "refused a credential" in r.getMessage()]
    assert len(refusals) == 2, refusals  # logged, at INFO: the autouse check reads them
