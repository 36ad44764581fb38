"""Per-run plots from a real RunEngine: one valid PNG per run and stream, throttled redraws."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
from bluesky import RunEngine
from bluesky.plans import count, grid_scan, scan
from event_model import RunRouter
from PIL import Image

from runstream.consumers.plot import RunPlot, plot_factory
from runstream.producer.plans import nested_runs, sim_hw


def _run(plan, out: Path) -> list[tuple[str, dict]]:
    RE = RunEngine({})
    docs: list[tuple[str, dict]] = []
    RE.subscribe(lambda n, d: docs.append((n, d)))
    RE.subscribe(RunRouter([plot_factory(out)]))
    RE(plan)
    return docs


def test_one_png_per_run_naming_the_run(tmp_path: Path) -> None:
    docs = _run(nested_runs(4), tmp_path)
    starts = [d for n, d in docs if n == "start"]
    assert len(starts) == 2
    assert len(list(tmp_path.glob("*.png"))) == 2
    for start in starts:
        path = tmp_path / f"{start['scan_id']}-{start['uid'][:8]}-primary.png"
        image = Image.open(path)
        image.verify()
        meta = Image.open(path).text
        assert start["uid"][:8] in meta["Title"] and meta["Description"] == start["uid"]


def test_scan_plots_detectors_against_the_motor(tmp_path: Path) -> None:
    hw = sim_hw()
    plots: list[RunPlot] = []

    def factory(name, start):
        plot = RunPlot(tmp_path)
        plots.append(plot)
        return [plot], []

    RE = RunEngine({})
    RE.subscribe(RunRouter([factory]))
    RE(scan([hw.det1], hw.motor1, -1, 1, 5))
    (stream,) = plots[0].plots.values()
    assert stream.x_field == "motor1" and stream.y_fields == ["det1"]
    assert stream.x == [-1.0, -0.5, 0.0, 0.5, 1.0]
    RE(count([hw.direct_img], num=2))
    (image_stream,) = plots[1].plots.values()
    assert image_stream.image_field == "img" and image_stream.image.shape == (10, 10)
    assert len(list(tmp_path.glob("*.png"))) == 2


def test_redraws_are_throttled_and_final_draw_comes_at_stop(tmp_path: Path) -> None:
    plot = RunPlot(tmp_path, max_redraws_per_s=4)
    keys = {"det": {"dtype": "number", "shape": [], "source": "s"}}
    plot("start", {"uid": "f" * 36, "time": 0, "scan_id": 3})
    plot("descriptor", {"uid": "d", "run_start": "f" * 36, "data_keys": keys, "time": 0})
    began = time.monotonic()
    for i in range(1, 5001):
        plot("event", {"descriptor": "d", "seq_num": i, "time": 0, "data": {"det": float(i)}})
        plot.tick()  # the runtime may tick as often as it likes
    elapsed = time.monotonic() - began
    live = plot.redraws
    assert live <= 4 * elapsed + 1
    plot("stop", {"run_start": "f" * 36, "exit_status": "success"})
    assert plot.redraws == live + 1
    (stream,) = plot.plots.values()
    assert stream.events == 5000 and stream.x[-1] == 5000.0


def test_a_grid_scan_is_drawn_as_a_heat_map_of_its_detector(tmp_path: Path) -> None:
    hw = sim_hw()
    plots: list[RunPlot] = []
    docs: list[tuple[str, dict]] = []

    def factory(name, start):
        plot = RunPlot(tmp_path)
        plots.append(plot)
        return [plot], []

    RE = RunEngine({})
    RE.subscribe(lambda n, d: docs.append((n, d)))
    RE.subscribe(RunRouter([factory]))
    RE(grid_scan([hw.det4], hw.motor1, -1, 1, 3, hw.motor2, -2, 2, 4))
    expected = np.full((3, 4), np.nan)  # det4 at each point: rows motor1, columns motor2
    for name, doc in docs:
        if name == "event":
            data = doc["data"]
            expected[round(data["motor1"] + 1), round((data["motor2"] + 2) * 0.75)] = data["det4"]
    assert not np.isnan(expected).any()
    (stream,) = plots[0].plots.values()
    ax = stream.figure(final=True).axes[0]  # the next one is the colour bar
    (heat_map,) = ax.images
    assert not ax.lines  # no curves of det4 or motor2 against motor1
    np.testing.assert_allclose(heat_map.get_array(), expected)
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("motor2", "motor1")
    # the PNG itself: a heat map fills its axes with colour, curves leave them mostly white
    (png,) = tmp_path.glob("*.png")
    rgb = np.asarray(Image.open(png).convert("RGB"))
    assert (rgb.min(axis=2) > 240).mean() < 0.6
