"""Fixtures: a real Kafka broker for the session, and private topics per test.

The broker is, in order: the cluster named by RUNSTREAM_TEST_KAFKA; else the
compose file's official Kafka image when a Docker engine answers; else a local
broker from Maven Central jars in a temporary state directory on free ports.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from runstream.broker import LocalBroker, broker_answers
from runstream.settings import LocalSettings
from tests.kafka_tools import create_topic, free_port, unique_prefix
from tests.tiled_fixtures import tiled_server  # noqa: F401  (a fixture)

ROOT = Path(__file__).resolve().parents[1]


def _docker_answers() -> bool:
    if shutil.which("docker") is None:
        return False
    try:
        return subprocess.run(["docker", "info"], capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


@pytest.fixture(scope="session")
def docker_compose_file() -> str:
    return str(ROOT / "deploy" / "compose" / "compose.yml")


@pytest.fixture(scope="session")
def docker_setup() -> list[str]:
    """Only the compose file's broker: the tests bring their own consumers and Tiled."""
    return ["up -d kafka"]


def local_broker(home: Path) -> LocalBroker:
    return LocalBroker(
        LocalSettings(home=home, broker_port=free_port(), broker_controller_port=free_port())
    )


@contextlib.contextmanager
def given_or_local_broker(given: str | None, home: Path) -> Iterator[str]:
    """The bootstrap given, or that of a local broker in ``home``, up for the block."""
    if given:
        yield given
        return
    broker = local_broker(home)
    try:
        yield broker.up()
    finally:
        broker.down()


@pytest.fixture(scope="session")
def kafka_bootstrap(request: pytest.FixtureRequest, tmp_path_factory) -> Iterator[str]:
    given = os.environ.get("RUNSTREAM_TEST_KAFKA")
    if given:
        yield given
        return
    if _docker_answers():
        services = request.getfixturevalue("docker_services")
        services.wait_until_responsive(
            check=lambda: broker_answers("127.0.0.1:39092"), timeout=120, pause=1
        )
        yield "127.0.0.1:39092"
        return
    broker = local_broker(tmp_path_factory.mktemp("kafka-home"))
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")

    def say(message: str) -> None:
        if reporter:
            reporter.write_line(f"[kafka] {message}")

    address = broker.up(say)
    yield address
    broker.down(say)


@pytest.fixture
def new_topic(kafka_bootstrap: str) -> Callable[..., str]:
    """Make a topic no other test sees: ``new_topic(partitions=3, config={...})``."""

    def make(partitions: int = 1, config: dict | None = None, name: str | None = None) -> str:
        topic = name or f"{unique_prefix()}.bluesky.runengine.documents"
        return create_topic(kafka_bootstrap, topic, partitions, config)

    return make


@pytest.fixture
def private_broker(tmp_path: Path) -> Iterator[LocalBroker]:
    """A broker of this test's own, to stop and start at will (not shared)."""
    broker = local_broker(tmp_path / "home")
    yield broker
    broker.down()
