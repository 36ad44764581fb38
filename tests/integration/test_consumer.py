"""The consumer runtime against a real broker, fed by a real RunEngine through KafkaPublisher."""

from __future__ import annotations

import io
import json
import os
import signal
import threading
import time
from collections import defaultdict
from pathlib import Path

import msgpack
from bluesky import RunEngine
from bluesky.callbacks import LiveTable
from confluent_kafka import Consumer, Producer, TopicPartition

from runstream import schemas
from runstream.producer import KafkaPublisher, lineage
from runstream.producer.plans import nested_runs, recursive_runs, sequential_runs, sim_hw
from tests.integration.consumer_harness import (
    ConsumerProcess,
    gated_run,
    publish,
    running,
    settings,
)
from tests.integration.recording_factory import identity
from tests.kafka_tools import read_all, unique_prefix
from tests.waiting import eventually


def _topic(new_topic, partitions: int) -> str:
    return new_topic(partitions=partitions)


def _truth(bootstrap: str, topic: str) -> dict[str, list[list]]:
    """What Kafka holds, per run, as the recording factory writes it."""
    runs: dict[str, list[list]] = defaultdict(list)
    for r in read_all(bootstrap, topic):
        name, doc = schemas.decode(r.value)
        runs[r.key.decode()].append([name, identity(name, doc)])
    return runs


def _recorded(record_dir: Path) -> dict[tuple[str, str], list[list]]:
    """{(run uid, pid): documents} from the recording factory's files."""
    out = {}
    for path in record_dir.glob("*.jsonl"):
        uid, pid, _ = path.name.split(".")
        out[(uid, pid)] = [json.loads(line) for line in path.read_text().splitlines()]
    return out


def test_seed_factories_run_remotely_each_run_gets_its_own_documents(
    kafka_bootstrap: str, new_topic, tmp_path: Path
) -> None:
    topic = _topic(new_topic, 3)
    hw = sim_hw()
    seen: dict[str, list[tuple[str, object]]] = defaultdict(list)
    tables = io.StringIO()

    def seed_factory(name, doc):  # the tutorial's, plus a recorder to check against Kafka
        def record(n, d, uid=doc["uid"]):
            seen[uid].append((n, identity(n, d)))

        table = LiveTable([hw.motor1, hw.det1] if doc["run_key"] == "run_key_1"
                          else [hw.motor, hw.det], out=tables.write)  # fmt: skip
        return [table, record], []

    with running(settings(kafka_bootstrap, topic), [seed_factory]) as runtime:
        uids = publish(kafka_bootstrap, topic, tmp_path / "outbox",
                       [nested_runs(6), recursive_runs(4)], partitions=3)  # fmt: skip
        eventually(lambda: all(seen[u] and seen[u][-1][0] == "stop" for u in uids),
                   60, "every run's stop")  # fmt: skip
        assert runtime.metrics.callback_errors._value.get() == 0
    truth = _truth(kafka_bootstrap, topic)
    assert sorted(seen) == sorted(uids) == sorted(truth)
    for uid in uids:
        assert [list(x) for x in seen[uid]] == truth[uid]
    assert tables.getvalue().count("+---") >= 10  # the LiveTables printed their tables


def test_two_processes_share_the_runs(kafka_bootstrap: str, new_topic, tmp_path: Path) -> None:
    topic = _topic(new_topic, 4)
    group = unique_prefix("group")
    a = ConsumerProcess(kafka_bootstrap, topic, group, tmp_path)
    b = ConsumerProcess(kafka_bootstrap, topic, group, tmp_path)
    try:
        eventually(lambda: a.ready() and b.ready(), 60, "both consumers assigned")
        # Runs go to partitions by a hash of their uid: seven runs all land on one member's
        # two partitions once in 64. Publish until every partition holds a run, so each
        # member has runs to take.
        uids: list[str] = []
        while len({r.partition for r in read_all(kafka_bootstrap, topic)}) < 4:
            plans = [sequential_runs(3), nested_runs(4), recursive_runs(2)]
            uids += publish(kafka_bootstrap, topic, tmp_path / "outbox", plans, partitions=4)
        truth = _truth(kafka_bootstrap, topic)

        def complete() -> bool:
            got = _recorded(tmp_path)
            return sum(1 for docs in got.values() if docs and docs[-1][0] == "stop") == len(uids)

        eventually(complete, 60, "every run recorded")
    finally:
        assert a.terminate() == 0 and b.terminate() == 0
    got = _recorded(tmp_path)
    owners = defaultdict(set)
    for (uid, pid), docs in got.items():
        owners[uid].add(pid)
        assert docs == truth[uid]
    assert sorted(owners) == sorted(uids)
    assert all(len(pids) == 1 for pids in owners.values())  # exactly one process per run
    assert len({pid for pids in owners.values() for pid in pids}) == 2  # both took part


def test_killed_consumer_leaves_its_run_to_the_survivor(
    kafka_bootstrap: str, new_topic, tmp_path: Path
) -> None:
    topic = _topic(new_topic, 2)
    group = unique_prefix("group")
    a = ConsumerProcess(kafka_bootstrap, topic, group, tmp_path)
    b = ConsumerProcess(kafka_bootstrap, topic, group, tmp_path)
    consumers = {str(a.proc.pid): a, str(b.proc.pid): b}
    go_on = threading.Event()
    publisher = KafkaPublisher(topic, kafka_bootstrap, tmp_path / "outbox", partitions=2)
    RE = RunEngine({}, context_managers=[])  # runs on a thread of its own
    RE.preprocessors.append(lineage)
    RE.subscribe(publisher)
    try:
        eventually(lambda: a.ready() and b.ready(), 60, "both consumers assigned")
        result: list = []
        plan = gated_run(60, 20, go_on)
        engine = threading.Thread(target=lambda: result.extend(RE(plan)))
        engine.start()
        eventually(lambda: any(len(d) >= 15 for d in _recorded(tmp_path).values()),
                   60, "the run under way")  # fmt: skip
        ((uid, victim_pid),) = _recorded(tmp_path).keys()
        victim = consumers[victim_pid]
        victim.proc.send_signal(signal.SIGKILL)
        victim.proc.wait()
        go_on.set()
        engine.join(60)
        assert publisher.flush(30) == 0
        survivor_pid = next(p for p in consumers if p != victim_pid)

        def survivor_done() -> bool:
            docs = _recorded(tmp_path).get((uid, survivor_pid))
            return bool(docs) and docs[-1][0] == "stop"

        eventually(survivor_done, 90, "the survivor to replay the run")
    finally:
        go_on.set()
        publisher.close()
        codes = {pid: c.terminate() for pid, c in consumers.items()}
    assert codes[survivor_pid] == 0
    got = _recorded(tmp_path)
    truth = _truth(kafka_bootstrap, topic)[uid]
    assert got[(uid, survivor_pid)] == truth  # the whole run, from its start
    assert got[(uid, victim_pid)][-1][0] != "stop"  # the victim never finished it
    assert len(truth) == 1 + 1 + 60 + 1


def test_poison_goes_to_the_dead_letter_topic(kafka_bootstrap: str, new_topic, tmp_path) -> None:
    topic = _topic(new_topic, 1)
    raw = Producer({"bootstrap.servers": kafka_bootstrap})
    good = schemas.Headers(doc="event", run="ghost", seq=3, producer="test").to_kafka()
    start_headers = schemas.Headers(doc="start", run="dup", seq=0, producer="test").to_kafka()
    start = schemas.encode("start", {"uid": "dup", "time": 1.0})
    poison = [
        ("garbage", b"ghost", os.urandom(40) + b"\xc1", good),
        ("truncated", b"k", schemas.encode("start", {"uid": "k", "time": 1.0})[:-4],
         schemas.Headers(doc="start", run="k", seq=0, producer="t").to_kafka()),
        ("invalid", b"bad", schemas.encode("start", {"uid": "bad", "time": "noon"}),
         schemas.Headers(doc="start", run="bad", seq=0, producer="t").to_kafka()),
        ("unknown run", b"ghost", schemas.encode("event", {
            "uid": "e", "descriptor": "d", "seq_num": 1, "time": 1.0, "data": {},
            "timestamps": {}}), good),
        ("version only", b"k", schemas.encode("start", {"uid": "k", "time": 1.0}),
         [("v", b"1")]),
        ("not name-doc", b"ghost", msgpack.packb({"a": 1}), good),
        ("key mismatch", b"other", schemas.encode("event", {}), good),
    ]  # fmt: skip
    records: dict[str, list] = defaultdict(list)

    def factory(name, doc):
        return [lambda n, d, u=doc["uid"]: records[u].append(n)], []

    with running(settings(kafka_bootstrap, topic), [factory]):
        uids = publish(kafka_bootstrap, topic, tmp_path / "o1", [nested_runs(3)], partitions=1)
        for _label, key, value, headers in poison:
            raw.produce(topic, key=key, value=value, headers=headers)
        raw.produce(topic, key=b"dup", value=start, headers=start_headers)
        raw.produce(topic, key=b"dup", value=start, headers=start_headers)  # duplicated start
        raw.flush(10)
        uids += publish(kafka_bootstrap, topic, tmp_path / "o2", [recursive_runs(2)], partitions=1)
        eventually(lambda: all(records[u][-1:] == ["stop"] for u in uids), 60, "good runs")
    dead = read_all(kafka_bootstrap, schemas.dead_letter_topic(topic), expect=len(poison) + 1)
    assert len(dead) == len(poison) + 1
    reasons = [d.headers["dlq.reason"].decode() for d in dead]
    assert all(d.headers["dlq.source"].decode().startswith(topic + "/0/") for d in dead)
    originals = {(key, value) for _, key, value, _ in poison} | {(b"dup", start)}
    assert {(d.key, d.value) for d in dead} == originals  # the original bytes, kept
    for needle in ["undecodable", "invalid start", "no start seen", "missing header",
                   "not [name, doc]", "duplicate start", "is not the run header"]:  # fmt: skip
        assert any(needle in r for r in reasons), (needle, reasons)
    for uid in uids:  # the good runs, complete
        assert records[uid][0] == "start" and records[uid][-1] == "stop"
        assert records[uid].count("event") >= 2


def test_sigterm_commits_and_exits_zero(kafka_bootstrap: str, new_topic, tmp_path) -> None:
    topic = _topic(new_topic, 2)
    group = unique_prefix("group")
    consumer = ConsumerProcess(kafka_bootstrap, topic, group, tmp_path)
    eventually(consumer.ready, 60, "consumer assigned")
    uids = publish(kafka_bootstrap, topic, tmp_path / "outbox", [nested_runs(3)], partitions=2)
    eventually(lambda: sum(d[-1][0] == "stop" for d in _recorded(tmp_path).values()) == len(uids),
               60, "runs recorded")  # fmt: skip
    status, metrics = consumer.get("/metrics")
    assert status == 200 and "runstream_consumer_documents_total" in metrics
    assert consumer.get("/healthz")[0] == 200 and consumer.get("/nope")[0] == 404
    assert consumer.terminate() == 0
    released = [line for line in consumer.log().splitlines() if " released " in line]
    assert len(released) == 1 and released[0].endswith("(shutdown; no run open)"), released
    check = Consumer({"bootstrap.servers": kafka_bootstrap, "group.id": group})
    committed = check.committed([TopicPartition(topic, p) for p in range(2)], timeout=10)
    ends = [check.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in range(2)]
    check.close()
    # every message committed; a partition the runs did not land in has nothing to commit
    assert [
        c.offset if end else max(c.offset, 0) for c, end in zip(committed, ends, strict=True)
    ] == ends


def test_a_run_that_never_ends_is_closed_and_releases_offsets(
    kafka_bootstrap: str, new_topic, tmp_path: Path
) -> None:
    topic = _topic(new_topic, 1)
    told: list[str] = []

    class Listener:
        def __call__(self, name, doc):
            pass

        def abandon(self, reason):
            told.append(reason)

    publisher = KafkaPublisher(topic, kafka_bootstrap, tmp_path / "outbox", partitions=1)
    publisher("start", {"uid": "forever", "time": time.time()})
    publisher("descriptor", {"uid": "d", "run_start": "forever", "time": time.time(),
                             "data_keys": {}})  # fmt: skip
    assert publisher.flush(30) == 0
    publisher.close()
    s = settings(kafka_bootstrap, topic, idle_timeout=1.5, commit_interval=0.2)
    with running(s, [lambda name, doc: ([Listener()], [])]) as runtime:
        eventually(lambda: told, 60, "the idle run to be closed")
        eventually(lambda: runtime.commit_points[(topic, 0)].committed == 2, 60, "offsets to move")
    assert told == ["idle: no document for 2 s"]
