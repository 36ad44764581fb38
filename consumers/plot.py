"""Live per-run plots rendered headless: the job of LivePlot and BestEffortCallback's figures.

One PNG per run and stream (``<out>/<scan_id>-<uid8>-<stream>.png``), on the
axes `plotchoice` chooses for the web view too: detectors against the scanned
motor for a scan, against sequence number otherwise, a heat map for a grid
scan, and the latest frame for 2-D data. BestEffortCallback redraws on every event and
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
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from .callback import RunCallback
from .plotchoice import choose, grid_edges, place_on_grid
from .protocols import Factory, per_run
from .runlabel import RunLabel
from .services import ConsumerService, ServiceContext
from .settings import ConsumerSettings

log = logging.getLogger(__name__)


class StreamPlot:
    """One stream's figure, on the axes `plotchoice.choose` picks, as the web view draws it."""

    def __init__(self, label: RunLabel, start: Mapping[str, Any], descriptor: Mapping[str, Any]):
        data_keys = descriptor.get("data_keys", {})
        self.label = label
        self.stream = descriptor.get("name", "primary")
        self.choice = choose(start, descriptor)
        self.external = [k for k, v in data_keys.items() if v.get("external")]
        axes = self.choice.grid_fields or (self.choice.x_field,)
        fields = [f for f in (*axes, *self.choice.y_fields) if f is not None]
        self.values: dict[str, list[float]] = {f: [] for f in dict.fromkeys(fields)}
        self.seq_nums: list[float] = []
        self.image: np.ndarray | None = None
        self.events = 0

    @property
    def x_field(self) -> str | None:
        return self.choice.x_field

    @property
    def y_fields(self) -> list[str]:
        return self.choice.y_fields

    @property
    def image_field(self) -> str | None:
        return self.choice.image_field

    @property
    def x(self) -> list[float]:
        """The curves' x: the scan's first dimension, else the sequence number."""
        return self.values[self.x_field] if self.x_field else self.seq_nums

    @property
    def title(self) -> str:
        label = self.label
        run_key = f" · {label.run_key}" if label.run_key is not None else ""
        return (f"scan {label.scan_id} · {label.short} · {label.plan_name or ''}{run_key}"
                f" · {self.stream}")  # fmt: skip

    def add(self, seq_num: int, data: Mapping[str, Any]) -> None:
        self.events += 1
        self.seq_nums.append(float(seq_num))
        for f, column in self.values.items():
            value = data.get(f)
            column.append(float(value) if value is not None else np.nan)
        if self.image_field is not None:
            frame = data.get(self.image_field)
            if frame is not None:
                self.image = np.asarray(frame)

    def figure(self, final: bool) -> Figure:
        """The latest frame (2-D data), a heat map (a grid scan) or curves."""
        fig = Figure(figsize=(7, 4.5), dpi=90)
        FigureCanvasAgg(fig)
        fig.suptitle(self.title + ("" if final else " (live)"), fontsize=9)
        ax = fig.add_subplot()
        if self.image is not None and self.image.ndim == 2:
            self._draw_frame(fig, ax, self.image)
        elif self.choice.kind == "grid":
            self._draw_grid(fig, ax)
        else:
            self._draw_curves(ax)
        return fig

    def draw(self, path: Path, final: bool) -> None:
        fig = self.figure(final)
        tmp = path.with_name(path.name + ".part")
        fig.savefig(
            tmp, format="png", metadata={"Title": self.title, "Description": self.label.uid}
        )
        os.replace(tmp, path)

    def _draw_frame(self, fig: Figure, ax: Axes, frame: np.ndarray) -> None:
        shown = ax.imshow(frame, origin="lower", aspect="auto")
        fig.colorbar(shown, ax=ax)
        ax.set_title(f"{self.image_field} (latest of {self.events})", fontsize=8)
        ax.set_xlabel("column")
        ax.set_ylabel("row")

    def _draw_grid(self, fig: Figure, ax: Axes) -> None:
        choice = self.choice
        assert choice.grid_fields is not None
        rows_field, columns_field = choice.grid_fields
        field = choice.y_fields[0]
        columns = [np.array(self.values[f]) for f in (field, rows_field, columns_field)]
        values = place_on_grid(choice, *columns)
        extent = grid_edges(choice)
        shown = ax.imshow(values, origin="lower", aspect="auto", interpolation="nearest",
                          extent=extent)  # fmt: skip
        fig.colorbar(shown, ax=ax, label=field)
        ax.set_title(f"{field} over {rows_field} x {columns_field} ({self.events} events)",
                     fontsize=8)  # fmt: skip
        where = "" if extent else " (index)"
        ax.set_xlabel(columns_field + where)
        ax.set_ylabel(rows_field + where)

    def _draw_curves(self, ax: Axes) -> None:
        for f in self.y_fields:
            ax.plot(self.x, self.values[f], marker="o", markersize=3, label=f)
        ax.set_xlabel(self.x_field or "seq_num")
        ax.set_ylabel(", ".join(self.y_fields) if self.y_fields else "no numeric data")
        if not self.y_fields and self.external:
            ax.text(0.5, 0.5, f"external data only: {', '.join(self.external)}",
                    ha="center", va="center", transform=ax.transAxes)  # fmt: skip
        if self.y_fields:
            ax.legend(fontsize=8)
        ax.grid(alpha=0.3)


class RunPlot(RunCallback):
    """One run's plots: a `StreamPlot` per stream, throttled redraws; pages come as events."""

    def __init__(self, out_dir: Path, max_redraws_per_s: float = 2.0) -> None:
        super().__init__()
        self.out_dir = out_dir
        self.min_interval = 1.0 / max_redraws_per_s
        self.label: RunLabel | None = None
        self.start_doc: Mapping[str, Any] = {}
        self.plots: dict[str, StreamPlot] = {}  # by descriptor uid
        self.dirty: set[str] = set()
        self.drawn_at: dict[str, float] = {}
        self.redraws = 0

    def start(self, doc: Mapping[str, Any]) -> None:
        self.start_doc, self.label = doc, RunLabel.from_start(doc)

    def descriptor(self, doc: Mapping[str, Any]) -> None:
        if self.label is not None:
            self.plots[doc["uid"]] = StreamPlot(self.label, self.start_doc, doc)

    def event(self, doc: Mapping[str, Any]) -> None:
        plot = self.plots.get(doc["descriptor"])
        if plot is not None:
            plot.add(doc["seq_num"], doc["data"])
            self.dirty.add(doc["descriptor"])

    def stop(self, doc: Mapping[str, Any]) -> None:
        self._draw_all(final=True)

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


class PlotSettings(BaseSettings):
    """Where ``runstream consume plot`` draws, and how often (``RUNSTREAM_PLOT_*``)."""

    model_config = SettingsConfigDict(env_prefix="RUNSTREAM_PLOT_", extra="ignore")

    out: Path | None = Field(None, description="Folder for the PNG files (required)")
    max_redraws: float = Field(2.0, description="Redraws per second per run at most")


class PlotServiceSettings(ConsumerSettings):
    plot: PlotSettings = Field(default_factory=PlotSettings)


def _arguments(parser: argparse.ArgumentParser) -> None:
    S = argparse.SUPPRESS  # unset options keep PlotSettings' values (env or defaults)
    parser.add_argument("--out", type=Path, default=S,
                        help="folder for the PNG files (required; RUNSTREAM_PLOT_OUT)")  # fmt: skip
    parser.add_argument("--max-redraws", type=float, default=S,
                        help="redraws per second per run at most (default 2; "
                        "RUNSTREAM_PLOT_MAX_REDRAWS)")  # fmt: skip


def _factories(context: ServiceContext[PlotServiceSettings]) -> list:
    plot = context.settings.plot
    if plot.out is None:
        raise ValueError("give --out or RUNSTREAM_PLOT_OUT: the folder for the plots")
    if plot.max_redraws <= 0:
        raise ValueError("--max-redraws (RUNSTREAM_PLOT_MAX_REDRAWS) must be positive")
    return [plot_factory(plot.out, plot.max_redraws)]


SERVICE = ConsumerService(
    "plot", "live plots per run and stream, as <out>/<scan_id>-<uid8>-<stream>.png",
    PlotServiceSettings, _arguments, _factories,
)  # fmt: skip
