"""The connection report: librdkafka's errors and log lines become one line per change."""

from __future__ import annotations

import logging
import subprocess
import sys

import pytest
from confluent_kafka import KafkaError

from runstream.kafka.connection import (
    ConnectionReport,
    KafkaAuthenticationError,
    reason_of,
    refusal_kind,
)

LOGGER = "runstream.test.connection"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def report(caplog) -> tuple[ConnectionReport, Clock]:
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    clock = Clock()
    waiting = iter(range(1, 1000))
    report = ConnectionReport(logging.getLogger(LOGGER), "publisher", "127.0.0.1:9",
                              lambda: f"{next(waiting)} documents wait", clock=clock)  # fmt: skip
    return report, clock


def _said(caplog, level: int = logging.INFO) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= level]


REFUSED = "127.0.0.1:9/bootstrap: Connect to ipv4#127.0.0.1:9 failed: Connection refused " \
    "(after 0ms in state CONNECT)"  # fmt: skip


def test_an_outage_is_said_once_away_once_a_minute_once_back(report, caplog) -> None:
    report, clock = report
    report.connected()
    for _ in range(50):  # librdkafka's per-attempt lines and errors
        report.log(3, "%s [%s] %s", "FAIL", "rdkafka#producer-1", "[thrd:x]: " + REFUSED)
        report.error_cb(KafkaError(KafkaError._TRANSPORT, REFUSED))
        report.error_cb(KafkaError(KafkaError._ALL_BROKERS_DOWN, "1/1 brokers are down"))
        clock.now += 1
        report.tick()
    said = _said(caplog)
    assert said == [
        "Kafka at 127.0.0.1:9 went away (publisher): Connect to ipv4#127.0.0.1:9 failed: "
        "Connection refused; 1 documents wait"
    ]
    clock.now += 11
    report.tick()
    assert _said(caplog)[-1] == "Kafka at 127.0.0.1:9 still away after 61 s (publisher); " \
        "2 documents wait"  # fmt: skip
    report.tick()
    assert len(_said(caplog)) == 2  # not again within the minute
    clock.now += 5
    report.connected()
    report.connected()
    assert _said(caplog)[2:] == ["Kafka at 127.0.0.1:9 is back after 66 s (publisher)"]
    debug = [r for r in caplog.records if r.levelno == logging.DEBUG]
    assert len(debug) == 50 and all("Connect to" in r.getMessage() for r in debug)


def test_a_blip_shorter_than_the_grace_is_no_outage(report, caplog) -> None:
    """A broker closing an idle connection, or one node's restart, drops every connection
    for a moment: that is not said, neither away nor back."""
    report, clock = report
    report.connected()
    report.error_cb(KafkaError(KafkaError._ALL_BROKERS_DOWN, "1/1 brokers are down"))
    clock.now += 1.5
    report.tick()
    report.connected()
    assert _said(caplog) == []
    report.error_cb(KafkaError(KafkaError._ALL_BROKERS_DOWN, "1/1 brokers are down"))
    clock.now += 2
    report.tick()
    report.tick()
    report.connected()
    assert [m.split(" (")[0] for m in _said(caplog)] == [
        "Kafka at 127.0.0.1:9 went away",
        "Kafka at 127.0.0.1:9 is back after 2 s",
    ]


@pytest.mark.parametrize(
    ("code", "text", "why"),
    [
        (KafkaError._AUTHENTICATION, "sasl_ssl://h:1/bootstrap: SASL authentication error: "
         "Authentication failed due to invalid credentials (after 352ms in state AUTH_REQ)",
         "SASL authentication error: Authentication failed due to invalid credentials"),
        (KafkaError._SSL, "sasl_ssl://h:1/bootstrap: SSL handshake failed: certificate verify "
         "failed", "SSL handshake failed: certificate verify failed"),
        (KafkaError._TRANSPORT, "ssl://h:1/bootstrap: error:0A000086:SSL routines::certificate "
         "verify failed (after 9ms in state SSL_HANDSHAKE)",
         "error:0A000086:SSL routines::certificate verify failed"),
    ],
)  # fmt: skip
def test_a_refusal_is_said_once_and_stops_who_asks(report, caplog, code, text, why) -> None:
    report, _clock = report
    for _ in range(10):
        report.error_cb(KafkaError(code, text))
        report.error_cb(KafkaError(KafkaError._ALL_BROKERS_DOWN, "1/1 brokers are down"))
    said = _said(caplog)
    assert said == [f"Kafka authentication failed at 127.0.0.1:9 (publisher): {why}; "
                    "1 documents wait"]  # fmt: skip
    assert report.refusals == 10 and report.state == "auth_failed"
    with pytest.raises(KafkaAuthenticationError, match="authentication failed"):
        report.raise_if_refused()
    report.connected()
    report.raise_if_refused()  # accepted again: nothing raised
    assert "accepts" in _said(caplog)[-1]


def test_one_refusal_in_librdkafkas_several_wordings_is_said_once(report, caplog) -> None:
    report, _clock = report
    wordings = [
        (KafkaError._SSL, "ssl://h:1/bootstrap: error:0A000086:SSL routines::certificate verify "
         "failed"),
        (KafkaError._TRANSPORT, "ssl://h:1/bootstrap: SSL handshake failed: error:0A000086:SSL "
         "routines::certificate verify failed: broker certificate could not be verified, verify "
         "that ssl.ca.location is correctly configured (after 4ms in state SSL_HANDSHAKE)"),
    ]  # fmt: skip
    for _ in range(5):
        for code, text in wordings:
            report.error_cb(KafkaError(code, text))
    assert len(_said(caplog)) == 1 and "certificate verify failed" in _said(caplog)[0]
    # Another kind of refusal (the CA fixed, the password wrong) is news: said too.
    report.error_cb(KafkaError(KafkaError._AUTHENTICATION, "SASL authentication error: "
                               "Authentication failed due to invalid credentials"))  # fmt: skip
    assert len(_said(caplog)) == 2 and "invalid credentials" in _said(caplog)[1]
    assert refusal_kind("wrong version number") == "protocol"
    assert refusal_kind("SSL handshake failed: unknown CA") == "handshake"
    assert refusal_kind("Connect to ipv4#127.0.0.1:9092 failed: Connection refused") is None


def test_odd_input_never_breaks_the_client(caplog) -> None:
    caplog.set_level(logging.DEBUG, logger=LOGGER)

    def broken() -> str:
        raise RuntimeError("outbox closed")

    report = ConnectionReport(logging.getLogger(LOGGER), "consumer", "b:1", broken, away_grace=0)
    report.log(6, "no args at all")  # a log call without librdkafka's facility
    report.error_cb(KafkaError(KafkaError._ALL_BROKERS_DOWN, ""))
    report.tick()
    for _ in range(3):
        report.error_cb(KafkaError(KafkaError._MSG_TIMED_OUT, "odd"))  # other errors: once
    said = _said(caplog, logging.WARNING)
    assert "cannot be reached" in said[0] and "what waits is unknown" in said[0]
    assert sum("odd" in m for m in said) == 1
    assert reason_of("") == "" and reason_of("plain words") == "plain words"


def test_the_wire_contract_imports_with_no_kafka_client() -> None:
    """The codes the report reads are librdkafka's own, so the report lives in the Kafka
    layer; the contract below it must import where confluent-kafka cannot."""
    code = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] == 'confluent_kafka':\n"
        "            raise ImportError('no Kafka client here')\n"
        "sys.meta_path.insert(0, Block())\n"
        "import runstream.schemas as s\n"
        "assert s.decode(s.encode('start', {'uid': 'u'})) == ('start', {'uid': 'u'})\n"
        "print('pure', 'confluent_kafka' in sys.modules)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["pure", "False"]
