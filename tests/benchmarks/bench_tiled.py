"""The Tiled writer against bluesky-tiled-plugins' TiledWriter, on one Tiled server.

Replay: the same recorded backlog (``--runs`` runs of ``--events`` events) written
by our writer (batches of 10,000 rows, behind the service's own router, as
``runstream consume tiled`` runs it) and by TiledWriter (its default batch,
subscribed as a RunEngine callback). Kafka is left out of both.
Live: a RunEngine ``count`` at full speed; our writer behind the real pipeline
(KafkaPublisher -> Kafka -> consumer runtime, time-closed batches of 0.5 s)
against TiledWriter with ``batch_size=1`` subscribed to the RunEngine (its advice
for live data). For live: how far behind the newest event Tiled's rows are
(polled every 0.1 s) and what each costs the RunEngine.

Replay also says where the time went: the CPU seconds of the writer's process and of the
Tiled server. Both writers send the server the same requests (a run: its container, the
stream's, the table, one append, the stop, three closes), so the server's seconds are a floor
under any writer that sends them one at a time: ``replay_speedup_if_server_bound`` is
TiledWriter's time over that floor.

Run: python tests/benchmarks/bench_tiled.py [--bootstrap B] -> one JSON line.
Starts its own Tiled server in a temporary directory.
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

from bluesky import RunEngine
from bluesky.plans import count
from bluesky_tiled_plugins import TiledWriter
from ophyd.sim import det
from tiled.client import from_uri

from runstream.consumers import ConsumerSettings, Runtime
from runstream.consumers.tiled import connect_catalog, tiled_factory
from runstream.kafka import KafkaSettings
from runstream.producer import KafkaPublisher

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # run as a script
from tests.benchmarks.tiled_replay import local_tiled, replay_costs, service_router
from tests.waiting import eventually


def record(events: int) -> list[tuple[str, dict]]:
    RE = RunEngine({})
    docs: list[tuple[str, dict]] = []
    RE.subscribe(lambda n, d: docs.append((n, copy.deepcopy(d))))
    RE(count([det], num=events))
    return docs


def renamed(docs: list[tuple[str, dict]]) -> list[tuple[str, dict]]:
    """The same run under fresh uids (a backlog of distinct runs)."""
    uid, desc = str(uuid.uuid4()), str(uuid.uuid4())
    out = []
    for name, doc in docs:
        doc = dict(doc)
        if name == "start":
            doc["uid"] = uid
        elif name in ("descriptor", "stop"):
            doc["run_start"] = uid
            doc["uid"] = desc if name == "descriptor" else str(uuid.uuid4())
        elif name == "event":
            doc["descriptor"] = desc
        out.append((name, doc))
    return out


def rows_visible(catalog, uid: str) -> int:
    try:
        return catalog[uid]["primary"].base["internal"].read(["seq_num"]).shape[0]
    except Exception:
        return 0


def live_lag(catalog_reader, emitted_times: dict[int, float], uid_box: list, stop: threading.Event,
             lags: list[float]) -> None:  # fmt: skip
    """Every 0.1 s: how old is the newest event whose row is not yet visible."""
    while not stop.is_set():
        time.sleep(0.1)
        if not uid_box:
            continue
        seen = rows_visible(catalog_reader(), uid_box[0])
        newest = max(emitted_times, default=0)
        if newest > seen:
            lags.append(time.time() - emitted_times[seen + 1])
        else:
            lags.append(0.0)


def live(catalog_name: str, url: str, key: str, events: int, writer: str, bootstrap: str,
         tmp: Path) -> dict:  # fmt: skip
    emitted: dict[int, float] = {}
    uid_box: list[str] = []
    RE = RunEngine({})

    def note(name, doc):
        if name == "start":
            uid_box.append(doc["uid"])
        elif name == "event":
            emitted[doc["seq_num"]] = time.time()

    RE.subscribe(note)
    stop, lags = threading.Event(), []
    reader = lambda: from_uri(url, api_key=key)[catalog_name]  # noqa: E731
    runtime = thread = publisher = None
    if writer == "ours":
        topic = f"bench-{uuid.uuid4().hex[:8]}"
        publisher = KafkaPublisher(topic, bootstrap, tmp / topic, partitions=1)
        publisher.wait_for_topic(30)
        catalog = connect_catalog(url, key, catalog_name)
        runtime = Runtime(ConsumerSettings(kafka=KafkaSettings(bootstrap=bootstrap), topics=[topic],
                                           group=topic, from_beginning=True),
                          [tiled_factory(catalog, max_latency=0.5)])  # fmt: skip
        thread = threading.Thread(target=runtime.run)
        thread.start()
        eventually(runtime.ready, 120, "the consumer's partitions")
        RE.subscribe(publisher)
    else:
        RE.subscribe(TiledWriter(from_uri(url, api_key=key)[catalog_name], batch_size=1))
    poller = threading.Thread(target=live_lag, args=(reader, emitted, uid_box, stop, lags))
    poller.start()
    began = time.perf_counter()
    RE(count([det], num=events))
    engine_s = time.perf_counter() - began
    eventually(lambda: rows_visible(reader(), uid_box[0]) >= events, 300, "every row visible")
    caught_up_s = time.perf_counter() - began
    stop.set()
    poller.join()
    if runtime is not None:
        runtime.stop()
        thread.join()
        publisher.close()
    return {"engine_s": round(engine_s, 2), "all_rows_visible_s": round(caught_up_s, 2),
            "lag_median_s": round(statistics.median(lags), 2) if lags else None,
            "lag_max_s": round(max(lags), 2) if lags else None}  # fmt: skip


def rounded(figures: dict[str, float]) -> dict[str, float]:
    return {key: round(value, 2) for key, value in figures.items()}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--bootstrap", default="127.0.0.1:9092")
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--events", type=int, default=2000)
    parser.add_argument("--live-events", type=int, default=500)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, local_tiled(Path(tmp)) as (url, key):
        template = record(args.events)
        backlog = [renamed(template) for _ in range(args.runs)]
        ours = connect_catalog(url, key, "ours")
        ours_cost = replay_costs(service_router(tiled_factory(ours, batch_rows=10_000)), backlog,
                                 Path(tmp))  # fmt: skip
        connect_catalog(url, key, "reference")
        reference = TiledWriter(from_uri(url, api_key=key)["reference"])
        ref_cost = replay_costs(reference, [renamed(template) for _ in range(args.runs)],
                                Path(tmp))  # fmt: skip
        ours_s, ref_s = ours_cost["wall_s"], ref_cost["wall_s"]
        connect_catalog(url, key, "live-ours")
        connect_catalog(url, key, "live-reference")
        live_ours = live("live-ours", url, key, args.live_events, "ours", args.bootstrap,
                         Path(tmp))  # fmt: skip
        live_ref = live("live-reference", url, key, args.live_events, "reference",
                        args.bootstrap, Path(tmp))  # fmt: skip
    events = args.runs * args.events
    print(json.dumps({
        "benchmark": "tiled_writer",
        "replay_events": events,
        "replay_events_per_s_ours": round(events / ours_s),
        "replay_events_per_s_tiledwriter": round(events / ref_s),
        "replay_speedup": round(ref_s / ours_s, 1),
        "replay_cpu_s": {"ours": rounded(ours_cost), "tiledwriter": rounded(ref_cost)},
        # a writer costing nothing itself, sending the same requests one at a time
        "replay_speedup_if_server_bound": round(ref_s / ours_cost["tiled_server_cpu_s"], 1),
        "live_events": args.live_events,
        "live_ours_via_kafka": live_ours,
        "live_tiledwriter_batch_size_1": live_ref,
    }))  # fmt: skip


if __name__ == "__main__":
    main()
