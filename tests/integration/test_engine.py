"""`runstream engine` as a process: real RunEngine, real KafkaPublisher, real broker."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from runstream import schemas
from tests.engine_tasks import wait_for_task
from tests.kafka_tools import free_port, read_all
from tests.waiting import eventually, process_ended

pytestmark = pytest.mark.kafka
TOKEN = "engine-test-token"  # noqa: S105 - a test credential
AUTH = {"Authorization": f"Bearer {TOKEN}"}
# Slow motors for the inner run of the nested plan, so a control lands inside it.
SLOW_DEVICES = """
from ophyd.sim import SynAxis
motor1 = SynAxis(name="motor1", delay=0.15)
motor2 = SynAxis(name="motor2", delay=0.15)
"""


class EngineProcess:
    #: Seconds the engine may take to answer /readyz after its start.
    ready_within = 60.0

    def __init__(self, home: Path, bootstrap: str, topic: str) -> None:
        (home / "devices.py").write_text(SLOW_DEVICES)
        self.env = {
            **os.environ,
            "RUNSTREAM_HOME": str(home),
            "RUNSTREAM_API_TOKEN": TOKEN,
            "RUNSTREAM_KAFKA_BOOTSTRAP": bootstrap,
            "RUNSTREAM_TOPIC": topic,
            "RUNSTREAM_PARTITIONS": "2",
            "RUNSTREAM_DEVICE_MODULES": json.dumps(
                ["runstream.producer.plans", str(home / "devices.py")]
            ),
        }
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = home / "engine.log"
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "runstream.cli", "engine", "--host", "127.0.0.1",
             "--port", str(self.port)],
            env=self.env, stdout=self.log.open("ab"), stderr=subprocess.STDOUT,
        )  # fmt: skip
        eventually(lambda: httpx.get(f"{self.url}/readyz").status_code == 200, self.ready_within,
                   lambda: f"the engine to be ready; its log:\n{self.log.read_text()}",
                   fail_fast=process_ended(self.proc, self.log.read_text),
                   ignoring=httpx.HTTPError)  # fmt: skip

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            assert self.proc.wait(60) == 0, self.log.read_text()  # a clean shutdown

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs, as in a power cut or an OOM kill."""
        assert self.proc is not None and self.proc.poll() is None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(30)

    def wait(self, task_id: str, states: tuple[str, ...], timeout: float = 60) -> dict:
        return wait_for_task(lambda path: httpx.get(f"{self.url}{path}").json(), task_id,
                             states, timeout)  # fmt: skip

    def submit(self, plan: str, **kwargs) -> str:
        reply = httpx.post(f"{self.url}/tasks", json={"plan": plan, "kwargs": kwargs}, headers=AUTH)
        assert reply.status_code == 201, reply.text
        return reply.json()["task_id"]


@pytest.fixture
def engine(tmp_path: Path, kafka_bootstrap: str, new_topic) -> Iterator[EngineProcess]:
    process = EngineProcess(tmp_path, kafka_bootstrap, new_topic(partitions=2))
    process.start()
    yield process
    process.stop()


def documents(bootstrap: str, topic: str, stops: int) -> list[tuple[str, dict]]:
    """The topic's documents once ``stops`` stop documents have arrived (delivery is async)."""

    def arrived() -> list[tuple[str, dict]] | None:
        docs = [schemas.decode(r.value) for r in read_all(bootstrap, topic)]
        return docs if sum(name == "stop" for name, _ in docs) >= stops else None

    return eventually(arrived, 30, f"{stops} stop documents in {topic}")


def test_nested_plan_over_http_lands_in_kafka_with_task_id(engine, kafka_bootstrap) -> None:
    events: list[str] = []

    def listen() -> None:
        with httpx.stream("GET", f"{engine.url}/events", timeout=30) as stream:
            for line in stream.iter_lines():
                events.append(line)
                if line.startswith("data:") and '"state": "completed"' in line:
                    return

    listener = threading.Thread(target=listen, daemon=True)
    listener.start()
    eventually(lambda: events, 30, "the event stream's first event (the listener is subscribed)")
    task_id = engine.submit("nested_runs", npts=3)
    task = engine.wait(task_id, ("completed", "failed"))
    assert task["state"] == "completed", task
    assert [r["run_key"] for r in task["runs"]] == ["run_1", "run_2"]
    assert all(r["exit_status"] == "success" and r["scan_id"] for r in task["runs"])
    docs = documents(kafka_bootstrap, engine.env["RUNSTREAM_TOPIC"], stops=2)
    starts = {d["uid"]: d for n, d in docs if n == "start"}
    assert set(starts) == {r["uid"] for r in task["runs"]}
    assert {d["task_id"] for d in starts.values()} == {task_id}
    stops = [d for n, d in docs if n == "stop"]
    assert {d["run_start"] for d in stops} == set(starts)
    listener.join(10)
    text = "\n".join(events)
    assert "event: run_opened" in text and "event: run_closed" in text
    metrics = httpx.get(f"{engine.url}/metrics").text
    assert 'runstream_engine_runs{event="opened"} 2.0' in metrics
    assert "runstream_publisher_documents" in metrics


def test_abort_inner_run_then_queue_survives_restart(engine, kafka_bootstrap) -> None:
    task_id = engine.submit("nested_runs", npts=4)
    eventually(lambda: len(engine.wait(task_id, ("running",))["runs"]) >= 2, 30, "the inner run")
    reply = httpx.post(f"{engine.url}/control/abort", json={"reason": "beam lost"}, headers=AUTH)
    assert reply.status_code == 200, reply.text
    task = engine.wait(task_id, ("aborted", "completed", "failed"))
    assert task["state"] == "aborted"
    assert [(r["exit_status"], r["reason"]) for r in task["runs"]] == [("abort", "beam lost")] * 2
    stops = [
        d for n, d in documents(kafka_bootstrap, engine.env["RUNSTREAM_TOPIC"], 2) if n == "stop"
    ]
    assert sorted((d["exit_status"], d["reason"]) for d in stops) == [("abort", "beam lost")] * 2
    assert httpx.get(f"{engine.url}/queue").json()["running"] is False

    waiting = engine.submit("count", detectors=["det"], num=2)
    assert engine.wait(waiting, ("queued",))["position"] == 0
    engine.stop()
    engine.start()
    assert engine.wait(waiting, ("queued",))["state"] == "queued"
    assert httpx.get(f"{engine.url}/tasks/{task_id}").json()["state"] == "aborted"
    assert httpx.post(f"{engine.url}/queue/start", headers=AUTH).status_code == 200
    done = engine.wait(waiting, ("completed", "failed"))
    assert done["state"] == "completed" and len(done["runs"]) == 1


def test_killed_engine_restarts_with_the_queue_stopped(engine, kafka_bootstrap) -> None:
    running = engine.submit("nested_runs", npts=6)
    waiting = engine.submit("count", detectors=["det"], num=2)
    eventually(lambda: len(engine.wait(running, ("running",))["runs"]) >= 2, 30, "the inner run")
    run_uids = {r["uid"] for r in engine.wait(running, ("running",))["runs"]}
    engine.kill()
    engine.start()

    queue = httpx.get(f"{engine.url}/queue").json()
    assert queue["running"] is False
    assert [t["task_id"] for t in queue["tasks"]] == [waiting]
    interrupted = httpx.get(f"{engine.url}/tasks/{running}").json()
    assert interrupted["state"] == "interrupted"
    assert {r["exit_status"] for r in interrupted["runs"]} == {"abort"}
    docs = documents(kafka_bootstrap, engine.env["RUNSTREAM_TOPIC"], stops=2)
    stops = {d["run_start"]: d for n, d in docs if n == "stop"}
    assert set(stops) == run_uids  # the outbox recovery closed both runs
    assert all(d["exit_status"] == "abort" and "restart" in d["reason"] for d in stops.values())
    assert httpx.get(f"{engine.url}/status").json()["re_state"] == "idle"
    assert engine.wait(waiting, ("queued",))["state"] == "queued"

    assert httpx.post(f"{engine.url}/queue/start", headers=AUTH).status_code == 200
    assert engine.wait(waiting, ("completed", "failed"))["state"] == "completed"


def test_client_commands(engine) -> None:
    def runstream(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "runstream.cli", args[0], "--url", engine.url, *args[1:]],
            env=engine.env, capture_output=True, text=True, timeout=60,
        )  # fmt: skip

    submitted = runstream("submit", "count", "--detectors", '["det"]', "--num", "2")
    assert submitted.returncode == 0, submitted.stderr
    task_id = json.loads(submitted.stdout)["task_id"]
    assert engine.wait(task_id, ("completed",))["runs"][0]["exit_status"] == "success"
    listed = runstream("tasks")
    assert [t["task_id"] for t in json.loads(listed.stdout)] == [task_id]
    refused = runstream("abort", "--reason", "nothing runs")
    assert refused.returncode != 0 and "409" in refused.stderr
    unknown = runstream("submit", "no_such_plan")
    assert unknown.returncode != 0 and "unknown plan" in unknown.stderr
