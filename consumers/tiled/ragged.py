"""Internal arrays of variable length (a ``None`` in the descriptor's shape) as Tiled ragged
arrays, as TiledWriter writes them: one ragged node per data key beside the stream's
table, ``time`` then ``dim_int_<n>`` or ``dim_rgd_<axis>`` dimensions, extended batch by
batch, a note in the run's metadata.

A value that does not make a ragged array of the declared number of dimensions (a string,
a deeper or shallower nesting) is set aside alone, with its reason; its row holds an empty
placeholder of the declared shape, so the rows stay aligned with the table's.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from bluesky_tiled_plugins.utils import truncate_json_overflow

from . import layout
from .run import RunTarget
from .stream import Stream

#: What tiled's ``make_ragged_array`` raises on values it cannot convert.
RAGGED_ERRORS = (ValueError, TypeError, IndexError)


def ragged_rows(run: RunTarget, stream: Stream, key: str, rows: Sequence[dict[str, Any]]) -> Any:
    """The key's values of ``rows`` as one ragged array; what does not fit, set aside."""
    from tiled.structures.ragged import make_ragged_array  # awkward: loaded when needed

    declared = tuple(run.data_keys[key].get("shape", ()))
    values = [row[key] for row in rows]
    try:
        return _typed(stream, key, make_ragged_array(values, shape=(len(values), *declared)))
    except RAGGED_ERRORS:
        pass
    kept: list[Any] = []
    for row, value in zip(rows, values, strict=True):
        try:
            make_ragged_array([value], shape=(1, *declared))
            kept.append(value)
        except RAGGED_ERRORS as exc:
            run.set_aside(stream.name, key, row[layout.SEQ_NUM],
                          f"not a ragged array of shape {list(declared)}: {exc}")  # fmt: skip
            kept.append(_placeholder(declared))
    return _typed(stream, key, make_ragged_array(kept, shape=(len(kept), *declared)))


def _placeholder(shape: tuple) -> list:
    """An empty value of ``shape``: fixed dimensions kept, variable ones empty."""
    if not shape or shape[0] is None:
        return []
    return [_placeholder(shape[1:]) for _ in range(shape[0])] if len(shape) > 1 else \
        [np.nan] * shape[0]  # fmt: skip


def _typed(stream: Stream, key: str, array: Any) -> Any:
    """Later batches in the node's dtype (Tiled refuses a patch of another)."""
    node = stream.arrays.get(key)
    if node is None or array.dtype == node.dtype:
        return array
    import ragged

    return ragged.astype(array, node.dtype)


def write_ragged(run: RunTarget, stream: Stream, key: str, array: Any) -> None:
    """The ragged node, made at the first batch and extended at its end by the later ones."""
    node = stream.arrays.get(key)
    if node is None:
        shape = (array.shape[0], *run.data_keys[key].get("shape", ()))
        metadata = truncate_json_overflow(run.data_keys.get(key, {}))
        stream.arrays[key] = run.call(
            lambda: stream.node.write_ragged(array, key=key, metadata=metadata,
                                             dims=stream.dims_of(shape),
                                             access_tags=run.access_tags),
            f"write ragged array {key}",
        )  # fmt: skip
        run.notes.append(f"Internal data for '{key}' in stream '{stream.name}' written as "
                         "ragged array.")  # fmt: skip
        return
    run.call(lambda: node.patch(array, offset=node.shape[0], extend=True),
             f"extend ragged array {key}")  # fmt: skip
