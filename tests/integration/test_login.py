"""``runstream login`` against a real Keycloak: the device grant approved through Keycloak's
own pages, and the stored login used by ``tasks``, ``submit`` and the controls.

The engines are real apps served by uvicorn on loopback (the CLI is a process of its own,
talking HTTP): one with OIDC and a CLI client, one with OIDC and no CLI client, one in
single-user mode. Every token comes from Keycloak; none may appear in the CLI's output or
in a log record at INFO or above.
"""

from __future__ import annotations

import json
import logging
import os
import stat
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import httpx
import pytest

from runstream.producer import lineage
from runstream.producer.engine import Engine, PlanRegistry, TaskStore
from runstream.producer.engine.app import create_app
from runstream.producer.engine.auth import TokenGuard
from runstream.producer.engine.identity import logins
from runstream.producer.engine.identity.login import device_login, discover
from tests.cli_tools import RUNSTREAM, Output, run_runstream
from tests.engine_fuzzing import serving
from tests.engine_roles import configured_guard
from tests.engine_tasks import wait_for_task
from tests.keycloak import AUDIENCE, CLIENT, SHORT_CLIENT, Keycloak, assert_nothing_secret_in
from tests.keycloak_pages import approve_device
from tests.waiting import eventually, process_ended

pytestmark = [pytest.mark.oidc, pytest.mark.timeout(900)]  # the first test waits for Keycloak


@dataclass
class Engines:
    """The engines' URLs, the CLI's environment, and every credential seen."""

    url: str  # OIDC, with RUNSTREAM_OIDC_CLI_CLIENT_ID
    no_client: str  # OIDC, no CLI client named
    plain: str  # single-user mode (the shared token only)
    home: Path
    secrets: set[str] = field(default_factory=set)

    def env(self, state: Path) -> dict[str, str]:
        """The CLI's whole environment: no RUNSTREAM_* variable, logins under ``state``."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("RUNSTREAM_")}
        return {**env, "XDG_STATE_HOME": str(state)}


@pytest.fixture(scope="module")
def engines(keycloak: Keycloak, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engines]:
    home = tmp_path_factory.mktemp("login-engine")
    env = {
        "RUNSTREAM_HOME": str(home),
        "RUNSTREAM_OIDC_ISSUER": keycloak.issuer,
        "RUNSTREAM_OIDC_AUDIENCE": AUDIENCE,
        "RUNSTREAM_OPEN_READS": "false",
    }
    engine = Engine(TaskStore(home / "tasks.db"), PlanRegistry.default(), preprocessors=[lineage])
    engine.start()
    _, guard = configured_guard(env)
    _, with_client = configured_guard({**env, "RUNSTREAM_OIDC_CLI_CLIENT_ID": CLIENT})
    plain = TokenGuard("the shared token", open_reads=True)
    try:
        with (
            serving(create_app(engine, with_client)) as url,
            serving(create_app(engine, guard)) as no_client,
            serving(create_app(engine, plain)) as plain_url,
        ):
            yield Engines(url, no_client, plain_url, home)
    finally:
        engine.close()
        engine.store.close()
        guard.close()
        with_client.close()


@pytest.fixture(autouse=True)
def nothing_secret_logged(engines: Engines, caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    caplog.set_level(logging.INFO)
    yield
    assert_nothing_secret_in(caplog.records, engines.secrets)


def _device_login(engines: Engines, env: dict, user: str, accept: bool = True):
    """``runstream login`` with ``user`` approving (or denying) it in Keycloak's pages:
    the process, ended, and what it said."""
    proc = subprocess.Popen([*RUNSTREAM, "login", "--engine", engines.url], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    out, err = Output(proc.stdout), Output(proc.stderr)  # type: ignore[arg-type]
    try:
        line = eventually(lambda: err.line_with("open in a browser: "), 60,
                          "the address to approve the login at",
                          fail_fast=process_ended(proc, err.text))  # fmt: skip
        address = line.split(": ", 1)[1].strip()
        code = err.line_with("shows the code: ").split(": ", 1)[1].strip()  # type: ignore[union-attr]
        assert f"user_code={code}" in address
        page = approve_device(address, user, accept=accept)
        assert ("Device Login Successful" if accept else "Consent denied") in page, page
        proc.wait(60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    return proc, out.whole() + err.whole()


@pytest.fixture(scope="module")
def uma(engines: Engines, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The CLI's environment once uma has logged in."""
    env = engines.env(tmp_path_factory.mktemp("uma-state"))
    proc, said = _device_login(engines, env, "uma")
    assert proc.returncode == 0, said
    _, stored = _stored(engines, env)
    assert stored.refresh_token
    assert f"logged in to {engines.url} as uma (user)" in said
    assert not [s for s in engines.secrets if s in said], "the CLI printed a token"
    return env


def _stored(engines: Engines, env: dict) -> tuple[Path, logins.Login]:
    directory = Path(env["XDG_STATE_HOME"]) / "runstream" / "logins"
    login = logins.load(engines.url, directory)
    assert login is not None
    engines.secrets |= {login.access_token, login.refresh_token or login.access_token}
    return logins.login_file(engines.url, directory), login


def test_login_is_kept_0600_and_submit_and_tasks_use_it(engines: Engines, uma: dict) -> None:
    path, login = _stored(engines, uma)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert (login.subject, login.client_id) == ("uma", CLIENT)
    submitted = run_runstream(uma, "submit", "count", "--detectors", '["det"]', "--num", "2",
                              "--url", engines.url, timeout=60)  # fmt: skip
    assert submitted.returncode == 0, submitted.stderr
    task = json.loads(submitted.stdout)
    token = {"Authorization": f"Bearer {login.access_token}"}
    done = wait_for_task(
        lambda p: httpx.get(engines.url + p, headers=token, timeout=10).json(),
        task["task_id"],
        ("completed", "failed"),
        60,
    )
    assert (done["state"], done["submitted_by"]) == ("completed", "uma")
    listed = run_runstream(uma, "tasks", "--url", engines.url, timeout=60)
    assert listed.returncode == 0, listed.stderr
    assert task["task_id"] in {t["task_id"] for t in json.loads(listed.stdout)}
    paused = run_runstream(uma, "pause", "--url", engines.url, timeout=60)  # nothing runs
    assert paused.returncode == 0 or "409" in paused.stderr, paused.stderr
    resumed = run_runstream(uma, "resume", "--url", engines.url, timeout=60)
    assert "403" in resumed.stderr and "uma is user; this needs expert" in resumed.stderr
    for run in (submitted, listed, paused, resumed):
        assert not [s for s in engines.secrets if s in run.stdout + run.stderr]


def test_an_expired_login_is_refreshed_else_says_to_log_in(engines: Engines, uma: dict) -> None:
    path, login = _stored(engines, uma)
    directory = path.parent
    logins.save(replace(login, expires_at=time.time() - 1), directory)
    listed = run_runstream(uma, "tasks", "--url", engines.url, timeout=60)
    assert listed.returncode == 0, listed.stderr
    _, fresh = _stored(engines, uma)
    assert fresh.access_token != login.access_token and fresh.expires_at > time.time() + 60
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert not [s for s in engines.secrets if s in listed.stdout + listed.stderr]

    shared = run_runstream({**uma, "RUNSTREAM_API_TOKEN": "not-the-token"}, "tasks",
                           "--url", engines.url, timeout=60)  # fmt: skip
    assert "401" in shared.stderr, "RUNSTREAM_API_TOKEN comes before the login"

    logins.save(replace(fresh, expires_at=time.time() - 1, refresh_token=None), directory)
    try:
        stale = run_runstream(uma, "tasks", "--url", engines.url, timeout=60)
        assert stale.returncode == 1
        assert stale.stderr.strip() == (
            f"runstream: error: the login to {engines.url} has expired: "
            f"run runstream login --engine {engines.url}"
        )
    finally:
        logins.save(fresh, directory)


def test_logout_forgets_the_login(engines: Engines, tmp_path: Path) -> None:
    env = engines.env(tmp_path)
    proc, said = _device_login(engines, env, "erik")
    assert proc.returncode == 0 and "as erik (expert)" in said, said
    path, login = _stored(engines, env)
    path.chmod(0o640)  # as another tool might leave it
    loose = run_runstream(env, "tasks", "--url", engines.url, timeout=60)
    assert loose.returncode == 1 and "is open to other users (mode 640)" in loose.stderr
    assert len(loose.stderr.strip().splitlines()) == 1, loose.stderr
    path.chmod(0o600)
    out = run_runstream(env, "logout", "--engine", engines.url + "/", timeout=60)
    assert out.returncode == 0 and f"logged out of {engines.url}" in out.stderr, out.stderr
    assert not path.exists()
    again = httpx.post(login.token_endpoint, timeout=30, data={
        "grant_type": "refresh_token", "refresh_token": login.refresh_token, "client_id": CLIENT,
    })  # fmt: skip
    assert again.status_code == 400, "logout revoked the refresh token at Keycloak"
    refused = run_runstream(env, "tasks", "--url", engines.url, timeout=60)
    assert refused.returncode == 1 and "401: missing bearer token" in refused.stderr


def test_login_refusals_are_one_line(engines: Engines, tmp_path: Path) -> None:
    env = engines.env(tmp_path)
    for url, says in (
        (engines.plain, f"the engine at {engines.plain} has no OIDC provider to log in with"),
        (engines.no_client, f"the engine at {engines.no_client} names no client for runstream"),
        ("http://127.0.0.1:9", "cannot reach the engine at http://127.0.0.1:9/auth/config"),
    ):
        out = run_runstream(env, "login", "--engine", url, timeout=60)
        assert out.returncode == 1, out.stderr
        lines = out.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"runstream: error: {says}"), lines

    proc, said = _device_login(engines, env, "ursula", accept=False)
    assert proc.returncode == 1
    assert said.strip().splitlines()[-1] == "runstream: error: the login was denied at the provider"
    assert "Traceback" not in said
    assert not (tmp_path / "runstream" / "logins").exists() or not any(
        (tmp_path / "runstream" / "logins").iterdir()
    )


def test_polling_slows_down_when_told_and_ends_at_expired_token(engines: Engines) -> None:
    """Keycloak's own answers: a poll at once after another gets ``slow_down`` (the interval
    grows by 5 s for good, RFC 8628 3.5); a code nobody approves within its 3 s (the short
    client's) gets ``expired_token``. The clock stands still, so Keycloak ends it, not us."""
    waits: list[float] = []

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        if len(waits) > 2:  # the first two polls at once: too fast
            time.sleep(seconds)

    said: list[str] = []
    with httpx.Client(timeout=30) as http:
        provider = replace(discover(http, engines.url), client_id=SHORT_CLIENT)
        with pytest.raises(logins.LoginError, match="expired before it was approved"):
            device_login(http, provider, say=said.append, sleep=sleep, clock=lambda: 0.0)
    assert waits == [1.0, 1.0, 6.0]
    assert said[0].startswith("To log in, open in a browser: http") and len(said) == 2
