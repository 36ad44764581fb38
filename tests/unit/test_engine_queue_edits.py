"""Editing the engine's queue over HTTP: move, update, remove, clear, batch, validate, history.

A real Engine with a real RunEngine and ophyd.sim devices; the queue is stopped so tasks stay
queued while they are edited. Callers act as a role through API keys with that scope (the
key store the engine's guard reads), and as admin through the shared token.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from runstream.producer.engine import Engine, PlanRegistry, TaskStore
from runstream.producer.engine.app import create_app
from runstream.producer.engine.auth import Guard
from runstream.producer.engine.identity.keys import KeyStore
from tests.engine_tasks import wait_for_task
from tests.waiting import eventually

TOKEN = "edit-token"  # noqa: S105 - a test credential
COUNT = {"plan": "count", "args": [["det"]]}


@dataclass
class Service:
    client: TestClient
    engine: Engine
    docs: list
    as_: dict[str, dict[str, str]]  # role or person -> headers

    def submit(self, who: str = "admin", **kwargs: object) -> str:
        reply = self.client.post("/tasks", json={**COUNT, "kwargs": kwargs}, headers=self.as_[who])
        assert reply.status_code == 201, reply.text
        return reply.json()["task_id"]

    def order(self) -> list[str]:
        return [t["task_id"] for t in self.client.get("/queue").json()["tasks"]]

    def move(self, who: str = "admin", **body: object) -> httpx.Response:
        return self.client.post("/queue/move", json=body, headers=self.as_[who])

    def read(self, path: str) -> dict:
        return self.client.get(path).json()

    def wait(self, task_id: str, *states: str) -> dict:
        return wait_for_task(self.read, task_id, states, 30)


@pytest.fixture(scope="module")
def registry() -> PlanRegistry:
    return PlanRegistry.default()


@pytest.fixture
def service(tmp_path: Path, registry: PlanRegistry) -> Iterator[Service]:
    docs: list = []
    engine = Engine(
        TaskStore(tmp_path / "tasks.db"),
        registry,
        max_queue=10,
        subscribers=[lambda name, doc: docs.append((name, doc))],
    )
    engine.set_queue_running(False)  # tasks stay queued while they are edited
    engine.start()
    keys = KeyStore(tmp_path / "keys.db")
    people = {"alice": "user", "bob": "user", "eve": "expert", "olga": "observer"}
    as_ = {"admin": {"Authorization": f"Bearer {TOKEN}"}}
    for name, role in people.items():
        key, _ = keys.create(name, [role], None, "test")
        as_[name] = {"Authorization": f"Bearer {key}"}
    app = create_app(engine, Guard(TOKEN, open_reads=True, keys=keys))
    with TestClient(app) as client:
        yield Service(client, engine, docs, as_)
    engine.close()
    engine.store.close()
    keys.close()


def test_move_before_after_and_to_a_position(service: Service) -> None:
    a, b, c, d = (service.submit(num=n) for n in range(4))
    move = service.move
    reply = move(task_id=d, before=a)
    assert reply.status_code == 200, reply.text
    assert reply.json()["task_id"] == d and reply.json()["position"] == 0
    assert service.order() == [d, a, b, c]
    assert move(task_id=d, after=b).json()["position"] == 2
    assert service.order() == [a, b, d, c]
    assert move(task_id=c, position=0).json()["position"] == 0
    assert service.order() == [c, a, b, d]
    assert move(task_id=c, position=99.0).json()["position"] == 3  # past the end: last
    assert service.order() == [a, b, d, c]
    assert move(task_id=b, after=b).json()["position"] == 1  # next to itself: stays
    assert service.client.get(f"/tasks/{d}").json()["position"] == 2
    # A task submitted after the moves goes last.
    e = service.submit()
    assert service.order() == [a, b, d, c, e]


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ({"before": "A", "after": "B"}, "give exactly one of before"),
        ({}, "not none"),
        ({"position": -1}, "greater than or equal to 0"),
        ({"position": "1"}, "position must be a number, not str"),
        ({"position": True}, "position must be a number, not bool"),
        ({"position": 0.5}, "fractional part"),
        ({"before": None}, "valid string"),
        ({"position": 0, "extra": 1}, "Extra inputs are not permitted"),
    ],
)
def test_a_malformed_move_answers_422_saying_why(service: Service, body, needle) -> None:
    a, b = service.submit(), service.submit()
    body = {k: {"A": a, "B": b}.get(v, v) if isinstance(v, str) else v for k, v in body.items()}
    reply = service.client.post(
        "/queue/move", json={"task_id": b, **body}, headers=service.as_["admin"]
    )
    assert reply.status_code == 422, reply.text
    assert needle in reply.text
    assert service.order() == [a, b]


def test_moves_of_unknown_and_unqueued_tasks(service: Service) -> None:
    a, b = service.submit(), service.submit()
    gone = service.submit()
    admin = service.as_["admin"]
    assert service.client.delete(f"/tasks/{gone}", headers=admin).status_code == 200
    unknown = service.move(task_id="nope", position=0)
    assert unknown.status_code == 404 and "unknown task 'nope'" in unknown.text
    assert service.move(task_id=a, after="nope").status_code == 404
    removed = service.move(task_id=gone, position=0)
    assert removed.status_code == 409 and f"task {gone} is not queued" in removed.text
    assert service.move(task_id=a, before=gone).status_code == 409
    assert service.order() == [a, b]


def test_an_edit_is_checked_keeps_id_and_place_and_is_recorded(service: Service) -> None:
    first = service.submit("alice", num=1)
    mine = service.submit("alice", num=1)
    url = f"/tasks/{mine}"
    alice = service.as_["alice"]
    reply = service.client.patch(url, json={"kwargs": {"num": 3}}, headers=alice)
    assert reply.status_code == 200, reply.text
    task = reply.json()
    assert task["task_id"] == mine and task["position"] == 1 and task["kwargs"] == {"num": 3}
    [edit] = task["edits"]
    assert edit["by"] == "key:alice" and edit["before"] == {"kwargs": {"num": 1}}
    assert edit["after"] == {"kwargs": {"num": 3}}
    assert service.client.get(url).json()["edits"] == [edit]
    # Checked as a submission: refused with the submission's status and message.
    for body, code, needle in [
        ({"kwargs": {"num": "many"}}, 422, "'num'"),
        ({"args": [["nope"]]}, 422, "unknown device 'nope'"),
        ({"plan": "no_such_plan"}, 404, "unknown plan"),
        ({"kwargs": {"bogus": 1}}, 422, "bogus"),
        ({}, 422, "give at least one of plan, args or kwargs"),
        ({"plan": None}, 422, "valid string"),
        ({"state": "completed"}, 422, "Extra inputs are not permitted"),
    ]:
        refused = service.client.patch(url, json=body, headers=alice)
        assert refused.status_code == code and needle in refused.text, (body, refused.text)
    again = service.client.get(url).json()
    assert again["kwargs"] == {"num": 3} and len(again["edits"]) == 1
    assert service.order() == [first, mine]
    # A new plan with new arguments, in one edit.
    body = {"plan": "scan", "args": [["det"], "motor", -1, 1]}
    task = service.client.patch(url, json=body, headers=alice).json()
    assert task["plan"] == "scan" and task["args"] == body["args"] and task["kwargs"] == {"num": 3}
    assert set(task["edits"][1]["after"]) == {"plan", "args"}
    assert (
        service.client.patch("/tasks/nope", json={"kwargs": {}}, headers=alice).status_code == 404
    )


def test_the_edited_arguments_are_what_runs(service: Service) -> None:
    task_id = service.submit(num=1)
    reply = service.client.patch(
        f"/tasks/{task_id}", json={"kwargs": {"num": 4}}, headers=service.as_["admin"]
    )
    assert reply.status_code == 200, reply.text
    service.engine.set_queue_running(True)
    assert service.wait(task_id, "completed", "failed")["state"] == "completed"
    [start] = [doc for name, doc in service.docs if name == "start"]
    assert start["task_id"] == task_id and start["num_points"] == 4
    assert sum(1 for name, _ in service.docs if name == "event") == 4


def test_a_running_task_cannot_be_edited_moved_or_removed(service: Service) -> None:
    admin = service.as_["admin"]
    slow = service.submit(num=200, delay=0.05)
    waiting = service.submit()
    service.engine.set_queue_running(True)
    service.wait(slow, "running")
    service.engine.set_queue_running(False)  # the next one stays queued
    edit = service.client.patch(f"/tasks/{slow}", json={"kwargs": {"num": 1}}, headers=admin)
    assert edit.status_code == 409 and "running, not queued" in edit.text
    move = service.client.post("/queue/move", json={"task_id": slow, "position": 1}, headers=admin)
    assert move.status_code == 409
    assert service.client.delete(f"/tasks/{slow}", headers=admin).status_code == 409
    assert service.client.post("/control/abort", headers=admin).status_code == 200
    assert service.wait(slow, "aborted")["kwargs"] == {
        "num": 200,
        "delay": 0.05,
    }
    assert service.order() == [waiting]


def test_remove_and_clear_the_queue(service: Service) -> None:
    a, b, c = service.submit("alice"), service.submit("bob"), service.submit("alice")
    alice, eve = service.as_["alice"], service.as_["eve"]
    assert service.client.delete(f"/tasks/{a}", headers=alice).json()["state"] == "removed"
    again = service.client.delete(f"/tasks/{a}", headers=alice)
    assert again.status_code == 409 and "removed, not queued" in again.text
    assert service.client.delete("/queue", headers=alice).status_code == 403
    assert service.order() == [b, c]
    reply = service.client.delete("/queue", headers=eve)
    assert reply.status_code == 200 and reply.json() == {"removed": 2, "task_ids": [b, c]}
    assert service.order() == []
    assert {service.client.get(f"/tasks/{t}").json()["state"] for t in (b, c)} == {"removed"}
    assert service.client.delete("/queue", headers=eve).json()["removed"] == 0


def test_a_batch_queues_all_in_order(service: Service) -> None:
    first = service.submit()
    batch = [{**COUNT, "kwargs": {"num": n}} for n in (1, 2, 3)]
    reply = service.client.post("/tasks/batch", json={"tasks": batch}, headers=service.as_["alice"])
    assert reply.status_code == 201, reply.text
    queued = reply.json()["tasks"]
    assert [t["position"] for t in queued] == [1, 2, 3]
    assert service.order() == [first, *(t["task_id"] for t in queued)]
    tasks = [service.client.get(f"/tasks/{t['task_id']}").json() for t in queued]
    assert [t["kwargs"]["num"] for t in tasks] == [1, 2, 3]
    assert {t["submitted_by"] for t in tasks} == {"key:alice"}


def test_a_batch_with_problems_queues_none_and_names_each(service: Service) -> None:
    before = service.order()
    batch = [
        COUNT,
        {**COUNT, "kwargs": {"num": "x"}},
        {"plan": "no_such_plan"},
        {"plan": "count", "args": [["nope"]]},
    ]
    reply = service.client.post("/tasks/batch", json={"tasks": batch}, headers=service.as_["alice"])
    assert reply.status_code == 422, reply.text
    problems = reply.json()["detail"]
    assert [p["index"] for p in problems] == [1, 2, 3]
    assert [p["loc"] for p in problems] == [["body", "tasks", i] for i in (1, 2, 3)]
    assert "'num'" in problems[0]["msg"] and problems[0]["status"] == 422
    assert "unknown plan 'no_such_plan'" in problems[1]["msg"] and problems[1]["status"] == 404
    assert "unknown device 'nope'" in problems[2]["msg"]
    assert service.order() == before and service.engine.store.list() == []
    # Every problem of one kind: that kind's status, as one submission would answer.
    unknown = service.client.post(
        "/tasks/batch", json={"tasks": [{"plan": "a"}, {"plan": "b"}]}, headers=service.as_["alice"]
    )
    assert unknown.status_code == 404 and len(unknown.json()["detail"]) == 2


def test_a_batch_the_queue_has_no_room_for_queues_none(service: Service) -> None:
    for _ in range(8):
        service.submit()
    reply = service.client.post(
        "/tasks/batch", json={"tasks": [COUNT] * 3}, headers=service.as_["admin"]
    )
    assert reply.status_code == 409 and "room for 2 tasks, not 3" in reply.text
    assert len(service.order()) == 8


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ({"tasks": []}, "at least 1 item"),
        ({}, "Field required"),
        ({"tasks": [{"args": []}]}, "plan"),
        ({"tasks": [COUNT], "atomic": False}, "Extra inputs are not permitted"),
    ],
)
def test_a_malformed_batch_answers_422(service: Service, body, needle) -> None:
    reply = service.client.post("/tasks/batch", json=body, headers=service.as_["admin"])
    assert reply.status_code == 422 and needle in reply.text, reply.text
    assert service.engine.store.list() == []


def test_validate_checks_as_a_submission_and_queues_nothing(service: Service) -> None:
    alice = service.as_["alice"]

    def post(body: dict, who: dict = alice) -> httpx.Response:
        return service.client.post("/tasks/validate", json=body, headers=who)

    ok = post({**COUNT, "kwargs": {"num": 2}})
    assert ok.status_code == 200 and ok.json() == {"valid": True, "plan": "count"}
    for body in (
        {**COUNT, "kwargs": {"num": "many"}},
        {"plan": "no_such_plan"},
        {"plan": "count"},
        {"plan": 5},
    ):
        submitted = service.client.post("/tasks", json=body, headers=alice)
        validated = post(body)
        assert validated.status_code == submitted.status_code and validated.status_code >= 400
        assert validated.json() == submitted.json()
    assert post(COUNT, service.as_["olga"]).status_code == 403
    assert service.client.post("/tasks/validate", json=COUNT).status_code == 401
    assert service.engine.store.list() == []


def test_history_is_paged_filtered_newest_first_and_cleared_by_experts(service: Service) -> None:
    admin = service.as_["admin"]
    ran = [service.submit("alice", num=1), service.submit("bob", num=1)]
    service.engine.set_queue_running(True)
    for task_id in ran:
        service.wait(task_id, "completed")
    service.engine.set_queue_running(False)
    dropped = service.submit("alice")
    service.client.delete(f"/tasks/{dropped}", headers=admin)
    waiting = service.submit("alice")
    history = service.client.get("/history").json()
    assert history["total"] == 3 and history["page"] == 1
    assert [t["task_id"] for t in history["tasks"]] == [dropped, ran[1], ran[0]]
    page = service.client.get("/history", params={"size": 1, "page": 2}).json()
    assert [t["task_id"] for t in page["tasks"]] == [ran[1]] and page["total"] == 3
    assert service.client.get("/history", params={"page": 9}).json()["tasks"] == []

    def by(**query: str) -> list[str]:
        found = service.client.get("/history", params=query).json()["tasks"]
        return [t["task_id"] for t in found]

    assert by(user="key:alice") == [dropped, ran[0]]
    assert by(state="completed") == ran[::-1]
    assert by(state="removed", user="key:alice") == [dropped]
    assert by(plan="scan") == []
    for bad in ({"page": 0}, {"size": 501}, {"state": "queued"}):
        assert service.client.get("/history", params=bad).status_code == 422
    assert service.client.delete("/history", headers=service.as_["alice"]).status_code == 403
    assert service.client.delete("/history", headers=service.as_["eve"]).json()["removed"] == 3
    assert service.client.get("/history").json() == {"total": 0, "page": 1, "size": 50, "tasks": []}
    assert service.order() == [waiting]  # the queue is no history


def test_users_change_only_their_own_tasks_experts_any(service: Service) -> None:
    mine = service.submit("alice")
    other = service.submit("alice")
    client, as_ = service.client, service.as_
    edit = {"kwargs": {"num": 2}}
    for who in ("bob", "olga"):
        answers = [
            client.patch(f"/tasks/{mine}", json=edit, headers=as_[who]),
            client.post("/queue/move", json={"task_id": mine, "position": 1}, headers=as_[who]),
            client.delete(f"/tasks/{mine}", headers=as_[who]),
        ]
        assert [a.status_code for a in answers] == [403] * 3, [a.text for a in answers]
    refused = client.patch(f"/tasks/{mine}", json=edit, headers=as_["bob"])
    assert "submitted by key:alice" in refused.text and "key:bob is user" in refused.text
    assert "observer; this needs user" in answers[0].text  # olga: her role, before any task
    assert client.get(f"/tasks/{mine}").json()["edits"] == []
    assert (
        client.post(
            "/queue/move", json={"task_id": mine, "after": other}, headers=as_["alice"]
        ).status_code
        == 200
    )
    patched = client.patch(f"/tasks/{mine}", json=edit, headers=as_["eve"])
    assert patched.status_code == 200 and patched.json()["edits"][0]["by"] == "key:eve"
    assert (
        client.post(
            "/queue/move", json={"task_id": mine, "position": 0}, headers=as_["eve"]
        ).status_code
        == 200
    )
    assert client.delete(f"/tasks/{mine}", headers=as_["eve"]).status_code == 200
    for route in ("/queue", "/history"):
        assert client.delete(route, headers=as_["alice"]).status_code == 403
        assert client.delete(route, headers=as_["olga"]).status_code == 403
    assert (
        client.post("/tasks/batch", json={"tasks": [COUNT]}, headers=as_["olga"]).status_code == 403
    )
    assert client.get("/history", headers=as_["olga"]).status_code == 200
    assert client.patch(f"/tasks/{other}", json=edit).status_code == 401
    assert service.order() == [other]


def test_every_edit_is_on_the_event_stream(service: Service) -> None:
    a, b = service.submit("alice"), service.submit("alice")
    events: list[dict] = []
    stop = threading.Event()

    def listen() -> None:
        with service.client.stream("GET", "/events") as stream:
            name = None
            for line in stream.iter_lines():
                if line.startswith("event: "):
                    name = line.removeprefix("event: ")
                elif line.startswith("data: ") and name != "status":
                    events.append(json.loads(line.removeprefix("data: ")))
                if stop.is_set():
                    return

    listener = threading.Thread(target=listen, daemon=True)
    listener.start()
    alice, eve = service.as_["alice"], service.as_["eve"]
    # The stream is open once an event published now reaches it.
    eventually(
        lambda: service.engine.events.publish("ping") or any(e["event"] == "ping" for e in events),
        10,
        "the event stream to open",
    )
    service.client.post("/queue/move", json={"task_id": b, "position": 0}, headers=alice)
    service.client.patch(f"/tasks/{a}", json={"kwargs": {"num": 5}}, headers=alice)
    batch = service.client.post("/tasks/batch", json={"tasks": [COUNT]}, headers=alice)
    service.client.delete(f"/tasks/{a}", headers=alice)
    service.client.delete("/queue", headers=eve)
    service.client.delete("/history", headers=eve)
    wanted = [
        {"event": "queue", "change": "moved", "task_id": b, "position": 0, "by": "key:alice"},
        {
            "event": "queue",
            "change": "edited",
            "task_id": a,
            "fields": ["kwargs"],
            "by": "key:alice",
        },
        {
            "event": "queue",
            "change": "added",
            "by": "key:alice",
            "task_ids": [batch.json()["tasks"][0]["task_id"]],
        },
        {"event": "task", "task_id": a, "state": "removed"},
        {
            "event": "queue",
            "change": "cleared",
            "by": "key:eve",
            "task_ids": [b, batch.json()["tasks"][0]["task_id"]],
        },
        {"event": "history", "change": "cleared", "by": "key:eve", "removed": 3},
    ]

    def seen() -> list[dict]:
        edits = [e for e in events if e["event"] in ("queue", "task", "history")]
        return [{k: v for k, v in e.items() if k != "time"} for e in edits]

    eventually(lambda: len(seen()) >= len(wanted), 10, lambda: f"six edit events: {seen()}")
    assert seen() == wanted
    stop.set()
    service.engine.events.publish("ping")  # wakes the listener to see it is done
    listener.join(10)
    assert not listener.is_alive()


def test_a_store_from_before_the_edits_keeps_its_queue_order(tmp_path: Path) -> None:
    path = tmp_path / "tasks.db"
    old = sqlite3.connect(path)
    old.executescript(
        "CREATE TABLE tasks (seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT UNIQUE NOT NULL,"
        " plan TEXT NOT NULL, args TEXT NOT NULL, kwargs TEXT NOT NULL, state TEXT NOT NULL,"
        " submitted REAL NOT NULL, started REAL, ended REAL, exit_status TEXT, reason TEXT,"
        " runs TEXT NOT NULL DEFAULT '[]');"
        "INSERT INTO tasks (id, plan, args, kwargs, state, submitted) VALUES"
        " ('a', 'count', '[]', '{}', 'queued', 1), ('b', 'count', '[]', '{}', 'queued', 2);"
    )
    old.commit()
    old.close()
    store = TaskStore(path)
    try:
        assert store.queue_ids() == ["a", "b"]
        assert store.get("a")["edits"] == [] and store.get("a")["submitted_by"] is None
        c = store.add("count", [], {})["task_id"]
        assert store.move(c, position=0) == 0 and store.queue_ids() == [c, "a", "b"]
    finally:
        store.close()


def test_moves_into_one_gap_until_floats_run_out_keep_the_order(tmp_path: Path) -> None:
    """Each move halves the gap between the first two tasks; once no float is left between
    them the queue is numbered again, and the order is still the one asked for."""
    store = TaskStore(tmp_path / "tasks.db")
    try:
        ids = [t["task_id"] for t in store.add_many([("count", [], {})] * 4, "test")]
        expected = list(ids)
        for _ in range(80):  # far more halvings than a double's 52 bits of mantissa
            moved = expected.pop()
            assert store.move(moved, after=expected[0]) == 1
            expected.insert(1, moved)
            assert store.queue_ids() == expected
        assert [store.get(t)["position"] for t in expected] == [0, 1, 2, 3]
        assert [t["position"] for t in store.queue()] == [0, 1, 2, 3]
    finally:
        store.close()


def test_the_queue_listed_from_its_json_rows_is_each_task_as_read(tmp_path: Path) -> None:
    """GET /queue splices the stored JSON instead of parsing it: the same tasks all the same."""
    store = TaskStore(tmp_path / "tasks.db")
    try:
        odd = 'Zoë "the" \\ operator\n'
        first = store.add("count", [["det"]], {"md": {"note": odd, "x": 1.5e-300}}, odd)
        second = store.add("count", [], {}, None)
        record = {"by": odd, "at": 1.25, "before": {"kwargs": {}}, "after": {"kwargs": {"n": 2}}}
        assert store.edit(second["task_id"], {"kwargs": {"n": 2}}, record)
        listed = json.loads(store.queue_json())
        assert listed == [store.get(first["task_id"]), store.get(second["task_id"])]
        assert listed[1]["edits"] == [record] and listed[0]["submitted_by"] == odd
    finally:
        store.close()


def test_validate_batch_and_edit_refuse_what_the_permissions_refuse(
    tmp_path: Path, registry: PlanRegistry
) -> None:
    """With a permissions file, each route that checks a request refuses as a submission."""
    from runstream.producer.engine.identity.permissions import Permissions

    rules = tmp_path / "permissions.toml"
    rules.write_text('[roles.user]\nforbidden_plans = ["scan"]\n')
    engine = Engine(TaskStore(tmp_path / "tasks.db"), registry)
    engine.set_queue_running(False)
    keys = KeyStore(tmp_path / "keys.db")
    alice = {"Authorization": f"Bearer {keys.create('alice', ['user'], None, 't')[0]}"}
    eve = {"Authorization": f"Bearer {keys.create('eve', ['expert'], None, 't')[0]}"}
    guard = Guard(TOKEN, open_reads=True, keys=keys, permissions=Permissions(rules))
    scan = {"plan": "scan", "args": [["det"], "motor", -1, 1], "kwargs": {"num": 3}}
    try:
        with TestClient(create_app(engine, guard)) as client:
            submitted = client.post("/tasks", json=scan, headers=alice)
            validated = client.post("/tasks/validate", json=scan, headers=alice)
            assert validated.status_code == submitted.status_code == 403
            assert validated.json() == submitted.json() and "scan" in validated.text
            assert client.post("/tasks/validate", json=scan, headers=eve).status_code == 200
            mixed = [COUNT, scan, {**COUNT, "kwargs": {"num": "x"}}]
            batch = client.post("/tasks/batch", json={"tasks": mixed}, headers=alice)
            assert batch.status_code == 422
            assert [(p["index"], p["status"]) for p in batch.json()["detail"]] == [
                (1, 403),
                (2, 422),
            ]
            only = client.post("/tasks/batch", json={"tasks": [scan]}, headers=alice)
            assert only.status_code == 403 and "scan" in only.json()["detail"][0]["msg"]
            mine = client.post("/tasks", json=COUNT, headers=alice).json()["task_id"]
            edit = client.patch(f"/tasks/{mine}", json=scan, headers=alice)
            assert (
                edit.status_code == 403 and client.get(f"/tasks/{mine}").json()["plan"] == "count"
            )
            assert [t["task_id"] for t in client.get("/queue").json()["tasks"]] == [mine]
    finally:
        engine.store.close()
        keys.close()


def test_a_path_of_its_own_allows_only_its_own_methods(service: Service) -> None:
    """/tasks/batch is no task id to /tasks/{task_id}: a 405 there names POST alone."""
    allowed = {
        "/tasks/batch": "POST",
        "/tasks/validate": "POST",
        "/queue/move": "POST",
        "/queue": "DELETE, GET",
        "/history": "DELETE, GET",
        "/tasks/some-id": "DELETE, GET, PATCH",
    }
    for path, methods in allowed.items():
        reply = service.client.request("OPTIONS", path, headers=service.as_["admin"])
        assert reply.status_code == 405 and reply.headers["allow"] == methods, path
