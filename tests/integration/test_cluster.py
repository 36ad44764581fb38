"""A local three-node KRaft cluster (`runstream broker up --nodes 3`), and a leader's death.

Heavy (three JVMs, about 1.5 GB): one cluster for the module, started and stopped
through the command line. Run alone with ``pytest -m cluster``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from bluesky import RunEngine
from tiled.client import from_uri

from runstream import schemas
from runstream.broker import LocalBroker, broker_answers
from runstream.consumers.tiled import connect_catalog
from runstream.process import alive
from runstream.producer import KafkaPublisher, lineage
from runstream.settings import LocalSettings
from tests.cli_tools import run_runstream
from tests.integration.consumer_harness import ROOT, gated_run
from tests.kafka_tools import create_topic, free_ports, partition_replicas, read_all, unique_prefix
from tests.table_text import table_rows
from tests.tiled_fixtures import runs_closed
from tests.waiting import eventually

pytestmark = [pytest.mark.kafka, pytest.mark.cluster]
NODES = 3


@dataclass
class Cluster:
    bootstrap: str
    port: int
    controller_port: int
    env: dict[str, str]
    broker: LocalBroker


@pytest.fixture(scope="module")
def cluster(tmp_path_factory) -> Iterator[Cluster]:
    home = tmp_path_factory.mktemp("cluster-home")
    env = {**os.environ, "RUNSTREAM_HOME": str(home)}
    port, cport = free_ports(NODES), free_ports(NODES)
    up = run_runstream(env, "broker", "up", "--nodes", str(NODES), "--port", str(port),
                       "--controller-port", str(cport), timeout=240)  # fmt: skip
    broker = LocalBroker(LocalSettings(home=home))
    try:
        assert up.returncode == 0, up.stderr
        yield Cluster(up.stdout.strip().splitlines()[-1], port, cport, env, broker)
    finally:
        pids = [pid for pid in broker.pids().values() if pid is not None]
        down = run_runstream(env, "broker", "down")
        assert down.returncode == 0, down.stderr
        assert not any(alive(pid) for pid in pids)  # every node stopped by its pid


def test_three_nodes_on_consecutive_ports_with_a_quorum_of_three(
    cluster: Cluster, kafka_bootstrap: str
) -> None:
    expected = ",".join(f"127.0.0.1:{cluster.port + i}" for i in range(NODES))
    assert cluster.bootstrap == expected
    status = run_runstream(cluster.env, "broker", "status")
    assert status.returncode == 0 and status.stdout.strip() == expected
    pids = cluster.broker.pids()
    assert sorted(pids) == [1, 2, 3] and len({p for p in pids.values() if p}) == NODES
    voters = ",".join(f"{i + 1}@127.0.0.1:{cluster.controller_port + i}" for i in range(NODES))
    for node in cluster.broker.nodes():
        assert f"controller.quorum.voters={voters}\n" in node.config.read_text()
    # beside the session's single broker, each in its own state directory
    assert broker_answers(kafka_bootstrap) and broker_answers(cluster.bootstrap, brokers=NODES)
    topic = create_topic(cluster.bootstrap, unique_prefix("rf"), partitions=3, replication=3)
    assert all(len(r) == NODES for _, r, _ in partition_replicas(cluster.bootstrap, topic).values())


def _service(args: list[str], env: dict | None = None) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "runstream.cli", "consume", *args],
        cwd=ROOT, env={**os.environ, "RUNSTREAM_SESSION_TIMEOUT_MS": "6000", **(env or {})},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip


def test_leader_killed_mid_run(cluster: Cluster, tiled_server, tmp_path: Path) -> None:
    points, kill_at, partitions = 400, 150, 2
    topic = f"{unique_prefix()}.bluesky.runengine.documents"
    create_topic(cluster.bootstrap, topic, partitions, {"min.insync.replicas": "2"}, replication=3)
    publisher = KafkaPublisher(topic, cluster.bootstrap, tmp_path / "outbox",
                               partitions=partitions, replication_factor=3)  # fmt: skip
    RE = RunEngine({}, context_managers=[])  # on a thread of its own
    RE.preprocessors.append(lineage)
    emitted: list[tuple[str, dict]] = []
    RE.subscribe(publisher)
    RE.subscribe(lambda n, d: emitted.append((n, d)))
    tables, catalog = tmp_path / "tables", unique_prefix("cat")
    connect_catalog(tiled_server.url, tiled_server.api_key, catalog)
    common = ["--topic", topic, "--bootstrap", cluster.bootstrap, "--from-beginning"]
    table = _service(["table", "--out", str(tables), "--group", unique_prefix("t"), *common])
    writer = _service(["tiled", "--tiled-url", tiled_server.url, "--catalog", catalog,
                       "--group", unique_prefix("w"), "--max-latency", "0.2", *common],
                      {"RUNSTREAM_TILED_API_KEY": tiled_server.api_key})  # fmt: skip
    gate = threading.Event()
    plan = gated_run(points, kill_at, gate)
    engine = threading.Thread(target=lambda: RE(plan))
    engine.start()
    try:
        eventually(lambda: sum(n == "event" for n, _ in emitted) >= kill_at, 60, "the run's start")
        uid = emitted[0][1]["uid"]
        leader = partition_replicas(cluster.bootstrap, topic)[
            schemas.partition_for(uid, partitions)
        ][0]
        killed = cluster.broker.pids()[leader]
        os.kill(killed, signal.SIGKILL)
        gate.set()  # the plan goes on while its partition's leader is dead
        engine.join(120)
        assert not engine.is_alive()
        assert publisher.flush(180) == 0  # the publisher drains
        publisher.close()

        records = read_all(cluster.bootstrap, topic, expect=len(emitted), timeout=60)
        assert [int(r.headers["seq"]) for r in records] == list(range(len(emitted)))
        assert [r.headers["doc"].decode() for r in records] == [n for n, _ in emitted]
        assert {r.key.decode() for r in records} == {uid}

        start = emitted[0][1]
        path = tables / f"{start['scan_id']}-{uid[:8]}.txt"
        eventually(lambda: path.exists() and "run ended" in path.read_text(),
                   120, "the table service's table")  # fmt: skip

        def in_tiled() -> bool:
            cat = from_uri(tiled_server.url, api_key=tiled_server.api_key)[catalog]
            return runs_closed(cat, [uid])

        eventually(in_tiled, 120, "the run in Tiled")
    finally:
        gate.set()
        for service in (table, writer):
            service.send_signal(signal.SIGTERM)
        assert table.wait(30) == 0 and writer.wait(30) == 0
    events = [d for n, d in emitted if n == "event"]
    assert len(events) == points
    assert [int(r[0]) for r in table_rows(path.read_text())] == list(range(1, points + 1))
    data = from_uri(tiled_server.url, api_key=tiled_server.api_key)[catalog][uid]["primary"]
    data = data.read()
    for key in events[0]["data"]:
        np.testing.assert_allclose(data[key].values, [e["data"][key] for e in events])
    assert list(data["time"].values) == [e["time"] for e in events]

    status = run_runstream(cluster.env, "broker", "status")
    assert status.returncode == 1
    assert f"node {leader} (127.0.0.1:{cluster.port + leader - 1})" in status.stderr
    # The killed node, started again, catches up: its replicas are back in sync.
    again = run_runstream(cluster.env, "broker", "up")
    assert again.returncode == 0, again.stderr
    assert again.stdout.strip().splitlines()[-1] == cluster.bootstrap
    assert cluster.broker.pids()[leader] not in (None, killed)

    def in_sync() -> bool:
        replicas = partition_replicas(cluster.bootstrap, topic).values()
        return all(isr == [1, 2, 3] for _, _, isr in replicas)

    eventually(in_sync, 120, "the restarted node back in every ISR")
