"""Backlog replay: documents/s through the consumer runtime, against bluesky-kafka's consumer.

A backlog of many runs is pre-published (straight to Kafka, in the wire
contract: replaying it through a RunEngine at ~400 documents/s would take an
hour), then read from the start by our runtime (validation on) into no-op
RunRouter callbacks, and by bluesky-kafka's RemoteDispatcher + event-model's
RunRouter with the same factory, on the same topic.

Run: python tests/benchmarks/bench_consumer.py [--bootstrap B] [--runs 1000] [--partitions 1]
-> one JSON line. With several partitions the runtime merges them by timestamp.
"""

from __future__ import annotations

import argparse
import functools
import json
import threading
import time
import uuid

import msgpack
import msgpack_numpy
from bluesky_kafka import RemoteDispatcher
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic
from event_model import RunRouter
from runstream.consumers import ConsumerSettings, Runtime

from runstream import schemas


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


def prepublish(bootstrap: str, topic: str, runs: int, docs_per_run: int, partitions: int) -> int:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(topic, partitions, 1)])[topic].result(30)
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


class Clock:
    """From the first document to the last stop: throughput, not group-join time."""

    def __init__(self, runs: int) -> None:
        self.runs, self.stops, self.first, self.last = runs, 0, 0.0, 0.0
        self.done = threading.Event()

    def factory(self, name: str, start: dict) -> tuple[list, list]:
        if not self.first:
            self.first = time.perf_counter()
        return [self.noop], []

    def noop(self, name: str, doc: dict) -> None:
        if name == "stop":
            self.stops += 1
            if self.stops == self.runs:
                self.last = time.perf_counter()
                self.done.set()

    def rate(self, documents: int) -> float:
        return documents / (self.last - self.first)


def ours(bootstrap: str, topic: str, runs: int, total: int) -> float:
    clock = Clock(runs)

    settings = ConsumerSettings(kafka_bootstrap=bootstrap, topics=[topic], from_beginning=True,
                                group=f"bench-{uuid.uuid4().hex}", batch_size=2000)  # fmt: skip
    runtime = Runtime(settings, [clock.factory])
    thread = threading.Thread(target=runtime.run)
    thread.start()
    clock.done.wait(600)
    runtime.stop()
    thread.join()
    assert runtime.metrics.dead_letters._metrics == {}, "the backlog must be clean"
    return clock.rate(total)


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
    parser.add_argument("--partitions", type=int, default=1,
                        help="over 1: the runtime merges the partitions by timestamp")  # fmt: skip
    args = parser.parse_args()
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
