"""Topics bluesky-kafka's Publisher wrote (one key, no headers): every service reads them."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
from confluent_kafka import Producer

from runstream import schemas
from runstream.producer.plans import recursive_runs
from tests.integration.consumer_harness import ROOT, publish, running, settings
from tests.integration.legacy_publisher import KEY, read_emitted
from tests.integration.test_services import _expected, _finished, _service
from tests.integration.test_tiled import _complete, _events, _reader, _tiled_service
from tests.kafka_tools import read_all, unique_prefix
from tests.table_text import table_rows
from tests.unlabeled_runs import by_run
from tests.waiting import eventually


def _legacy_publish(bootstrap: str, topic: str, out: Path, *plans: str) -> list[tuple[str, dict]]:
    subprocess.run([sys.executable, "-m", "tests.integration.legacy_publisher", bootstrap, topic,
                    str(out), *plans], cwd=ROOT, check=True, timeout=120)  # fmt: skip
    return read_emitted(out)


def test_table_and_tiled_services_read_a_bluesky_kafka_topic(
    kafka_bootstrap, new_topic, tiled_server, tmp_path
) -> None:
    topic = new_topic(partitions=1)
    tables, catalog = tmp_path / "tables", unique_prefix("cat")
    from runstream.consumers.tiled import connect_catalog

    connect_catalog(tiled_server.url, tiled_server.api_key, catalog)
    table = _service("table", kafka_bootstrap, topic, tables)
    tiled = _tiled_service(kafka_bootstrap, topic, unique_prefix("g"), tiled_server, catalog)
    try:
        emitted = _legacy_publish(kafka_bootstrap, topic, tmp_path / "emitted",
                                  "nested_runs", "recursive_runs")  # fmt: skip
        starts = [d for n, d in emitted if n == "start"]
        uids = [s["uid"] for s in starts]
        assert len(starts) == 5
        assert {r.key for r in read_all(kafka_bootstrap, topic)} == {KEY.encode()}
        eventually(lambda: _finished(tables, starts), 60, "every table finished")
        eventually(lambda: _complete(_reader(tiled_server, catalog), uids), 60, "runs in Tiled")
    finally:
        table.send_signal(signal.SIGTERM)
        tiled.send_signal(signal.SIGTERM)
        assert table.wait(30) == 0 and tiled.wait(30) == 0
    cat = _reader(tiled_server, catalog)
    assert sorted(cat) == sorted(uids)
    for start in starts:
        text = (tables / f"{start['scan_id']}-{start['uid'][:8]}.txt").read_text()
        assert [[r[0], *r[2:]] for r in table_rows(text)] == _expected(emitted, start)
        run = cat[start["uid"]]
        assert run.metadata["start"]["uid"] == start["uid"]
        assert run.metadata["stop"]["exit_status"] == "success"
        events = _events(emitted, start["uid"])
        data = run["primary"].read()
        for key in events[0]["data"]:
            np.testing.assert_allclose(data[key].values, [e["data"][key] for e in events])
        assert list(data["time"].values) == [e["time"] for e in events]


def _recorder(records: dict[str, list]):
    def factory(name, start):
        def record(n, d, u=start["uid"]):
            records[u].append((n, d.get("uid") or d.get("datum_id")))

        return [record], []

    return factory


def test_mixed_topic_and_bad_legacy_input(kafka_bootstrap, new_topic, tmp_path) -> None:
    topic = new_topic(partitions=1)
    records: dict[str, list] = defaultdict(list)
    garbage = b"\xc1not msgpack at all"
    orphan = schemas.encode("event", {
        "uid": "orphan-event", "descriptor": "never-seen", "seq_num": 1, "time": 1.0,
        "data": {}, "timestamps": {}})  # fmt: skip
    with running(settings(kafka_bootstrap, topic), [_recorder(records)]):
        emitted = _legacy_publish(kafka_bootstrap, topic, tmp_path / "emitted", "nested_runs")
        raw = Producer({"bootstrap.servers": kafka_bootstrap})
        raw.produce(topic, key=KEY.encode(), value=garbage)
        raw.produce(topic, key=KEY.encode(), value=orphan)
        raw.flush(10)
        ours = publish(kafka_bootstrap, topic, tmp_path / "outbox", [recursive_runs(2)], 1)
        emitted += _legacy_publish(kafka_bootstrap, topic, tmp_path / "emitted2", "sequential_runs")
        uids = [d["uid"] for n, d in emitted if n == "start"] + ours
        eventually(lambda: all(records[u][-1:] and records[u][-1][0] == "stop" for u in uids),
                   60, "every run, legacy and ours, to its stop")  # fmt: skip
    dead = read_all(kafka_bootstrap, schemas.dead_letter_topic(topic), expect=2)
    assert [(d.value, d.key) for d in dead] == [(garbage, KEY.encode()), (orphan, KEY.encode())]
    reasons = [d.headers["dlq.reason"].decode() for d in dead]
    assert "undecodable" in reasons[0], reasons
    assert "descriptor 'never-seen', never seen" in reasons[1], reasons
    by_run: dict[str, list] = defaultdict(list)
    run_of = schemas.RunIndex()
    for name, doc in emitted:
        by_run[run_of.run_of(name, doc)].append((name, doc.get("uid")))
    for uid, documents in by_run.items():  # every legacy run: each document once, in order
        assert records[uid] == documents, uid
    for uid in ours:
        assert records[uid][0][0] == "start" and records[uid][-1][0] == "stop"
    assert json.dumps(sorted(records)) == json.dumps(sorted(uids))


def test_old_style_resources_on_a_bluesky_kafka_topic_reach_their_runs(
    kafka_bootstrap, new_topic, tmp_path
) -> None:
    """bluesky-kafka's Publisher, resources without run_start, nested runs: each run's
    callbacks get their own resources and datums; a resource no run can take and a datum
    of an unknown resource go to the dead letters, each with its reason, and nothing else."""
    topic = new_topic(partitions=1)
    records: dict[str, list] = defaultdict(list)
    stray = {"uid": "stray-resource", "spec": "NPY_SEQ", "root": "/", "resource_path": "x",
             "resource_kwargs": {}, "path_semantics": "posix"}  # fmt: skip
    orphan = {"datum_id": "gone/0", "resource": "gone", "datum_kwargs": {}}
    with running(settings(kafka_bootstrap, topic), [_recorder(records)]):
        emitted = _legacy_publish(kafka_bootstrap, topic, tmp_path / "emitted",
                                  "nested_detector_runs")  # fmt: skip
        raw = Producer({"bootstrap.servers": kafka_bootstrap})
        for name, doc in (("resource", stray), ("datum", orphan)):
            raw.produce(topic, key=KEY.encode(), value=schemas.encode(name, doc))
        raw.flush(10)
        emitted += _legacy_publish(kafka_bootstrap, topic, tmp_path / "emitted2", "nested_runs")
        uids = [d["uid"] for n, d in emitted if n == "start"]
        eventually(lambda: all(records[u][-1:] and records[u][-1][0] == "stop" for u in uids),
                   60, "every run to its stop")  # fmt: skip
    truth = by_run(emitted)
    assert sum(n == "resource" for docs in truth.values() for n, _ in docs) == 2
    for uid in uids:
        assert records[uid] == truth[uid], uid
    dead = read_all(kafka_bootstrap, schemas.dead_letter_topic(topic), expect=2)
    reasons = [d.headers["dlq.reason"].decode() for d in dead]
    assert reasons == [
        "RoutingError: legacy resource stray-resource names no run_start and no run is open "
        "in this partition",
        "RoutingError: legacy datum points at resource 'gone', never seen in this partition",
    ]
