"""The compose file parses, and its services' commands, variables, health checks, ports,
volumes and addresses match the code (no Docker engine needed, none is started)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tests.deployment.compose import check_compose, compose_containers, interpolate
from tests.deployment.render import COMPOSE_FILE, ROOT, load_compose

SERVICES = {"kafka", "postgres", "tiled", "engine", "table", "plot", "tiled-writer", "web"}


def test_compose_file_passes_every_check() -> None:
    compose = load_compose()
    assert set(compose["services"]) == SERVICES
    assert check_compose(compose) == []


def test_every_runstream_service_is_checked_by_the_image_health_check() -> None:
    containers = {c.where: c for c in compose_containers(load_compose())}
    kinds = {where: c.kind for where, c in containers.items() if c.is_runstream}
    assert kinds == {
        "compose:tiled": "tiled-server",
        "compose:engine": "engine",
        "compose:table": "consume:table",
        "compose:plot": "consume:plot",
        "compose:tiled-writer": "consume:tiled",
        "compose:web": "consume:web",
    }
    for where in kinds:
        assert [probe[2] for probe in containers[where].probes] == ["/healthz"], where


def test_the_test_suite_starts_this_files_kafka(
    docker_compose_file: str, docker_setup: list[str]
) -> None:
    assert Path(docker_compose_file) == COMPOSE_FILE
    assert docker_setup == ["up -d kafka"]
    kafka = load_compose()["services"]["kafka"]
    assert "127.0.0.1:39092:39092" in kafka["ports"]
    assert "EXTERNAL://127.0.0.1:39092" in kafka["environment"]["KAFKA_ADVERTISED_LISTENERS"]
    conftest = (ROOT / "tests" / "conftest.py").read_text()
    assert conftest.count('"127.0.0.1:39092"') >= 2  # the address the suite waits for and uses


def test_interpolation_follows_compose() -> None:
    assert interpolate("a-${X:-dflt}-b") == ("a-dflt-b", [])
    assert interpolate("${X-dflt}", {"X": "set"}) == ("set", [])
    assert interpolate("x${MISSING}y") == ("xy", ["MISSING"])


def service(compose: dict, name: str) -> dict:
    return compose["services"][name]


BROKEN: list[tuple[str, Callable[[dict], None], str]] = [
    (
        "unknown subcommand",
        lambda c: service(c, "table").update(command=["consume", "tabel", "--out", "/x"]),
        "invalid choice: 'tabel'",
    ),
    (
        "variable of another service",
        lambda c: service(c, "plot")["environment"].update(RUNSTREAM_TILED_URL="http://tiled:8000"),
        "RUNSTREAM_TILED_URL is not a setting of `consume:plot`",
    ),
    (
        "misspelt variable",
        lambda c: service(c, "engine")["environment"].update(RUNSTREAM_PARTITION="3"),
        "RUNSTREAM_PARTITION is not a setting of `engine`",
    ),
    (
        "value the settings refuse",
        lambda c: service(c, "engine")["environment"].update(RUNSTREAM_FSYNC="sometimes"),
        "refuses the environment",
    ),
    (
        "engine on loopback",
        lambda c: service(c, "engine")["environment"].update(RUNSTREAM_ENGINE_HOST="127.0.0.1"),
        "binds 127.0.0.1 only",
    ),
    (
        "published port the engine does not bind",
        lambda c: service(c, "engine").update(ports=["127.0.0.1:8601:8601"]),
        "declares port 8601; the service listens on 8600",
    ),
    (
        "consumer without its health server",
        lambda c: service(c, "table")["environment"].pop("RUNSTREAM_HTTP_PORT"),
        "the health and metrics server is off",
    ),
    (
        "Tiled URL on the wrong port",
        lambda c: service(c, "tiled-writer")["environment"].update(
            RUNSTREAM_TILED_URL="http://tiled:8001"
        ),
        "RUNSTREAM_TILED_URL http://tiled:8001 is no service here",
    ),
    (
        "bootstrap no listener advertises",
        lambda c: service(c, "engine")["environment"].update(
            RUNSTREAM_KAFKA_BOOTSTRAP="kafka:9093"
        ),
        "no Kafka service advertises kafka:9093",
    ),
    (
        "undeclared volume",
        lambda c: service(c, "plot").update(volumes=["plot-files:/var/lib/runstream"]),
        "volume plot-files is not declared",
    ),
    (
        "volume where the image has no directory for its user",
        lambda c: service(c, "plot").update(volumes=["plots:/plots"]),
        "which the image does not make for its user",
    ),
    (
        "dependency on a missing service",
        lambda c: service(c, "tiled").update(
            depends_on={"postgresql": {"condition": "service_healthy"}}
        ),
        "depends on postgresql, no such service",
    ),
    (
        "variable without a default",
        lambda c: service(c, "tiled")["environment"].update(
            TILED_SINGLE_USER_API_KEY="${TILED_KEY}"
        ),
        "uses ${TILED_KEY} with no default",
    ),
    (
        "Tiled command Tiled refuses",
        lambda c: service(c, "tiled").update(command=["serve", "confg", "/etc/tiled/config.yml"]),
        "No such command 'confg'",
    ),
]


@pytest.mark.parametrize("breaking,expected", [b[1:] for b in BROKEN], ids=[b[0] for b in BROKEN])
def test_checks_report_a_broken_compose_file(
    breaking: Callable[[dict], None], expected: str
) -> None:
    compose = load_compose()
    breaking(compose)
    problems = check_compose(compose)
    assert any(expected in p for p in problems), problems
