"""Fuzzing the engine's API with schemathesis' command line, as its users would run it.

Shared by the shared-token fuzz test and the one with each role's Keycloak token: the
engine's app served by uvicorn on a free loopback port in a thread of the test's process,
and `schemathesis run --checks all` against it with the repository's schemathesis.toml,
a fixed seed (a failure replays) and ``/events`` left out (an endless stream, which the
integration tests read).

One worker, not two: schemathesis' workers are threads, Hypothesis calls ``ast.parse``
to describe strategies, and CPython 3.11's AST constructor keeps its recursion depth in
state shared by threads. Two workers parsing at once (a garbage collection can switch
threads mid-parse) crash the fuzzer with "AST constructor recursion depth mismatch":
a failure of the tool, not a finding about the engine, and it varies run to run.
"""

from __future__ import annotations

import contextlib
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import uvicorn
from fastapi import FastAPI

from tests.kafka_tools import free_port
from tests.waiting import eventually

SEED = "20261129"
ROOT = Path(__file__).resolve().parents[1]
#: Left out of every run: an endless stream.
EXCLUDED = "/events"


@contextlib.contextmanager
def serving(app: FastAPI) -> Iterator[str]:
    """``app`` served on a free loopback port for the block; its base URL."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        ended = lambda: not thread.is_alive() and "its server thread ended"  # noqa: E731
        eventually(lambda: server.started, 30, "the engine to serve", fail_fast=ended)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


class Secret(str):
    """A credential that pytest's report of a failing call's arguments does not show."""

    def __repr__(self) -> str:
        return "<a credential>"


def fuzz(url: str, token: Secret, cwd: Path, *extra: str, timeout: float = 600) -> tuple[int, str]:
    """Run `schemathesis run --checks all` against the engine at ``url`` as the bearer of
    ``token``; its exit code and whole report (stdout and stderr; schemathesis filters the
    header out of it). ``cwd`` gets its cache. Over ``timeout``: TimeoutError, which does
    not carry the command line (the credential is in it)."""
    cli = Path(sys.executable).with_name("schemathesis")
    try:
        result = _run(cli, url, token, cwd, extra, timeout)
    except subprocess.TimeoutExpired:
        raise TimeoutError(f"schemathesis ran over {timeout:.0f} s") from None
    return result.returncode, result.stdout + result.stderr


def _run(cli: Path, url: str, token: Secret, cwd: Path, extra: tuple[str, ...],
         timeout: float) -> subprocess.CompletedProcess:  # fmt: skip
    return subprocess.run(
        [str(cli), "--config-file", str(ROOT / "schemathesis.toml"),
         "run", f"{url}/openapi.json", "--checks", "all",
         "--header", f"Authorization: Bearer {token}", "--exclude-path", EXCLUDED,
         "--seed", SEED, "--workers", "1", "--request-timeout", "10", "--no-color", *extra],
        capture_output=True, text=True, timeout=timeout, cwd=cwd,
    )  # fmt: skip


def failures(report: str) -> set[tuple[str, str]]:
    """The (operation, check code) of each failure the report lists, e.g. ("POST /keys",
    "ST103"): which findings a run made, to tell a known one from a new one."""
    found: set[tuple[str, str]] = set()
    if "== FAILURES ==" not in report:
        return found
    listed = re.split(r"== (?:WARNINGS|SUMMARY) ==", report.split("== FAILURES ==", 1)[1])[0]
    operation = None
    for line in listed.splitlines():
        text = line.strip()
        if header := re.fullmatch(r"_+ ([A-Z]+ \S+) _+", text):
            operation = header.group(1)
        elif (check := re.match(r"- (ST\d+) ", text)) and operation is not None:
            found.add((operation, check.group(1)))
    return found


def generated(report: str) -> int:
    """How many cases the run generated, as its summary says."""
    cases = re.search(r"(\d+) generated", report)
    assert cases is not None, report
    return int(cases.group(1))


def assert_every_operation_tested(url: str, report: str) -> int:
    """Every operation of the engine's OpenAPI document but ``/events`` was tested; how many."""
    spec = httpx.get(f"{url}/openapi.json", timeout=30).json()
    operations = sum(len(methods) for path, methods in spec["paths"].items() if path != EXCLUDED)
    assert operations >= 15 and f"Tested: {operations}" in report, (operations, report)
    return operations
