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


def motor_fields(start: Mapping[str, Any], data_keys: Mapping[str, Any]) -> list[str]:
    """The x axis: the scan's first dimension if the start says which, else none."""
    return dimension_fields(start, data_keys)[:1]


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
