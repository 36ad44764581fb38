"""`schemathesis run --checks all` with a Keycloak token of each role finds nothing.

The engine is configured by RUNSTREAM_OIDC_* as deployed (as in test_identity: no shared
token, reads closed), with a real RunEngine whose queue is stopped so that what the fuzzer
queues never runs; it serves on a free loopback port in this process, a fresh one per role
(one role's queued tasks and keys are not the next one's state). Each role's run is the
command line of tests.engine_fuzzing with the bearer token of one Keycloak user in that
role's group: an observer's changes are refused (403), an admin's all reach the engine.

Keycloak's access tokens live 300 s (the realm's accessTokenLifespan) and the token is
fixed for a run, so each run is kept short (``--max-examples``); a run that outlasted its
token is named as such rather than as the 401s it would then meet.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import jwt
import pytest

from runstream.producer.engine import Engine, PlanRegistry, TaskStore
from runstream.producer.engine.app import create_app
from tests.engine_fuzzing import (
    Secret,
    assert_every_operation_tested,
    failures,
    fuzz,
    generated,
    serving,
)
from tests.engine_roles import configured_guard
from tests.keycloak import AUDIENCE, ROLES, USERS, Keycloak

pytestmark = [pytest.mark.oidc, pytest.mark.timeout(1200)]  # Keycloak's start, four runs

#: The first Keycloak user in each role's group.
MEMBER = {role: next(u for u, g in USERS.items() if g == role) for role in ROLES}
#: Cases per operation and phase: four runs of about 20 s each on this machine.
MAX_EXAMPLES = "25"


@pytest.fixture
def engine_url(keycloak: Keycloak, tmp_path: Path) -> Iterator[str]:
    """An engine guarded by Keycloak's tokens, its state in ``tmp_path``, serving."""
    env = {
        "RUNSTREAM_HOME": str(tmp_path / "home"),
        "RUNSTREAM_OIDC_ISSUER": keycloak.issuer,
        "RUNSTREAM_OIDC_AUDIENCE": AUDIENCE,
        "RUNSTREAM_OIDC_ROLES_CLAIM": "realm_access.roles",
        "RUNSTREAM_OPEN_READS": "false",
    }
    settings, guard = configured_guard(env)
    engine = Engine(TaskStore(settings.db_path), PlanRegistry.default(), max_queue=5)
    engine.set_queue_running(False)  # accept tasks but run none: the fuzzer would queue hours
    engine.start()
    try:
        with serving(create_app(engine, guard)) as url:
            yield url
    finally:
        engine.close()
        engine.store.close()
        guard.close()


@pytest.mark.parametrize("role", ROLES)
def test_schemathesis_finds_no_failure_with_a_token_of(
    role: str, engine_url: str, keycloak: Keycloak, tmp_path: Path
) -> None:
    token = keycloak.token(MEMBER[role])
    claims = jwt.decode(token, options={"verify_signature": False})
    assert role in claims["realm_access"]["roles"], claims
    cwd = tmp_path / "fuzz"  # schemathesis' cache
    cwd.mkdir()
    began = time.monotonic()
    try:
        code, report = fuzz(engine_url, Secret(token), cwd, "--max-examples", MAX_EXAMPLES,
                            timeout=max(claims["exp"] - time.time(), 1))  # fmt: skip
    except TimeoutError:
        pytest.fail(f"the {role}'s run outlasted its token: lower MAX_EXAMPLES")
    took = time.monotonic() - began
    print(f"{role}: {report.splitlines()[-1]} ({took:.0f} s)")
    assert generated(report) > 300, report
    assert_every_operation_tested(engine_url, report)
    assert not failures(report) and code == 0, report
