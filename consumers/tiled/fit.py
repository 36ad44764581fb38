"""Rows that do not fit their descriptor, written as TiledWriter writes them; no value lost.

`rows` builds a batch in one go; only when that fails (an array of another length, a
value of another type) does it come here, one data key at a time:

- internal arrays written as array nodes: rows of unequal length are padded with NaN to
  the longest (or to the node's width), with TiledWriter's warning in the run's notes;
  when the declared dtype does not take the values, numpy's own is used, as TiledWriter
  falls back to it;
- table columns: the type is the stream table's (or, in the first batch, the one most
  values have), values pyarrow converts safely keep their place.

What even that cannot store is set aside alone, that field of that row
(`RunTarget.set_aside`, with the reason, in the run's metadata), and its place in the
array or column is left empty (NaN, or null), so the other fields and rows line up.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np
import pyarrow as pa

from . import layout
from .run import RunTarget

log = logging.getLogger(__name__)


def fit_array(run: RunTarget, stream: Any, key: str, rows: Sequence[dict[str, Any]]) -> np.ndarray:
    """The key's values of ``rows`` as one array of ``len(rows)`` rows, padded as TiledWriter
    pads them; the values that do not fit, set aside (their rows NaN, or zero)."""
    node = stream.arrays.get(key)
    values = [np.asarray(row[key]) if _regular(row[key]) else None for row in rows]
    _pad(run, stream, key, values)
    shape = _row_shape(run, key, values, node)
    dtype = node.dtype if node is not None else run.data_keys[key].get("dtype_numpy")
    if dtype is not None and np.dtype(dtype).kind == "O":
        dtype = None
    fitting = [v for v in values if v is not None and v.shape == shape]
    if node is None and dtype is not None and fitting:
        try:
            np.array(fitting, dtype=dtype)
        except (ValueError, TypeError) as exc:  # TiledWriter's fallback: numpy's own dtype
            log.error("run %s: numpy array for key '%s' in stream '%s': %s; falling back to "
                      "the default dtype", run.uid, key, stream.name, exc)  # fmt: skip
            dtype = np.array(fitting).dtype
    if dtype is None:
        dtype = np.array(fitting).dtype if fitting else np.dtype("float64")
    out = np.full((len(rows), *shape), _empty(np.dtype(dtype)), dtype=dtype)
    for i, (row, value) in enumerate(zip(rows, values, strict=True)):
        reason = _put(out, i, value, shape)
        if reason:
            run.set_aside(stream.name, key, row[layout.SEQ_NUM], reason)
    return out


def _regular(value: Any) -> bool:
    """Whether numpy makes one regular array of the value (not a ragged nesting)."""
    try:
        np.asarray(value)
    except (ValueError, TypeError):
        return False
    return True


def _pad(run: RunTarget, stream: Any, key: str, values: list[np.ndarray | None]) -> None:
    """TiledWriter's padding: 1-D values of unequal length, NaN to the longest."""
    lengths = [len(v) for v in values if v is not None and v.ndim == 1]
    if not lengths or min(lengths) == max(lengths):
        return
    longest = max(lengths)
    for i, v in enumerate(values):
        if v is not None and v.ndim == 1 and len(v) < longest:
            values[i] = np.concatenate([v, np.full(longest - len(v), np.nan)])
    msg = (f"Array lengths for key '{key}' in stream '{stream.name}' are not consistent: "
           f"min={min(lengths)}, max={longest}; the arrays are padded with NaNs.")  # fmt: skip
    log.warning("run %s: %s", run.uid, msg)
    run.notes.append(msg)


def _row_shape(run: RunTarget, key: str, values: list, node: Any) -> tuple[int, ...]:
    """The shape every row must have: the node's, else the one most values of the declared
    number of dimensions have (the descriptor's on a tie), else the descriptor's."""
    if node is not None:
        return tuple(node.shape[1:])
    declared = tuple(run.data_keys[key].get("shape", ()))
    counts = Counter(v.shape for v in values if v is not None and v.ndim == len(declared))
    if not counts:
        return declared
    best = max(counts.values())
    return declared if counts.get(declared) == best else counts.most_common(1)[0][0]


def _put(out: np.ndarray, i: int, value: np.ndarray | None, shape: tuple) -> str | None:
    """``value`` into row ``i`` of ``out`` (1-D ones shorter than the row, NaN-padded);
    why not, when it cannot be."""
    if value is None:
        return "not a regular array (nested sequences of unequal length)"
    if value.ndim == 1 and len(shape) == 1 and len(value) < shape[0]:
        value = np.concatenate([value, np.full(shape[0] - len(value), np.nan)])
    if value.shape != shape:
        return f"shape {list(value.shape)}, the stream's arrays have {list(shape)}"
    try:
        with np.errstate(invalid="raise"):
            converted = value.astype(out.dtype, casting="same_kind" if out.dtype.kind in "fc"
                                     else "unsafe")  # fmt: skip
        if converted.shape != shape or (out.dtype.kind in "iub" and value.dtype.kind in "fc"
                                        and not np.array_equal(converted, value)):  # fmt: skip
            raise ValueError(f"{value.dtype} values do not fit {out.dtype}")
    except (ValueError, TypeError, FloatingPointError) as exc:
        return f"values of dtype {value.dtype} cannot be stored as {out.dtype}: {exc}"
    out[i] = converted
    return None


def _empty(dtype: np.dtype) -> Any:
    """What an empty place holds: NaN where the dtype has it, else its zero."""
    return np.nan if dtype.kind in "fc" else np.zeros((), dtype=dtype)[()]


def fit_table(run: RunTarget, stream: Any, rows: list[dict[str, Any]]) -> pa.Table:
    """The rows as a table column by column, in the stream table's types (or, first, the
    types most values have); what no column takes, set aside and left null."""
    schema = stream.schema
    names = schema.names if schema is not None else list(dict.fromkeys(k for r in rows for k in r))
    columns = {}
    for name in names:
        target = schema.field(name).type if schema is not None else None
        columns[name] = _column(run, stream, name, rows, target)
    for row in rows:
        for name in row.keys() - set(names):
            reason = "not a column of the stream's table (a key its first rows lacked)"
            run.set_aside(stream.name, name, row[layout.SEQ_NUM], reason)
    return pa.table(columns)


def _column(run: RunTarget, stream: Any, name: str, rows: list[dict[str, Any]],
            target: pa.DataType | None) -> pa.Array:  # fmt: skip
    values = [row.get(name) for row in rows]
    try:
        column = pa.array(values)
        return column if target is None else column.cast(target)
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError, TypeError):
        pass
    singles = [_single(v) for v in values]
    if target is None:
        counts = Counter(a.type for a in singles if a is not None and not pa.types.is_null(a.type))
        target = counts.most_common(1)[0][0] if counts else pa.null()
    fitted: list[Any] = []
    for row, value, single in zip(rows, values, singles, strict=True):
        cast = _cast(single, target)
        if cast is None and value is not None:
            run.set_aside(stream.name, name, row[layout.SEQ_NUM],
                          f"{type(value).__name__} value, the column is {target}")  # fmt: skip
        fitted.append(cast)
    return pa.array(fitted, type=target)


def _single(value: Any) -> pa.Array | None:
    try:
        return pa.array([value])
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError):
        return None


def _cast(single: pa.Array | None, target: pa.DataType) -> Any:
    """The value as the column's type (a safe cast), or None."""
    if single is None:
        return None
    try:
        return single.cast(target)[0].as_py()
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
        return None
