"""Latest frame on screen: a detector at 10 frames/s, from its stream_datum entering Kafka to
the browser drawing that frame (the goal: p99 <= 1.5 s).

An ophyd-async SimBlobDetector in a RunEngine (this process) writes HDF5 and publishes to
Kafka; `runstream consume tiled` (its default latency, --writer-latency) registers the frames
in a local Tiled; `runstream consume web` serves them to a real Chromium. A short run first
warms the writer up (its first run imports bluesky-tiled-plugins); then the measured run's page
is opened at its start. Each stream_datum's time is taken as the publisher receives it; the
page records when it drew each frame (window.__rsFramesDrawn). The figures are over the frames
announced after the page was open (those before wait for the page itself) and drawn: a page
draws the newest frame Tiled has, so frames that a newer one overtook are skipped; both counts
are given.

Needs a broker (--bootstrap, else one is started here) and Debian's chromium. Run:
python tests/benchmarks/bench_frame_latency.py [--bootstrap HOST:PORT] -> one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import bluesky.plan_stubs as bps
import bluesky.preprocessors as bpp
import httpx
import numpy as np
from bluesky import RunEngine
from ophyd_async.core import StaticPathProvider, UUIDFilenameProvider, init_devices
from ophyd_async.sim import PatternGenerator, SimBlobDetector

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from runstream.consumers.tiled import connect_catalog  # noqa: E402
from runstream.producer import KafkaPublisher  # noqa: E402
from runstream.settings import LocalSettings  # noqa: E402
from runstream.tiledserver import LocalTiled  # noqa: E402
from tests.conftest import given_or_local_broker  # noqa: E402
from tests.kafka_tools import create_topic, free_port, unique_prefix  # noqa: E402
from tests.tiled_fixtures import TiledServer  # noqa: E402
from tests.waiting import eventually  # noqa: E402
from tests.web_tools import chromium, web_process  # noqa: E402

PERIOD = 0.1  # 10 frames/s
WARM_UP = 5  # frames of the run that warms the writer up


def paced(det, frames: int):
    """``frames`` points, one every PERIOD seconds."""

    @bpp.stage_decorator([det])
    @bpp.run_decorator(md={"plan_name": "frames_at_10_hz"})
    def inner():
        start = time.monotonic()
        for i in range(frames):
            yield from bps.trigger_and_read([det])
            yield from bps.sleep(max(0.0, start + (i + 1) * PERIOD - time.monotonic()))

    return (yield from inner())


def writer_process(bootstrap: str, topic: str, server: TiledServer, catalog: str,
                   latency: float, log: Path) -> subprocess.Popen:  # fmt: skip
    """``runstream consume tiled`` as deployed, but for its latency (default: the service's)."""
    return subprocess.Popen(
        [sys.executable, "-m", "runstream.cli", "consume", "tiled", "--tiled-url", server.url,
         "--catalog", catalog, "--topic", topic, "--group", unique_prefix("g"), "--bootstrap",
         bootstrap, "--from-beginning", "--max-latency", str(latency)],
        cwd=ROOT, env={**os.environ, "RUNSTREAM_TILED_API_KEY": server.api_key},
        stdout=subprocess.DEVNULL, stderr=log.open("ab"),
    )  # fmt: skip


def in_tiled(server: TiledServer, catalog: str, uid: str) -> bool:
    """The run is in Tiled with its stop: the writer has written it all."""
    reply = httpx.get(f"{server.url}/api/v1/metadata/{catalog}/{uid}",
                      headers={"Authorization": f"Apikey {server.api_key}"})  # fmt: skip
    return reply.status_code == 200 and bool(reply.json()["data"]["attributes"]["metadata"]
                                               .get("stop"))  # fmt: skip


def measure(bootstrap: str, frames: int, latency: float, tmp: Path) -> dict:
    settings = LocalSettings(home=tmp / "tiled-home", tiled_port=free_port())
    tiled = LocalTiled(settings)
    server = TiledServer(tiled.up(), tiled.api_key(), tiled, settings.tiled_read_dirs[0])
    topic = create_topic(bootstrap, f"{unique_prefix()}.bluesky.runengine.documents", 1)
    catalog = unique_prefix("cat")
    connect_catalog(server.url, server.api_key, catalog)
    writer = writer_process(bootstrap, topic, server, catalog, latency, tmp / "writer.log")
    os.environ["RUNSTREAM_TILED_API_KEY"] = server.api_key
    RE = RunEngine({}, context_managers=[])  # run in a thread: no SIGINT handler
    files = server.files / unique_prefix("det")
    files.mkdir(parents=True)
    with init_devices():
        bdet = SimBlobDetector(
            StaticPathProvider(UUIDFilenameProvider(), files), PatternGenerator()
        )
    bdet.pattern_generator._period = PERIOD / 2  # the exposures fit in the period
    publisher = KafkaPublisher(topic, bootstrap, tmp / "outbox", partitions=1)
    datum_at: dict[tuple[str, int], float] = {}  # (run, frame) -> when its datum was published
    started: list[str] = []
    bdet_resources: set[str] = set()

    def record(name: str, doc: dict) -> None:
        publisher(name, doc)
        if name == "start":
            started.append(doc["uid"])
        elif name == "stream_datum" and doc["stream_resource"] in bdet_resources:
            datum_at[(started[-1], int(doc["indices"]["start"]))] = time.time()
        elif name == "stream_resource" and doc["data_key"] == "bdet":
            bdet_resources.add(doc["uid"])

    def run(count: int) -> threading.Thread:
        runner = threading.Thread(target=RE, args=(paced(bdet, count),), daemon=True)
        runner.start()
        return runner

    RE.subscribe(record)
    try:
        with (
            web_process(bootstrap, topic, tmp / "web.log", "--tiled-url", server.url,
                        "--tiled-catalog", catalog) as web,
            chromium() as browser,
        ):  # fmt: skip
            run(WARM_UP).join(60)
            eventually(lambda: in_tiled(server, catalog, started[0]), 120, "the warm-up run")
            runner = run(frames)
            eventually(lambda: len(started) == 2, 30, "the run's start")
            uid = started[1]
            eventually(lambda: web.api.get(f"/api/runs/{uid}").status_code == 200, 30, "the run")
            page = browser.new_page()
            page.goto(f"{web.url}runs/{uid}")
            page_open = time.time()
            runner.join(frames * PERIOD * 10 + 60)
            last = f"() => window.__rsFramesDrawn.some(d => d.index == {frames - 1})"
            page.wait_for_function(last, timeout=60_000)
            drawn = page.evaluate("() => window.__rsFramesDrawn")
    finally:
        publisher.close()
        writer.send_signal(signal.SIGTERM)
        writer.wait(30)
        tiled.down()
    announced = {i: at for (run_uid, i), at in datum_at.items()
                 if run_uid == uid and at >= page_open}  # fmt: skip
    lags = np.array([d["at"] - announced[d["index"]] for d in drawn
                     if d["key"] == "bdet" and d["index"] in announced])  # fmt: skip
    return {"frames": frames, "frames_per_second": 1 / PERIOD, "writer_max_latency_s": latency,
            "announced_with_page_open": len(announced), "drawn": int(lags.size),
            "latency_p50_s": round(float(np.percentile(lags, 50)), 3),
            "latency_p99_s": round(float(np.percentile(lags, 99)), 3),
            "latency_max_s": round(float(lags.max()), 3),
            "load_average_1min": round(os.getloadavg()[0], 1), "cpus": os.cpu_count(),
            "hdf5_file_locking": os.environ.get("HDF5_USE_FILE_LOCKING", "default")}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--bootstrap", help="a broker (default: a local one, started here)")
    parser.add_argument("--frames", type=int, default=200)
    parser.add_argument(
        "--writer-latency",
        type=float,
        default=0.5,
        help="the Tiled writer's --max-latency (default: the service's, 0.5 s)",
    )
    args = parser.parse_args()
    with (
        tempfile.TemporaryDirectory() as tmp,
        given_or_local_broker(args.bootstrap, Path(tmp) / "kafka") as bootstrap,
    ):
        print(json.dumps(measure(bootstrap, args.frames, args.writer_latency, Path(tmp))))


if __name__ == "__main__":
    main()
