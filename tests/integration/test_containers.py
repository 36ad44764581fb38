"""The image, built by deploy/build-image, running the services as the Kubernetes manifests run
them (tests/workloads.py): each in its own container, as uid 10001 with a read-only root,
against the host's Kafka broker and Tiled server. Runs where podman (or a Docker engine)
works; CI installs podman."""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import httpx
import pytest
from tiled.client import from_uri

from runstream.consumers.tiled import connect_catalog
from tests.container_engine import ULIMITS, Containers, build_image, find_engine
from tests.engine_tasks import wait_for_task
from tests.kafka_tools import unique_prefix
from tests.table_text import table_rows
from tests.tiled_fixtures import runs_closed
from tests.waiting import eventually
from tests.workloads import CONSUMERS, UID, Stack

ENGINE = find_engine()
pytestmark = [
    pytest.mark.kafka,
    pytest.mark.skipif(ENGINE is None, reason="neither podman nor a Docker engine works here"),
    # the first build on a fresh machine makes the base and installs every dependency
    pytest.mark.timeout(1200),
]


@pytest.fixture(scope="module")
def image() -> str:
    assert ENGINE is not None
    return build_image(ENGINE, timeout=1100)


@pytest.fixture
def stack(image, kafka_bootstrap, new_topic, tiled_server, tmp_path) -> Iterator[Stack]:
    catalog = unique_prefix("cat")
    connect_catalog(tiled_server.url, tiled_server.api_key, catalog)
    containers = Containers(ENGINE or "", unique_prefix("rs"))
    try:
        yield Stack(
            containers, image, tmp_path, kafka_bootstrap, new_topic(partitions=2),
            tiled_server.url, tiled_server.api_key, catalog, secrets.token_hex(16),
        )  # fmt: skip
    finally:
        containers.remove_all()


def test_help_runs_as_a_non_root_user_on_a_read_only_root(image: str) -> None:
    c = Containers(ENGINE or "", unique_prefix("rs"))
    done = c.command("run", "--rm", *ULIMITS, "--read-only", "--user", str(UID), image, "--help")
    assert done.returncode == 0, done.stderr
    assert "engine" in done.stdout and "consume" in done.stdout
    # Tiled's server is not in this image: one clear line
    done = c.command("run", "--rm", *ULIMITS, "--read-only", "--user", str(UID), image, "tiled",
                     "up")  # fmt: skip
    assert done.returncode != 0
    assert "runstream: error: Tiled's server is not installed" in done.stderr
    assert "Traceback" not in done.stderr


def test_services_in_containers_carry_the_nested_plan(stack: Stack, request) -> None:
    services = [stack.engine(), *(stack.consumer(name) for name in CONSUMERS)]
    for service in services:
        stack.wait_ready(service)
    request.node.user_properties += [(f"ready_s:{s.name}", s.ready_after) for s in services]
    engine, by_name = services[0], {s.name: s for s in services}
    auth = {"Authorization": f"Bearer {stack.token}"}

    def get(path: str, url: str = engine.url) -> dict:
        return httpx.get(f"{url}{path}", timeout=10).json()

    plan = {"plan": "nested_runs", "kwargs": {"npts": 3}}
    reply = httpx.post(f"{engine.url}/tasks", headers=auth, timeout=10, json=plan)
    assert reply.status_code == 201, reply.text
    task_id = reply.json()["task_id"]
    task = wait_for_task(get, task_id, ("completed", "failed", "aborted"), timeout=90)
    assert task["state"] == "completed", task
    outer, inner = (r["uid"] for r in task["runs"])
    points = {outer: 3, inner: 4}  # nested_runs(3): the inner run has npts + 1 points

    # Tiled: both runs, complete, the inner one nested in the outer
    def catalog():
        return from_uri(stack.tiled_url, api_key=stack.tiled_api_key)[stack.catalog]

    eventually(lambda: runs_closed(catalog(), points), 60, "both runs in Tiled")
    cat = catalog()
    assert cat[inner].metadata["start"]["parent_uid"] == outer
    assert "parent_uid" not in cat[outer].metadata["start"]
    for uid, n in points.items():
        assert cat[uid]["primary"].read().sizes["time"] == n

    # the table consumer's volume: one finished file per run, with its rows; the plots' volume
    table, out = by_name["table"].container, "/var/lib/runstream/tables"
    files = {r["uid"]: f"{out}/{r['scan_id']}-{r['uid'][:8]}.txt" for r in task["runs"]}

    def tables_done() -> bool:
        listed = set(stack.containers.exec(table, "ls", out).split())
        return {f.rsplit("/", 1)[1] for f in files.values()} <= listed and all(
            "run ended" in stack.containers.exec(table, "cat", f) for f in files.values()
        )

    eventually(tables_done, 60, "both tables")
    texts = {uid: stack.containers.exec(table, "cat", f) for uid, f in files.items()}
    assert {uid: len(table_rows(text)) for uid, text in texts.items()} == points
    assert f"inside run {outer[:8]}" in texts[inner]
    plot = by_name["plot"].container
    plots = "/var/lib/runstream/plots"
    eventually(lambda: len(stack.containers.exec(plot, "ls", plots).split()) == 2, 60, "both plots")
    # the web view: both runs, the inner one under the outer, with their events
    web_runs = f"http://127.0.0.1:{stack.web_port}/api/runs"

    def web_has_both() -> bool:
        runs = {r["uid"]: r for r in httpx.get(web_runs, timeout=5).json()}
        return all(runs.get(uid, {}).get("status") == "success" for uid in points)

    eventually(web_has_both, 60, "both runs in the web view")
    runs = {r["uid"]: r for r in httpx.get(web_runs, timeout=5).json()}
    assert runs[inner]["parent_uid"] == outer
    assert {uid: runs[uid]["streams"]["primary"] for uid in points} == points

    # for the restart: a stopped queue holding one task
    assert httpx.post(f"{engine.url}/queue/stop", headers=auth, timeout=10).status_code == 200
    count = {"plan": "count", "kwargs": {"detectors": ["det"], "num": 2}}
    waiting = httpx.post(f"{engine.url}/tasks", headers=auth, timeout=10, json=count).json()

    # SIGTERM: every service exits 0 within its pod's grace period
    for service in services:
        code, took = stack.containers.terminate(service.container, service.grace)
        assert code == 0, f"{service.name} exited {code}:\n{stack.logs(service)}"
        assert took < service.grace

    # the engine again, on the same volumes: its history and its queue are there
    again = stack.engine("engine-again")
    stack.wait_ready(again)
    assert get(f"/tasks/{task_id}", again.url)["state"] == "completed"
    assert get(f"/tasks/{waiting['task_id']}", again.url)["state"] == "queued"
    assert get("/queue", again.url)["running"] is False
