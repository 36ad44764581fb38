"""The engine's HTTP API against a real RunEngine and ophyd.sim devices; documents go to a list."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from runstream.producer import lineage
from runstream.producer.engine import Engine, PlanRegistry, TaskStore
from runstream.producer.engine.app import create_app
from runstream.producer.engine.auth import TokenGuard
from tests.engine_tasks import wait_for_task
from tests.waiting import eventually

TOKEN = "s3cret-token"  # noqa: S105 - a test credential
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture(scope="module")
def registry() -> PlanRegistry:
    return PlanRegistry.default()


@pytest.fixture
def service(tmp_path: Path, registry: PlanRegistry) -> Iterator[tuple[TestClient, Engine, list]]:
    docs: list = []
    engine = Engine(
        TaskStore(tmp_path / "tasks.db"),
        registry,
        subscribers=[lambda name, doc: docs.append((name, doc))],
        preprocessors=[lineage],
    )
    engine.start()
    app = create_app(engine, TokenGuard(TOKEN, open_reads=True), max_body_bytes=4096)
    with TestClient(app) as client:
        yield client, engine, docs
    engine.close()
    engine.store.close()


def wait_for(client: TestClient, task_id: str, states: tuple[str, ...], timeout: float = 30):
    return wait_for_task(lambda path: client.get(path).json(), task_id, states, timeout)


def test_nested_plan_reports_both_runs_with_task_id(service) -> None:
    client, _, docs = service
    reply = client.post("/tasks", json={"plan": "nested_runs", "kwargs": {"npts": 3}}, headers=AUTH)
    assert reply.status_code == 201, reply.text
    task_id = reply.json()["task_id"]
    task = wait_for(client, task_id, ("completed", "failed"))
    assert task["state"] == "completed" and task["exit_status"] == "success"
    assert [r["run_key"] for r in task["runs"]] == ["run_1", "run_2"]
    starts = [d for n, d in docs if n == "start"]
    assert [s["uid"] for s in starts] == [r["uid"] for r in task["runs"]]
    assert [s["scan_id"] for s in starts] == [r["scan_id"] for r in task["runs"]]
    assert all(s["task_id"] == task_id for s in starts)
    assert starts[1]["parent_uid"] == starts[0]["uid"]
    assert {r["exit_status"] for r in task["runs"]} == {"success"}


def test_suspender_pre_plan_opens_its_own_run(service) -> None:
    client, _, docs = service
    reply = client.post(
        "/tasks", json={"plan": "suspended_run", "kwargs": {"npts": 4}}, headers=AUTH
    )
    task = wait_for(client, reply.json()["task_id"], ("completed", "failed"))
    assert task["state"] == "completed", task
    assert [r["run_key"] for r in task["runs"]] == ["main", "pre_plan"]
    assert all(d["task_id"] == task["task_id"] for n, d in docs if n == "start")


def test_pause_resume_and_queue_waits(service) -> None:
    client, _engine, _ = service
    slow = {"plan": "count", "args": [["det"]], "kwargs": {"num": 30, "delay": 0.05}}
    first = client.post("/tasks", json=slow, headers=AUTH).json()["task_id"]
    second = client.post("/tasks", json={"plan": "count", "args": [["det"]]}, headers=AUTH)
    assert second.json()["position"] in (0, 1)
    second_id = second.json()["task_id"]
    wait_for(client, first, ("running",))
    assert client.get(f"/tasks/{second_id}").json()["state"] == "queued"
    assert client.post("/control/resume", headers=AUTH).status_code == 409  # not paused
    reply = client.post("/control/pause", json={"defer": False}, headers=AUTH)
    assert reply.status_code == 200, reply.text
    wait_for(client, first, ("paused",))
    assert client.get(f"/tasks/{second_id}").json()["state"] == "queued"
    assert client.post("/control/pause", headers=AUTH).status_code == 409  # already paused
    assert client.post("/control/resume", headers=AUTH).status_code == 200
    done = wait_for(client, first, ("completed", "failed"))
    assert done["state"] == "completed"
    assert done["runs"][0]["exit_status"] == "success"
    assert wait_for(client, second_id, ("completed",))["state"] == "completed"


def test_a_pause_as_a_task_starts_pauses_that_task(service) -> None:
    """The task shows "running" a moment before the RunEngine leaves "idle"; a pause then is
    for that task, not refused as "the RunEngine is idle"."""
    client, engine, _ = service
    publish = engine.events.publish

    def slow_start(kind: str, **data) -> None:
        publish(kind, **data)
        if kind == "task" and data.get("state") == "running":
            time.sleep(0.5)  # widen the moment between the two, which is otherwise ~1 ms

    engine.events.publish = slow_start
    slow = {"plan": "count", "args": [["det"]], "kwargs": {"num": 50, "delay": 0.05}}
    task_id = client.post("/tasks", json=slow, headers=AUTH).json()["task_id"]
    wait_for(client, task_id, ("running",))
    assert engine.RE.state == "idle"  # the moment this test is about
    reply = client.post("/control/pause", headers=AUTH)
    assert reply.status_code == 200, reply.text
    assert wait_for(client, task_id, ("paused",))["state"] == "paused"
    # Aborted with no reason given: the paused plan closes its run all the same.
    assert client.post("/control/abort", headers=AUTH).status_code == 200
    task = wait_for(client, task_id, ("aborted",))
    assert task["runs"][0]["exit_status"] == "abort" and task["runs"][0]["reason"] == ""


def test_abort_while_paused_stops_queue(service) -> None:
    client, _engine, _ = service
    slow = {"plan": "count", "args": [["det"]], "kwargs": {"num": 50, "delay": 0.05}}
    first = client.post("/tasks", json=slow, headers=AUTH).json()["task_id"]
    wait_for(client, first, ("running",))
    assert client.post("/control/pause", headers=AUTH).status_code == 200
    wait_for(client, first, ("paused",))
    nxt = client.post("/tasks", json=slow, headers=AUTH).json()["task_id"]
    reply = client.post("/control/abort", json={"reason": "operator said so"}, headers=AUTH)
    assert reply.status_code == 200
    task = wait_for(client, first, ("aborted",))
    assert task["runs"][0]["exit_status"] == "abort"
    assert task["runs"][0]["reason"] == "operator said so"
    assert client.get("/queue").json()["running"] is False
    time.sleep(0.3)  # a moment for a wrong start of the next task: it must not come
    assert client.get(f"/tasks/{nxt}").json()["state"] == "queued"
    assert client.delete(f"/tasks/{nxt}", headers=AUTH).json()["state"] == "removed"


def test_metadata_is_passed_as_an_object_of_values(service) -> None:
    """``md`` (``dict[str, Any] | None``) takes a JSON object whose strings are values, even
    one that names a device; the run's start carries it."""
    client, _, docs = service
    md = {"sample": "det", "operator": "ada", "temperature_K": 4.2}
    reply = client.post("/tasks", json={"plan": "count", "args": [["det"]], "kwargs": {"md": md}},
                        headers=AUTH)  # fmt: skip
    assert reply.status_code == 201, reply.text
    task = wait_for(client, reply.json()["task_id"], ("completed", "failed"))
    assert task["state"] == "completed", task
    (start,) = [d for n, d in docs if n == "start"]
    assert {k: start[k] for k in md} == md
    plans = {p["name"]: p for p in client.get("/plans").json()}
    assert "device name" not in str(plans["count"]["schema"]["properties"]["md"])
    for wrong_md in ([1], [["uid"]], "uid"):
        body = {"plan": "count", "args": [["det"]], "kwargs": {"md": wrong_md}}
        wrong = client.post("/tasks", json=body, headers=AUTH)
        assert wrong.status_code == 422 and "'md'" in wrong.text, wrong.text
    for key in ("task_id", "uid"):  # the run's task is the engine's record; a uid fails the run
        body = {"plan": "count", "args": [["det"]], "kwargs": {"md": {key: "mine"}}}
        taken = client.post("/tasks", json=body, headers=AUTH)
        assert taken.status_code == 422 and f"'{key}' is set by the engine" in taken.text


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ({"plan": "count", "args": [["nope"]]}, "unknown device 'nope'"),
        ({"plan": "count", "args": [["det"]], "kwargs": {"num": "many"}}, "'num'"),
        ({"plan": "count", "args": [["det"]], "kwargs": {"bogus": 1}}, "bogus"),
        ({"plan": "count"}, "missing required argument 'detectors'"),
        ({"plan": "nested_runs", "kwargs": {"hw": "x"}}, "'hw' cannot be given"),
        ({"plan": 5}, "string"),
        ({"args": []}, "plan"),
    ],
)
def test_bad_submissions_are_refused_and_queue_nothing(service, body, needle) -> None:
    client, engine, _ = service
    reply = client.post("/tasks", json=body, headers=AUTH)
    assert reply.status_code == 422, reply.text
    assert needle in reply.text
    assert engine.store.list() == []


@pytest.mark.parametrize("text", ["NaN", "Infinity", "-Infinity"])
def test_nan_and_infinity_in_arguments_are_refused(service, text: str) -> None:
    client, engine, _ = service
    body = '{"plan": "count", "args": [["det"]], "kwargs": {"delay": [0.1, TEXT]}}'
    body = body.replace("TEXT", text)
    headers = {**AUTH, "Content-Type": "application/json"}
    reply = client.post("/tasks", content=body, headers=headers)
    assert reply.status_code == 422 and "not JSON numbers" in reply.text, reply.text
    assert engine.store.list() == []


def test_token_body_limit_and_unknowns(service) -> None:
    client, engine, _ = service
    body = {"plan": "count", "args": [["det"]]}
    assert client.post("/tasks", json=body).status_code == 401
    assert (
        client.post("/tasks", json=body, headers={"Authorization": "Bearer no"}).status_code == 401
    )
    assert client.post("/control/abort").status_code == 401
    big = {"plan": "count", "args": [["det"]], "kwargs": {"md": {"x": "y" * 5000}}}
    reply = client.post("/tasks", json=big, headers=AUTH)
    assert reply.status_code == 413 and "bytes" in reply.text
    assert client.post("/tasks", content=b"{not json", headers=AUTH).status_code == 422
    assert client.get("/tasks/nope").status_code == 404
    unknown = client.post("/tasks", json={"plan": "no_such_plan"}, headers=AUTH)
    assert unknown.status_code == 404 and "unknown plan" in unknown.text
    wrong_method = client.put("/tasks/nope", headers=AUTH)
    assert wrong_method.status_code == 405
    assert wrong_method.headers["allow"] == "DELETE, GET, PATCH"  # every route at the path
    assert client.delete("/tasks/nope", headers=AUTH).status_code == 404
    assert client.post("/control/explode", headers=AUTH).status_code == 422
    assert client.post("/control/abort", headers=AUTH).status_code == 409  # idle
    assert engine.store.list() == []


def test_catalog_health_and_metrics(service) -> None:
    client, _engine, _ = service
    plans = {p["name"]: p for p in client.get("/plans").json()}
    assert {"sequential_runs", "nested_runs", "recursive_runs", "count", "suspended_run"} <= set(
        plans
    )
    npts = plans["nested_runs"]["schema"]["properties"]["npts"]
    assert npts["type"] == "integer" and npts["default"] == 10
    assert "hw" not in plans["nested_runs"]["schema"]["properties"]
    assert "detectors" in plans["count"]["schema"]["required"]
    assert "det" in {d["name"] for d in client.get("/devices").json()}
    assert client.get("/healthz").json() == {"ok": True, "problems": []}
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.json() == {"ok": True, "problems": []}
    task_id = client.post("/tasks", json={"plan": "count", "args": [["det"]]}, headers=AUTH)
    wait_for(client, task_id.json()["task_id"], ("completed",))
    metrics = client.get("/metrics").text
    assert 'runstream_engine_tasks{state="completed"} 1.0' in metrics
    assert 'runstream_engine_runs{event="opened"} 1.0' in metrics
    assert 'runstream_engine_re_state{state="idle"} 1.0' in metrics


def test_readyz_false_while_the_event_loop_is_blocked(service, tmp_path: Path) -> None:
    client, engine, _ = service
    # A plan whose body blocks the RunEngine's event loop: the RunEngine cannot act.
    module = tmp_path / "blocking_plans.py"
    module.write_text(
        "import time\nimport bluesky.plan_stubs as bps\n\n"
        "def block_loop(seconds: float = 2.5):\n"
        "    yield from bps.null()\n    time.sleep(seconds)\n    yield from bps.null()\n"
    )
    engine.registry = PlanRegistry.default(plan_modules=[str(module)])
    task_id = client.post("/tasks", json={"plan": "block_loop"}, headers=AUTH).json()["task_id"]
    wait_for(client, task_id, ("running",))
    reply = eventually(lambda: (r := client.get("/readyz")).status_code == 503 and r, 5,
                       "/readyz to answer 503 while the plan blocks the loop")  # fmt: skip
    assert reply.status_code == 503 and reply.json()["ok"] is False
    assert any("event loop is blocked" in problem for problem in reply.json()["problems"])
    wait_for(client, task_id, ("completed",))
    assert client.get("/readyz").status_code == 200


def test_open_reads_can_be_closed(tmp_path: Path, registry: PlanRegistry) -> None:
    engine = Engine(TaskStore(tmp_path / "t.db"), registry)
    app = create_app(engine, TokenGuard(TOKEN, open_reads=False))
    with TestClient(app) as client:
        assert client.get("/tasks").status_code == 401
        assert client.get("/tasks", headers=AUTH).json() == []
        assert client.get("/healthz").status_code == 200
    engine.store.close()


@pytest.mark.parametrize(
    ("action", "state", "exit_status"),
    [("stop", "stopped", "success"), ("halt", "halted", "abort")],
)
def test_stop_and_halt_while_running(service, action, state, exit_status) -> None:
    client, _engine, _ = service
    slow = {"plan": "count", "args": [["det"]], "kwargs": {"num": 50, "delay": 0.05}}
    task_id = client.post("/tasks", json=slow, headers=AUTH).json()["task_id"]
    eventually(lambda: wait_for(client, task_id, ("running",))["runs"], 30, "the run to open")
    assert client.post(f"/control/{action}", headers=AUTH).status_code == 200
    task = wait_for(client, task_id, (state, "completed", "failed"))
    assert task["state"] == state
    assert task["exit_status"] == exit_status
    assert client.get("/status").json()["re_state"] == "idle"


def test_a_full_queue_answers_409(tmp_path: Path, registry: PlanRegistry) -> None:
    engine = Engine(TaskStore(tmp_path / "tasks.db"), registry, max_queue=1)
    engine.set_queue_running(False)
    app = create_app(engine, TokenGuard(TOKEN, open_reads=True))
    body = {"plan": "count", "args": [["det"]]}
    try:
        with TestClient(app) as client:
            assert client.post("/tasks", json=body, headers=AUTH).status_code == 201
            full = client.post("/tasks", json=body, headers=AUTH)
            assert full.status_code == 409 and "queue is full" in full.text
            assert len(client.get("/queue").json()["tasks"]) == 1
    finally:
        engine.store.close()
