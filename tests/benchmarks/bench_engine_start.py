"""Engine start with 200 ophyd-async devices: the time from starting `runstream engine` to
its /readyz answering 200 (the goal: <= 10 s).

The devices are EPICS signals over Channel Access (``epics_signal_rw``, through aioca), on
one caproto IOC serving 200 PVs on loopback (tests/many_pvs_ioc.py); the engine connects
them all, concurrently, in its RunEngine's event loop before it answers ready. The anchor,
in the same run: the same engine start with no devices, so the difference is the connects.
Each start is a fresh process (imports included), timed from its spawn to the first 200;
the engine's `Devices.connect_all` is also timed alone, in this process.

Needs a broker (--bootstrap; default: a local one, started here). Run:
python tests/benchmarks/bench_engine_start.py -> one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.conftest import given_or_local_broker  # noqa: E402
from tests.epics_iocs import Ioc, client_env  # noqa: E402
from tests.kafka_tools import create_topic, free_port, unique_prefix  # noqa: E402

PREFIX = "BENCH:"
TOKEN = "bench-token"  # noqa: S105 - a local credential for a throwaway engine
DEVICES = """
from ophyd_async.epics.core import epics_signal_rw


def make_devices(files_dir):
    return {{f"sig{{i}}": epics_signal_rw(float, f"{prefix}sig{{i}}") for i in range({count})}}
"""
NO_DEVICES = "# no devices: the anchor\n"


def start_to_ready(home: Path, env: dict[str, str], timeout: float = 120) -> tuple[float, dict]:
    """Seconds from spawning the engine to /readyz answering 200, and its /devices then."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = home / "engine.log"
    began = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, "-m", "runstream.cli", "engine", "--host", "127.0.0.1",
         "--port", str(port)],
        env=env, cwd=ROOT, stdout=log.open("ab"), stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        while True:
            try:
                if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None or time.monotonic() - began > timeout:
                raise RuntimeError(f"the engine did not get ready; its log:\n{log.read_text()}")
            time.sleep(0.02)
        took = time.monotonic() - began
        devices = httpx.get(f"{url}/devices", timeout=10).json()
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
    return took, {d["name"]: d for d in devices}


def connect_in_process(module: Path, ioc: Ioc, count: int) -> float:
    """Seconds the engine's own `Devices.connect_all` takes for the module's devices, in a
    RunEngine's event loop here: the connects alone, without a process's imports."""
    from bluesky import RunEngine

    from runstream.producer.engine.devices import Devices, gather
    from runstream.producer.engine.registry import load_module

    os.environ.update(client_env(ioc))  # before this process's first Channel Access use
    RE = RunEngine({})
    devices = Devices(gather([load_module(str(module))], None))
    began = time.monotonic()
    devices.connect_all(RE.loop, 30)
    took = time.monotonic() - began
    if devices.connected != count:
        raise RuntimeError(f"{devices.connected} of {count} connected in process")
    return took


def engine_env(home: Path, bootstrap: str, module: Path, extra: dict[str, str]) -> dict:
    return {**os.environ, "RUNSTREAM_HOME": str(home), "RUNSTREAM_API_TOKEN": TOKEN,
            "RUNSTREAM_KAFKA_BOOTSTRAP": bootstrap, "RUNSTREAM_PARTITIONS": "1",
            "RUNSTREAM_TOPIC": create_topic(bootstrap, f"{unique_prefix()}.bench", 1),
            "RUNSTREAM_DEVICE_MODULES": json.dumps([str(module)]), **extra}  # fmt: skip


def measure(bootstrap: str, count: int, repeat: int, tmp: Path) -> dict:
    ioc = Ioc("tests.many_pvs_ioc", PREFIX, tmp, args=("--count", str(count)))
    (tmp / "devices.py").write_text(DEVICES.format(prefix=PREFIX, count=count))
    (tmp / "none.py").write_text(NO_DEVICES)
    with_devices, without = [], []
    ioc.start(f"sig{count - 1}")
    try:
        for i in range(repeat):  # interleaved, so that the machine's load falls on both
            home, bare = tmp / f"engine-{i}", tmp / f"bare-{i}"
            home.mkdir()
            bare.mkdir()
            extra = {**client_env(ioc), "RUNSTREAM_DEVICE_CONNECT_TIMEOUT": "30"}
            took, devices = start_to_ready(home, engine_env(home, bootstrap, tmp / "devices.py",
                                                            extra))  # fmt: skip
            failed = [(n, d["error"]) for n, d in devices.items() if not d["connected"]]
            if len(devices) != count or failed:
                raise RuntimeError(f"{count - len(failed)} of {count} connected: {failed[:3]}")
            with_devices.append(took)
            none = engine_env(bare, bootstrap, tmp / "none.py", {})
            without.append(start_to_ready(bare, none)[0])
        in_process = connect_in_process(tmp / "devices.py", ioc, count)
    finally:
        ioc.stop()
    median, anchor = statistics.median(with_devices), statistics.median(without)
    return {"devices": count, "backend": f"Channel Access, one caproto IOC of {count} PVs",
            "start_to_readyz_s": round(median, 2),
            "runs_s": [round(t, 2) for t in with_devices],
            "no_devices_start_to_readyz_s": round(anchor, 2),
            "connects_s": round(median - anchor, 2),
            "connect_all_in_process_s": round(in_process, 2), "goal_s": 10.0,
            "cpus": os.cpu_count(), "load_1min": round(os.getloadavg()[0], 1)}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--bootstrap", help="a broker (default: a local one, started here)")
    parser.add_argument("--devices", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=3, help="starts of each kind")
    args = parser.parse_args()
    with (
        tempfile.TemporaryDirectory() as tmp,
        given_or_local_broker(args.bootstrap, Path(tmp) / "kafka") as bootstrap,
    ):
        print(json.dumps(measure(bootstrap, args.devices, args.repeat, Path(tmp))))


if __name__ == "__main__":
    main()
