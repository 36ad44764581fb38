"""Latest frame on screen: a detector at 10 frames/s, from its stream_datum entering Kafka to
the browser drawing that frame (the goal: p99 <= 1.5 s).

An ophyd-async SimBlobDetector in a RunEngine (this process) writes HDF5 and publishes to
Kafka; `runstream consume tiled` registers the frames in a local Tiled; `runstream consume
web` serves them to a real Chromium whose run page is open from the run's start. Each
stream_datum's time is taken as the publisher receives it; the page records when it drew
each frame (window.__rsFramesDrawn). A page draws the latest frame, so frames that a newer
one overtook are skipped: the figures are over the frames drawn, and their count is given.

Needs a broker (--bootstrap) and Debian's chromium. Run:
python tests/benchmarks/bench_frame_latency.py --bootstrap HOST:PORT -> one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path

import bluesky.plan_stubs as bps
import bluesky.preprocessors as bpp
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
from tests.conftest import local_broker  # noqa: E402
from tests.integration.test_tiled import _tiled_service  # noqa: E402
from tests.kafka_tools import create_topic, free_port, unique_prefix  # noqa: E402
from tests.tiled_fixtures import TiledServer  # noqa: E402
from tests.waiting import eventually  # noqa: E402
from tests.web_tools import chromium, web_process  # noqa: E402

PERIOD = 0.1  # 10 frames/s


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


def measure(bootstrap: str, frames: int, tmp: Path) -> dict:
    settings = LocalSettings(home=tmp / "tiled-home", tiled_port=free_port())
    tiled = LocalTiled(settings)
    server = TiledServer(tiled.up(), tiled.api_key(), tiled, settings.tiled_read_dirs[0])
    topic = create_topic(bootstrap, f"{unique_prefix()}.bluesky.runengine.documents", 1)
    catalog = unique_prefix("cat")
    connect_catalog(server.url, server.api_key, catalog)
    writer = _tiled_service(bootstrap, topic, unique_prefix("g"), server, catalog)
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
    datum_at: dict[int, float] = {}  # frame -> time its stream_datum went to the publisher
    started: list[str] = []

    def record(name: str, doc: dict) -> None:
        publisher(name, doc)
        if name == "start":
            started.append(doc["uid"])
        elif name == "stream_datum" and doc["stream_resource"] in bdet_resource:
            datum_at[int(doc["indices"]["start"])] = time.time()
        elif name == "stream_resource" and doc["data_key"] == "bdet":
            bdet_resource.append(doc["uid"])

    bdet_resource: list[str] = []
    RE.subscribe(record)
    try:
        with (
            web_process(bootstrap, topic, tmp / "web.log", "--tiled-url", server.url,
                        "--tiled-catalog", catalog) as web,
            chromium() as browser,
        ):  # fmt: skip
            runner = threading.Thread(target=RE, args=(paced(bdet, frames),), daemon=True)
            runner.start()
            eventually(lambda: started, 30, "the run's start")
            uid = started[0]
            eventually(lambda: web.api.get(f"/api/runs/{uid}").status_code == 200, 30, "the run")
            page = browser.new_page()
            page.goto(f"{web.url}runs/{uid}")
            runner.join(frames * PERIOD * 10 + 60)
            last = f"() => window.__rsFramesDrawn.some(d => d.index == {frames - 1})"
            page.wait_for_function(last, timeout=60_000)
            drawn = page.evaluate("() => window.__rsFramesDrawn")
    finally:
        publisher.close()
        writer.send_signal(signal.SIGTERM)
        writer.wait(30)
        tiled.down()
    lags = np.array([d["at"] - datum_at[d["index"]] for d in drawn
                     if d["key"] == "bdet" and d["index"] in datum_at])  # fmt: skip
    return {"frames": frames, "frames_per_second": 1 / PERIOD, "drawn": int(lags.size),
            "latency_p50_s": round(float(np.percentile(lags, 50)), 3),
            "latency_p99_s": round(float(np.percentile(lags, 99)), 3),
            "latency_max_s": round(float(lags.max()), 3),
            "hdf5_file_locking": os.environ.get("HDF5_USE_FILE_LOCKING", "default")}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--bootstrap", help="a broker (default: a local one, started here)")
    parser.add_argument("--frames", type=int, default=200)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        broker = None if args.bootstrap else local_broker(Path(tmp) / "kafka")
        bootstrap = args.bootstrap or broker.up()
        try:
            print(json.dumps(measure(bootstrap, args.frames, Path(tmp))))
        finally:
            if broker is not None:
                broker.down()


if __name__ == "__main__":
    main()
