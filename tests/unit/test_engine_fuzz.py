"""Fuzz the engine's OpenAPI document (schemathesis, in process): no input may cause a 5xx."""

from __future__ import annotations

from pathlib import Path

import schemathesis
from hypothesis import HealthCheck, given, settings
from runstream.producer.engine import Engine, PlanRegistry, TaskStore
from runstream.producer.engine.app import create_app
from runstream.producer.engine.auth import TokenGuard

TOKEN = "fuzz-token"  # noqa: S105 - a test credential


def test_no_input_causes_a_server_error(tmp_path: Path) -> None:
    engine = Engine(TaskStore(tmp_path / "tasks.db"), PlanRegistry.default(), max_queue=5)
    engine.set_queue_running(False)  # accept tasks but run none: the fuzzer would queue hours
    engine.start()
    app = create_app(engine, TokenGuard(TOKEN, open_reads=True), max_body_bytes=8192)
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    checked = []
    try:
        for result in schema.get_all_operations():
            operation = result.ok()
            if operation.path == "/events":
                continue  # an endless stream; the integration test reads it

            @given(case=operation.as_strategy())
            @settings(max_examples=20, deadline=None, suppress_health_check=list(HealthCheck))
            def fuzz(case) -> None:
                for headers in ({"Authorization": f"Bearer {TOKEN}"}, {}):
                    response = case.call(headers=headers)
                    assert response.status_code < 500, (case.method, case.path, response.text)

            fuzz()
            checked.append(f"{operation.method.upper()} {operation.path}")
    finally:
        engine.close()
        engine.store.close()
    assert "POST /tasks" in checked and "POST /control/{action}" in checked
    assert engine.RE.state == "idle"
