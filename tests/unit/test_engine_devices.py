"""ophyd-async devices in the engine, without an IOC: naming, dotted names, connecting in the
RunEngine's loop, refusing a device that did not connect and connecting it again.

The devices are ophyd-async's simulated ones and a device whose connection fails until told
otherwise; the engine and its HTTP API are real, documents go to a list.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from runstream.producer.engine import Engine, PlanRegistry, TaskStore
from runstream.producer.engine.app import create_app
from runstream.producer.engine.auth import TokenGuard
from runstream.producer.engine.devices import Devices, UnknownDeviceError
from runstream.producer.engine.guards import DeviceTimeouts
from runstream.producer.engine.settings import EngineSettings
from tests.engine_tasks import wait_for_task

TOKEN = "device-token"  # noqa: S105 - a test credential
AUTH = {"Authorization": f"Bearer {TOKEN}"}
DEVICE_MODULE = '''
from ophyd.sim import SynAxis
from ophyd_async.core import NotConnectedError, StandardReadable, soft_signal_rw
from ophyd_async.sim import PatternGenerator, SimStage

stage = SimStage(PatternGenerator())        # unnamed: the engine names it "stage"
gain = soft_signal_rw(float, initial_value=2.5)
motor = SynAxis(name="motor")               # ophyd (v1)
REACHABLE = {"ioc": False}


class Flaky(StandardReadable):
    """Connects only once its IOC is up."""

    def __init__(self, name: str = "") -> None:
        with self.add_children_as_readables():
            self.value = soft_signal_rw(float, initial_value=7.0)
        super().__init__(name=name)

    async def connect(self, mock=False, timeout=10.0, force_reconnect=False):
        if not REACHABLE["ioc"]:
            raise NotConnectedError("ca://GONE:value")
        await super().connect(mock, timeout, force_reconnect)


flaky = Flaky()
'''
STUCK_MODULE = '''
import asyncio
from ophyd_async.core import AsyncStatus, StandardReadable, soft_signal_rw


class Stuck(StandardReadable):
    """Connected, then its IOC died: it answers no read and finishes no move."""

    def __init__(self, name: str = "") -> None:
        with self.add_children_as_readables():
            self.value = soft_signal_rw(float, initial_value=1.0)
        super().__init__(name=name)

    async def read(self):
        await asyncio.Event().wait()

    @AsyncStatus.wrap
    async def set(self, value: float) -> None:
        await asyncio.Event().wait()


stuck = Stuck()
stalled = Stuck()  # a second dead device: once one fails a plan, it is refused by name
gain = soft_signal_rw(float, initial_value=2.5)
'''


@pytest.fixture
def registry(tmp_path: Path) -> PlanRegistry:
    module = tmp_path / "async_devices.py"
    module.write_text(DEVICE_MODULE)
    return PlanRegistry.default(plan_modules=[], device_modules=[str(module)])


@pytest.fixture
def service(tmp_path: Path, registry: PlanRegistry) -> Iterator[tuple[TestClient, list]]:
    docs: list = []
    engine = Engine(TaskStore(tmp_path / "tasks.db"), registry,
                    timeouts=DeviceTimeouts(connect=2.0),
                    subscribers=[lambda name, doc: docs.append((name, doc))])  # fmt: skip
    engine.start()
    app = create_app(engine, TokenGuard(TOKEN, open_reads=True))
    with TestClient(app) as client:
        yield client, docs
    engine.close()
    engine.store.close()


def run(client: TestClient, request: dict) -> dict:
    reply = client.post("/tasks", json=request, headers=AUTH)
    assert reply.status_code == 201, reply.text
    get = lambda path: client.get(path).json()  # noqa: E731
    return wait_for_task(get, reply.json()["task_id"], ("completed", "failed"), 30)


def test_unnamed_async_devices_take_their_variable_names(registry: PlanRegistry) -> None:
    devices = registry.devices
    assert {"stage", "gain", "motor", "flaky"} <= set(devices)
    assert devices["stage"].name == "stage" and devices["stage"].x.name == "stage-x"
    assert devices["gain"].name == "gain"


def test_sub_devices_by_dotted_and_dashed_names(registry: PlanRegistry) -> None:
    devices = registry.devices
    for entry in devices.entries.values():  # as if connected: lookups only
        entry.attempted = True
    stage, motor = devices["stage"], devices["motor"]
    assert devices.resolve("stage.x") is stage.x
    assert devices.resolve("stage-x") is stage.x
    assert devices.resolve("stage.x.user_readback") is stage.x.user_readback
    assert devices.resolve("stage-x-velocity") is stage.x.velocity
    assert devices.resolve("motor.readback") is motor.readback  # an ophyd (v1) component
    for unknown in ("stage.z", "motor.__class__", "motor.read", "nope.x", "stage-", "stage."):
        with pytest.raises(UnknownDeviceError, match="unknown device"):
            devices.resolve(unknown)


def test_an_unconnected_async_device_is_refused_by_name() -> None:
    from ophyd_async.core import soft_signal_rw

    devices = Devices({"gain": soft_signal_rw(float, name="gain")})
    with pytest.raises(Exception, match="device 'gain' is not connected: not connected yet"):
        devices.resolve("gain")


def test_engine_connects_serves_and_refuses_the_failed_device(service) -> None:
    client, docs = service
    listed = {d["name"]: d for d in client.get("/devices").json()}
    assert listed["stage"]["connected"] and listed["stage"]["ophyd_async"]
    assert listed["motor"]["connected"] and not listed["motor"]["ophyd_async"]
    flaky = listed["flaky"]
    assert not flaky["connected"] and "ca://GONE:value" in flaky["error"]
    task = run(client, {"plan": "scan", "args": [["gain", "stage.y"], "stage.x", 0, 1],
                        "kwargs": {"num": 3}})  # fmt: skip
    assert task["state"] == "completed", task
    events = [doc for name, doc in docs if name == "event"]
    assert [e["data"]["gain"] for e in events] == [2.5, 2.5, 2.5]
    assert [e["data"]["stage-x"] for e in events] == pytest.approx([0.0, 0.5, 1.0], abs=0.05)
    refused = client.post("/tasks", json={"plan": "count", "args": [["flaky.value"]]},
                          headers=AUTH)  # fmt: skip
    assert refused.status_code == 422
    assert "device 'flaky' is not connected" in refused.json()["detail"]
    assert "ca://GONE:value" in refused.json()["detail"]
    assert client.get("/readyz").status_code == 200  # the others are served
    metrics = client.get("/metrics").text
    assert "runstream_engine_devices 4.0" in metrics
    assert "runstream_engine_devices_connected 3.0" in metrics


def test_a_device_connects_on_request_once_reachable(service, registry) -> None:
    client, docs = service
    assert client.post("/devices/flaky/connect").status_code == 401  # a change: token needed
    again = client.post("/devices/flaky/connect", headers=AUTH).json()
    assert not again["connected"] and "ca://GONE:value" in again["error"]
    type(registry.devices["flaky"]).connect.__globals__["REACHABLE"]["ioc"] = True  # its IOC is up
    connected = client.post("/devices/flaky/connect", headers=AUTH).json()
    assert connected["connected"] and connected["error"] is None, connected
    task = run(client, {"plan": "count", "args": [["flaky"]]})
    assert task["state"] == "completed", task
    assert [doc["data"] for name, doc in docs if name == "event"] == [{"flaky-value": 7.0}]
    unknown = client.post("/devices/nope/connect", headers=AUTH)
    assert unknown.status_code == 404 and "nope" in unknown.json()["detail"]


def test_a_device_that_stops_answering_fails_its_plan_and_names_it(tmp_path: Path) -> None:
    (tmp_path / "stuck.py").write_text(STUCK_MODULE)
    registry = PlanRegistry.default(plan_modules=[], device_modules=[str(tmp_path / "stuck.py")])
    docs: list = []
    engine = Engine(TaskStore(tmp_path / "tasks.db"), registry,
                    timeouts=DeviceTimeouts(connect=2.0, call=0.5, wait=0.5),
                    subscribers=[lambda name, doc: docs.append((name, doc))])  # fmt: skip
    engine.start()
    try:
        with TestClient(create_app(engine, TokenGuard(TOKEN, open_reads=True))) as client:
            read = run(client, {"plan": "count", "args": [["gain", "stuck"]]})
            client.post("/queue/start", headers=AUTH)
            move = {"plan": "scan", "args": [[], "stalled", 0, 1], "kwargs": {"num": 2}}
            moved = run(client, move)
            client.post("/queue/start", headers=AUTH)
            after = run(client, {"plan": "count", "args": [["gain"]]})
            listed = {d["name"]: d for d in client.get("/devices").json()}
            refused = client.post("/tasks", json={"plan": "count", "args": [["stuck"]]},
                                  headers=AUTH)  # fmt: skip
    finally:
        engine.close()
        engine.store.close()
    assert read["state"] == "failed" and moved["state"] == "failed"
    said = "read of 'stuck' timed out: no answer within 0.5 s"
    assert said in read["reason"] and read["runs"][0]["exit_status"] == "fail"
    assert said in read["runs"][0]["reason"]
    said = "waiting for 'stalled' timed out: no answer within 0.5 s"
    assert said in moved["reason"] and said in moved["runs"][0]["reason"]
    assert after["state"] == "completed"  # nothing hangs: the engine goes on
    assert not listed["stuck"]["connected"] and listed["gain"]["connected"]
    assert not listed["stalled"]["connected"]
    assert "stopped answering: read of 'stuck' timed out" in listed["stuck"]["error"]
    assert refused.status_code == 422 and "device 'stuck' is not connected" in refused.text
    stops = [doc["exit_status"] for name, doc in docs if name == "stop"]
    assert stops == ["fail", "fail", "success"]


def test_the_device_timeouts_are_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RUNSTREAM_DEVICE_CALL_TIMEOUT", "4")
    monkeypatch.setenv("RUNSTREAM_DEVICE_WAIT_TIMEOUT", "0")
    settings = EngineSettings()
    assert (settings.device_call_timeout, settings.device_wait_timeout) == (4.0, 0.0)


def test_the_connect_timeout_is_a_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RUNSTREAM_DEVICE_CONNECT_TIMEOUT", "2.5")
    assert EngineSettings().device_connect_timeout == 2.5
    monkeypatch.delenv("RUNSTREAM_DEVICE_CONNECT_TIMEOUT")
    assert EngineSettings().device_connect_timeout == 10.0
