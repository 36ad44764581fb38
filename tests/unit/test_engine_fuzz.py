"""The engine's OpenAPI document is the truth: `schemathesis run --checks all` finds nothing.

The engine serves on a free port in this process (real RunEngine, ophyd.sim devices);
schemathesis runs as its command line does, every phase and every check, with a fixed
seed so a failure replays (how, and why with one worker: tests.engine_fuzzing). The
integration test tests.integration.test_identity_fuzz does the same with each role's token.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from runstream.producer.engine import Engine, PlanRegistry, TaskStore
from runstream.producer.engine.app import create_app
from runstream.producer.engine.auth import TokenGuard
from tests.engine_fuzzing import assert_every_operation_tested, fuzz, generated, serving

TOKEN = "fuzz-token"  # noqa: S105 - a test credential


@pytest.fixture
def engine_url(tmp_path: Path) -> Iterator[str]:
    engine = Engine(TaskStore(tmp_path / "tasks.db"), PlanRegistry.default(), max_queue=5)
    engine.set_queue_running(False)  # accept tasks but run none: the fuzzer would queue hours
    engine.start()
    try:
        with serving(create_app(engine, TokenGuard(TOKEN, open_reads=True))) as url:
            yield url
    finally:
        engine.close()
        engine.store.close()


def test_schemathesis_finds_no_failure_with_every_check(engine_url: str, tmp_path: Path) -> None:
    code, report = fuzz(engine_url, TOKEN, tmp_path)  # its cache goes to tmp_path
    assert code == 0, report
    cases = generated(report)
    assert cases > 300, report
    assert_every_operation_tested(engine_url, report)
    print(report.splitlines()[-1], f"({cases} generated cases)")
