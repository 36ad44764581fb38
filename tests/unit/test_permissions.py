"""The permissions file: allowed and forbidden plans and devices per role, at submission.

A real Engine and RunEngine behind a guard with a real API key store; each role acts
through a key with that scope. The queue is stopped, so submitted tasks wait in it.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from runstream.cli import main
from runstream.producer.engine import PlanRegistry
from runstream.producer.engine.auth import guard_for
from runstream.producer.engine.identity.permissions import PermissionsError, parse
from runstream.producer.engine.settings import EngineSettings
from tests.engine_roles import TOKEN, RoleService, role_service
from tests.kafka_tools import free_port

RULES = """
# users run counts and relative scans, with the detectors and motors named here
[roles.user]
allowed_plans = ["count", "rel_.*"]
forbidden_plans = ["rel_log_scan"]
allowed_devices = ["det.*", "motor.?"]
forbidden_devices = ["det3", "motor2"]

[roles.expert]
forbidden_plans = ["spiral"]
"""


@pytest.fixture(scope="module")
def registry() -> PlanRegistry:
    return PlanRegistry.default()


@pytest.fixture
def rules_file(tmp_path: Path) -> Path:
    path = tmp_path / "permissions.toml"
    path.write_text(RULES)
    return path


@pytest.fixture
def service(tmp_path: Path, registry: PlanRegistry, rules_file: Path) -> Iterator[RoleService]:
    with role_service(tmp_path, registry, rules_file) as svc:
        yield svc


def submit(svc: RoleService, role: str, plan: str, args: list | None = None, **kwargs):
    body = {"plan": plan, "args": args or [], "kwargs": kwargs}
    return svc.client.post("/tasks", json=body, headers=svc.auth(role))


def test_a_user_submits_what_is_allowed_and_not_forbidden(service: RoleService) -> None:
    assert submit(service, "user", "count", [["det", "det1"]]).status_code == 201
    reply = submit(service, "user", "rel_scan", [["det"], "motor", -1, 1], num=3)
    assert reply.status_code == 201, reply.text
    queued = service.client.get(f"/tasks/{reply.json()['task_id']}").json()
    assert queued["submitted_by"] == "key:user-key"


def test_the_plans_listed_are_those_the_callers_role_may_submit(service: RoleService) -> None:
    def listed(role: str | None) -> list[str]:
        headers = service.auth(role) if role else {}
        reply = service.client.get("/plans", headers=headers)
        assert reply.status_code == 200, reply.text
        return [p["name"] for p in reply.json()]

    everything = sorted(service.engine.registry.plans)
    user = listed("user")
    assert "count" in user and "rel_scan" in user and "rel_log_scan" not in user
    assert all(n == "count" or n.startswith("rel_") for n in user)
    assert listed("expert") == [n for n in everything if n != "spiral"]
    assert listed("admin") == everything  # a role without rules is not restricted
    assert listed(None) == everything  # an open read, anonymous
    forged = service.client.get("/plans", headers={"Authorization": "Bearer rsk_forged"})
    assert [p["name"] for p in forged.json()] == everything  # as anonymous: the read is open


def test_a_plan_outside_the_allowed_list_is_refused_naming_the_rule(
    service: RoleService, rules_file: Path
) -> None:
    reply = submit(service, "user", "scan", [["det"], "motor", -1, 1], num=3)
    assert reply.status_code == 403
    detail = reply.json()["detail"]
    assert detail.startswith("plan 'scan' is not allowed for role user")
    assert "allowed_plans ['count', 'rel_.*']" in detail and str(rules_file) in detail
    assert service.engine.store.queue() == []


def test_forbidden_wins_over_allowed(service: RoleService, rules_file: Path) -> None:
    reply = submit(service, "user", "rel_log_scan", [["det"], "motor", 1, 10, 3])
    assert reply.status_code == 403
    assert reply.json()["detail"] == (
        f"plan 'rel_log_scan' is forbidden for role user by pattern 'rel_log_scan' "
        f"(forbidden_plans in {rules_file})"
    )
    latest = service.guard.audit.page(1, 1)[0][0]  # the refusal is audited with its reason
    assert (latest["subject"], latest["status"]) == ("key:user-key", 403)
    assert latest["detail"] == reply.json()["detail"]


@pytest.mark.parametrize(
    ("args", "kwargs", "device", "rule"),
    [
        ([["det", "det3"]], {}, "det3", "by pattern 'det3' (forbidden_devices"),
        ([], {"detectors": ["det3"]}, "det3", "by pattern 'det3' (forbidden_devices"),
        ([["noisy_det"]], {}, "noisy_det", "matches none of allowed_devices ['det.*', 'motor.?']"),
        ([["motor2.readback"]], {}, "motor2.readback", "by pattern 'motor2' (forbidden_devices"),
    ],
    ids=["positional", "keyword", "not-allowed", "component-of-forbidden"],
)
def test_a_device_argument_is_checked_as_the_registry_reads_it(
    service: RoleService, args: list, kwargs: dict, device: str, rule: str
) -> None:
    reply = submit(service, "user", "count", args, **kwargs)
    assert reply.status_code == 403, reply.text
    detail = reply.json()["detail"]
    assert detail.startswith(f"device {device!r} (argument 'detectors' of plan 'count') ")
    assert "role user" in detail and rule in detail


def test_devices_in_a_scans_positional_arguments_are_checked(service: RoleService) -> None:
    reply = submit(service, "user", "rel_scan", [["det"], "jittery_motor1", -1, 1], num=3)
    assert reply.status_code == 403
    assert reply.json()["detail"].startswith("device 'jittery_motor1' (argument 'args'")


def test_each_role_has_its_own_rules(service: RoleService) -> None:
    assert (
        submit(service, "expert", "scan", [["noisy_det"], "motor", -1, 1], num=3).status_code == 201
    )
    reply = submit(service, "expert", "spiral", [["det"], "motor1", "motor2", 0, 0, 1, 1, 0.5, 1])
    assert reply.status_code == 403 and "role expert by pattern 'spiral'" in reply.json()["detail"]
    # admin has no table: not restricted; the shared token is admin
    assert (
        submit(
            service, "admin", "spiral", [["det3"], "motor1", "motor2", 0, 0, 1, 1, 0.5, 1]
        ).status_code
        == 201
    )
    assert (
        submit(service, "token", "rel_log_scan", [["det3"], "motor2", 1, 10, 3]).status_code == 201
    )
    refused = submit(service, "observer", "count", [["det"]])
    assert refused.status_code == 403 and "this needs user" in refused.json()["detail"]


def test_bad_requests_keep_their_own_answers(service: RoleService) -> None:
    assert submit(service, "user", "no_such_plan").status_code == 404
    assert submit(service, "user", "count", [["det"]], no_such_arg=1).status_code == 422


def test_reload_applies_a_good_file_and_keeps_the_rules_on_a_bad_one(
    service: RoleService, rules_file: Path
) -> None:
    client = service.client
    before = client.get("/permissions").json()
    assert before["file"] == str(rules_file)
    assert before["roles"]["user"]["allowed_plans"] == ["count", "rel_.*"]
    assert before["roles"]["expert"]["allowed_plans"] is None
    assert submit(service, "user", "scan", [["det"], "motor", -1, 1], num=3).status_code == 403

    rules_file.write_text(RULES.replace('"count", "rel_.*"', '"count", "scan"'))
    for role in ("observer", "user", "expert"):
        assert client.post("/permissions/reload", headers=service.auth(role)).status_code == 403
    reply = client.post("/permissions/reload", headers=service.auth("admin"))
    assert reply.status_code == 200, reply.text
    assert reply.json()["roles"]["user"]["allowed_plans"] == ["count", "scan"]
    assert reply.json()["loaded"] >= before["loaded"]
    assert submit(service, "user", "scan", [["det"], "motor", -1, 1], num=3).status_code == 201

    rules_file.write_text('[roles.user]\nallowed_plans = ["count"\n')  # unclosed list
    reply = client.post("/permissions/reload", headers=service.auth("admin"))
    assert reply.status_code == 422
    assert reply.json()["detail"].startswith(f"permissions file {rules_file}: not valid TOML")
    assert client.get("/permissions").json()["roles"]["user"]["allowed_plans"] == ["count", "scan"]
    assert submit(service, "user", "scan", [["det"], "motor", -1, 1], num=3).status_code == 201


def test_without_a_file_everything_registered_is_permitted(
    tmp_path: Path, registry: PlanRegistry
) -> None:
    with role_service(tmp_path, registry) as svc:
        assert (
            submit(
                svc, "user", "spiral", [["det3"], "motor1", "motor2", 0, 0, 1, 1, 0.5, 1]
            ).status_code
            == 201
        )
        assert svc.client.get("/permissions").json()["file"] is None
        reply = svc.client.post("/permissions/reload", headers=svc.auth("admin"))
        assert reply.status_code == 409 and "RUNSTREAM_PERMISSIONS_FILE" in reply.json()["detail"]


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("[roles.user\n", "not valid TOML"),
        ('[roles.guest]\nallowed_plans = ["count"]\n', "unknown role 'guest'"),
        ('[roles.user]\nforbiden_plans = ["count"]\n', "unknown key 'forbiden_plans'"),
        ('[roles.user]\nallowed_plans = ["count("]\n', "pattern 'count('"),
        ('[roles.user]\nallowed_plans = "count"\n', "allowed_plans must be a list of strings"),
        ('[user]\nallowed_plans = ["count"]\n', "unknown top-level key 'user'"),
        ("roles = 3\n", "'roles' must be a table"),
    ],
)
def test_a_malformed_file_is_refused_in_one_line(tmp_path: Path, text: str, problem: str) -> None:
    path = tmp_path / "permissions.toml"
    path.write_text(text)
    with pytest.raises(PermissionsError) as caught:
        parse(path)
    message = str(caught.value)
    assert message.startswith(f"permissions file {path}: ") and problem in message
    assert "\n" not in message


def test_the_setting_names_the_file_the_engine_enforces(
    tmp_path: Path, rules_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RUNSTREAM_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("RUNSTREAM_PERMISSIONS_FILE", str(rules_file))
    guard = guard_for(EngineSettings(), TOKEN)
    try:
        assert guard.permissions.path == rules_file
        assert sorted(guard.permissions.rules.roles) == ["expert", "user"]
        assert guard.audit.path == tmp_path / "home" / "engine" / "audit.db"
    finally:
        guard.audit.close()
        guard.keys.close()  # type: ignore[union-attr]


def test_the_engine_refuses_to_start_with_a_malformed_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    path = tmp_path / "permissions.toml"
    path.write_text('[roles.user]\nallowed_plans = ["count"]\nallowed_devices = ["[det"]\n')
    for name in [n for n in os.environ if n.startswith("RUNSTREAM_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("RUNSTREAM_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("RUNSTREAM_API_TOKEN", TOKEN)
    monkeypatch.setenv("RUNSTREAM_PERMISSIONS_FILE", str(path))
    ours = logging.getLogger("runstream")
    level = ours.level
    try:
        code = main(["engine", "--port", str(free_port())])
    finally:
        ours.setLevel(level)  # main sets it for the process
    err = capsys.readouterr().err
    assert code != 0
    assert err.splitlines() == [
        f"runstream: error: permissions file {path}: [roles.user] allowed_devices: "
        "pattern '[det': unterminated character set at position 0"
    ]
    assert TOKEN not in err
