"""Live per-run tables: the job of LiveTable/BestEffortCallback, right for nested runs.

One table per run and stream, to a terminal (lines of concurrently open runs
carry the run's tag) and to ``<out>/<scan_id>-<uid8>.txt``. The file is
rendered from the run's own rows, so a run replayed from its start rewrites it
to the same content.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from .callback import RunCallback
from .cellformat import cell
from .protocols import Factory, per_run
from .runlabel import RunLabel
from .services import ConsumerService, ServiceContext
from .settings import ConsumerSettings

log = logging.getLogger(__name__)

MIN_WIDTH = 10
ARRAY_WIDTH = 16
RENDER_EVERY = 1.0  # seconds between rewrites of a live run's file


def _clock(t: float) -> str:
    return time.strftime("%H:%M:%S", time.localtime(t)) + f".{int(t % 1 * 10)}"


@dataclass
class StreamTable:
    name: str
    data_keys: Mapping[str, Mapping[str, Any]]
    keys: list[str] = field(default_factory=list)
    widths: list[int] = field(default_factory=list)
    rows: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.keys = list(self.data_keys)
        self.widths = [7, 10] + [
            max(ARRAY_WIDTH if v.get("shape") else MIN_WIDTH, len(k))
            for k, v in self.data_keys.items()
        ]

    def _line(self, cells: list[str]) -> str:
        return "| " + " | ".join(cells) + " |"

    @property
    def border(self) -> str:
        return "+" + "+".join("-" * (w + 2) for w in self.widths) + "+"

    @property
    def head(self) -> list[str]:
        names = ["seq_num", "time", *self.keys]
        return [
            self.border,
            self._line([n.rjust(w) for n, w in zip(names, self.widths, strict=True)]),
            self.border,
        ]

    def row(self, seq_num: int, t: float, data: Mapping[str, Any]) -> str:
        cells = [cell(seq_num, self.widths[0]), _clock(t).rjust(self.widths[1])]
        cells += [cell(data.get(k), w) for k, w in zip(self.keys, self.widths[2:], strict=True)]
        line = self._line(cells)
        self.rows.append(line)
        return line


class RunTable(RunCallback):
    """One run's tables; an event page arrives here one event at a time."""

    def __init__(self, out_dir: Path | None, echo: TextIO | None) -> None:
        super().__init__()
        self.out_dir = out_dir
        self.echo = echo
        self.label: RunLabel | None = None
        self.streams: dict[str, StreamTable] = {}  # by descriptor uid
        self.footer: str | None = None
        self._dirty = False
        self._rendered_at = 0.0

    # -- documents --------------------------------------------------------------

    def start(self, doc: Mapping[str, Any]) -> None:
        self.label = RunLabel.from_start(doc)
        self._say(f"run {self.label.describe()}")
        self._dirty = True
        self._render()

    def descriptor(self, doc: Mapping[str, Any]) -> None:
        table = StreamTable(doc.get("name", "primary"), doc.get("data_keys", {}))
        self.streams[doc["uid"]] = table
        self._say(f"stream '{table.name}'")
        for line in table.head:
            self._say(line)

    def event(self, doc: Mapping[str, Any]) -> None:
        table = self.streams.get(doc["descriptor"])
        if table is None:
            log.warning("run %s: event for unknown descriptor %s", self._uid, doc["descriptor"])
            return
        self._say(table.row(doc["seq_num"], doc["time"], doc["data"]))
        self._dirty = True

    def stop(self, doc: Mapping[str, Any]) -> None:
        counts = ", ".join(f"{n} {s}" for s, n in (doc.get("num_events") or {}).items())
        reason = f" ({doc['reason']})" if doc.get("reason") else ""
        self._finish(f"run ended: {doc.get('exit_status')}{reason}; events: {counts or 'none'}")

    # -- runtime hooks ------------------------------------------------------------

    def tick(self) -> None:
        if self._dirty and time.monotonic() - self._rendered_at >= RENDER_EVERY:
            self._render()

    def abandon(self, reason: str) -> None:
        self._finish(f"run incomplete: {reason}")

    # -- output -------------------------------------------------------------------

    @property
    def _uid(self) -> str:
        return self.label.uid if self.label else "?"

    def _say(self, line: str) -> None:
        if self.echo is not None and self.label is not None:
            self.echo.write(f"{self.label.tag} {line}\n")
            self.echo.flush()

    def _finish(self, footer: str) -> None:
        for table in self.streams.values():
            if table.rows:
                self._say(table.border)
        self.footer = footer
        self._say(footer)
        self._dirty = True
        self._render()

    def render(self) -> str:
        """The run's whole file: header, one table per stream, footer."""
        assert self.label is not None
        lines = [f"run {self.label.describe()}"]
        for table in self.streams.values():
            lines += ["", f"stream '{table.name}'", *table.head, *table.rows, table.border]
        if self.footer:
            lines += ["", self.footer]
        return "\n".join(lines) + "\n"

    def _render(self) -> None:
        self._dirty = False
        self._rendered_at = time.monotonic()
        if self.out_dir is None or self.label is None:
            return
        path = self.out_dir / f"{self.label.stem}.txt"
        tmp = path.with_suffix(".txt.part")
        tmp.write_text(self.render())
        os.replace(tmp, path)


def table_factory(out_dir: Path | None, echo: TextIO | None = sys.stdout) -> Factory:
    """A RunRouter factory giving every run its own `RunTable`."""
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
    return per_run(lambda: RunTable(out_dir, echo))


class TableSettings(BaseSettings):
    """Where ``runstream consume table`` writes (``RUNSTREAM_TABLE_*``)."""

    model_config = SettingsConfigDict(env_prefix="RUNSTREAM_TABLE_", extra="ignore")

    out: Path | None = Field(None, description="Folder for one file per run (required)")
    quiet: bool = Field(False, description="Write files only, not to stdout")


class TableServiceSettings(ConsumerSettings):
    table: TableSettings = Field(default_factory=TableSettings)


def _arguments(parser: argparse.ArgumentParser) -> None:
    S = argparse.SUPPRESS  # unset options keep TableSettings' values (env or defaults)
    parser.add_argument("--out", type=Path, default=S, help="folder for one file per run "
                        "(required; RUNSTREAM_TABLE_OUT)")  # fmt: skip
    parser.add_argument("--quiet", action="store_true", default=S,
                        help="write files only, not to stdout (RUNSTREAM_TABLE_QUIET)")  # fmt: skip


def _factories(context: ServiceContext[TableServiceSettings]) -> list:
    table = context.settings.table
    if table.out is None:
        raise ValueError("give --out or RUNSTREAM_TABLE_OUT: the folder for the tables")
    return [table_factory(table.out, None if table.quiet else sys.stdout)]


SERVICE = ConsumerService(
    "table", "a live table per run and stream, to stdout and <out>/<scan_id>-<uid8>.txt",
    TableServiceSettings, _arguments, _factories,
)  # fmt: skip
