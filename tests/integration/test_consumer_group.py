"""Consumer groups that scale: members share a topic's partitions, a dead member's runs move."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
from confluent_kafka.admin import AdminClient

from runstream import schemas
from runstream.consumers.tiled import connect_catalog
from runstream.producer import KafkaPublisher
from runstream.producer.plans import nested_runs, recursive_runs
from tests.integration.consumer_harness import ROOT, gated_run
from tests.integration.test_tiled import _complete, _engine, _events, _reader, _rows
from tests.kafka_tools import unique_prefix
from tests.waiting import eventually

PARTITIONS = 6


def _writer(bootstrap, topic, group, tiled_server, catalog, name: str, home: Path):
    """A `runstream consume tiled` member whose Kafka client id is ``name``."""
    config = home / f"{name}.json"
    config.write_text(json.dumps({"client.id": name}))
    return subprocess.Popen(
        [sys.executable, "-m", "runstream.cli", "consume", "tiled", "--tiled-url",
         tiled_server.url, "--catalog", catalog, "--topic", topic, "--group", group,
         "--bootstrap", bootstrap, "--from-beginning", "--max-latency", "0.2"],
        cwd=ROOT, env={**os.environ, "RUNSTREAM_TILED_API_KEY": tiled_server.api_key,
                       "RUNSTREAM_SESSION_TIMEOUT_MS": "6000",
                       "RUNSTREAM_KAFKA_CONFIG_FILE": str(config)},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip


def _assignment(admin: AdminClient, group: str) -> dict[str, set[int]]:
    """client id -> partitions, for every member of ``group`` holding some."""
    description = admin.describe_consumer_groups([group])[group].result(timeout=10)
    return {
        m.client_id: {tp.partition for tp in m.assignment.topic_partitions}
        for m in description.members
        if m.assignment.topic_partitions
    }


def test_two_tiled_writers_share_partitions_and_survive_a_sigkill(
    kafka_bootstrap, new_topic, tiled_server, tmp_path
) -> None:
    topic = new_topic(partitions=PARTITIONS)
    catalog, group = unique_prefix("cat"), unique_prefix("g")
    connect_catalog(tiled_server.url, tiled_server.api_key, catalog)
    members = {name: _writer(kafka_bootstrap, topic, group, tiled_server, catalog, name, tmp_path)
               for name in ("writer-a", "writer-b")}  # fmt: skip
    publisher = KafkaPublisher(topic, kafka_bootstrap, tmp_path / "outbox", partitions=PARTITIONS)
    RE, emitted = _engine(publisher, threaded=True)
    go_on = threading.Event()
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    gated = gated_run(30, 10, go_on)
    uids: list[str] = []
    engine = threading.Thread(target=lambda: [uids.extend(RE(p)) for p in (
        nested_runs(4), gated, nested_runs(4), recursive_runs(2))])  # fmt: skip
    try:
        eventually(lambda: len(_assignment(admin, group)) == 2, 60, "two members")
        shares = _assignment(admin, group)
        assert sorted(p for ps in shares.values() for p in ps) == list(range(PARTITIONS))
        engine.start()
        starts = lambda: [d["uid"] for n, d in emitted if n == "start"]  # noqa: E731
        eventually(lambda: len(starts()) >= 3, 60, "the gated run's start")
        live = starts()[2]  # nested_runs makes two runs; the third is the gated one
        eventually(lambda: _rows(tiled_server, catalog, live) >= 5, 60, "rows of the live run")
        home = schemas.partition_for(live, PARTITIONS)
        victim = next(name for name, parts in shares.items() if home in parts)
        members[victim].send_signal(signal.SIGKILL)  # mid-run: its open run must move
        members[victim].wait(10)
        go_on.set()
        engine.join(120)
        assert publisher.flush(30) == 0
        survivor = next(name for name in members if name != victim)
        eventually(lambda: _assignment(admin, group).get(survivor) == set(range(6)),
                   60, "the survivor to own every partition")  # fmt: skip
        eventually(lambda: _complete(_reader(tiled_server, catalog), uids),
                   120, "every run complete in Tiled")  # fmt: skip
        assert members[survivor].poll() is None
    finally:
        go_on.set()
        for proc in members.values():
            proc.send_signal(signal.SIGTERM)
            proc.wait(30)
        publisher.close()
    assert len(uids) == 2 + 1 + 2 + 3
    cat = _reader(tiled_server, catalog)
    for uid in uids:  # every run exact: each event once, in order, with its values
        events = _events(emitted, uid)
        table = cat[uid]["primary"].base["internal"].read()
        assert list(table["seq_num"]) == [e["seq_num"] for e in events], uid
        data = cat[uid]["primary"].read()
        for key in events[0]["data"]:
            np.testing.assert_allclose(data[key].values, [e["data"][key] for e in events])
        assert cat[uid].metadata["stop"]["exit_status"] == "success"
