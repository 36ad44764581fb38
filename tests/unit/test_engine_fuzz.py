"""The engine's OpenAPI document is the truth: `schemathesis run --checks all` finds nothing.

The engine serves on a free port in this process (real RunEngine, ophyd.sim devices);
schemathesis runs as its command line does, every phase and every check, with a fixed
seed so a failure replays. ``/events`` is left out: it is an endless stream, which the
integration test reads.

One worker, not two: schemathesis' workers are threads, Hypothesis calls ``ast.parse``
to describe strategies, and CPython 3.11's AST constructor keeps its recursion depth in
state shared by threads. Two workers parsing at once (a garbage collection can switch
threads mid-parse) crash the fuzzer with "AST constructor recursion depth mismatch":
a failure of the tool, not a finding about the engine, and it varies run to run.
"""

from __future__ import annotations

import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import uvicorn

from runstream.producer.engine import Engine, PlanRegistry, TaskStore
from runstream.producer.engine.app import create_app
from runstream.producer.engine.auth import TokenGuard
from tests.kafka_tools import free_port
from tests.waiting import eventually

TOKEN = "fuzz-token"  # noqa: S105 - a test credential
SEED = "20261129"
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def engine_url(tmp_path: Path) -> Iterator[str]:
    engine = Engine(TaskStore(tmp_path / "tasks.db"), PlanRegistry.default(), max_queue=5)
    engine.set_queue_running(False)  # accept tasks but run none: the fuzzer would queue hours
    engine.start()
    app = create_app(engine, TokenGuard(TOKEN, open_reads=True))
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    eventually(lambda: server.started, 30, "the engine to serve",
               fail_fast=lambda: not thread.is_alive() and "its server thread ended")  # fmt: skip
    try:
        yield url
    finally:
        server.should_exit = True
        thread.join(10)
        engine.close()
        engine.store.close()


def test_schemathesis_finds_no_failure_with_every_check(engine_url: str, tmp_path: Path) -> None:
    cli = Path(sys.executable).with_name("schemathesis")
    result = subprocess.run(
        [str(cli), "--config-file", str(ROOT / "schemathesis.toml"),
         "run", f"{engine_url}/openapi.json", "--checks", "all",
         "--header", f"Authorization: Bearer {TOKEN}", "--exclude-path", "/events",
         "--seed", SEED, "--workers", "1", "--request-timeout", "10", "--no-color"],
        capture_output=True, text=True, timeout=600, cwd=tmp_path,  # its cache goes there
    )  # fmt: skip
    report = result.stdout + result.stderr
    assert result.returncode == 0, report
    cases = re.search(r"(\d+) generated", report)
    assert cases is not None and int(cases.group(1)) > 300, report
    spec = httpx.get(f"{engine_url}/openapi.json").json()
    operations = sum(len(methods) for path, methods in spec["paths"].items() if path != "/events")
    assert operations >= 15 and f"Tested: {operations}" in report  # every operation but /events
    print(report.splitlines()[-1], f"({cases.group(0)} cases)")
