"""Detector frames live on the run page: ophyd-async's SimBlobDetector through the real engine,
Kafka, the Tiled writer and Tiled, to a real Chromium; pixels compared with the HDF5 files.

One engine run serves every assertion (the suite's time is kept small): a scan of ``stage.x``
with ``bdet`` (a frame per point), ``sdet`` (a stack of three per point), ``spec`` (a 1-D
spectrum in the events) and ``gate`` (which holds the scan at a point until the test lets it
go on: what the page draws while the run goes is looked at then), seen by a web view that
reaches Tiled and by one that cannot.
"""

from __future__ import annotations

import json
import signal
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import httpx
import numpy as np
import pytest
from tiled.serialization.image_serializer_helpers import img_as_ubyte

from runstream.consumers.tiled import connect_catalog
from tests.integration.test_engine import AUTH, EngineProcess
from tests.integration.test_tiled import _tiled_service
from tests.kafka_tools import create_topic, free_port, unique_prefix
from tests.sim_detectors import DOOR, HOLD, STACK
from tests.waiting import eventually
from tests.web_tools import chromium, web_process

pytestmark = pytest.mark.kafka
DEVICES = Path(__file__).resolve().parents[1] / "sim_detectors.py"
POINTS = 8
X = "\N{MULTIPLICATION SIGN}"  # as the page writes shapes
# The page's colour map (plots.js: viridis, 5 stops), to compare pixels with the files.
STOPS = np.array([[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37]])
PIXELS = "c => Array.from(c.getContext('2d').getImageData(0, 0, c.width, c.height).data)"


@dataclass
class FrameRun:
    uid: str
    web: Any  # tests.web_tools.WebProcess, Tiled reachable
    web_down: Any  # the same topic, Tiled not reachable
    files: dict[str, Path]  # data key -> its HDF5 file
    counted: list[dict]  # the frame counts the page followed while the run went
    page: Any  # the run page on ``web``, the run ended
    browser: Any
    live: dict[str, Any]  # what the page drew while the gate held the run (`_drawn_live`)


def _coloured(frame: np.ndarray) -> np.ndarray:
    """RGB as the page draws ``frame``: Tiled's PNG (1st to 99th percentile), then the map."""
    values = frame.astype(np.float32)
    low, high = np.percentile(values, 1), np.percentile(values, 99)
    grey = img_as_ubyte(np.clip((values - low) / (high - low), 0, 1)).astype(float) / 255
    x = grey * (len(STOPS) - 1)
    i = np.minimum(len(STOPS) - 2, np.floor(x)).astype(int)
    f = (x - i)[..., None]
    return np.floor(STOPS[i] + f * (STOPS[i + 1] - STOPS[i]) + 0.5)


def _drawn_pixels(page, key: str) -> np.ndarray:
    canvas = page.query_selector(f".frame[data-key='{key}'] canvas.frame-image")
    flat = np.array(canvas.evaluate(PIXELS), dtype=float)
    height, width = canvas.evaluate("c => [c.height, c.width]")
    return flat.reshape(height, width, 4)[..., :3]


def _mismatch(page, key: str, frame: np.ndarray) -> float:
    """Mean difference per channel between the drawn frame of ``key`` and ``frame``'s colours."""
    drawn = _drawn_pixels(page, key)
    assert drawn.shape[:2] == frame.shape
    return float(np.abs(drawn - _coloured(frame)).mean())


def _show(page, key: str, index: int) -> None:
    page.eval_on_selector(f".frame[data-key='{key}'] .frame-slider",
                          "(s, i) => { s.value = i; s.dispatchEvent(new Event('input')); }",
                          index)  # fmt: skip
    canvas = f".frame[data-key='{key}'] canvas.frame-image"
    page.wait_for_function(f"i => document.querySelector(\"{canvas}\").dataset.index == String(i)",
                           arg=index)  # fmt: skip


@pytest.fixture(scope="module")
def frame_run(kafka_bootstrap, tiled_server, tmp_path_factory) -> Iterator[FrameRun]:
    home = tmp_path_factory.mktemp("frames")
    topic = create_topic(kafka_bootstrap, f"{unique_prefix()}.bluesky.runengine.documents", 1)
    catalog = unique_prefix("cat")
    connect_catalog(tiled_server.url, tiled_server.api_key, catalog)
    engine = EngineProcess(home, kafka_bootstrap, topic)
    files = tiled_server.files / unique_prefix("det")
    engine.env.update(RUNSTREAM_DEVICE_MODULES=json.dumps([str(DEVICES)]),
                      RUNSTREAM_DETECTOR_FILES=str(files),
                      OPHYD_ASYNC_PRESERVE_DETECTOR_STATE="YES")  # fmt: skip
    engine.start()
    writer = _tiled_service(kafka_bootstrap, topic, unique_prefix("g"), tiled_server, catalog)
    nowhere = f"http://127.0.0.1:{free_port()}"
    try:
        with pytest.MonkeyPatch.context() as env:
            env.setenv("RUNSTREAM_TILED_API_KEY", tiled_server.api_key)  # the web views' own
            with (
                web_process(kafka_bootstrap, topic, home / "web.log", "--tiled-url",
                            tiled_server.url, "--tiled-catalog", catalog) as web,
                web_process(kafka_bootstrap, topic, home / "web-down.log", "--tiled-url",
                            nowhere, "--tiled-catalog", catalog) as web_down,
                chromium() as browser,
            ):  # fmt: skip
                yield _run(engine, web, web_down, browser, files / DOOR)
    finally:
        engine.stop()
        writer.send_signal(signal.SIGTERM)
        writer.wait(30)
    for log in ("web.log", "web-down.log"):
        assert tiled_server.api_key not in (home / log).read_text()


def _drawn_live(page, engine: EngineProcess, task_id: str, web, uid: str) -> dict[str, Any]:
    """The first frame of ``bdet`` the page draws while the gate holds the run, its pixels, and
    the task's and the run's states once it is drawn (the gate still holds: no stop yet)."""
    canvas = ".frame[data-key='bdet'] canvas.frame-image"
    try:
        page.wait_for_function(f"() => document.querySelector(\"{canvas}\")?.dataset.index",
                               timeout=60_000)  # fmt: skip
    except Exception:  # say what the page shows instead
        shown = page.inner_text("main")[:3000]
        raise AssertionError(f"no frame drawn while the run goes; the page: {shown}") from None
    index = int(page.eval_on_selector(canvas, "c => c.dataset.index"))
    pixels = _drawn_pixels(page, "bdet")

    def announced() -> dict[str, Any] | None:  # every frame before the gate, in the view
        summary = web.api.get(f"/api/runs/{uid}").json()["summary"]
        return summary if summary["frames"]["primary"]["bdet"] >= HOLD - 1 else None

    summary = eventually(announced, 30, "the frames before the gate in the view")
    task = engine.wait(task_id, ("running", "completed", "failed"))
    return {"index": index, "pixels": pixels, "task": task["state"], "status": summary["status"],
            "announced": summary["frames"]["primary"]["bdet"]}  # fmt: skip


def _run(engine: EngineProcess, web, web_down, browser, door: Path) -> FrameRun:
    """The scan, with the run page open on ``web`` from its first point to its end; the gate
    holds it at point HOLD until a frame is drawn."""
    page = browser.new_page()
    body = {"plan": "scan", "args": [["bdet", "sdet", "spec", "gate"], "stage.x", -0.5, 1.5],
            "kwargs": {"num": POINTS}}  # fmt: skip
    reply = httpx.post(f"{engine.url}/tasks", json=body, headers=AUTH, timeout=30)
    assert reply.status_code == 201, reply.text
    task_id = reply.json()["task_id"]
    task = eventually(lambda: (t := engine.wait(task_id, ("running", "completed", "failed")))
                      ["runs"] and t, 60, "the scan's run")  # fmt: skip
    uid = task["runs"][0]["uid"]
    eventually(lambda: web.api.get(f"/api/runs/{uid}").status_code == 200, 30, "the run in view")
    page.goto(f"{web.url}runs/{uid}")
    try:
        live = _drawn_live(page, engine, task_id, web, uid)
    finally:
        door.touch()  # the gate lets the scan go on
    task = engine.wait(task_id, ("completed", "failed"), timeout=120)
    assert task["state"] == "completed", (task, engine.log.read_text()[-3000:])
    try:
        page.wait_for_function(f"() => document.querySelector(\".frame[data-key='bdet'] "
                               f"canvas.frame-image\")?.dataset.index == '{POINTS - 1}'",
                               timeout=30_000)  # fmt: skip
    except Exception:  # say what the page shows instead
        shown = page.inner_text("main")[:3000]
        raise AssertionError(f"the last frame was not drawn; the page: {shown}") from None
    detail = web.api.get(f"/api/runs/{uid}").json()
    files = {r["data_key"]: Path(r["uri"].removeprefix("file://localhost"))
             for r in detail["resources"]}  # fmt: skip
    drawn = page.evaluate("() => window.__rsFramesCounted")
    return FrameRun(uid, web, web_down, files, drawn, page, browser, live)


def test_a_frame_is_drawn_while_the_run_goes(frame_run) -> None:
    live = frame_run.live
    assert live["task"] == "running" and live["status"] == "open", live  # held by the gate
    assert live["announced"] == HOLD - 1  # the points before the gate
    assert 0 <= live["index"] < HOLD - 1
    with h5py.File(frame_run.files["bdet"], "r", swmr=True) as f:
        frames = f["/entry/data/data"][()]
    drawn = live["pixels"]
    assert drawn.shape[:2] == frames.shape[1:]
    assert float(np.abs(drawn - _coloured(frames[live["index"]])).mean()) < 1.0


def test_the_latest_frame_follows_the_run_and_its_pixels_are_the_files(frame_run) -> None:
    page = frame_run.page
    bdet = [d["count"] for d in frame_run.counted if d["key"] == "bdet"]
    assert len(set(bdet)) >= 2 and bdet == sorted(bdet), bdet  # followed as the frames came
    with h5py.File(frame_run.files["bdet"], "r", swmr=True) as f:
        frames = f["/entry/data/data"][()]
    assert frames.shape == (POINTS, 240, 320)
    last, second = frames[POINTS - 1], frames[1]
    assert _mismatch(page, "bdet", last) < 1.0
    assert _mismatch(page, "bdet", second) > 3 * _mismatch(page, "bdet", last) + 1
    scale = page.eval_on_selector(".frame[data-key='bdet'] .colour-scale", "s => s.textContent")
    assert scale.startswith(str(int(np.percentile(last, 99))))  # the high end, as Tiled scaled
    caption = page.text_content(".frame[data-key='bdet'] .frame-caption")
    assert caption == f"frame {POINTS - 1} of {POINTS} (latest)"

    _show(page, "bdet", 1)  # the slider: an earlier frame, and the caption says so
    assert _mismatch(page, "bdet", second) < 1.0
    assert _mismatch(page, "bdet", last) > 3 * _mismatch(page, "bdet", second) + 1
    assert page.text_content(".frame[data-key='bdet'] .frame-caption") == f"frame 1 of {POINTS}"


def test_a_stack_per_point_shows_its_first_image(frame_run) -> None:
    page = frame_run.page
    with h5py.File(frame_run.files["sdet"], "r", swmr=True) as f:
        images = f["/entry/data/data"][()]
    assert images.shape == (POINTS * STACK, 240, 320)
    head = page.text_content(".frame[data-key='sdet'] h4")
    assert head == f"sdet frame {STACK}{X}240{X}320"
    _show(page, "sdet", 2)
    first, second = images[2 * STACK], images[2 * STACK + 1]
    assert _mismatch(page, "sdet", first) < 1.0
    assert _mismatch(page, "sdet", second) > 3 * _mismatch(page, "sdet", first) + 1


def test_detector_documents_show_as_files_and_frame_numbers(frame_run) -> None:
    page = frame_run.page
    lines = page.eval_on_selector_all("#resources li.resource", "ls => ls.map(l => l.textContent)")
    assert len(lines) == 4  # a frame and a sum, of each detector
    bdet_line = next(line for line in lines if line.startswith("bdet ·"))
    assert frame_run.files["bdet"].name in bdet_line and "/entry/data/data" in bdet_line
    assert f"shape 1{X}240{X}320 · {POINTS} frames" in bdet_line
    assert page.is_hidden("#other")  # no raw JSON documents
    assert page.evaluate("() => document.body.scrollHeight") < 3000
    headers = page.eval_on_selector_all("table.rows[data-stream=primary] th",
                                        "ths => ths.map(th => th.textContent)")  # fmt: skip
    column = headers.index("bdet")
    cells = page.eval_on_selector_all(
        "table.rows[data-stream=primary] tbody tr",
        f"trs => trs.map(tr => tr.cells[{column}].textContent)",
    )
    assert cells == [f"frame {i}" for i in range(POINTS)]
    spectrum = page.query_selector(".spectrum[data-field='spec-counts'] canvas")
    assert spectrum is not None and spectrum.evaluate("c => c.width") > 0


def test_tiled_unreachable_is_said_where_the_frame_would_be(frame_run) -> None:
    page = frame_run.browser.new_page()
    try:
        page.goto(f"{frame_run.web_down.url}runs/{frame_run.uid}")
        message = ".frame[data-key='bdet'] .frame-message"
        page.wait_for_selector(message, state="visible")
        text = page.text_content(message)
        assert text.startswith("Frames unavailable: Tiled at http://127.0.0.1:")
        assert "does not answer" in text
        assert page.is_hidden(".frame[data-key='bdet'] canvas.frame-image")
        rows = "table.rows[data-stream=primary] tbody tr[data-seq-num]"
        page.wait_for_function(f"n => document.querySelectorAll('{rows}').length == n",
                               arg=POINTS)  # fmt: skip
        page.wait_for_selector(".plot-area canvas")  # the plot still draws
        assert page.query_selector(".spectrum[data-field='spec-counts'] canvas") is not None
    finally:
        page.close()
    reply = frame_run.web_down.api.get(f"/api/runs/{frame_run.uid}/streams/primary/frames/bdet")
    assert reply.status_code == 503 and "does not answer" in reply.json()["detail"]
