"""Backlog replay: documents/s through the consumer runtime, against bluesky-kafka's consumer.

A backlog of many runs is pre-published (straight to Kafka, in the wire
contract: replaying it through a RunEngine at ~400 documents/s would take an
hour), then read from the start by our runtime (validation on) into no-op
RunRouter callbacks, and by bluesky-kafka's RemoteDispatcher + event-model's
RunRouter with the same factory, on the same topic.

Run: python tests/benchmarks/bench_consumer.py [--bootstrap B] [--runs 1000]  -> one JSON line.

Scaling out: ``--members 1 2`` replays one backlog (over ``--partitions``, default 6)
once per count, each time with a new group of that many ``runstream``-runtime
processes; the baseline is the first count, measured in the same run. Two figures:
the group's documents/s from its first document to its last stop (what a replay
takes, the group's formation included), and its steady documents/s once every
member has its partitions (what the members do together). A new group forms in
cooperative rounds, each noticed at a heartbeat, so ``group_formed_after_s`` is
printed too; a broker with ``group.initial.rebalance.delay.ms`` (Kafka's default
3 s; the local broker sets 0) forms it in one round before the first document.

Without --members: ``--partitions`` (default 1) spreads the backlog; over 1 the
runtime merges the partitions by timestamp.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import resource
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import msgpack
import msgpack_numpy
from bluesky_kafka import RemoteDispatcher
from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient
from event_model import RunRouter

from runstream import schemas
from runstream.consumers import ConsumerSettings, Runtime
from runstream.consumers.cli import run_until_signalled
from runstream.kafka import KafkaSettings, TopicSpec, ensure_topic

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # run as a script
from tests.waiting import eventually


def run_documents(events: int) -> list[tuple[str, dict]]:
    start = {"uid": str(uuid.uuid4()), "time": time.time(), "scan_id": 1, "plan_name": "count",
             "detectors": ["det"], "motors": ["motor"]}  # fmt: skip
    desc = {"uid": str(uuid.uuid4()), "run_start": start["uid"], "time": time.time(),
            "name": "primary", "hints": {}, "object_keys": {"det": ["det"], "motor": ["motor"]},
            "data_keys": {k: {"dtype": "number", "shape": [], "source": f"SIM:{k}"}
                          for k in ("det", "motor")}}  # fmt: skip
    docs = [("start", start), ("descriptor", desc)]
    for i in range(1, events + 1):
        t = time.time()
        docs.append(("event", {"uid": str(uuid.uuid4()), "descriptor": desc["uid"], "seq_num": i,
                               "time": t, "data": {"det": 1.0 / i, "motor": 0.1 * i},
                               "timestamps": {"det": t, "motor": t}, "filled": {}}))  # fmt: skip
    docs.append(("stop", {"uid": str(uuid.uuid4()), "run_start": start["uid"],
                          "time": time.time(), "exit_status": "success",
                          "num_events": {"primary": events}}))  # fmt: skip
    return docs


def prepublish(
    bootstrap: str, topic: str, runs: int, docs_per_run: int, partitions: int = 1
) -> int:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    ensure_topic(admin, TopicSpec(topic, partitions), timeout=30)
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 50, "compression.type": "lz4",
                         "partitioner": "murmur2_random", "queue.buffering.max.messages": 500_000,
                         "batch.size": 1_000_000})  # fmt: skip
    total = 0
    for _ in range(runs):
        docs = run_documents(docs_per_run - 3)
        run = docs[0][1]["uid"]
        for seq, (name, doc) in enumerate(docs):
            headers = schemas.Headers(doc=name, run=run, seq=seq, producer="bench")
            while True:
                try:
                    producer.produce(topic, key=run.encode(), value=schemas.encode(name, doc),
                                     headers=headers.to_kafka())  # fmt: skip
                    break
                except BufferError:
                    producer.poll(0.1)
            total += 1
        producer.poll(0)
    producer.flush(120)
    return total


#: The clock notes the time of every MARK-th document it is given.
MARK = 1000


class Clock:
    """Times a replay from the first document to the last stop: throughput, not group-join
    time. Wall-clock time, so that the figures of a group's member processes compare."""

    def __init__(self, runs: int = 0) -> None:
        self.runs = runs  # `done` is set at this many stops (0: never)
        self.first = self.last = 0.0
        self.stops = self.docs = 0
        self.marks: list[float] = []
        self.done = threading.Event()

    def factory(self, name: str, start: dict) -> tuple[list, list]:
        self.first = self.first or time.time()
        return [self.count], []

    def count(self, name: str, doc: dict) -> None:
        self.docs += 1
        if self.docs % MARK == 0:
            self.marks.append(time.time())
        if name == "stop":
            self.stops += 1
            self.last = time.time()
            if self.stops == self.runs:
                self.done.set()

    def rate(self, documents: int) -> float:
        return documents / (self.last - self.first)

    def figures(self) -> dict:
        return {"first": self.first, "last": self.last, "stops": self.stops,
                "docs": self.docs, "marks": self.marks}  # fmt: skip


def ours(bootstrap: str, topic: str, runs: int, total: int) -> float:
    clock = Clock(runs)
    settings = ConsumerSettings(kafka=KafkaSettings(bootstrap=bootstrap), topics=[topic],
                                from_beginning=True, group=f"bench-{uuid.uuid4().hex}",
                                batch_size=2000)  # fmt: skip
    runtime = Runtime(settings, [clock.factory])
    thread = threading.Thread(target=runtime.run)
    thread.start()
    clock.done.wait(600)
    runtime.stop()
    thread.join()
    assert runtime.metrics.dead_letters._metrics == {}, "the backlog must be clean"
    return clock.rate(total)


def member(bootstrap: str, topic: str, group: str) -> None:
    """One member of a replaying group, until SIGTERM; then its figures as one JSON line."""
    clock = Clock()
    settings = ConsumerSettings(kafka=KafkaSettings(bootstrap=bootstrap), topics=[topic],
                                from_beginning=True, group=group, batch_size=2000,
                                commit_interval=0.5)  # fmt: skip
    runtime = Runtime(settings, [clock.factory])
    run_until_signalled(runtime)
    assert runtime.metrics.dead_letters._metrics == {}, "the backlog must be clean"
    usage = resource.getrusage(resource.RUSAGE_SELF)
    print(json.dumps({**clock.figures(), "cpu_s": usage.ru_utime + usage.ru_stime}), flush=True)


def _caught_up(consumer: Consumer, topic: str, partitions: int) -> bool:
    """Every partition's committed offset at its end: every run closed and committed."""
    parts = [TopicPartition(topic, p) for p in range(partitions)]
    try:
        committed = consumer.committed(parts, timeout=10)
    except KafkaException:  # the group's coordinator is still being chosen: not yet
        return False
    ends = [consumer.get_watermark_offsets(p, timeout=10)[1] for p in parts]
    return all(c.offset == end for c, end in zip(committed, ends, strict=True))


@dataclass
class GroupFigures:
    docs_per_s: float  # first document to last stop: group formation included
    formed_s: float  # first document until every member had its first run
    steady_docs_per_s: float  # from then on, every member working
    docs_per_cpu_s: float  # the members' CPU, start-up included


def group_of(bootstrap: str, topic: str, members: int, partitions: int, runs: int,
             total: int) -> GroupFigures:  # fmt: skip
    """A new group of ``members`` processes replaying the whole topic."""
    group = f"bench-{members}-{uuid.uuid4().hex[:8]}"
    command = [sys.executable, str(Path(__file__).resolve()), "--bootstrap", bootstrap,
               "--member-of", group, "--topic", topic]  # fmt: skip
    procs = [subprocess.Popen(command, stdout=subprocess.PIPE, text=True) for _ in range(members)]
    watcher = Consumer({"bootstrap.servers": bootstrap, "group.id": group})  # reads, never joins
    try:
        eventually(lambda: _caught_up(watcher, topic, partitions), 1200,
                   f"the group of {members} to catch up", interval=0.5,
                   fail_fast=lambda: any(p.poll() is not None for p in procs)
                   and "a member ended")  # fmt: skip
    finally:
        watcher.close()
        for proc in procs:
            proc.terminate()
    figures = [json.loads(proc.communicate(timeout=60)[0].strip().splitlines()[-1])
               for proc in procs]  # fmt: skip
    stops = sum(f["stops"] for f in figures)
    assert stops == runs, f"{stops} stops for {runs} runs"
    assert all(f["first"] for f in figures), "a member was given no run"
    first = min(f["first"] for f in figures)
    formed = max(f["first"] for f in figures)
    last = max(f["last"] for f in figures)
    after = MARK * sum(1 for f in figures for t in f["marks"] if t >= formed)
    return GroupFigures(docs_per_s=total / (last - first), formed_s=formed - first,
                        steady_docs_per_s=after / (last - formed),
                        docs_per_cpu_s=total / sum(f["cpu_s"] for f in figures))  # fmt: skip


def scale_out(args: argparse.Namespace) -> None:
    topic = f"bench-{uuid.uuid4().hex[:8]}.bluesky.runengine.documents"
    total = prepublish(args.bootstrap, topic, args.runs, args.docs_per_run, args.partitions)
    load = os.getloadavg()[0]
    measured = {n: group_of(args.bootstrap, topic, n, args.partitions, args.runs, total)
                for n in args.members}  # fmt: skip
    AdminClient({"bootstrap.servers": args.bootstrap}).delete_topics([topic])
    base = measured[args.members[0]]

    def each(figure: str, digits: int = 0) -> dict[str, float]:
        return {str(n): round(getattr(m, figure), digits or None) for n, m in measured.items()}

    print(json.dumps({
        "benchmark": "consumer_group_replay",
        "documents": total,
        "runs": args.runs,
        "partitions": args.partitions,
        "docs_per_s": each("docs_per_s"),
        "baseline": f"{args.members[0]} member(s), same backlog, same run",
        "speedup": {str(n): round(m.docs_per_s / base.docs_per_s, 2)
                    for n, m in measured.items()},
        "group_formed_after_s": each("formed_s", 1),
        "steady_docs_per_s": each("steady_docs_per_s"),
        "steady_speedup": {str(n): round(m.steady_docs_per_s / base.steady_docs_per_s, 2)
                           for n, m in measured.items()},
        "docs_per_cpu_s": each("docs_per_cpu_s"),
        "cores": os.cpu_count(),
        "load_average_before": round(load, 1),
    }))  # fmt: skip


def anchor(bootstrap: str, topic: str, runs: int, docs_per_run: int) -> float:
    clock = Clock(runs)

    dispatcher = RemoteDispatcher(
        topics=[topic], bootstrap_servers=bootstrap, group_id=f"anchor-{uuid.uuid4().hex}",
        consumer_config={"auto.offset.reset": "earliest"},
        deserializer=functools.partial(msgpack.loads, object_hook=msgpack_numpy.decode),
    )  # fmt: skip
    dispatcher.subscribe(RunRouter([clock.factory]))
    dispatcher.start(continue_polling=lambda: clock.stops < runs)
    return clock.rate(runs * docs_per_run)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--bootstrap", default="127.0.0.1:9092")
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--docs-per-run", type=int, default=1000)
    parser.add_argument("--anchor-runs", type=int, default=200)
    parser.add_argument(
        "--members",
        type=int,
        nargs="+",
        metavar="N",
        help="replay with groups of N processes instead (e.g. --members 1 2)",
    )
    parser.add_argument("--partitions", type=int,
                        help="6 with --members, else 1 (over 1: merged by timestamp)")  # fmt: skip
    parser.add_argument("--member-of", help=argparse.SUPPRESS)  # a member process: its group
    parser.add_argument("--topic", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.member_of:
        member(args.bootstrap, args.topic, args.member_of)
        return
    if args.partitions is None:
        args.partitions = 6 if args.members else 1
    if args.members:
        scale_out(args)
        return
    topic = f"bench-{uuid.uuid4().hex[:8]}.bluesky.runengine.documents"
    began = time.perf_counter()
    total = prepublish(args.bootstrap, topic, args.runs, args.docs_per_run, args.partitions)
    publish_s = time.perf_counter() - began
    rate = ours(args.bootstrap, topic, args.runs, total)
    anchor_rate = anchor(args.bootstrap, topic, args.anchor_runs, args.docs_per_run)
    AdminClient({"bootstrap.servers": args.bootstrap}).delete_topics([topic])
    print(json.dumps({
        "benchmark": "consumer_replay",
        "documents": total,
        "runs": args.runs,
        "partitions": args.partitions,
        "prepublish_s": round(publish_s, 1),
        "runtime_docs_per_s": round(rate),
        "validation": True,
        "anchor": "bluesky_kafka.RemoteDispatcher + event_model.RunRouter",
        "anchor_documents": args.anchor_runs * args.docs_per_run,
        "anchor_docs_per_s": round(anchor_rate),
        "speedup": round(rate / anchor_rate, 1),
    }))  # fmt: skip


if __name__ == "__main__":
    main()
