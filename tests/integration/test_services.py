"""Table and plot services through the real pipeline, and the one-command demo."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import h5py
import httpx
import pytest
from bluesky import RunEngine
from bluesky.plans import count
from PIL import Image
from tiled.queries import Key

from runstream.consumers.cellformat import cell
from runstream.consumers.plot import RunPlot
from runstream.consumers.tiled import connect_catalog
from runstream.demo import DEMO_CATALOG
from runstream.producer import KafkaPublisher, lineage
from runstream.producer.plans import nested_runs, recursive_runs, sim_hw
from runstream.settings import LocalSettings
from runstream.tiledserver import LocalTiled
from tests.integration.consumer_harness import ROOT, running, settings
from tests.kafka_tools import free_port, unique_prefix
from tests.table_text import table_rows
from tests.waiting import eventually


def _service(kind: str, bootstrap: str, topic: str, out: Path,
             port: int = 0) -> subprocess.Popen:  # fmt: skip
    """`runstream consume KIND`; its /metrics on ``port`` (0: none)."""
    return subprocess.Popen(
        [sys.executable, "-m", "runstream.cli", "consume", kind, "--out", str(out),
         "--topic", topic, "--group", unique_prefix(kind), "--bootstrap", bootstrap,
         "--from-beginning", "--http-port", str(port)],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )  # fmt: skip


def _handled(port: int) -> float:
    """Documents the service on ``port`` has handled (its callbacks returned), from /metrics."""
    metrics = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    found = re.search(r"^runstream_consumer_documents_total (\S+)$", metrics, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


def _handled_all(port: int, emitted: list) -> None:
    """Until the service on ``port`` handled every document: its last writes have landed."""
    eventually(lambda: _handled(port) >= len(emitted), 60, f"every document handled (:{port})",
               ignoring=httpx.HTTPError)  # fmt: skip


def _publish(bootstrap: str, topic: str, outbox: Path, plans) -> list[tuple[str, dict]]:
    publisher = KafkaPublisher(topic, bootstrap, outbox, partitions=2)
    RE = RunEngine({})
    RE.preprocessors.append(lineage)
    emitted: list[tuple[str, dict]] = []
    RE.subscribe(publisher)
    RE.subscribe(lambda n, d: emitted.append((n, d)))
    for plan in plans:
        RE(plan)
    assert publisher.flush(30) == 0
    publisher.close()
    return emitted


def _expected(emitted, start) -> list[list[str]]:
    descs = {d["uid"]: list(d["data_keys"]) for n, d in emitted
             if n == "descriptor" and d["run_start"] == start["uid"]}  # fmt: skip
    return [[str(d["seq_num"]), *(cell(d["data"][k], 10).strip() for k in descs[d["descriptor"]])]
            for n, d in emitted if n == "event" and d["descriptor"] in descs]  # fmt: skip


def _finished(out: Path, starts: list[dict]) -> bool:
    paths = [out / f"{s['scan_id']}-{s['uid'][:8]}.txt" for s in starts]
    return all(p.exists() and "run ended" in p.read_text() for p in paths)


def test_tables_and_plots_per_run_through_kafka(kafka_bootstrap, new_topic, tmp_path) -> None:
    topic = new_topic(partitions=2)
    tables, plots = tmp_path / "tables", tmp_path / "plots"
    table = _service("table", kafka_bootstrap, topic, tables, free_port())
    plot_port = free_port()
    plot = _service("plot", kafka_bootstrap, topic, plots, plot_port)
    try:
        emitted = _publish(kafka_bootstrap, topic, tmp_path / "outbox",
                           [nested_runs(6), recursive_runs(4)])  # fmt: skip
        starts = [d for n, d in emitted if n == "start"]
        assert len(starts) == 5
        eventually(lambda: _finished(tables, starts), 60, "every table finished")
        eventually(lambda: len(list(plots.glob("*.png"))) == 5, 60, "every plot")
        _handled_all(plot_port, emitted)  # every stop's final redraw landed
    finally:
        table.terminate()
        plot.terminate()
        stdout = table.communicate(timeout=30)[0]
        assert table.returncode == 0 and plot.wait(30) == 0
    for start in starts:
        text = (tables / f"{start['scan_id']}-{start['uid'][:8]}.txt").read_text()
        rows = [[r[0], *r[2:]] for r in table_rows(text)]
        assert rows == _expected(emitted, start)  # exactly this run's rows, none lost
        assert "failed to format" not in text
        png = plots / f"{start['scan_id']}-{start['uid'][:8]}-primary.png"
        Image.open(png).verify()
        assert Image.open(png).text["Description"] == start["uid"]
        tag = f"[scan {start['scan_id']} {start['uid'][:8]}]"
        assert sum(line.startswith(tag) for line in stdout.splitlines()) >= len(rows)
    outer, inner = starts[0], starts[1]
    assert f"inside run {outer['uid'][:8]}" in (tables / f"2-{inner['uid'][:8]}.txt").read_text()


def test_replay_rewrites_files_to_the_same_content(kafka_bootstrap, new_topic, tmp_path) -> None:
    topic = new_topic(partitions=1)
    out = tmp_path / "tables"
    emitted = _publish(kafka_bootstrap, topic, tmp_path / "outbox", [nested_runs(4)])
    starts = [d for n, d in emitted if n == "start"]
    contents = []
    for _ in range(2):  # a second group replays the topic from its start
        port = free_port()
        service = _service("table", kafka_bootstrap, topic, out, port)
        try:
            eventually(lambda: _finished(out, starts), 60, "tables")
            _handled_all(port, emitted)  # nothing more to write
        finally:
            service.terminate()
            service.communicate(timeout=30)
        contents.append({p.name: p.read_text() for p in out.glob("*.txt")})
        for p in out.glob("*.txt"):
            p.write_text("stale\n")  # a replay must rewrite, not append
    assert len(contents[0]) == 2 and contents[0] == contents[1]


def test_a_fast_run_renders_a_bounded_number_of_times(kafka_bootstrap, new_topic, tmp_path):
    topic = new_topic(partitions=1)
    plots: list[RunPlot] = []

    def factory(name, start):
        plots.append(RunPlot(tmp_path, max_redraws_per_s=2))
        return [plots[-1]], []

    with running(settings(kafka_bootstrap, topic), [factory]):
        began = time.monotonic()
        emitted = _publish(kafka_bootstrap, topic, tmp_path / "outbox",
                           [count([sim_hw().det], num=2500)])  # fmt: skip
        published = time.monotonic()
        png = tmp_path / f"{emitted[0][1]['scan_id']}-{emitted[0][1]['uid'][:8]}-primary.png"
        eventually(lambda: plots and png.exists()
                   and next(iter(plots[0].plots.values())).events == 2500,
                   60, "the plot")  # fmt: skip
        eventually(lambda: plots[0].redraws > 0 and not plots[0].dirty, 60, "the final draw")
        done = time.monotonic()
    elapsed = done - began
    assert plots[0].redraws <= 2 * elapsed + 2  # throttled, not once per event
    assert done - published < 10  # finished promptly after the stop


@pytest.mark.timeout(900)  # a broker, Tiled, four consumers and eight runs, on a busy machine
def test_demo_completes_and_leaves_nothing_running(tmp_path: Path) -> None:
    home = tmp_path / "home"
    env = {**os.environ, "RUNSTREAM_HOME": str(home), "RUNSTREAM_BROKER_PORT": str(free_port()),
           "RUNSTREAM_BROKER_CONTROLLER_PORT": str(free_port()),
           "RUNSTREAM_TILED_PORT": str(free_port()),
           "RUNSTREAM_WEB_PORT": str(free_port())}  # fmt: skip
    env.pop("RUNSTREAM_KAFKA_BOOTSTRAP", None)
    env.pop("RUNSTREAM_TILED_API_KEY", None)
    demo = subprocess.run(
        [sys.executable, "-m", "runstream.cli", "demo", "--npts", "3"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert demo.returncode == 0, demo.stderr[-3000:]
    assert "8 runs went through Kafka to per-run tables, plots and Tiled" in demo.stderr
    assert "run key run_2" in demo.stdout and "inside run" in demo.stdout
    progress = demo.stderr.splitlines()
    web = next(i for i, line in enumerate(progress) if "web view: http://127.0.0.1:" in line)
    assert web < next(i for i, line in enumerate(progress) if "running " in line)
    (out,) = (home / "demo").iterdir()
    assert len(list((out / "tables").glob("*.txt"))) == 8
    assert len(list((out / "plots").glob("*.png"))) == 8
    leftovers = subprocess.run(["ps", "-eo", "pid,args"], capture_output=True, text=True).stdout
    assert str(home) not in leftovers and out.name not in leftovers
    assert not (home / "kafka" / "broker.pid").exists()
    assert not (home / "tiled" / "server.json").exists()
    assert "servers the demo started are stopped" in progress[-1]  # its URLs say so
    _frames_in_tiled(home, out.name)


def _frames_in_tiled(home: Path, stamp: str) -> None:
    """The demo's detector scan in its Tiled catalog (served again, as the demo says how):
    an array of one frame per point, the pixels of the HDF5 file the detector wrote."""
    (written,) = (home / "files" / "demo" / stamp).glob("*.h5")
    tiled = LocalTiled(LocalSettings(home=home, tiled_port=free_port(), tiled_api_key=None))
    url = tiled.up()
    try:
        found = connect_catalog(url, tiled.api_key(), DEMO_CATALOG).search(
            Key("start.purpose") == "detector frames")  # fmt: skip
        assert len(found) == 1
        frames = found.values().first()["primary"]["bdet"]
        assert frames.shape == (3, 1, 240, 320)  # --npts 3: one 240 x 320 frame a point
        with h5py.File(written, "r") as f:
            assert (frames.read()[:, 0] == f["/entry/data/data"][()]).all()
    finally:
        tiled.down()
