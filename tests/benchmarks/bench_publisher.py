"""What publishing costs the RunEngine: KafkaPublisher against bluesky-kafka's Publisher.

For ``count([det], num=N)`` with ophyd.sim: RunEngine wall time with no
subscriber, with our KafkaPublisher and with bluesky-kafka's Publisher, against
the same broker (median of repeats, interleaved so drift hits all alike); the
callback's own cost per document; and outbox throughput while the broker is down.
One more row says where the overhead comes from: a bare librdkafka producer (no
outbox, no headers, no delivery reports), the floor of any Kafka publisher here.

Run: python tests/benchmarks/bench_publisher.py [--bootstrap B] [--events 2000]  -> one JSON line.
"""

from __future__ import annotations

import argparse
import functools
import json
import socket
import statistics
import tempfile
import time
import uuid
from pathlib import Path

import msgpack
import msgpack_numpy
from bluesky import RunEngine
from bluesky.plans import count
from bluesky_kafka import Publisher
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient
from ophyd.sim import det

from runstream import schemas
from runstream.kafka import TopicSpec, ensure_topic
from runstream.producer import KafkaPublisher

# ophyd.sim's det reads instantly; a real detector does not, and the RunEngine's
# own per-event work is what the 3% is measured against.


def engine_seconds(subscriber, events: int) -> float:
    RE = RunEngine({})
    if subscriber is not None:
        RE.subscribe(subscriber)
    began = time.perf_counter()
    RE(count([det], num=events))
    return time.perf_counter() - began


def callback_costs(topic: str, bootstrap: str, events: int, outbox: Path) -> list[float]:
    publisher = KafkaPublisher(topic, bootstrap, outbox, partitions=1)
    costs: list[float] = []

    def timed(name, doc):
        t = time.perf_counter_ns()
        publisher(name, doc)
        costs.append((time.perf_counter_ns() - t) / 1000)

    RE = RunEngine({})
    RE.subscribe(timed)
    RE(count([det], num=events))
    publisher.flush(60)
    publisher.close()
    return costs


def dead_address() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{s.getsockname()[1]}"  # nothing listens there


def produce_only(topic: str, bootstrap: str):
    """The floor: encode and hand to librdkafka, no outbox, no headers, no acks awaited."""
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})

    def publish(name, doc):
        producer.produce(topic, schemas.encode(name, doc))
        producer.poll(0)

    publish.producer = producer
    return publish


def outbox_rate(documents: int, outbox: Path) -> float:
    publisher = KafkaPublisher("bench.down", dead_address(), outbox, partitions=1)
    start = {"uid": str(uuid.uuid4()), "time": time.time()}
    desc = {"uid": str(uuid.uuid4()), "run_start": start["uid"], "time": time.time(),
            "data_keys": {"det": {"dtype": "number", "shape": [], "source": "s"}}}  # fmt: skip
    publisher("start", start)
    publisher("descriptor", desc)
    events = [{"uid": str(uuid.uuid4()), "descriptor": desc["uid"], "seq_num": i, "time": 1.0,
               "data": {"det": 1.0}, "timestamps": {"det": 1.0}, "filled": {}}
              for i in range(documents)]  # fmt: skip
    began = time.perf_counter()
    for event in events:
        publisher("event", event)
    elapsed = time.perf_counter() - began
    publisher.close(0)
    return documents / elapsed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--bootstrap", default="127.0.0.1:9092")
    parser.add_argument("--events", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    runs: dict[str, list[float]] = {"none": [], "kafka_publisher": [], "bluesky_kafka": [],
                                    "produce_only": []}  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        topic = f"bench-{uuid.uuid4().hex[:8]}.bluesky.runengine.documents"
        admin = AdminClient({"bootstrap.servers": args.bootstrap})
        ensure_topic(admin, TopicSpec(topic + ".anchor", 1), timeout=30)
        anchor = Publisher(
            topic=topic + ".anchor", bootstrap_servers=args.bootstrap, key=str(uuid.uuid4()),
            serializer=functools.partial(msgpack.dumps, default=msgpack_numpy.encode),
        )  # fmt: skip
        engine_seconds(None, 50)  # warm up imports and the devices
        floor = produce_only(topic + ".anchor", args.bootstrap)
        for i in range(args.repeats):
            publisher = KafkaPublisher(topic, args.bootstrap, Path(tmp) / f"o{i}", partitions=1)
            publisher.wait_for_topic(30)
            runs["none"].append(engine_seconds(None, args.events))
            runs["kafka_publisher"].append(engine_seconds(publisher, args.events))
            runs["bluesky_kafka"].append(engine_seconds(anchor, args.events))
            runs["produce_only"].append(engine_seconds(floor, args.events))
            publisher.flush(60)
            publisher.close()
            floor.producer.flush(30)
        costs = callback_costs(topic, args.bootstrap, args.events, Path(tmp) / "timed")
        rate = outbox_rate(50_000, Path(tmp) / "down")
        anchor._producer.flush(30)
    median = {k: statistics.median(v) for k, v in runs.items()}

    def overhead(kind: str) -> float:
        return round(100 * (median[kind] / median["none"] - 1), 2)

    costs.sort()
    print(json.dumps({
        "benchmark": "publisher",
        "events": args.events,
        "engine_s_no_subscriber": round(median["none"], 3),
        "engine_s_kafka_publisher": round(median["kafka_publisher"], 3),
        "engine_s_bluesky_kafka_publisher": round(median["bluesky_kafka"], 3),
        "overhead_pct_kafka_publisher": overhead("kafka_publisher"),
        "overhead_pct_bluesky_kafka": overhead("bluesky_kafka"),
        # what handing the bytes to librdkafka costs by itself (no outbox, no acks)
        "overhead_pct_produce_only": overhead("produce_only"),
        "callback_us_median": round(costs[len(costs) // 2], 1),
        "callback_us_p99": round(costs[int(len(costs) * 0.99)], 1),
        "outbox_docs_per_s_broker_down": round(rate),
    }))  # fmt: skip


if __name__ == "__main__":
    main()
