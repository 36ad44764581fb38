"""Expected failures of `runstream` commands: one line on stderr, non-zero exit, no traceback.

And what is expected of a service whose broker is not there: it waits for it, says
where it is looking, and stops cleanly on SIGTERM.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from tiled.client import from_uri

from tests.cli_tools import Output, run_runstream
from tests.kafka_tools import free_port
from tests.waiting import eventually, process_ended

TOKEN = "cli-errors-token"  # noqa: S105 - a test credential


def _env(home: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RUNSTREAM_")}
    return {**env, "RUNSTREAM_HOME": str(home), **extra}


def assert_one_line_error(result: subprocess.CompletedProcess, needle: str) -> None:
    lines = result.stderr.strip().splitlines()
    assert result.returncode != 0, result.stderr
    assert "Traceback" not in result.stderr
    assert len(lines) == 1, result.stderr
    assert needle in lines[0], lines[0]


NOBODY = f"127.0.0.1:{free_port()}"  # a port nothing listens on
NO_ENGINE = f"cannot reach the engine at http://{NOBODY}"
TOKEN_ENV = {"RUNSTREAM_API_TOKEN": TOKEN}
CASES = {
    "broker port out of range": (["broker", "up", "--port", "70000"], "RUNSTREAM_BROKER_PORT"),
    "broker port not a number": (["broker", "up", "--port", "abc"], "invalid int value: 'abc'"),
    "tiled port out of range": (["tiled", "up", "--port", "70000"], "RUNSTREAM_TILED_PORT"),
    "engine port out of range": (["engine", "--port", "70000"], "RUNSTREAM_ENGINE_PORT", TOKEN_ENV),
    "engine port not a number": (["engine", "--port", "abc"], "invalid int value: 'abc'"),
    "engine without a token": (["engine"], "no API token: set RUNSTREAM_API_TOKEN"),
    "consumer http port out of range": (
        ["consume", "table", "--out", "x", "--http-port", "70000"],
        "RUNSTREAM_HTTP_PORT",
    ),
    "unknown factory module": (
        ["consume", "--factory", "no_such_module:factory"],
        "cannot import no_such_module",
    ),
    "factory not module:callable": (["consume", "--factory", "nocolon"], "package.module:callable"),
    "no engine to submit to": (["submit", "count", "--url", f"http://{NOBODY}"], NO_ENGINE),
    "no engine to list tasks": (["tasks", "--url", f"http://{NOBODY}"], NO_ENGINE),
    "no engine to abort": (["abort", "--url", f"http://{NOBODY}"], NO_ENGINE),
    # tiled's client retries a refused connection for ~45 s unless told otherwise
    "unreachable tiled": (
        ["consume", "tiled", "--tiled-url", f"http://{NOBODY}", "--bootstrap", NOBODY],
        f"cannot reach Tiled at http://{NOBODY}",
        {"TILED_RETRY_ATTEMPTS": "1"},
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_expected_failure_is_one_line(tmp_path: Path, case: str) -> None:
    args, needle, *extra = CASES[case]
    env = _env(tmp_path, **(extra[0] if extra else {}))
    assert_one_line_error(run_runstream(env, *args), needle)


def test_engine_on_a_taken_port_is_one_line(tmp_path: Path) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        env = _env(tmp_path, RUNSTREAM_API_TOKEN=TOKEN)
        taken = run_runstream(env, "engine", "--port", str(port))
    assert_one_line_error(taken, f"cannot serve on 127.0.0.1:{port}")


def test_consume_tiled_uses_the_local_servers_key_and_says_what_to_set(tmp_path: Path) -> None:
    env = _env(tmp_path / "home", RUNSTREAM_TILED_PORT=str(free_port()))
    up = run_runstream(env, "tiled", "up")
    assert up.returncode == 0, up.stderr
    url = up.stdout.strip().splitlines()[-1]
    nobody = f"127.0.0.1:{free_port()}"
    try:
        # elsewhere (another home): not the local server, so the key must be given
        elsewhere = _env(tmp_path / "elsewhere")
        no_key = run_runstream(
            elsewhere, "consume", "tiled", "--tiled-url", url, "--bootstrap", nobody
        )
        assert_one_line_error(no_key, "needs an API key: set RUNSTREAM_TILED_API_KEY")
        wrong = {**elsewhere, "RUNSTREAM_TILED_API_KEY": "not-the-key"}
        refused = run_runstream(
            wrong, "consume", "tiled", "--tiled-url", url, "--bootstrap", nobody
        )
        assert_one_line_error(refused, "set RUNSTREAM_TILED_API_KEY to a key of that server")

        # the README's sequence: `runstream tiled up`, then consume with its URL and no key
        consumer = subprocess.Popen(
            [sys.executable, "-m", "runstream.cli", "consume", "tiled", "--tiled-url",
             url.replace("127.0.0.1", "localhost"), "--bootstrap", nobody],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        key = (tmp_path / "home" / "tiled" / "api_key").read_text().strip()
        client = from_uri(url, api_key=key)
        gone = process_ended(consumer, consumer.stderr.read)  # type: ignore[union-attr]
        eventually(lambda: "raw" in client, 60, "the consumer to reach Tiled and make its catalog",
                   fail_fast=gone)  # fmt: skip
        consumer.send_signal(signal.SIGTERM)
        _, stderr = consumer.communicate(timeout=60)
        assert consumer.returncode == 0, stderr
        assert "Traceback" not in stderr
    finally:
        assert run_runstream(env, "tiled", "down").returncode == 0


def test_services_wait_for_an_unreachable_broker_and_stop_cleanly(tmp_path: Path) -> None:
    """A service outlives a broker outage, so it waits at start too: naming the broker it
    waits for, and stopping with exit code 0 (no traceback) when told to."""
    nobody = f"127.0.0.1:{free_port()}"
    port = free_port()
    env = _env(tmp_path, RUNSTREAM_KAFKA_BOOTSTRAP=nobody, RUNSTREAM_API_TOKEN=TOKEN)
    commands = {
        "consumer": ["consume", "table", "--out", str(tmp_path / "tables")],
        "engine": ["engine", "--port", str(port)],
    }
    for name, args in commands.items():
        proc = subprocess.Popen(
            [sys.executable, "-m", "runstream.cli", *args],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        stderr = Output(proc.stderr)  # type: ignore[arg-type]
        gone = process_ended(proc, stderr.text)
        try:
            eventually(lambda out=stderr: out.line_with(nobody), 60,
                       f"the {name} to name {nobody}", fail_fast=gone)  # fmt: skip
            assert proc.poll() is None, f"the {name} gave up: {stderr.text()}"
            if name == "engine":  # it serves its API meanwhile
                health = eventually(lambda: httpx.get(f"http://127.0.0.1:{port}/healthz"), 60,
                                    "the engine's /healthz", fail_fast=gone,
                                    ignoring=httpx.HTTPError)  # fmt: skip
                assert health.json() == {"ok": True, "problems": []}
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(60)
        said = stderr.whole()
        assert proc.returncode == 0, said
        assert "Traceback" not in said
