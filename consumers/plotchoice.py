"""What to plot for a stream, chosen from the run's hints as BestEffortCallback chooses.

Shared by the PNG plot service and the web view, so both draw the same axes:
detectors (hinted fields first) against the scan's first dimension, against
sequence number for a count, a heat map when the start describes a 2-D grid,
and the latest frame of 2-D data.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

MAX_CURVES = 6


def is_scalar_number(key: Mapping[str, Any]) -> bool:
    return (
        key.get("dtype") in ("number", "integer")
        and not key.get("shape")
        and not key.get("external")
    )


def is_image(key: Mapping[str, Any]) -> bool:
    return len(key.get("shape") or ()) == 2 and not key.get("external")


def dimension_fields(start: Mapping[str, Any], data_keys: Mapping[str, Any]) -> list[str]:
    """The scan's dimensions present in this stream, first one first."""
    found = [
        fields[0]
        for fields, _stream in (start.get("hints") or {}).get("dimensions", [])
        if fields and fields[0] in data_keys
    ]
    if found:
        return found
    return [m for m in start.get("motors") or [] if m in data_keys]


def detector_fields(descriptor: Mapping[str, Any], skip: set[str]) -> list[str]:
    """Hinted fields first (what BestEffortCallback plots), then any numeric scalar."""
    data_keys = descriptor.get("data_keys", {})
    hinted = [
        f
        for hints in (descriptor.get("hints") or {}).values()
        for f in (hints or {}).get("fields", [])
        if f in data_keys and is_scalar_number(data_keys[f])
    ]
    others = [k for k, v in data_keys.items() if is_scalar_number(v)]
    ordered = list(dict.fromkeys(hinted + others))
    return [f for f in ordered if f not in skip and not f.endswith("_setpoint")][:MAX_CURVES]


@dataclass(frozen=True)
class PlotChoice:
    """``kind`` is ``lines`` (y_fields against x_field or seq_num), ``grid`` (a heat map of
    the first y field over two motors, ``shape`` rows x columns) or ``image``."""

    kind: str
    x_field: str | None
    y_fields: list[str]
    grid_fields: tuple[str, str] | None = None
    shape: tuple[int, int] | None = None
    extents: tuple[tuple[float, float], tuple[float, float]] | None = None
    image_field: str | None = None


def choose(start: Mapping[str, Any], descriptor: Mapping[str, Any]) -> PlotChoice:
    data_keys = descriptor.get("data_keys", {})
    dims = dimension_fields(start, data_keys)
    y_fields = detector_fields(descriptor, set(dims[:2]))
    image_field = next((k for k, v in data_keys.items() if is_image(v)), None)
    if image_field is not None:
        return PlotChoice("image", None, y_fields, image_field=image_field)
    shape = start.get("shape")
    if len(dims) >= 2 and y_fields and isinstance(shape, list | tuple) and len(shape) == 2:
        extents = start.get("extents")
        ext = None
        if isinstance(extents, list | tuple) and len(extents) == 2:
            try:
                ext = tuple((float(a), float(b)) for a, b in extents)
            except (TypeError, ValueError):
                ext = None
        return PlotChoice(
            "grid", dims[0], y_fields, grid_fields=(dims[0], dims[1]),
            shape=(int(shape[0]), int(shape[1])), extents=ext,  # type: ignore[arg-type]
        )  # fmt: skip
    return PlotChoice("lines", dims[0] if dims else None, y_fields)


def place_on_grid(
    choice: PlotChoice, values: np.ndarray, rows_at: np.ndarray, columns_at: np.ndarray
) -> np.ndarray:
    """A grid scan's ``values`` as its rows x columns (NaN where no point fell): placed by
    the two motors' positions ``rows_at``, ``columns_at`` when the start gives extents,
    else in event order."""
    assert choice.shape is not None
    rows, cols = choice.shape
    grid = np.full(rows * cols, np.nan)
    if choice.extents is not None:
        (y0, y1), (x0, x1) = choice.extents
        r = np.rint((rows_at - y0) / ((y1 - y0) or 1) * (rows - 1))
        c = np.rint((columns_at - x0) / ((x1 - x0) or 1) * (cols - 1))
        ok = np.isfinite(r) & np.isfinite(c) & (r >= 0) & (r < rows) & (c >= 0) & (c < cols)
        grid[(r[ok] * cols + c[ok]).astype(np.int64)] = values[ok]
    else:
        k = min(len(values), rows * cols)
        grid[:k] = values[:k]
    return grid.reshape(rows, cols)


def grid_edges(choice: PlotChoice) -> tuple[float, float, float, float] | None:
    """The outer edges (left, right, bottom, top) of a grid's cells in motor units, so each
    cell is centred on its position; None without extents."""
    if choice.extents is None or choice.shape is None:
        return None
    (y0, y1), (x0, x1) = choice.extents
    rows, cols = choice.shape
    half_x = (x1 - x0) / (cols - 1) / 2 if cols > 1 else 0.5
    half_y = (y1 - y0) / (rows - 1) / 2 if rows > 1 else 0.5
    return (x0 - half_x, x1 + half_x, y0 - half_y, y1 + half_y)
