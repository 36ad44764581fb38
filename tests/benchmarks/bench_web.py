"""The web view under load, measured in a real browser, against BestEffortCallback with plots.

1. Latency: 10 runs open at once, their events at the RunEngine's full rate, the pages
   of some of them (--pages) open in Chromium. Each row records, in the browser, the time
   from its event's creation (the publisher hands it to Kafka within microseconds) to the
   row on screen (the run page's hook, on with ``?latency``). The web service's CPU over
   that phase gives its CPU per 1,000 documents/s.
2. Throughput: a new web service replays one 100,000-event run from Kafka; documents per
   CPU-second of the service (the goal: >= 5,000 on one core).
3. Frame time: that run's page open while it is replayed and after, frames timed with
   requestAnimationFrame (the goal: <= 50 ms).
4. Memory: a store of 1,000 closed runs of 1,000 events.

Baseline: BestEffortCallback (plots on, Agg backend, table off) fed phase 1's first
documents (--bec-docs) at the times the RunEngine made them: its per-event latency and its
documents/s.

Needs a broker (--bootstrap) and Debian's chromium. Run:
python tests/benchmarks/bench_web.py --bootstrap HOST:PORT -> one JSON line.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import resource
import sys
import tempfile
import threading
import time
from pathlib import Path

import matplotlib
import numpy as np

matplotlib.use("Agg")

import bluesky.plan_stubs as bps
import bluesky.preprocessors as bpp
from bluesky import RunEngine
from bluesky.callbacks.best_effort import BestEffortCallback
from event_model import RunRouter, compose_run

from runstream.consumers.protocols import per_run
from runstream.consumers.web.model import RunFeed, RunStore
from runstream.consumers.web.settings import RetentionSettings
from runstream.producer import KafkaPublisher, lineage
from runstream.producer.plans import sim_hw

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from tests.benchmarks.cpu import cpu_seconds
from tests.kafka_tools import create_topic, unique_prefix
from tests.waiting import eventually
from tests.web_tools import chromium, web_process

RUNS = 10
FRAME_TIMES = """(ms) => new Promise((done) => {
  const frames = []; let last = performance.now(); const end = last + ms;
  function tick(t) {
    frames.push(t - last); last = t;
    if (t < end) requestAnimationFrame(tick); else done(frames);
  }
  requestAnimationFrame(tick);
})"""


def ten_runs(points: int, gate: threading.Event, hw) -> object:
    """10 runs open at once (run keys run_0..run_9), events interleaved, after ``gate``."""
    keys = [f"run_{i}" for i in range(RUNS)]
    for key in keys:
        yield from bpp.set_run_key_wrapper(bps.open_run(md={"plan_name": "ten_runs"}), key)
    yield from bps.null()
    gate.wait(120)
    for j in range(points):
        for key in keys:
            yield from bpp.set_run_key_wrapper(bps.mov(hw.motor, j), key)
            yield from bpp.set_run_key_wrapper(bps.trigger_and_read([hw.motor, hw.det]), key)
    for key in keys:
        yield from bpp.set_run_key_wrapper(bps.close_run(), key)


def phase_latency(bootstrap: str, browser, tmp: Path, points: int, watched: int) -> dict:
    topic = create_topic(bootstrap, f"{unique_prefix('bench')}.bluesky.runengine.documents", 6)
    emitted: list[tuple[str, dict]] = []
    hw = sim_hw()
    with web_process(bootstrap, topic, tmp / "web-latency.log") as web:
        eventually(web.ready, 120, "the web view's partitions")
        publisher = KafkaPublisher(topic, bootstrap, tmp / "outbox-latency", partitions=6)
        RE = RunEngine({}, context_managers=[])
        RE.preprocessors.append(lineage)
        RE.subscribe(publisher)
        RE.subscribe(lambda n, d: emitted.append((n, copy.deepcopy(d))))
        gate = threading.Event()
        runner = threading.Thread(target=RE, args=(ten_runs(points, gate, hw),), daemon=True)
        runner.start()
        eventually(lambda: len(web.api.get("/api/runs").json()) >= RUNS, 120, "every run open")
        pages = []
        for run in web.api.get("/api/runs").json()[:watched]:
            page = browser.new_page(viewport={"width": 1000, "height": 700})
            page.goto(f"{web.url}runs/{run['uid']}?latency")  # the page's latency hook on
            page.wait_for_selector("#connection.live")
            pages.append(page)
        cpu0, t0 = cpu_seconds(web.proc.pid), time.monotonic()
        gate.set()
        runner.join(600)
        assert publisher.flush(60) == 0
        publisher.close()
        docs = len(emitted)
        eventually(lambda: sum(r["status"] != "open" for r in web.api.get("/api/runs").json())
                   >= RUNS, 600, "every run closed")  # fmt: skip
        wall, cpu = time.monotonic() - t0, cpu_seconds(web.proc.pid) - cpu0
        for page in pages:
            page.wait_for_function(f"() => document.querySelectorAll('tr[data-seq-num]').length"
                                   f" == {points}")  # fmt: skip
        latencies = [x for page in pages for x in page.evaluate("() => window.__rsLatency")]
        for page in pages:
            page.close()
    rate = docs / wall
    return {
        "emitted": emitted,
        "runs_open_at_once": RUNS,
        "run_pages_open": len(pages),
        "documents": docs,
        "documents_per_s": round(rate),
        "rows_seen_in_browser": len(latencies),
        "browser_latency_p50_ms": round(1000 * float(np.percentile(latencies, 50)), 1),
        "browser_latency_p99_ms": round(1000 * float(np.percentile(latencies, 99)), 1),
        "server_cpu_per_1000_docs_per_s": round(cpu / wall / (rate / 1000), 3),
    }


def big_run_docs(events: int) -> list[tuple[str, dict]]:
    bundle = compose_run(
        metadata={"plan_name": "scan", "hints": {"dimensions": [[["x"], "primary"]]}}
    )
    keys = {k: {"dtype": "number", "shape": [], "source": "bench"} for k in ("x", "det")}
    desc = bundle.compose_descriptor(name="primary", data_keys=keys)
    docs = [("start", bundle.start_doc), ("descriptor", desc.descriptor_doc)]
    now = time.time()
    for i in range(events):
        data = {"x": i * 0.001, "det": float(np.sin(i / 500.0))}
        docs.append(("event", {"uid": f"e{i}", "descriptor": desc.descriptor_doc["uid"],
                               "seq_num": i + 1, "time": now, "data": data,
                               "timestamps": {"x": now, "det": now}, "filled": {}}))  # fmt: skip
    docs.append(("stop", bundle.compose_stop()))
    return docs


def phase_throughput_and_frames(bootstrap: str, browser, tmp: Path, events: int) -> dict:
    topic = create_topic(bootstrap, f"{unique_prefix('bench')}.bluesky.runengine.documents", 1)
    publisher = KafkaPublisher(topic, bootstrap, tmp / "outbox-big", partitions=1)
    docs = big_run_docs(events)
    for name, doc in docs:
        publisher(name, doc)
    assert publisher.flush(300) == 0
    publisher.close()
    uid = docs[0][1]["uid"]
    with web_process(bootstrap, topic, tmp / "web-big.log") as web:
        cpu0, t0 = cpu_seconds(web.proc.pid), time.monotonic()
        eventually(lambda: web.api.get("/api/runs").json(), 120, "the run", interval=0.01)
        page = browser.new_page(viewport={"width": 1200, "height": 900})
        page.goto(f"{web.url}runs/{uid}")
        frames = page.evaluate(FRAME_TIMES, 4000)  # while the run streams in
        eventually(lambda: web.api.get("/api/runs").json()[0]["status"] != "open", 1200,
                   "the run replayed to its stop")  # fmt: skip
        wall, cpu = time.monotonic() - t0, cpu_seconds(web.proc.pid) - cpu0
        page.wait_for_function("() => document.querySelectorAll('tr[data-seq-num]').length > 0")
        frames += page.evaluate(FRAME_TIMES, 3000)  # the whole run on screen
        caption = page.inner_text(".plot-caption")
        page.close()
    return {
        "big_run_events": events,
        "replay_documents_per_cpu_s": round(len(docs) / cpu),
        "replay_documents_per_s_wall": round(len(docs) / wall),
        "frame_ms_p50": round(float(np.percentile(frames[1:], 50)), 1),
        "frame_ms_p99": round(float(np.percentile(frames[1:], 99)), 1),
        "frame_ms_max": round(float(max(frames[1:])), 1),
        "plot_caption": caption,
    }


def memory_for(runs: int, events: int) -> float:
    """MB a store holding ``runs`` closed runs of ``events`` events adds to the process."""
    import gc
    import tracemalloc

    tracemalloc.start()
    store = RunStore(RetentionSettings(keep_runs=runs))
    router = RunRouter([per_run(lambda: RunFeed(store))])
    keys = {k: {"dtype": "number", "shape": [], "source": "b"} for k in ("motor", "det")}
    for _ in range(runs):
        bundle = compose_run(metadata={"plan_name": "scan"})
        desc = bundle.compose_descriptor(name="primary", data_keys=keys)
        router("start", bundle.start_doc)
        router("descriptor", desc.descriptor_doc)
        n = events
        page = {"descriptor": desc.descriptor_doc["uid"], "uid": "p", "time": [1.0] * n,
                "seq_num": list(range(1, n + 1)), "timestamps": {}, "filled": {},
                "data": {"motor": [i * 0.1 for i in range(n)], "det": [1.5] * n}}  # fmt: skip
        router("event_page", page)
        router("stop", bundle.compose_stop())
    gc.collect()
    used = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    assert len(store) == runs
    return used / 1e6


def baseline(emitted: list[tuple[str, dict]], limit: int) -> dict:
    """BestEffortCallback fed the first ``limit`` documents when the RunEngine made them
    (queueing included: a document waits while the callback draws the ones before)."""
    emitted = emitted[:limit]
    bec = BestEffortCallback()
    bec.disable_table()
    router = RunRouter([lambda name, start: ([bec], [])])  # BEC per run, as it is used
    arrivals = np.array([d.get("time", 0.0) for _, d in emitted])
    arrivals = np.maximum.accumulate(arrivals) - arrivals[0]
    latencies, busy_until = [], 0.0
    began = time.perf_counter()
    work = 0.0
    for (name, doc), arrival in zip(emitted, arrivals, strict=True):
        t = time.perf_counter()
        router(name, doc)
        service = time.perf_counter() - t
        work += service
        busy_until = max(busy_until, arrival) + service
        if name == "event":
            latencies.append(busy_until - arrival)
    elapsed = time.perf_counter() - began
    matplotlib.pyplot.close("all")
    return {
        "bec_documents": len(emitted),
        "bec_documents_per_s": round(len(emitted) / work, 1),
        "bec_latency_p50_ms": round(1000 * float(np.percentile(latencies, 50)), 1),
        "bec_latency_p99_ms": round(1000 * float(np.percentile(latencies, 99)), 1),
        "bec_seconds": round(elapsed, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--bootstrap", default="127.0.0.1:9092")
    parser.add_argument("--points", type=int, default=200, help="events per run in phase 1")
    parser.add_argument("--big", type=int, default=100_000, help="events of the large run")
    parser.add_argument("--pages", type=int, default=3, help="run pages open in phase 1")
    parser.add_argument("--bec-docs", type=int, default=200, help="documents fed to BEC")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, chromium() as browser:
        latency = phase_latency(args.bootstrap, browser, Path(tmp), args.points, args.pages)
        big = phase_throughput_and_frames(args.bootstrap, browser, Path(tmp), args.big)
    emitted = latency.pop("emitted")
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
    result = {"benchmark": "web", **latency, **big, **baseline(emitted, args.bec_docs),
              "memory_mb_1000_runs_of_1000_events": round(memory_for(1000, 1000), 1),
              "load_average": os.getloadavg()[0], "cpus": os.cpu_count(),
              "bench_max_rss_mb": rss}  # fmt: skip
    print(json.dumps(result))


if __name__ == "__main__":
    main()
