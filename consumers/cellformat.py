"""Table cells formatted by what a value is, not by what the descriptor guessed.

Bluesky's LiveTable formats by the descriptor's dtype and loses the whole row
(" failed to format row ") when an integer-described motor reads a float. Here
every value gets a cell: numbers by their own type, arrays as a summary,
strings cut to the column.
"""

from __future__ import annotations

import math
import numbers
from typing import Any

import numpy as np

ELLIPSIS = "~"


def _number(value: float | int) -> str:
    if isinstance(value, bool | np.bool_):
        return str(bool(value))
    if isinstance(value, numbers.Integral):
        return str(int(value))
    value = float(value)
    if math.isnan(value) or math.isinf(value):
        return str(value)
    if value == 0 or 1e-3 <= abs(value) < 1e7:
        return f"{value:.3f}"
    return f"{value:.3e}"


def _array(value: np.ndarray) -> str:
    shape = "x".join(map(str, value.shape)) or "0-d"
    if value.size and value.dtype.kind in "biuf":
        return f"<{shape} mean {_number(float(np.mean(value)))}>"
    return f"<{shape} {value.dtype.str.lstrip('<>|=')}>"


def cell_text(value: Any) -> tuple[str, bool]:
    """A value's cell text, whole, and whether it is right-aligned (a number)."""
    if isinstance(value, numbers.Number | np.number | np.bool_):
        shown, right = _number(value), True
    elif isinstance(value, np.ndarray):
        shown, right = _array(value), False
    elif isinstance(value, list | tuple):
        try:
            shown = _array(np.asarray(value))
        except (ValueError, TypeError):
            shown = f"<list of {len(value)}>"
        right = False
    elif value is None:
        shown, right = "", True
    else:
        shown, right = str(value), False
    return shown, right


def cell(value: Any, width: int) -> str:
    """One cell of exactly ``width`` characters (numbers right, text left)."""
    text, right = cell_text(value)
    if len(text) > width:
        text = text[: width - 1] + ELLIPSIS
    return text.rjust(width) if right else text.ljust(width)
