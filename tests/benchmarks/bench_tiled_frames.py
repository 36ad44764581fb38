"""Detector frames through the Tiled writer against bluesky-tiled-plugins' TiledWriter.

The documents are made once: a SimBlobDetector-style run (start, descriptor, one HDF5
``stream_resource``, one ``stream_datum`` per frame, stop; its empty events left out) over
an HDF5 file of ``--frames`` small frames made with h5py. The same documents, under fresh
uids for each writer, are replayed into our writer (behind the service's own router,
ticked on the runtime's interval, as ``runstream consume tiled`` runs it; Kafka left out,
as in `bench_tiled`) and into TiledWriter in-process with its default batch. TiledWriter
with ``batch_size=1`` (its advice for live data: one request per datum, slow) writes a run
of ``--batch-size-1-frames`` frames over a file of its own (Tiled reads a file as holding
the frames registered).

Each writer writes ``--repeat`` runs, interleaved with the other's; each figure is the
median over its runs. Measured for each run: ``stream_datum`` documents registered per
second (from the first datum handed over to every frame readable from Tiled), and the time
from the last datum handed over to the last frame being readable (the array node's shape
says every frame and reading the last frame works), the run still open; a writer that has
not made it readable after ``--live-wait`` seconds gets its stop, and the time is still taken
from the last datum.
``handed_over_per_s`` is what a writer's calls cost its caller (for TiledWriter, the
RunEngine it is subscribed to). With ``--bootstrap``, also what the documents cost a
RunEngine with runstream: KafkaPublisher's call per document.

Run: python tests/benchmarks/bench_tiled_frames.py [--frames N] [--bootstrap B]
-> one JSON line. Starts its own Tiled server in a temporary directory.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import h5py
import httpx
import numpy as np
from bluesky_tiled_plugins import TiledWriter
from tiled.client import from_uri

from runstream.consumers import ConsumerSettings
from runstream.consumers.tiled import connect_catalog, tiled_factory
from runstream.producer import KafkaPublisher

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # run as a script
from tests.benchmarks.tiled_replay import Documents, local_tiled, service_router

FRAME = (32, 32)
DATA_KEY = "det"
DATASET = "/entry/data/data"
#: How often the runtime's loop ticks its runs (what flushes a batch by age).
TICK_INTERVAL = ConsumerSettings.model_fields["tick_interval"].default
POLL_INTERVAL = 0.01
GIVE_UP = 300.0


def make_file(path: Path, frames: int) -> None:
    """The detector's file: ``frames`` frames of uint16, frame n filled with n."""
    data = np.broadcast_to(np.arange(frames, dtype="<u2")[:, None, None], (frames, *FRAME))
    with h5py.File(path, "w") as f:
        f.create_dataset(DATASET, data=data, chunks=(1, *FRAME))


def make_documents(path: Path, frames: int) -> Documents:
    """The run as ophyd-async's SimBlobDetector emits it, its events left out: the shape
    ``[1, *FRAME]`` of one frame per point, one datum per frame, named ``{resource}/{n}``."""
    start, desc, res = str(uuid.uuid4()), str(uuid.uuid4()), str(uuid.uuid4())
    uri, now = f"file://localhost{path}", time.time()
    key = {"source": uri, "shape": [1, *FRAME], "dtype": "array", "dtype_numpy": "<u2",
           "external": "STREAM:", "object_name": DATA_KEY}  # fmt: skip
    docs: Documents = [
        ("start", {"uid": start, "time": now, "scan_id": 1, "plan_name": "count",
                   "detectors": [DATA_KEY], "num_points": frames}),
        ("descriptor", {"uid": desc, "run_start": start, "time": now, "name": "primary",
                        "data_keys": {DATA_KEY: key}, "object_keys": {DATA_KEY: [DATA_KEY]},
                        "configuration": {}, "hints": {DATA_KEY: {"fields": [DATA_KEY]}}}),
        ("stream_resource", {"uid": res, "run_start": start, "data_key": DATA_KEY, "uri": uri,
                             "mimetype": "application/x-hdf5",
                             "parameters": {"chunk_shape": [1, *FRAME], "dataset": DATASET}}),
    ]  # fmt: skip
    for n in range(frames):
        docs.append(("stream_datum", {"uid": f"{res}/{n}", "stream_resource": res,
                                      "descriptor": desc,
                                      "seq_nums": {"start": n + 1, "stop": n + 2},
                                      "indices": {"start": n, "stop": n + 1}}))  # fmt: skip
    docs.append(("stop", {"uid": str(uuid.uuid4()), "run_start": start, "time": now,
                          "exit_status": "success", "reason": "",
                          "num_events": {"primary": frames}}))  # fmt: skip
    return docs


def renamed(docs: Documents) -> Documents:
    """The same run under fresh uids (each writer writes its own)."""
    old = {docs[0][1]["uid"], docs[1][1]["uid"], docs[2][1]["uid"]}
    new = {uid: str(uuid.uuid4()) for uid in old}
    out: Documents = []
    for name, doc in docs:
        doc = {k: new.get(v, v) if isinstance(v, str) else v for k, v in doc.items()}
        if name == "stream_datum":
            doc["uid"] = f"{doc['stream_resource']}/{doc['uid'].rsplit('/', 1)[1]}"
        out.append((name, doc))
    return out


def readable(tiled: httpx.Client, path: str, frames: int) -> bool:
    """Tiled says the array at ``path`` has every frame, and serves the last one (filled with
    its n). Plain HTTP, two requests: the figure is the writer's, not a client's look-ups."""
    meta = tiled.get(f"/api/v1/metadata/{path}")
    if meta.status_code != httpx.codes.OK:
        return False
    shape = meta.json()["data"]["attributes"]["structure"]["shape"]
    if shape[0] < frames:
        return False
    last = tiled.get(f"/api/v1/array/full/{path}", params={"slice": f"{frames - 1}"},
                     headers={"Accept": "application/json"})  # fmt: skip
    return last.status_code == httpx.codes.OK and np.ravel(last.json())[0] == frames - 1


def run_writer(write: Callable[[str, dict], None], tick: Callable[[], None], docs: Documents,
               tiled: httpx.Client, catalog: str, live_wait: float,
               caught_up: Callable[[], None] = lambda: None) -> dict:  # fmt: skip
    """Replay ``docs`` into ``write``, ticking it on the runtime's interval; once all are
    handed over, ``caught_up`` (the runtime's poll then finds nothing more); then wait for
    the last frame to be readable, ticking, at most ``live_wait`` s before the stop is sent."""
    uid, frames = docs[0][1]["uid"], len(docs) - 4
    path = f"{catalog}/{uid}/primary/{DATA_KEY}"
    *body, stop = docs
    began = time.perf_counter()
    next_tick = began + TICK_INTERVAL
    first_datum = last_datum = 0.0
    for name, doc in body:
        if name == "stream_datum":
            last_datum = time.perf_counter()
            first_datum = first_datum or last_datum
        write(name, doc)
        if time.perf_counter() >= next_tick:
            tick()
            next_tick = time.perf_counter() + TICK_INTERVAL
    handed_over = time.perf_counter()
    caught_up()
    stopped_at = None
    while not readable(tiled, path, frames):
        now = time.perf_counter()
        if now - last_datum > live_wait + GIVE_UP:
            raise TimeoutError(f"{path}: {frames} frames not readable {GIVE_UP} s after the stop")
        if stopped_at is None and now - last_datum >= live_wait:
            write(*stop)
            stopped_at = time.perf_counter()
        elif now >= next_tick:
            tick()
            next_tick = now + TICK_INTERVAL
        time.sleep(POLL_INTERVAL)
    visible = time.perf_counter()
    if stopped_at is None:
        write(*stop)
    done = time.perf_counter()
    return {
        "uid": uid,
        "stream_datum_per_s": round(frames / (visible - first_datum)),
        "handed_over_per_s": round(frames / (handed_over - first_datum)),
        "last_datum_to_readable_s": round(visible - last_datum, 3),
        "readable_before_stop": stopped_at is None,
        "stop_s": round(done - (stopped_at or visible), 3),
        "total_s": round(done - began, 2),
    }


def check_cost(tiled: httpx.Client, catalog: str, uid: str, frames: int) -> float:
    """The median time of the readability check itself on a finished run (Tiled reading the
    last frame): a part of every writer's ``last_datum_to_readable_s`` that no writer saves."""
    times = []
    for _ in range(5):
        began = time.perf_counter()
        assert readable(tiled, f"{catalog}/{uid}/primary/{DATA_KEY}", frames)
        times.append(time.perf_counter() - began)
    return round(statistics.median(times), 3)


def medians(runs: list[dict]) -> dict:
    """Each figure's median over the repeats (this machine's spells of load vary a writer's
    rate by half), each repeat's rate beside it."""
    figures = {key: statistics.median(run[key] for run in runs) for key, value in runs[0].items()
               if isinstance(value, (int, float)) and not isinstance(value, bool)}  # fmt: skip
    return {**{key: round(value, 3) for key, value in figures.items()},
            "readable_before_stop": all(run["readable_before_stop"] for run in runs),
            "stream_datum_per_s_each": [run["stream_datum_per_s"] for run in runs]}  # fmt: skip


def engine_cost(docs: Documents, bootstrap: str, tmp: Path) -> dict:
    """What the documents cost the RunEngine's thread with runstream: KafkaPublisher's call
    per document (the writer runs elsewhere). TiledWriter's cost, subscribed in-process, is
    its ``handed_over_per_s``."""
    topic = f"bench-frames-{uuid.uuid4().hex[:8]}"
    publisher = KafkaPublisher(topic, bootstrap, tmp / topic, partitions=1)
    publisher.wait_for_topic(30)
    began = time.perf_counter()
    for name, doc in renamed(docs):
        publisher(name, doc)
    published = time.perf_counter() - began
    assert publisher.flush(60) == 0, "documents left unsent"
    publisher.close()
    return {"runstream_publisher_s": round(published, 3),
            "runstream_publisher_per_s": round(len(docs) / published)}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--frames", type=int, default=10_000)
    parser.add_argument(
        "--live-wait",
        type=float,
        default=5.0,
        help="seconds a writer may take to show the last frame before its stop",
    )
    parser.add_argument(
        "--batch-size-1-frames",
        type=int,
        default=200,
        help="frames of the run TiledWriter with batch_size=1 writes (one "
        "request per datum: slow); 0 leaves it out",
    )
    parser.add_argument(
        "--repeat",
        type=int,
        default=3,
        help="runs per writer, interleaved; the figures are their medians",
    )
    parser.add_argument(
        "--bootstrap",
        default=None,
        help="a broker: also measure what the documents cost the RunEngine",
    )
    args = parser.parse_args()
    out: dict = {"benchmark": "tiled_writer_frames", "frames": args.frames,
                 "frame_shape": list(FRAME)}  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp, local_tiled(Path(tmp)) as (url, key):
        files = Path(tmp) / "files"  # the local server reads detector files from here
        files.mkdir(exist_ok=True)
        path = files / "det.h5"
        make_file(path, args.frames)
        template = make_documents(path, args.frames)
        tiled = httpx.Client(base_url=url, headers={"Authorization": f"Apikey {key}"})
        ours = service_router(tiled_factory(connect_catalog(url, key, "ours")))
        connect_catalog(url, key, "reference")
        ref = TiledWriter(from_uri(url, api_key=key)["reference"])
        results: dict[str, list[dict]] = {"ours": [], "tiledwriter": []}
        for _ in range(args.repeat):  # interleaved: a slow spell of the machine hits both
            results["ours"].append(run_writer(ours, ours.tick, renamed(template), tiled, "ours",
                                              args.live_wait, ours.caught_up))  # fmt: skip
            results["tiledwriter"].append(run_writer(ref, lambda: None, renamed(template), tiled,
                                                     "reference", args.live_wait))  # fmt: skip
        out.update({writer: medians(runs) for writer, runs in results.items()})
        out["readable_check_s"] = check_cost(tiled, "ours", results["ours"][-1]["uid"],
                                             args.frames)  # fmt: skip
        if args.batch_size_1_frames:
            connect_catalog(url, key, "reference-1")
            ref1 = TiledWriter(from_uri(url, api_key=key)["reference-1"], batch_size=1)
            short = files / "det-short.h5"  # Tiled reads a file as holding the frames registered
            make_file(short, args.batch_size_1_frames)
            docs = make_documents(short, args.batch_size_1_frames)
            out["tiledwriter_batch_size_1"] = {
                "frames": args.batch_size_1_frames,
                **run_writer(ref1, lambda: None, docs, tiled, "reference-1", args.live_wait),
            }
        if args.bootstrap:
            out["engine_cost"] = engine_cost(template, args.bootstrap, Path(tmp))
        tiled.close()
    for other in ("tiledwriter", "tiledwriter_batch_size_1"):
        if other in out:
            rate = out["ours"]["stream_datum_per_s"] / out[other]["stream_datum_per_s"]
            out[f"speedup_vs_{other}"] = round(rate, 1)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
