"""A broker with TLS and SCRAM-SHA-512 (`runstream broker up --secure`), for real.

One secure broker for the module, started and stopped through the command line.
The seed's runs go through publisher, table service and Tiled writer; a wrong
password, an untrusted certificate and a plaintext client are refused, and say so
in one line.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import stat
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from bluesky import RunEngine
from confluent_kafka import KafkaException, Producer
from confluent_kafka.admin import AdminClient
from tiled.client import from_uri

from runstream.brokersecurity import BrokerSecurity
from runstream.consumers.tiled import connect_catalog
from runstream.producer import KafkaPublisher, lineage
from runstream.producer.plans import nested_runs, recursive_runs, sequential_runs
from tests.cli_tools import run_runstream
from tests.integration.consumer_harness import ROOT
from tests.kafka_tools import free_port, read_all, unique_prefix
from tests.table_text import table_rows
from tests.tiled_fixtures import runs_closed
from tests.waiting import eventually

pytestmark = [pytest.mark.kafka, pytest.mark.secure]
WRONG = "not-the-password-7f3a"


@dataclass
class SecureBroker:
    bootstrap: str
    home: Path
    env: dict[str, str]

    @property
    def client_file(self) -> Path:
        return self.home / "kafka" / "client.json"

    @property
    def client(self) -> dict[str, str]:
        return json.loads(self.client_file.read_text())

    @property
    def password(self) -> str:
        return (self.home / "kafka" / "secrets" / "scram-password").read_text().strip()


@pytest.fixture(scope="module")
def secure(tmp_path_factory) -> Iterator[SecureBroker]:
    home = tmp_path_factory.mktemp("secure-home")
    env = {**os.environ, "RUNSTREAM_HOME": str(home)}
    up = run_runstream(env, "broker", "up", "--secure", "--port", str(free_port()),
                    "--controller-port", str(free_port()))  # fmt: skip
    assert up.returncode == 0, up.stderr
    broker = SecureBroker(up.stdout.strip().splitlines()[-1], home, env)
    try:
        assert broker.password not in up.stdout + up.stderr
        yield broker
    finally:
        down = run_runstream(env, "broker", "down")
        assert down.returncode == 0, down.stderr


def test_credentials_are_private_and_never_shown(secure: SecureBroker) -> None:
    client = secure.client
    assert client == {
        "security.protocol": "SASL_SSL",
        "sasl.mechanism": "SCRAM-SHA-512",
        "sasl.username": "runstream",
        "sasl.password": secure.password,
        "ssl.ca.location": str(secure.home / "kafka" / "tls" / "ca.pem"),
    }
    secrets = [secure.client_file, secure.home / "kafka" / "secrets" / "scram-password",
               secure.home / "kafka" / "server.properties",
               secure.home / "kafka" / "tls" / "broker-keystore.pem"]  # fmt: skip
    for path in secrets:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    for log in (secure.home / "kafka" / "logs").iterdir():
        assert secure.password not in log.read_text(errors="replace"), log
    status = run_runstream(secure.env, "broker", "status")
    assert status.returncode == 0 and status.stdout.strip() == secure.bootstrap
    assert secure.password not in status.stdout + status.stderr


def test_plaintext_client_is_refused(secure: SecureBroker) -> None:
    admin = AdminClient({"bootstrap.servers": secure.bootstrap, "log_level": 0})
    with pytest.raises(KafkaException):
        admin.list_topics(timeout=3)
    results: list = []
    producer = Producer({"bootstrap.servers": secure.bootstrap, "message.timeout.ms": 3000,
                         "log_level": 0})  # fmt: skip
    producer.produce("anything", b"x", on_delivery=lambda err, msg: results.append(err))
    producer.flush(10)
    assert len(results) == 1 and results[0] is not None  # never delivered


def _table_service(secure: SecureBroker, topic: str, out: Path, config: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "runstream.cli", "consume", "table", "--out", str(out),
         "--topic", topic, "--group", unique_prefix("table"), "--bootstrap", secure.bootstrap,
         "--from-beginning"],
        cwd=ROOT, env={**os.environ, "RUNSTREAM_KAFKA_CONFIG_FILE": str(config)},
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def test_seed_runs_go_through_publisher_table_and_tiled(
    secure: SecureBroker, tiled_server, tmp_path: Path
) -> None:
    topic = f"{unique_prefix()}.bluesky.runengine.documents"
    publisher = KafkaPublisher(topic, secure.bootstrap, tmp_path / "outbox", partitions=2,
                               **secure.client)  # fmt: skip
    RE = RunEngine({})
    RE.preprocessors.append(lineage)
    emitted: list[tuple[str, dict]] = []
    RE.subscribe(publisher)
    RE.subscribe(lambda n, d: emitted.append((n, d)))
    uids = []
    for plan in (sequential_runs(3), nested_runs(4), recursive_runs(2)):
        uids += RE(plan)
    assert publisher.flush(60) == 0
    publisher.close()
    records = read_all(secure.bootstrap, topic, expect=len(emitted), client=secure.client)
    assert len(records) == len(emitted)

    catalog = unique_prefix("cat")
    connect_catalog(tiled_server.url, tiled_server.api_key, catalog)
    tables = tmp_path / "tables"
    table = _table_service(secure, topic, tables, secure.client_file)
    writer = subprocess.Popen(
        [sys.executable, "-m", "runstream.cli", "consume", "tiled", "--tiled-url",
         tiled_server.url, "--catalog", catalog, "--topic", topic, "--group",
         unique_prefix("g"), "--bootstrap", secure.bootstrap, "--from-beginning",
         "--max-latency", "0.2"],
        cwd=ROOT, env={**os.environ, "RUNSTREAM_TILED_API_KEY": tiled_server.api_key,
                       "RUNSTREAM_KAFKA_CONFIG_FILE": str(secure.client_file)},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    starts = [d for n, d in emitted if n == "start"]

    def tables_done() -> bool:
        paths = [tables / f"{s['scan_id']}-{s['uid'][:8]}.txt" for s in starts]
        return all(p.exists() and "run ended" in p.read_text() for p in paths)

    def tiled_done() -> bool:
        cat = from_uri(tiled_server.url, api_key=tiled_server.api_key)[catalog]
        return runs_closed(cat, uids)

    try:
        eventually(tables_done, 120, "every table")
        eventually(tiled_done, 120, "every run in Tiled")
    finally:
        for service in (table, writer):
            service.send_signal(signal.SIGTERM)
        assert table.wait(30) == 0 and writer.wait(30) == 0
    cat = from_uri(tiled_server.url, api_key=tiled_server.api_key)[catalog]
    for start in starts:
        descs = {
            d["uid"] for n, d in emitted if n == "descriptor" and d["run_start"] == start["uid"]
        }
        events = [d for n, d in emitted if n == "event" and d["descriptor"] in descs]
        text = (tables / f"{start['scan_id']}-{start['uid'][:8]}.txt").read_text()
        assert [int(r[0]) for r in table_rows(text)] == [e["seq_num"] for e in events]
        data = cat[start["uid"]]["primary"].read()
        for key in events[0]["data"]:
            np.testing.assert_allclose(data[key].values, [e["data"][key] for e in events])


def _refused_publisher(secure, tmp_path, caplog, **wrong) -> tuple[KafkaPublisher, list[str]]:
    """A publisher with ``wrong`` settings: a run's documents, and what it said at ERROR."""
    caplog.set_level(logging.DEBUG, logger="runstream.producer")
    topic = f"{unique_prefix()}.bluesky.runengine.documents"
    publisher = KafkaPublisher(topic, secure.bootstrap, tmp_path / "outbox", partitions=1,
                               **{**secure.client, **wrong})  # fmt: skip
    RE = RunEngine({})
    RE.subscribe(publisher)
    uids = RE(sequential_runs(3))
    assert uids
    attempts = publisher.connection
    eventually(lambda: attempts.refusals >= 3, 60, "three refused attempts")
    return publisher, [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]


def test_wrong_password_keeps_every_document_and_says_why_once(
    secure: SecureBroker, tmp_path: Path, caplog
) -> None:
    publisher, said = _refused_publisher(secure, tmp_path, caplog, **{"sasl.password": WRONG})
    held = publisher.unacknowledged
    assert held > 0
    assert publisher.close(timeout=1) == held  # nothing left the outbox
    refusals = [m for m in said if "authentication failed" in m.lower()]
    assert len(refusals) == 1, said
    assert "invalid credentials" in refusals[0] and "wait in the outbox" in refusals[0]
    assert WRONG not in "".join(said) and secure.password not in "".join(said)
    # The right password on the same outbox delivers every document kept.
    publisher = KafkaPublisher(publisher.topic, secure.bootstrap, tmp_path / "outbox",
                               partitions=1, **secure.client)  # fmt: skip
    assert publisher.flush(60) == 0
    publisher.close()
    records = read_all(secure.bootstrap, publisher.topic, expect=held, client=secure.client)
    assert len(records) == held


def test_untrusted_certificate_says_why_once(secure, tmp_path: Path, caplog) -> None:
    other = BrokerSecurity(tmp_path / "other-ca")
    other.ensure()  # a CA that did not sign the broker's certificate
    publisher, said = _refused_publisher(secure, tmp_path, caplog,
                                         **{"ssl.ca.location": str(other.ca_cert)})  # fmt: skip
    try:
        refusals = [m for m in said if "authentication failed" in m.lower()]
        assert len(refusals) == 1, said
        assert "certificate verify failed" in refusals[0]
        assert publisher.unacknowledged > 0
    finally:
        publisher.close(timeout=1)


def test_consumer_service_with_a_wrong_password_exits_and_says_why(
    secure: SecureBroker, tmp_path: Path
) -> None:
    wrong = tmp_path / "wrong.json"
    wrong.write_text(json.dumps({**secure.client, "sasl.password": WRONG}))
    service = _table_service(secure, "any.bluesky.runengine.documents", tmp_path / "t", wrong)
    try:
        code = service.wait(60)
    finally:
        if service.poll() is None:
            service.kill()
    stderr = service.stderr.read()
    assert code == 1, stderr
    assert "Traceback" not in stderr
    assert stderr.strip().splitlines()[-1].startswith("runstream: error: Kafka authentication")
    assert "invalid credentials" in stderr.splitlines()[-1]
    assert sum("invalid credentials" in line for line in stderr.splitlines()) <= 2, stderr


def test_engine_publishes_through_the_secure_broker(secure: SecureBroker, tmp_path: Path) -> None:
    from tests.integration.test_engine import EngineProcess

    topic = f"{unique_prefix()}.bluesky.runengine.documents"
    engine = EngineProcess(tmp_path, secure.bootstrap, topic)
    engine.env["RUNSTREAM_KAFKA_CONFIG_FILE"] = str(secure.client_file)
    engine.start()
    try:
        task = engine.wait(engine.submit("nested_runs", npts=3), ("completed", "failed"))
        assert task["state"] == "completed", task
        uids = {r["uid"] for r in task["runs"]}

        def delivered() -> list:
            return read_all(secure.bootstrap, topic, client=secure.client, timeout=10)

        eventually(lambda: sum(r.headers["doc"] == b"stop" for r in delivered()) == 2,
                   60, "both runs' stops in Kafka")  # fmt: skip
    finally:
        engine.stop()
    assert {r.key.decode() for r in delivered()} == uids
    assert secure.password not in engine.log.read_text()
