"""The publisher on a local 3-node cluster against a single broker, and through a leader's death.

Baseline: the single local broker (replication 1). Against it, the 3-node cluster
(replication 3, min ISR 2, acks=all). Each is started in turn on free ports in a
temporary state directory. For each:

- throughput: N events handed to `KafkaPublisher` as fast as it takes them (no
  RunEngine: it emits ~400 documents/s), documents/s until the last acknowledgement;
- acknowledgement latency (document handed over -> Kafka's acknowledgement), median
  and p99, at a RunEngine-like pace (500 documents/s), and at full speed;
- memory: resident size of the broker JVMs after the load.

On the cluster only: the leader of the partition is SIGKILLed while a paced stream
goes on; the time from the kill until acknowledgements resume.

Run from the checkout: python -m tests.benchmarks.bench_cluster [--events 20000] -> one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from runstream.broker import LocalBroker
from runstream.producer import KafkaPublisher
from runstream.settings import LocalSettings
from tests.kafka_tools import create_topic, free_ports, partition_replicas


class TimedPublisher(KafkaPublisher):
    """A publisher that notes when each record was handed over and when Kafka acknowledged it."""

    def __init__(self, *args, **kwargs) -> None:
        self.handed: dict[int, float] = {}
        self.acked: dict[int, float] = {}
        super().__init__(*args, **kwargs)
        delivered = self.delivery._delivered

        def timed(err, rid) -> None:  # Kafka's delivery report, as the delivery thread gets it
            if err is None:
                self.acked.setdefault(rid, time.perf_counter())
            delivered(err, rid)

        self.delivery._delivered = timed

    def _append(self, run, name, value, refuse=None) -> None:
        self.handed[self._next_id] = time.perf_counter()
        super()._append(run, name, value, refuse)


def _run_docs() -> tuple[dict, dict, Callable[[int], dict]]:
    start = {"uid": str(uuid.uuid4()), "time": time.time(), "scan_id": 1}
    desc = {"uid": str(uuid.uuid4()), "run_start": start["uid"], "time": time.time(),
            "name": "primary",
            "data_keys": {"det": {"dtype": "number", "shape": [], "source": "sim"}}}  # fmt: skip

    def event(i: int) -> dict:
        return {"uid": str(uuid.uuid4()), "descriptor": desc["uid"], "seq_num": i + 1,
                "time": time.time(), "data": {"det": float(i)}, "timestamps": {"det": 1.0},
                "filled": {}}  # fmt: skip

    return start, desc, event


def _latencies_ms(p: TimedPublisher) -> list[float]:
    return sorted(1000 * (p.acked[i] - t) for i, t in p.handed.items() if i in p.acked)


def _pct(values: list[float], q: float) -> float:
    return round(values[min(len(values) - 1, int(len(values) * q))], 2)


def _publisher(topic: str, bootstrap: str, outbox: Path, replication: int) -> TimedPublisher:
    publisher = TimedPublisher(topic, bootstrap, outbox, partitions=1,
                               replication_factor=replication)  # fmt: skip
    assert publisher.wait_for_topic(60)
    return publisher


def full_speed(topic, bootstrap, outbox, replication, events: int) -> dict:
    publisher = _publisher(topic, bootstrap, outbox, replication)
    start, desc, event = _run_docs()
    docs = [event(i) for i in range(events)]
    began = time.perf_counter()
    publisher("start", start)
    publisher("descriptor", desc)
    for doc in docs:
        publisher("event", doc)
    assert publisher.flush(300) == 0
    elapsed = max(publisher.acked.values()) - began
    lat = _latencies_ms(publisher)
    publisher.close()
    return {"docs_per_s": round((events + 2) / elapsed), "ack_ms_p50": _pct(lat, 0.5),
            "ack_ms_p99": _pct(lat, 0.99)}  # fmt: skip


def paced(publisher: TimedPublisher, seconds: float, rate: float, during=None) -> dict:
    """Events at ``rate``/s for ``seconds``; ``during(t0)`` runs on another thread meanwhile."""
    start, desc, event = _run_docs()
    publisher("start", start)
    publisher("descriptor", desc)
    began = time.perf_counter()
    side = threading.Thread(target=during, args=(began,)) if during else None
    if side:
        side.start()
    i = 0
    while (now := time.perf_counter()) - began < seconds:
        due = began + i / rate
        if now < due:
            time.sleep(due - now)
        publisher("event", event(i))
        i += 1
    publisher("stop", {"uid": str(uuid.uuid4()), "run_start": start["uid"], "time": time.time(),
                       "exit_status": "success", "num_events": {"primary": i}})  # fmt: skip
    if side:
        side.join()
    assert publisher.flush(300) == 0
    return {"events": i}


def rss_mb(broker: LocalBroker) -> int:
    total = 0
    for pid in broker.pids().values():
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1])
    return round(total / 1024)


def measure(nodes: int, tmp: Path, events: int, pace: float) -> dict:
    port, cport = free_ports(nodes), free_ports(nodes)
    settings = LocalSettings(home=tmp / f"home-{nodes}", broker_port=port,
                             broker_controller_port=cport, broker_nodes=nodes)  # fmt: skip
    broker = LocalBroker(settings)
    began = time.perf_counter()
    bootstrap = broker.up()
    started_s = round(time.perf_counter() - began, 1)
    replication = min(3, nodes)
    min_isr = {"min.insync.replicas": str(max(1, replication - 1))}
    try:
        out: dict = {"nodes": nodes, "start_s": started_s, "replication": replication}
        topic = f"bench-{uuid.uuid4().hex[:8]}.bluesky.runengine.documents"
        create_topic(bootstrap, topic, 1, min_isr, replication=replication)
        out["full_speed"] = full_speed(topic, bootstrap, tmp / f"o-full-{nodes}", replication,
                                       events)  # fmt: skip
        publisher = _publisher(topic, bootstrap, tmp / f"o-paced-{nodes}", replication)
        paced(publisher, 5, pace)
        lat = _latencies_ms(publisher)
        publisher.close()
        out["paced"] = {"docs_per_s": pace, "ack_ms_p50": _pct(lat, 0.5),
                        "ack_ms_p99": _pct(lat, 0.99)}  # fmt: skip
        out["rss_mb"] = rss_mb(broker)
        if nodes > 1:
            out["leader_kill"] = leader_kill(broker, bootstrap, tmp, replication, min_isr, pace)
        return out
    finally:
        broker.down()


def leader_kill(broker, bootstrap, tmp, replication, min_isr, pace) -> dict:
    topic = f"bench-{uuid.uuid4().hex[:8]}.bluesky.runengine.documents"
    create_topic(bootstrap, topic, 1, min_isr, replication=replication)
    publisher = _publisher(topic, bootstrap, tmp / "o-kill", replication)
    leader = partition_replicas(bootstrap, topic)[0][0]
    killed: list[float] = []

    def kill(began: float) -> None:
        time.sleep(max(0.0, began + 3 - time.perf_counter()))
        os.kill(broker.pids()[leader], signal.SIGKILL)
        killed.append(time.perf_counter())

    paced(publisher, 25, pace, during=kill)
    after = sorted(t for t in publisher.acked.values() if t > killed[0] + 0.05)
    lat = _latencies_ms(publisher)
    publisher.close()
    new_leader = partition_replicas(bootstrap, topic)[0][0]
    return {"acks_resume_s": round(after[0] - killed[0], 2), "ack_ms_p99": _pct(lat, 0.99),
            "ack_ms_max": round(lat[-1], 1), "killed": leader,
            "new_leader": new_leader}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--pace", type=float, default=500.0, help="documents/s when paced")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        single = measure(1, Path(tmp), args.events, args.pace)
        cluster = measure(3, Path(tmp), args.events, args.pace)
    print(json.dumps({
        "benchmark": "cluster",
        "baseline": "single local broker, replication 1",
        "single": single,
        "cluster_3": cluster,
        "throughput_ratio": round(
            cluster["full_speed"]["docs_per_s"] / single["full_speed"]["docs_per_s"], 2),
        "cpus": os.cpu_count(),
        "load_avg_1m": round(os.getloadavg()[0], 2),
    }))  # fmt: skip


if __name__ == "__main__":
    main()
