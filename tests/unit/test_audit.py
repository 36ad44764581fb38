"""The audit log: every request that could change state, who made it, its answer; never a
credential. A real Engine and RunEngine, a real key store, a key per role."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from runstream.producer.engine import PlanRegistry
from tests.engine_roles import TOKEN, RoleService, role_service

COUNT = {"plan": "count", "args": [["det"]]}


@pytest.fixture(scope="module")
def registry() -> PlanRegistry:
    return PlanRegistry.default()


@pytest.fixture
def service(tmp_path: Path, registry: PlanRegistry) -> Iterator[RoleService]:
    with role_service(tmp_path, registry) as svc:
        yield svc


def entries(svc: RoleService, **params) -> dict:
    reply = svc.client.get("/audit", params=params, headers=svc.auth("expert"))
    assert reply.status_code == 200, reply.text
    return reply.json()


def test_every_change_is_recorded_with_who_what_and_where(
    service: RoleService, tmp_path: Path
) -> None:
    c, auth = service.client, service.auth
    task_id = c.post("/tasks", json=COUNT, headers=auth("user")).json()["task_id"]
    assert c.post("/tasks", json=COUNT, headers=auth("observer")).status_code == 403
    assert c.post("/tasks", json=COUNT).status_code == 401
    assert (
        c.post("/tasks", json=COUNT, headers={"Authorization": "Bearer rsk_forged"}).status_code
        == 401
    )
    assert c.get("/tasks").status_code == 200  # a read: not audited
    assert c.get("/whoami", headers=auth("user")).status_code == 200
    assert c.post("/control/pause", headers=auth("user")).status_code == 409  # idle
    assert c.post("/queue/stop", headers=auth("expert")).status_code == 200
    assert c.delete(f"/tasks/{task_id}", headers=auth("user")).status_code == 200
    issued = c.post("/keys", json={"name": "robot", "scopes": ["user"]}, headers=auth("admin"))
    assert issued.status_code == 201
    key_id, new_key = issued.json()["key_id"], issued.json()["key"]
    assert c.delete(f"/keys/{key_id}", headers=auth("token")).status_code == 200
    assert c.post("/permissions/reload", headers=auth("admin")).status_code == 409
    assert c.post("/no/such/route", headers=auth("admin")).status_code == 404  # no route
    assert c.put("/tasks", headers=auth("admin")).status_code == 405  # no route for it

    page = entries(service)
    got = [
        (e["subject"], e["role"], e["method"], e["path"], e["status"], e["task_id"], e["key_id"])
        for e in reversed(page["entries"])
    ]
    assert got == [
        ("key:user-key", "user", "POST", "/tasks", 201, task_id, None),
        ("key:observer-key", "observer", "POST", "/tasks", 403, None, None),
        ("anonymous", None, "POST", "/tasks", 401, None, None),
        ("anonymous", None, "POST", "/tasks", 401, None, None),
        ("key:user-key", "user", "POST", "/control/pause", 409, None, None),
        ("key:expert-key", "expert", "POST", "/queue/stop", 200, None, None),
        ("key:user-key", "user", "DELETE", f"/tasks/{task_id}", 200, task_id, None),
        ("key:admin-key", "admin", "POST", "/keys", 201, None, key_id),
        ("token", "admin", "DELETE", f"/keys/{key_id}", 200, None, key_id),
        ("key:admin-key", "admin", "POST", "/permissions/reload", 409, None, None),
    ]
    assert page["total"] == len(got) and page["page"] == 1
    first, observer, anonymous = page["entries"][-1], page["entries"][-2], page["entries"][-3]
    assert first["client"] == "testclient" and first["via"] == "key" and first["detail"] is None
    assert observer["detail"] == "key:observer-key is observer; this needs user"
    assert anonymous["detail"].startswith("missing bearer token")
    times = [e["time"] for e in page["entries"]]
    assert times == sorted(times, reverse=True)  # newest first

    secrets = [TOKEN, new_key, "rsk_forged", *service.keys.values()]
    text = str(page)
    assert not [s for s in secrets if s in text] and "rsk_" not in text
    stored = b"".join(p.read_bytes() for p in tmp_path.glob("audit.db*"))
    assert stored and not [s for s in secrets if s.encode() in stored]
    assert b"rsk_" not in stored


def test_the_log_is_paged_and_filtered_by_subject(service: RoleService) -> None:
    c, auth = service.client, service.auth
    ids = [c.post("/tasks", json=COUNT, headers=auth("user")).json()["task_id"] for _ in range(5)]
    assert c.post("/queue/stop", headers=auth("expert")).status_code == 200
    second = entries(service, page=2, size=2)
    assert second["total"] == 6 and second["size"] == 2
    assert [e["task_id"] for e in second["entries"]] == [ids[3], ids[2]]
    assert entries(service, page=4, size=2)["entries"] == []
    mine = entries(service, subject="key:user-key")
    assert mine["total"] == 5 and [e["task_id"] for e in mine["entries"]] == ids[::-1]


def test_only_experts_and_admins_read_the_log(service: RoleService) -> None:
    c, auth = service.client, service.auth
    for role in ("observer", "user"):
        reply = c.get("/audit", headers=auth(role))
        assert (
            reply.status_code == 403 and f"is {role}; this needs expert" in reply.json()["detail"]
        )
    assert c.get("/audit").status_code == 401  # open reads do not open the log
    for role in ("expert", "admin", "token"):
        assert c.get("/audit", headers=auth(role)).status_code == 200
    assert entries(service)["total"] == 0  # reading the log is no change


def test_a_batch_answer_records_every_task_it_names(tmp_path: Path) -> None:
    from runstream.producer.engine.identity.audit import _named

    body = b'{"tasks": [{"task_id": "a"}, {"task_id": "b"}], "detail": "x"}'
    assert _named(body) == {"task_id": "a b", "detail": "x"}
    assert _named(b'[{"task_id": "c"}]') == {"task_id": "c"}
    assert _named(b'{"removed": 2, "task_ids": ["d", "e"]}') == {"task_id": "d e"}
    assert _named(b'{"detail": [{"input": "secret"}]}') == {}  # field errors may echo input
    assert _named(b"not json") == {}
