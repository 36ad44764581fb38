"""Events/s the plot service keeps up with for one run, against BestEffortCallback with plots.

Both get the same recorded documents of one scan; each figure is the rate of
documents through the callback including its last redraw. BestEffortCallback
redraws on every event, so it gets only the first ``--anchor-events`` events.

Run: python tests/benchmarks/bench_plot.py [--events 5000] -> one JSON line.
"""

from __future__ import annotations

import argparse
import copy
import json
import tempfile
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

from bluesky import RunEngine
from bluesky.callbacks.best_effort import BestEffortCallback
from bluesky.plans import scan
from event_model import RunRouter

from runstream.consumers.plot import plot_factory
from runstream.producer.plans import sim_hw


def record(events: int) -> list[tuple[str, dict]]:
    hw = sim_hw()
    RE = RunEngine({})
    docs: list[tuple[str, dict]] = []
    RE.subscribe(lambda n, d: docs.append((n, copy.deepcopy(d))))
    RE(scan([hw.det1, hw.det2], hw.motor1, -5, 5, events))
    return docs


def truncated(docs: list[tuple[str, dict]], events: int) -> list[tuple[str, dict]]:
    kept, seen = [], 0
    for name, doc in docs:
        if name == "event":
            seen += 1
            if seen > events:
                continue
        kept.append((name, doc))
    return kept


def ours(docs: list[tuple[str, dict]]) -> tuple[float, int]:
    with tempfile.TemporaryDirectory() as out:
        plots = []

        def factory(name, start):
            callbacks, sub = plot_factory(Path(out))(name, start)
            plots.extend(callbacks)
            return callbacks, sub

        router = RunRouter([factory])
        began = time.perf_counter()
        for name, doc in docs:
            router(name, doc)
            for plot in plots:
                plot.tick()  # as the runtime does between messages
        elapsed = time.perf_counter() - began
    events = sum(n == "event" for n, _ in docs)
    return events / elapsed, plots[0].redraws


def anchor(docs: list[tuple[str, dict]]) -> float:
    bec = BestEffortCallback()
    bec.disable_table()
    began = time.perf_counter()
    for name, doc in docs:
        bec(name, doc)
    elapsed = time.perf_counter() - began
    matplotlib.pyplot.close("all")
    return sum(n == "event" for n, _ in docs) / elapsed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=5000)
    parser.add_argument("--anchor-events", type=int, default=150)
    args = parser.parse_args()
    docs = record(args.events)
    rate, redraws = ours(docs)
    anchor_rate = anchor(truncated(docs, args.anchor_events))
    print(json.dumps({
        "benchmark": "plot",
        "events": args.events,
        "plot_service_events_per_s": round(rate),
        "plot_service_redraws": redraws,
        "best_effort_callback_events": args.anchor_events,
        "best_effort_callback_events_per_s": round(anchor_rate, 1),
        "speedup": round(rate / anchor_rate, 1),
    }))  # fmt: skip


if __name__ == "__main__":
    main()
