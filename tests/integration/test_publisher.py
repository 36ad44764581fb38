"""KafkaPublisher against real brokers, driven by a real RunEngine with ophyd.sim devices."""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import bluesky.plan_stubs as bps
import bluesky.preprocessors as bpp
import numpy as np
import pytest
from bluesky import RunEngine

from runstream import schemas
from runstream.producer import KafkaPublisher, OutboxError, PublisherConfigError, lineage
from runstream.producer.plans import SEED_PLANS, sim_hw
from tests.integration.consumer_harness import running, settings
from tests.kafka_tools import Record, free_port, read_all, unique_prefix
from tests.unlabeled_runs import by_run, nested_detector_runs, old_style, run_engine
from tests.waiting import eventually, process_ended

PARTITIONS = 4


def _topic() -> str:
    return f"{unique_prefix()}.bluesky.runengine.documents"


def _by_run(records: list[Record]) -> dict[str, list[Record]]:
    runs: dict[str, list[Record]] = defaultdict(list)
    for r in records:
        runs[r.key.decode()].append(r)
    return runs


def _emitting_engine(publisher: KafkaPublisher) -> tuple[RunEngine, list[tuple[str, dict]]]:
    RE = RunEngine({})
    RE.preprocessors.append(lineage)
    emitted: list[tuple[str, dict]] = []
    RE.subscribe(publisher)
    RE.subscribe(lambda name, doc: emitted.append((name, dict(doc))))
    return RE, emitted


def _emitted_by_run(emitted: list[tuple[str, dict]]) -> dict[str, list[str]]:
    index = schemas.RunIndex()
    runs: dict[str, list[str]] = defaultdict(list)
    for name, doc in emitted:
        runs[index.run_of(name, doc)].append(name)
    return runs


@pytest.mark.parametrize("plan", list(SEED_PLANS))
def test_seed_plans_land_one_partition_per_run_in_order(
    kafka_bootstrap: str, tmp_path: Path, plan: str
) -> None:
    topic = _topic()
    publisher = KafkaPublisher(topic, kafka_bootstrap, tmp_path / "outbox", partitions=PARTITIONS)
    RE, emitted = _emitting_engine(publisher)
    uids = RE(SEED_PLANS[plan](5))
    assert publisher.flush(30) == 0
    assert publisher.close() == 0
    records = read_all(kafka_bootstrap, topic, expect=len(emitted))
    assert len(records) == len(emitted)
    runs = _by_run(records)
    expected = _emitted_by_run(emitted)
    assert sorted(runs) == sorted(uids) == sorted(expected)
    starts = {}
    for uid, recs in runs.items():
        assert {r.partition for r in recs} == {schemas.partition_for(uid, PARTITIONS)}
        assert [int(r.headers["seq"]) for r in recs] == list(range(len(recs)))
        assert [r.headers["doc"].decode() for r in recs] == expected[uid]
        assert all(r.headers["run"] == uid.encode() for r in recs)
        name, start = schemas.decode(recs[0].value)
        assert name == "start" and "run_key" in start
        starts[uid] = start
    if plan == "nested_runs":
        outer, inner = (starts[u] for u in uids)
        assert (outer["run_key"], inner["run_key"]) == ("run_1", "run_2")
        assert inner["parent_uid"] == outer["uid"] and "parent_uid" not in outer
    if plan == "recursive_runs":
        chain = [starts[u] for u in uids]
        assert [s.get("parent_uid") for s in chain] == [None, chain[0]["uid"], chain[1]["uid"]]


def test_broker_stopped_mid_run(private_broker, tmp_path: Path, caplog) -> None:
    caplog.set_level(logging.DEBUG, logger="runstream.producer")
    bootstrap = private_broker.up()
    topic = _topic()
    publisher = KafkaPublisher(topic, bootstrap, tmp_path / "outbox", partitions=2)
    RE, emitted = _emitting_engine(publisher)
    hw = sim_hw()
    held: list[int] = []

    @bpp.run_decorator(md={})
    def plan():
        for j in range(40):
            if j == 10:
                assert publisher.flush(30) == 0
                private_broker.down()
            yield from bps.mov(hw.motor, j)
            yield from bps.trigger_and_read([hw.motor, hw.det])
        held.append(publisher.unacknowledged)

    RE(plan())  # the RunEngine finishes while the broker is away
    assert held[0] > 0  # documents were held in the outbox meanwhile
    eventually(lambda: any("went away" in r.getMessage() for r in caplog.records),
               30, "the outage said, once it lasted its grace")  # fmt: skip
    private_broker.up()
    assert publisher.flush(60) == 0
    publisher.close()
    records = read_all(bootstrap, topic, expect=len(emitted))
    assert [int(r.headers["seq"]) for r in records] == list(range(len(emitted)))  # once, in order
    assert [r.headers["doc"].decode() for r in records] == [n for n, _ in emitted]
    # The outage in the log: one line when it went away, one when it was back, none per retry.
    said = [r.getMessage() for r in caplog.records if r.levelno >= logging.INFO]
    went = [m for m in said if "went away" in m]
    assert len(went) == 1 and sum("is back" in m for m in said) == 1, said
    # The one line gives librdkafka's reason (whichever attempt failed last) and what waits.
    assert re.search(r"Disconnected|Connection refused", went[0]), went
    assert re.search(r"; \d+ documents wait in the outbox .* \(\d+ bytes on disk\)$", went[0])
    assert not [m for m in said if "refused" in m or "Disconnected" in m if m not in went], said
    # librdkafka's own line per failed attempt is demoted; the "went away" line may quote one
    retries = [r for r in caplog.records if "Connect to" in r.getMessage() and r.getMessage()
               not in went]  # fmt: skip
    assert len(retries) >= 2 and all(r.levelno == logging.DEBUG for r in retries), retries


def test_engine_killed_mid_nested_run_while_broker_down(private_broker, tmp_path: Path) -> None:
    topic = _topic()
    bootstrap = f"127.0.0.1:{private_broker.settings.broker_port}"  # not up yet
    outbox, emitted, ready = tmp_path / "outbox", tmp_path / "emitted.jsonl", tmp_path / "ready"
    child = subprocess.Popen(
        [sys.executable, "-m", "tests.integration.engine_crash_child",
         topic, bootstrap, str(outbox), str(emitted), str(ready)],
        cwd=Path(__file__).resolve().parents[2],
    )  # fmt: skip
    try:
        eventually(ready.exists, 120, "the engine to reach the inner run",
                   fail_fast=process_ended(child))  # fmt: skip
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
    truth = [json.loads(line) for line in emitted.read_text().splitlines()]
    private_broker.up()
    publisher = KafkaPublisher(topic, bootstrap, outbox, partitions=2)
    assert publisher.flush(60) == 0
    publisher.close()
    records = read_all(bootstrap, topic)
    runs = _by_run(records)
    starts = [uid for name, uid in truth if name == "start"]
    assert len(starts) == 2 and sorted(runs) == sorted(starts)
    for recs in runs.values():
        seqs = [int(r.headers["seq"]) for r in recs]
        unique = sorted(set(seqs))
        assert unique == list(range(len(unique)))  # duplicates only as repeated seqs
        stop_name, stop = schemas.decode(recs[-1].value)
        assert stop_name == "stop" and stop["exit_status"] == "abort"
        assert "restarted" in stop["reason"]
    emitted_count = len(truth)
    delivered = {(r.key, int(r.headers["seq"])) for r in records}
    assert len(delivered) == emitted_count + 2  # everything emitted, plus the two abort stops


def test_oversize_page_is_split_and_oversize_document_kept(kafka_bootstrap, tmp_path) -> None:
    topic = _topic()
    limit = 64 * 1024
    publisher = KafkaPublisher(topic, kafka_bootstrap, tmp_path / "outbox", partitions=1,
                               max_message_bytes=limit)  # fmt: skip
    run, desc = "r" * 36, "d" * 36
    rows = 200
    page = {
        "descriptor": desc, "uid": [f"e{i}" for i in range(rows)],
        "seq_num": list(range(1, rows + 1)), "time": [float(i) for i in range(rows)],
        "data": {"spectrum": [np.full(80, float(i)) for i in range(rows)]},
        "timestamps": {"spectrum": [0.0] * rows}, "filled": {},
    }  # fmt: skip
    assert 1.8 * limit < len(schemas.encode("event_page", page)) < 2.5 * limit
    huge = {
        "descriptor": desc,
        "uid": "big",
        "seq_num": rows + 1,
        "time": 0.0,
        "data": {"spectrum": np.zeros(20_000)},
        "timestamps": {"spectrum": 0.0},
        "filled": {},
    }
    publisher("start", {"uid": run, "time": 0.0})
    publisher("descriptor", {"uid": desc, "run_start": run, "time": 0.0, "data_keys": {}})
    publisher("event_page", page)
    publisher("event", huge)
    publisher("stop", {"uid": "s", "run_start": run, "time": 1.0, "exit_status": "success"})
    assert publisher.flush(30) == 0
    publisher.close()
    records = read_all(kafka_bootstrap, topic)
    names = [r.headers["doc"].decode() for r in records]
    assert names[:2] == ["start", "descriptor"] and names[-1] == "stop"
    pages = [schemas.decode(r.value)[1] for r in records if r.headers["doc"] == b"event_page"]
    assert len(pages) >= 2
    assert [s for p in pages for s in p["seq_num"]] == page["seq_num"]
    assert all(len(r.value) <= limit for r in records)
    # the unsendable event: reported, kept on disk, and its seq left as a visible gap
    seqs = [int(r.headers["seq"]) for r in records]
    assert seqs[-1] == seqs[-2] + 2
    refused = list((tmp_path / "outbox" / "refused").glob("*.log"))
    assert len(refused) == 1 and refused[0].stat().st_size > 20_000 * 8
    assert "oversize" in refused[0].with_suffix(".reasons").read_text()
    assert publisher.metrics.refused.labels("oversize")._value.get() == 1


def test_broker_down_at_start_is_not_an_error(tmp_path: Path) -> None:
    publisher = KafkaPublisher(_topic(), f"127.0.0.1:{free_port()}", tmp_path / "outbox")
    RE, emitted = _emitting_engine(publisher)
    RE(SEED_PLANS["nested_runs"](3))
    assert publisher.flush(0.5) == len(emitted)
    assert publisher.close(0.5) == len(emitted)
    assert any((tmp_path / "outbox" / "segments").iterdir())


@pytest.mark.parametrize(
    "kwargs,error,match",
    [
        ({"partitions": 0}, PublisherConfigError, "partitions"),
        ({"**": {"no.such.setting": 1}}, PublisherConfigError, "no.such.setting"),
        ({"**": {"acks": "1"}}, PublisherConfigError, "acks"),
        ({"fsync": "sometimes"}, PublisherConfigError, "fsync"),
        ({"topic": "bad topic"}, PublisherConfigError, "illegal"),
        ({"outbox": "file/sub"}, OutboxError, "not usable"),
    ],
)
def test_bad_configuration_fails_at_construction(tmp_path, kwargs, error, match) -> None:
    (tmp_path / "file").write_text("not a directory")
    extra = kwargs.pop("**", {})
    topic = kwargs.pop("topic", _topic())
    outbox = tmp_path / kwargs.pop("outbox", "outbox")
    with pytest.raises(error, match=match):
        KafkaPublisher(topic, "127.0.0.1:1", outbox, **kwargs, **extra)


def test_resources_without_run_start_reach_their_run(kafka_bootstrap, tmp_path, caplog) -> None:
    """A real RunEngine's nested runs with old-style resources (no run_start), published by
    KafkaPublisher, reach each run's consumer callbacks; what no run can take is kept in
    the outbox with its reason in one log line, and nothing else is touched."""
    topic = _topic()
    publisher = KafkaPublisher(topic, kafka_bootstrap, tmp_path / "outbox", partitions=PARTITIONS)
    emitted: list[tuple[str, dict]] = []
    RE = run_engine(lambda n, d: publisher(n, old_style(n, d)),
                    lambda n, d: emitted.append((n, dict(d))))  # fmt: skip
    publisher("resource", {"uid": "stray", "spec": "X", "root": "/", "resource_path": "x",
                           "resource_kwargs": {}})  # fmt: skip
    publisher("datum", {"datum_id": "gone/0", "resource": "gone", "datum_kwargs": {}})
    uids = RE(nested_detector_runs(tmp_path / "files"))
    records: dict[str, list] = defaultdict(list)

    def factory(name, start):
        def record(n, d, u=start["uid"]):
            records[u].append((n, d.get("uid") or d.get("datum_id")))

        return [record], []

    with running(settings(kafka_bootstrap, topic), [factory]):
        eventually(lambda: all(records[u][-1:] and records[u][-1][0] == "stop" for u in uids),
                   60, "both runs to their stops")  # fmt: skip
    assert publisher.close() == 0
    truth = by_run(emitted)
    assert sorted(records) == sorted(uids) and {u: records[u] for u in uids} == truth
    by_key = _by_run(read_all(kafka_bootstrap, topic, expect=len(emitted)))
    assert sorted(by_key) == sorted(uids)
    for recs in by_key.values():
        assert [int(r.headers["seq"]) for r in recs] == list(range(len(recs)))
        resources = [schemas.decode(r.value)[1] for r in recs if r.headers["doc"] == b"resource"]
        assert len(resources) == 1 and "run_start" not in resources[0]  # sent as emitted
    reasons = (tmp_path / "outbox" / "refused" / "no-run.reasons").read_text().splitlines()
    assert [line.split("\t")[1:2] + line.split("\t")[3:] for line in reasons] == [
        ["resource", "no run: resource stray names no run_start and no run is open"],
        ["datum", "no run: datum points at resource 'gone', never seen"],
    ]
    said = [r.getMessage() for r in caplog.records if "not sent" in r.getMessage()]
    assert len(said) == 2 and "stray" in said[0] and "gone/0" in said[1], said
