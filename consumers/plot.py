"""Live per-run plots rendered headless: the job of LivePlot and BestEffortCallback's figures.

One PNG per run and stream (``<out>/<scan_id>-<uid8>-<stream>.png``): detectors
against the scanned motor for a scan, against sequence number otherwise, and
the latest frame for 2-D data. BestEffortCallback redraws on every event and
manages ~13 events/s; here events only append to arrays and the figure is
redrawn at most ``max_redraws_per_s`` times per run (on the runtime's ``tick``)
plus once at the stop, so drawing never holds the stream back.
"""

from __future__ import annotations

import argparse
import logging
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from .plotchoice import detector_fields, is_image, motor_fields
from .protocols import Factory, per_run
from .runlabel import RunLabel
from .services import ConsumerService

log = logging.getLogger(__name__)


class StreamPlot:
    def __init__(self, label: RunLabel, start: Mapping[str, Any], descriptor: Mapping[str, Any]):
        data_keys = descriptor.get("data_keys", {})
        self.label = label
        self.stream = descriptor.get("name", "primary")
        motors = motor_fields(start, data_keys)
        self.x_field = motors[0] if motors else None
        self.y_fields = detector_fields(descriptor, set(motors))
        self.image_field = next((k for k, v in data_keys.items() if is_image(v)), None)
        self.external = [k for k, v in data_keys.items() if v.get("external")]
        self.x: list[float] = []
        self.y: dict[str, list[float]] = {f: [] for f in self.y_fields}
        self.image: np.ndarray | None = None
        self.events = 0

    def add(self, seq_num: int, data: Mapping[str, Any]) -> None:
        self.events += 1
        self.x.append(float(data[self.x_field]) if self.x_field else float(seq_num))
        for f in self.y_fields:
            value = data.get(f)
            self.y[f].append(float(value) if value is not None else np.nan)
        if self.image_field is not None:
            frame = data.get(self.image_field)
            if frame is not None:
                self.image = np.asarray(frame)

    def draw(self, path: Path, final: bool) -> None:
        fig = Figure(figsize=(7, 4.5), dpi=90)
        FigureCanvasAgg(fig)
        state = "" if final else " (live)"
        title = (
            f"scan {self.label.scan_id} · {self.label.short} · {self.label.plan_name or ''}"
            f"{' · ' + str(self.label.run_key) if self.label.run_key is not None else ''}"
            f" · {self.stream}"
        )
        fig.suptitle(title + state, fontsize=9)
        if self.image is not None and self.image.ndim == 2:
            ax = fig.add_subplot()
            shown = ax.imshow(self.image, origin="lower", aspect="auto")
            fig.colorbar(shown, ax=ax)
            ax.set_title(f"{self.image_field} (latest of {self.events})", fontsize=8)
            ax.set_xlabel("column")
            ax.set_ylabel("row")
        else:
            ax = fig.add_subplot()
            for f in self.y_fields:
                ax.plot(self.x, self.y[f], marker="o", markersize=3, label=f)
            ax.set_xlabel(self.x_field or "seq_num")
            ax.set_ylabel(", ".join(self.y_fields) if self.y_fields else "no numeric data")
            if not self.y_fields and self.external:
                ax.text(0.5, 0.5, f"external data only: {', '.join(self.external)}",
                        ha="center", va="center", transform=ax.transAxes)  # fmt: skip
            if self.y_fields:
                ax.legend(fontsize=8)
            ax.grid(alpha=0.3)
        tmp = path.with_name(path.name + ".part")
        fig.savefig(tmp, format="png", metadata={"Title": title, "Description": self.label.uid})
        os.replace(tmp, path)


class RunPlot:
    """A RunRouter callback for one run: one `StreamPlot` per stream, throttled redraws."""

    def __init__(self, out_dir: Path, max_redraws_per_s: float = 2.0) -> None:
        self.out_dir = out_dir
        self.min_interval = 1.0 / max_redraws_per_s
        self.label: RunLabel | None = None
        self.start: Mapping[str, Any] = {}
        self.plots: dict[str, StreamPlot] = {}  # by descriptor uid
        self.dirty: set[str] = set()
        self.drawn_at: dict[str, float] = {}
        self.redraws = 0

    def __call__(self, name: str, doc: Mapping[str, Any]) -> None:
        if name == "start":
            self.start, self.label = doc, RunLabel.from_start(doc)
        elif name == "descriptor" and self.label is not None:
            self.plots[doc["uid"]] = StreamPlot(self.label, self.start, doc)
        elif name == "event":
            self._add(doc["descriptor"], doc["seq_num"], doc["data"])
        elif name == "event_page":
            data = doc["data"]
            for i, seq_num in enumerate(doc["seq_num"]):
                self._add(doc["descriptor"], seq_num, {k: v[i] for k, v in data.items()})
        elif name == "stop":
            self._draw_all(final=True)

    def _add(self, descriptor: str, seq_num: int, data: Mapping[str, Any]) -> None:
        plot = self.plots.get(descriptor)
        if plot is not None:
            plot.add(seq_num, data)
            self.dirty.add(descriptor)

    def path(self, plot: StreamPlot) -> Path:
        assert self.label is not None
        return self.out_dir / f"{self.label.stem}-{plot.stream}.png"

    def tick(self) -> None:
        now = time.monotonic()
        for uid in list(self.dirty):
            if now - self.drawn_at.get(uid, 0.0) >= self.min_interval:
                self._draw(uid, final=False)

    def abandon(self, reason: str) -> None:
        log.info(
            "run %s abandoned (%s): drawing what arrived", self.label and self.label.uid, reason
        )
        self._draw_all(final=False)

    def _draw_all(self, final: bool) -> None:
        for uid in self.plots:
            self._draw(uid, final)

    def _draw(self, uid: str, final: bool) -> None:
        plot = self.plots[uid]
        plot.draw(self.path(plot), final)
        self.redraws += 1
        self.drawn_at[uid] = time.monotonic()
        self.dirty.discard(uid)


def plot_factory(out_dir: Path, max_redraws_per_s: float = 2.0) -> Factory:
    """A RunRouter factory giving every run its own `RunPlot`."""
    out_dir.mkdir(parents=True, exist_ok=True)
    return per_run(lambda: RunPlot(out_dir, max_redraws_per_s))


def _arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, required=True, help="folder for the PNG files")
    parser.add_argument("--max-redraws", type=float, default=2.0,
                        help="redraws per second per run at most (default 2)")  # fmt: skip


def _factories(args: argparse.Namespace) -> list:
    if args.max_redraws <= 0:
        raise ValueError("--max-redraws must be positive")
    return [plot_factory(args.out, args.max_redraws)]


SERVICE = ConsumerService(
    "plot", "live plots per run and stream, as <out>/<scan_id>-<uid8>-<stream>.png",
    _arguments, _factories,
)  # fmt: skip
