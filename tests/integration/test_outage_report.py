"""A consumer service through a broker outage: one line away, one line back, none per retry."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from runstream.producer.plans import sequential_runs
from tests.integration.consumer_harness import publish, running, settings
from tests.kafka_tools import unique_prefix
from tests.waiting import eventually

pytestmark = pytest.mark.kafka


def test_consumer_says_once_away_and_once_back(private_broker, tmp_path: Path, caplog) -> None:
    caplog.set_level(logging.DEBUG, logger="runstream.consumers")
    bootstrap = private_broker.up()
    topic = f"{unique_prefix()}.bluesky.runengine.documents"
    publish(bootstrap, topic, tmp_path / "outbox", [sequential_runs(3)], partitions=1)
    with running(settings(bootstrap, topic), [_nothing]) as runtime:
        eventually(lambda: runtime.connection.state == "up", 60, "the consumer connected")
        private_broker.down()
        eventually(lambda: runtime.connection.state == "down", 60, "the outage noticed")
        eventually(lambda: runtime.connection.refusals == 0 and _retries(caplog) >= 3,
                   60, "librdkafka retrying")  # fmt: skip
        eventually(lambda: any("went away" in r.getMessage() for r in caplog.records),
                   60, "the outage said, once it lasted")  # fmt: skip
        private_broker.up()
        eventually(lambda: runtime.connection.state == "up", 60, "the return noticed")
    said = [r.getMessage() for r in caplog.records if r.levelno >= logging.INFO
            and r.name == "runstream.consumers.runtime"]  # fmt: skip
    assert sum("went away" in m for m in said) == 1, said
    assert sum("is back" in m for m in said) == 1, said
    assert "runs open" in next(m for m in said if "went away" in m)  # says what waits
    retries = [r for r in caplog.records if r.name.endswith("librdkafka")
               and "Connect to" in r.getMessage()]  # fmt: skip
    assert retries and all(r.levelno == logging.DEBUG for r in retries)  # demoted


def _nothing(name: str, start: dict) -> tuple[list, list]:
    return [], []


def _retries(caplog) -> int:
    return sum("Connect to" in r.getMessage() for r in caplog.records)
