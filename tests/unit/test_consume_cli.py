"""`runstream consume` refuses bad input with a clear message (exit 2), before touching Kafka."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys

import pytest

from runstream.consumers.services import load_factory


@pytest.mark.parametrize(
    "spec,match",
    [
        ("no_colon", "not of the form"),
        (":factory", "not of the form"),
        ("no.such.module:f", "cannot import"),
        ("runstream.consumers.table:nothing_here", "has no"),
        ("runstream.consumers.table:MIN_WIDTH", "not callable"),
    ],
)
def test_bad_factory_specs(spec: str, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        load_factory(spec)


def test_good_factory_spec() -> None:
    from runstream.consumers.table import table_factory

    assert load_factory("runstream.consumers.table:table_factory") is table_factory


def _consume(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "runstream.cli", "consume", *args],
        capture_output=True, text=True, timeout=60, env={**os.environ, **(env or {})},
    )  # fmt: skip


def test_cli_errors() -> None:
    missing = _consume("--topic", "t")
    assert missing.returncode == 2 and "--factory" in missing.stderr
    bad = _consume("--factory", "nope", "--topic", "t")
    assert bad.returncode == 2 and "not of the form" in bad.stderr
    assert "Traceback" not in bad.stderr
    settings = _consume("--factory", "runstream.consumers.table:table_factory",
                        env={"RUNSTREAM_IDLE_TIMEOUT": "-5"})  # fmt: skip
    assert settings.returncode == 2 and "idle_timeout" in settings.stderr
    port = _consume("table", "--out", "x", "--http-port", "eighty")
    assert port.returncode == 2 and "invalid int" in port.stderr
    no_out = _consume("table")
    assert no_out.returncode == 2 and "--out" in no_out.stderr
    redraws = _consume("plot", "--out", "x", "--max-redraws", "0")
    assert redraws.returncode == 2 and "max-redraws" in redraws.stderr


@pytest.mark.parametrize(
    ("args", "env", "says"),
    [
        (
            ["--port", "99999"],
            {},
            "bad web settings: port (RUNSTREAM_WEB_PORT): Input should be less than",
        ),
        ([], {"RUNSTREAM_WEB_KEEP_RUNS": "0"}, "bad retention settings: keep_runs"),
    ],
)
def test_web_refuses_bad_settings_in_one_line(args: list[str], env: dict, says: str) -> None:
    done = _consume("web", "--bootstrap", "127.0.0.1:1", *args, env=env)
    assert done.returncode == 2
    assert says in done.stderr and "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def test_web_refuses_a_taken_port() -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = _consume("web", "--bootstrap", "127.0.0.1:1", "--port", str(port))
    assert done.returncode == 2
    assert f"cannot listen on 127.0.0.1:{port}" in done.stderr and "Traceback" not in done.stderr


def _service_parsers() -> dict[str, argparse.ArgumentParser]:
    from runstream.cli import build_parser

    def choices(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
        found = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        return found[0].choices if found else {}

    consume = choices(build_parser())["consume"]
    return {"": consume, **choices(consume)}


def test_every_service_option_is_a_setting_with_a_variable() -> None:
    from runstream.consumers.cli import GENERIC
    from runstream.consumers.services import services
    from runstream.consumers.settings import build_settings, composed

    for name, parser in _service_parsers().items():
        model = services()[name].settings if name else GENERIC.settings
        fields = set(model.model_fields) - set(composed(model))
        for part_name, part in composed(model).items():
            fields |= set(part.model_fields) | {f"{part_name}_{f}" for f in part.model_fields}
        dests = {a.dest for a in parser._actions if a.option_strings and a.dest != "help"}
        assert dests <= fields, (name, dests - fields)
        assert build_settings(model, {})  # every option's default is the settings model's


def test_options_win_over_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    from runstream.cli import build_parser
    from runstream.consumers.cli import settings_from
    from runstream.consumers.tiled.service import SERVICE

    for name, value in {"CATALOG": "env", "BATCH_ROWS": "5", "MAX_LATENCY": "0.25",
                        "MAX_ARRAY_SIZE": "3", "URL": "http://env"}.items():  # fmt: skip
        monkeypatch.setenv(f"RUNSTREAM_TILED_{name}", value)
    args = build_parser().parse_args(
        ["consume", "tiled", "--catalog", "cli", "--bootstrap", "k:1", "--tiled-url", "http://cli"]
    )
    settings = settings_from(SERVICE.settings, args)
    tiled = settings.tiled
    assert (tiled.catalog, tiled.batch_rows, tiled.max_latency) == ("cli", 5, 0.25)
    assert (tiled.url, tiled.max_array_size, settings.kafka.bootstrap) == ("http://cli", 3, "k:1")
