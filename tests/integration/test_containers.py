"""The image, built by deploy/build-image, running the services as the Kubernetes manifests run
them: each in its own container with the manifests' command, variables and volumes, as uid
10001 with a read-only root, against the host's Kafka broker and Tiled server. Runs where
podman (or a Docker engine) works; CI installs podman."""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from runstream.consumers.tiled import connect_catalog
from tiled.client import from_uri

from tests.container_engine import ULIMITS, Containers, build_image, find_engine
from tests.deployment.containers import Container
from tests.deployment.kubernetes import k8s_containers, workload_of
from tests.deployment.render import render
from tests.engine_tasks import wait_for_task
from tests.kafka_tools import free_port, unique_prefix
from tests.table_text import table_rows

ENGINE = find_engine()
pytestmark = [
    pytest.mark.kafka,
    pytest.mark.skipif(ENGINE is None, reason="neither podman nor a Docker engine works here"),
    # the first build on a fresh machine makes the base and installs every dependency
    pytest.mark.timeout(1200),
]

#: The pods' securityContext (deploy/k8s: runAsUser, runAsGroup, fsGroup).
UID = 10001
#: The consumer services in the pipeline test: the manifests' workload, and what proves it
#: did its job for the runs (in its container, after the runs ended). Add a service here.
CONSUMERS = {
    "table": "Deployment/runstream-table/table",
    "plot": "Deployment/runstream-plot/plot",
    "tiled": "Deployment/runstream-tiled-writer/tiled",
}
ENGINE_WORKLOAD = "StatefulSet/runstream-engine/engine"


@pytest.fixture(scope="module")
def image() -> str:
    assert ENGINE is not None
    return build_image(ENGINE, timeout=1100)


@pytest.fixture(scope="module")
def manifests() -> tuple[list[dict], dict[str, Container]]:
    resources = render("dev")
    return resources, {c.where: c for c in k8s_containers(resources)}


@pytest.fixture
def containers() -> Iterator[Containers]:
    made = Containers(ENGINE or "", unique_prefix("rs"))
    yield made
    made.remove_all()


@dataclass
class Service:
    name: str
    container: str
    url: str  # where its /healthz and /readyz answer
    grace: float  # the pod's terminationGracePeriodSeconds
    started: float  # monotonic time of `run`
    ready_after: float = 0.0


def start(
    containers: Containers,
    image: str,
    name: str,
    manifest: Container,
    grace: float,
    files: Path,
    env: dict[str, str | None],
    args: list[str],
    port: int,
) -> Service:
    """Run one workload as its manifest says: its arguments, its variables (``env`` replaces
    the cluster's addresses and Secrets; None unsets), a named volume per claim (by the
    claim's name, so a second container of the workload gets the same ones), its Secrets'
    files read-only, /tmp on tmpfs."""
    volumes: dict[str, str] = {}
    binds: dict[str, Path] = {}
    tmpfs: list[str] = []
    for target, mount in manifest.mounts.items():
        kind, _, source = mount.source.partition(":")
        if kind == "emptyDir":
            tmpfs.append(target)
        elif kind in ("pvc", "template"):
            volumes[source] = target
        elif kind in ("secret", "configMap"):
            folder = files / f"{name}-{source}"
            folder.mkdir(mode=0o755, exist_ok=True)
            folder.chmod(0o755)
            for file, text in (mount.files or {}).items():
                (folder / file).write_text(text or "")
                (folder / file).chmod(0o644)
            binds[target] = folder
    assert volumes or name == "tiled", f"{manifest.where} mounts no volume"
    variables = {k: v for k, v in {**manifest.env, **env}.items() if v is not None}
    options = containers.secured(uid=UID, volumes=volumes, binds=binds, tmpfs=tmpfs)
    full, began = containers.run(name, image, [*manifest.argv[1:], *args], variables, options)
    return Service(name, full, f"http://127.0.0.1:{port}", grace, began)


def wait_ready(containers: Containers, service: Service, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert containers.running(service.container), containers.logs(service.container)
        try:
            if httpx.get(f"{service.url}/readyz", timeout=2).status_code == 200:
                service.ready_after = time.monotonic() - service.started
                assert httpx.get(f"{service.url}/healthz", timeout=2).status_code == 200
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"{service.name} not ready:\n{containers.logs(service.container)}")


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.25)


def test_help_runs_as_a_non_root_user_on_a_read_only_root(image: str) -> None:
    c = Containers(ENGINE or "", unique_prefix("rs"))
    done = c.command("run", "--rm", *ULIMITS, "--read-only", "--user", str(UID), image, "--help")
    assert done.returncode == 0, done.stderr
    assert "engine" in done.stdout and "consume" in done.stdout


def test_services_in_containers_carry_the_nested_plan(
    image, manifests, containers, kafka_bootstrap, new_topic, tiled_server, tmp_path, request
) -> None:
    resources, by_where = manifests
    topic = new_topic(partitions=2)
    catalog = unique_prefix("cat")
    connect_catalog(tiled_server.url, tiled_server.api_key, catalog)
    token = secrets.token_hex(16)

    def grace(where: str) -> float:
        workload = workload_of(resources, by_where[where])
        return float(workload["spec"]["template"]["spec"]["terminationGracePeriodSeconds"])

    engine_port = free_port()
    engine_manifest = by_where[ENGINE_WORKLOAD]
    engine_env = {
        "RUNSTREAM_KAFKA_BOOTSTRAP": kafka_bootstrap,
        "RUNSTREAM_TOPIC": topic,
        "RUNSTREAM_PARTITIONS": "2",
        "RUNSTREAM_API_TOKEN": token,  # the token from the environment, not the file
        "RUNSTREAM_API_TOKEN_FILE": None,
        "RUNSTREAM_ENGINE_URL": f"http://127.0.0.1:{engine_port}",
    }
    engine_args = ["--host", "127.0.0.1", "--port", str(engine_port)]

    def start_engine(name: str) -> Service:
        return start(containers, image, name, engine_manifest, grace(ENGINE_WORKLOAD),
                     tmp_path, engine_env, engine_args, engine_port)  # fmt: skip

    services = [start_engine("engine")]
    for name, where in CONSUMERS.items():
        port = free_port()
        env = {
            "RUNSTREAM_KAFKA_BOOTSTRAP": kafka_bootstrap,
            "RUNSTREAM_TOPICS": json.dumps([topic]),
            "RUNSTREAM_GROUP": unique_prefix(name),
            "RUNSTREAM_FROM_BEGINNING": "true",
            "RUNSTREAM_HTTP_HOST": "127.0.0.1",
            "RUNSTREAM_HTTP_PORT": str(port),
            "RUNSTREAM_TILED_URL": tiled_server.url,
            "RUNSTREAM_TILED_API_KEY": tiled_server.api_key,
            "RUNSTREAM_SESSION_TIMEOUT_MS": "6000",
        }
        args = ["--catalog", catalog] if name == "tiled" else []
        services.append(start(containers, image, name, by_where[where], grace(where), tmp_path,
                              env, args, port))  # fmt: skip
    for service in services:
        wait_ready(containers, service)
    request.node.user_properties += [(f"ready_s:{s.name}", s.ready_after) for s in services]
    print({s.name: round(s.ready_after, 1) for s in services})  # the start-up times

    engine = services[0]
    auth = {"Authorization": f"Bearer {token}"}

    def get(path: str) -> dict:
        return httpx.get(f"{engine.url}{path}", timeout=10).json()

    reply = httpx.post(f"{engine.url}/tasks", headers=auth, timeout=10,
                       json={"plan": "nested_runs", "kwargs": {"npts": 3}})  # fmt: skip
    assert reply.status_code == 201, reply.text
    task_id = reply.json()["task_id"]
    task = wait_for_task(get, task_id, ("completed", "failed", "aborted"), timeout=90)
    assert task["state"] == "completed", task
    outer, inner = (r["uid"] for r in task["runs"])

    # Tiled: both runs, complete, the inner one nested in the outer
    def in_tiled() -> bool:
        cat = from_uri(tiled_server.url, api_key=tiled_server.api_key)[catalog]
        return all(u in cat and cat[u].metadata.get("stop") for u in (outer, inner))

    wait_for(in_tiled, "both runs in Tiled")
    cat = from_uri(tiled_server.url, api_key=tiled_server.api_key)[catalog]
    assert cat[inner].metadata["start"]["parent_uid"] == outer
    assert "parent_uid" not in cat[outer].metadata["start"]
    points = {outer: 3, inner: 4}  # nested_runs(3): the inner run has npts + 1 points
    for uid, n in points.items():
        assert cat[uid]["primary"].read().sizes["time"] == n

    # the table consumer's volume: one finished file per run, with its rows
    table = next(s for s in services if s.name == "table")
    out = "/var/lib/runstream/tables"
    starts = {r["uid"]: r for r in task["runs"]}
    names = {f"{r['scan_id']}-{uid[:8]}.txt" for uid, r in starts.items()}

    def tables_done() -> bool:
        listed = set(containers.exec(table.container, "ls", out).split())
        return names <= listed and all(
            "run ended" in containers.exec(table.container, "cat", f"{out}/{n}") for n in names
        )

    wait_for(tables_done, "both tables")
    texts = {uid: containers.exec(table.container, "cat", f"{out}/{r['scan_id']}-{uid[:8]}.txt")
             for uid, r in starts.items()}  # fmt: skip
    assert {uid: len(table_rows(text)) for uid, text in texts.items()} == points
    assert f"inside run {outer[:8]}" in texts[inner]
    plot = next(s for s in services if s.name == "plot")
    wait_for(lambda: len(containers.exec(plot.container, "ls", "/var/lib/runstream/plots")
                         .split()) >= 2, "both plots")  # fmt: skip

    # history and queue for the restart: a stopped queue holding one task
    assert httpx.post(f"{engine.url}/queue/stop", headers=auth, timeout=10).status_code == 200
    count = {"plan": "count", "kwargs": {"detectors": ["det"], "num": 2}}
    reply = httpx.post(f"{engine.url}/tasks", headers=auth, timeout=10, json=count)
    waiting = reply.json()["task_id"]

    # SIGTERM: every service exits 0 within its pod's grace period
    for service in services:
        code, took = containers.terminate(service.container, service.grace)
        assert code == 0, f"{service.name} exited {code}:\n{containers.logs(service.container)}"
        assert took < service.grace

    # the engine again, on the same volumes: its history and its queue are there
    again = start_engine("engine-again")
    wait_ready(containers, again)
    assert get(f"/tasks/{task_id}")["state"] == "completed"
    assert get(f"/tasks/{waiting}")["state"] == "queued"
    assert get("/queue")["running"] is False
