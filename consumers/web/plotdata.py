"""A stream's plot as the browser draws it: curves decimated to a point budget, grids, frames.

Decimation keeps each bucket's minimum and maximum, so a 100,000-event run
draws as fast as a 2,000-point one and no peak disappears; the table and the
rows API keep every event.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..plotchoice import place_on_grid
from .livestream import LiveStream

IMAGE_SIDE = 200  # pixels per side of a frame sent to the browser, at most


def _finite_list(values: np.ndarray) -> list[float | None]:
    values = np.asarray(values, dtype=float)
    out: list[float | None] = values.tolist()
    if not np.isfinite(values).all():
        for i in np.flatnonzero(~np.isfinite(values)):
            out[i] = None
    return out


def _envelope(x: np.ndarray, ys: list[np.ndarray], points: int) -> tuple[np.ndarray, list]:
    """Two points per bucket (first and last x; each curve's min then max)."""
    buckets = max(1, points // 2)
    starts = np.linspace(0, len(x), buckets, endpoint=False).astype(np.int64)
    ends = np.append(starts[1:], len(x)) - 1
    xs = np.empty(2 * buckets)
    xs[0::2], xs[1::2] = x[starts], x[ends]
    out = []
    for y in ys:
        with np.errstate(invalid="ignore"):
            lo = np.fmin.reduceat(y, starts)
            hi = np.fmax.reduceat(y, starts)
        pair = np.empty(2 * buckets)
        pair[0::2], pair[1::2] = lo, hi
        out.append(pair)
    return xs, out


def lines(stream: LiveStream, points: int) -> dict[str, Any]:
    choice = stream.plot
    n = stream.count
    x_field = choice.x_field if choice.x_field in stream.columns else None
    x = stream.columns[x_field].numbers() if x_field else np.frombuffer(stream.seq_num, np.int64)
    x = np.asarray(x[:n], dtype=float)
    ys = [np.asarray(stream.columns[f].numbers()[:n], dtype=float) for f in choice.y_fields]
    decimated = n > points
    if decimated:
        x, ys = _envelope(x, ys, points)
    return {
        "x_field": x_field or "seq_num",
        "x": _finite_list(x),
        "series": {f: _finite_list(y) for f, y in zip(choice.y_fields, ys, strict=True)},
        "decimated": decimated,
    }


def grid(stream: LiveStream) -> dict[str, Any]:
    """The first detector over two motors, placed by position when the start gives extents."""
    choice = stream.plot
    assert choice.grid_fields is not None
    field = choice.y_fields[0]
    columns = [stream.columns[f].numbers() for f in (field, *choice.grid_fields)]
    values = place_on_grid(choice, *columns)
    return {
        "field": field,
        "axes": list(choice.grid_fields),
        "image": [_finite_list(row) for row in values],
    }


def image(stream: LiveStream) -> dict[str, Any] | None:
    field = stream.plot.image_field
    frame = stream.frames.get(field) if field else None
    if frame is None:
        return None
    step = max(1, -(-max(frame.shape) // IMAGE_SIDE))
    shown = np.asarray(frame[::step, ::step], dtype=float)
    return {"field": field, "shape": list(frame.shape), "image": [_finite_list(r) for r in shown]}


def plot(stream: LiveStream, points: int) -> dict[str, Any]:
    kind = stream.plot.kind
    out: dict[str, Any] = {"stream": stream.name, "kind": kind, "events": stream.count}
    out["spectra"] = {key: _finite_list(values) for key, values in stream.spectra.items()}
    if kind == "image":
        out["frame"] = image(stream)
        out["lines"] = lines(stream, points)
    elif kind == "grid":
        out["grid"] = grid(stream)
        out["lines"] = lines(stream, points)
    else:
        out["lines"] = lines(stream, points)
    return out
