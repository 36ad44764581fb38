"""Running the consumer runtime in-process or as `runstream consume` processes, for tests."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from bluesky import RunEngine

from runstream.consumers import ConsumerSettings, Runtime
from runstream.kafka import KafkaSettings
from runstream.producer import KafkaPublisher, lineage
from tests.kafka_tools import free_port
from tests.waiting import eventually

ROOT = Path(__file__).resolve().parents[2]


def settings(bootstrap: str, topic: str, **extra) -> ConsumerSettings:
    return ConsumerSettings(kafka=KafkaSettings(bootstrap=bootstrap), topics=[topic],
                            group=f"g-{topic}", from_beginning=True, **extra)  # fmt: skip


@contextlib.contextmanager
def running(s: ConsumerSettings, factories: list) -> Iterator[Runtime]:
    runtime = Runtime(s, factories)
    thread = threading.Thread(target=runtime.run, daemon=True)
    thread.start()
    try:
        eventually(runtime.ready, 60, "partition assignment")
        yield runtime
    finally:
        runtime.stop()
        thread.join(30)


def publish(bootstrap: str, topic: str, outbox: Path, plans: list, partitions: int) -> list[str]:
    """Run plans on a real RunEngine publishing with KafkaPublisher; return the run uids."""
    publisher = KafkaPublisher(topic, bootstrap, outbox, partitions=partitions)
    RE = RunEngine({})
    RE.preprocessors.append(lineage)
    RE.subscribe(publisher)
    uids: list[str] = []
    for plan in plans:
        uids += RE(plan)
    assert publisher.flush(30) == 0
    publisher.close()
    return uids


class ConsumerProcess:
    """``runstream consume --factory tests...recording_factory:factory`` as a process."""

    def __init__(self, bootstrap: str, topic: str, group: str, record_dir: Path, *extra: str,
                 env: dict | None = None) -> None:  # fmt: skip
        self.port = free_port()
        self.log_path = record_dir / f"consumer-{self.port}.log"
        with self.log_path.open("w") as log:  # a file, not a pipe nobody drains
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "runstream.cli", "consume",
                 "--factory", "tests.integration.recording_factory:factory",
                 "--topic", topic, "--group", group, "--bootstrap", bootstrap,
                 "--from-beginning", "--http-port", str(self.port), *extra],
                cwd=ROOT,
                env={**os.environ, "RUNSTREAM_TEST_RECORD_DIR": str(record_dir),
                     "RUNSTREAM_SESSION_TIMEOUT_MS": "6000", **(env or {})},
                stdout=subprocess.DEVNULL, stderr=log,
            )  # fmt: skip

    def log(self) -> str:
        """What the process has written to stderr (its log lines)."""
        return self.log_path.read_text()

    def get(self, path: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=2) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()
        except OSError:
            return 0, ""

    def ready(self) -> bool:
        assert self.proc.poll() is None, self.log()
        return self.get("/readyz")[0] == 200

    def terminate(self, timeout: float = 30) -> int:
        if self.proc.poll() is None:
            self.proc.terminate()
        return self.proc.wait(timeout)


def gated_run(points: int, gate_at: int, gate: threading.Event, md: dict | None = None):
    """One run of ``points`` ophyd.sim motor/det readings that waits for ``gate`` at ``gate_at``:
    a live run that tests can catch in the middle. Call it on the test's thread (the
    devices are made there), run it on any."""
    import bluesky.plan_stubs as bps
    import bluesky.preprocessors as bpp

    from runstream.producer.plans import sim_hw

    hw = sim_hw()

    @bpp.run_decorator(md=md or {})
    def plan():
        for j in range(points):
            if j == gate_at:
                gate.wait(120)
            yield from bps.mov(hw.motor, j)
            yield from bps.trigger_and_read([hw.motor, hw.det])

    return plan()
