"""One stream of a run as the web view holds it: typed columns, the latest frame, the plot.

Numeric columns are kept in typed arrays (8 bytes a value) while every value
fits, 2-D frames only as the latest one plus a summary per row. An event page
goes in a column at a time.
"""

from __future__ import annotations

from array import array
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ..cellformat import cell_text
from ..plotchoice import PlotChoice, choose
from .frames import SPECTRUM, frame_kind


class Column:
    """One field's values in event order: a typed array while every value fits, else a list."""

    __slots__ = ("kind", "values")

    def __init__(self, kind: str | None, padding: int = 0) -> None:
        self.kind = kind  # "d" float, "q" integer, None anything
        self.values: array | list = array(kind) if kind else []
        for _ in range(padding):
            self.append(None)

    def append(self, value: Any) -> None:
        if self.kind == "d" and isinstance(value, float):
            self.values.append(value)
        elif self.kind == "q" and isinstance(value, int) and not isinstance(value, bool):
            try:
                self.values.append(value)
            except OverflowError:
                self._widen(value)
        elif self.kind is None:
            self.values.append(value)
        else:
            self._widen(value)

    def extend(self, values: Sequence[Any]) -> None:
        """A page's column: copied at once when every value is a float for a float column."""
        if self.kind == "d" and all(isinstance(v, float) for v in values):
            self.values.extend(values)
        else:
            for value in values:
                self.append(_stored(value))

    def _widen(self, value: Any) -> None:
        self.values = self.values.tolist() if isinstance(self.values, array) else self.values
        self.kind = None
        self.values.append(value)

    def numbers(self) -> np.ndarray:
        """The values as floats (NaN where a value is not a number)."""
        if isinstance(self.values, array):
            return np.frombuffer(self.values, dtype=np.float64 if self.kind == "d" else np.int64)
        return np.array(
            [float(v) if isinstance(v, int | float) else np.nan for v in self.values], dtype=float
        )

    def __len__(self) -> int:
        return len(self.values)


def _column_kind(data_key: Mapping[str, Any]) -> str | None:
    if data_key.get("shape") or data_key.get("external"):
        return None
    return {"number": "d", "integer": "q"}.get(data_key.get("dtype", ""))


def _stored(value: Any) -> Any:
    """What a row keeps of a value: scalars as they are, arrays as their summary text."""
    if isinstance(value, np.ndarray | list | tuple | dict):
        return cell_text(value)[0]
    if isinstance(value, np.generic):
        return value.item()
    return value


class LiveStream:
    """One stream of a run as the view holds it: columns, the latest frame, the plot choice."""

    def __init__(self, start: Mapping[str, Any], descriptor: Mapping[str, Any]) -> None:
        self.name: str = descriptor.get("name", "primary")
        self.descriptors: list[Mapping[str, Any]] = []
        self.data_keys: dict[str, Mapping[str, Any]] = {}
        self.seq_num = array("q")
        self.time = array("d")
        self.columns: dict[str, Column] = {}
        self.frames: dict[str, np.ndarray] = {}  # latest 2-D frame per field
        self.spectra: dict[str, np.ndarray] = {}  # latest 1-D array per field
        self.spectrum_keys: set[str] = set()
        self.plot: PlotChoice = choose(start, descriptor)
        self.add_descriptor(start, descriptor)

    def add_descriptor(self, start: Mapping[str, Any], descriptor: Mapping[str, Any]) -> None:
        self.descriptors.append(descriptor)
        for key, data_key in descriptor.get("data_keys", {}).items():
            if key not in self.columns:
                self.data_keys[key] = data_key
                self.columns[key] = Column(_column_kind(data_key), padding=len(self.seq_num))
                if (
                    not data_key.get("external")
                    and frame_kind(data_key.get("shape") or []) == SPECTRUM
                ):
                    self.spectrum_keys.add(key)
        merged = {**descriptor, "data_keys": self.data_keys}
        self.plot = choose(start, merged)

    @property
    def count(self) -> int:
        return len(self.seq_num)

    def add(self, seq_num: int, t: float, data: Mapping[str, Any]) -> None:
        """One event."""
        self.seq_num.append(int(seq_num))
        self.time.append(float(t))
        image_field = self.plot.image_field
        for key, column in self.columns.items():
            value = data.get(key)
            if key == image_field:
                self._keep_frame(key, value)
            elif key in self.spectrum_keys:
                self._keep_spectrum(key, value)
            column.append(_stored(value))

    def add_page(self, page: Mapping[str, Any]) -> None:
        """An event page, a column at a time; refused whole when its columns differ in length."""
        n = len(page["seq_num"])
        data = page["data"]
        values = {key: data.get(key) for key in self.columns}
        if len(page["time"]) != n or any(v is not None and len(v) != n for v in values.values()):
            raise ValueError(f"event page of descriptor {page['descriptor']}: columns of "
                             f"unequal length")  # fmt: skip
        self.seq_num.extend(int(s) for s in page["seq_num"])
        self.time.extend(float(t) for t in page["time"])
        for key, column in self.columns.items():
            column_values = values[key]
            if column_values is None:
                column_values = [None] * n
            elif key == self.plot.image_field:
                for value in column_values:
                    self._keep_frame(key, value)
            elif key in self.spectrum_keys and n:
                self._keep_spectrum(key, column_values[-1])
            column.extend(column_values)

    def _keep_frame(self, key: str, value: Any) -> None:
        if isinstance(value, np.ndarray | list):
            frame = np.asarray(value)
            if frame.ndim == 2:
                self.frames[key] = frame

    def _keep_spectrum(self, key: str, value: Any) -> None:
        if isinstance(value, np.ndarray | list):
            spectrum = np.asarray(value)
            if spectrum.ndim == 1 and spectrum.dtype.kind in "biuf":
                self.spectra[key] = spectrum

    def rows(self, offset: int, limit: int) -> list[dict[str, Any]]:
        end = min(self.count, offset + limit)
        keys = list(self.columns)
        out = []
        for i in range(offset, end):
            values = {k: self.columns[k].values[i] for k in keys}
            out.append(
                {
                    "seq_num": self.seq_num[i],
                    "time": self.time[i],
                    "data": {k: _json_value(v) for k, v in values.items()},
                    "cells": {k: cell_text(v)[0] for k, v in values.items()},
                }
            )
        return out


def _json_value(value: Any) -> Any:
    if isinstance(value, float) and not np.isfinite(value):
        return None
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)
