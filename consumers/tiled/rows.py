"""A stream's waiting rows into Tiled: one append to its table, array nodes for big arrays.

The table is ``internal``, with the types pyarrow infers from the first batch
(as TiledWriter's); internal arrays the stream writes as array nodes are taken
out of the rows and extended batch by batch at the table's row count. An append
retried after a lost answer is not applied twice.
"""

from __future__ import annotations

from typing import Any

import httpx
import numpy as np
import pyarrow as pa
from bluesky_tiled_plugins.utils import truncate_json_overflow

from . import layout
from .run import RunTarget
from .stream import Stream

#: What rows that do not fit their descriptor raise when made into a table.
ROW_ERRORS = (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError)


def write_rows(run: RunTarget, stream: Stream) -> None:
    """The stream's waiting rows, written; what Tiled or the descriptor refuses, recorded."""
    if not stream.pending:
        return
    rows, stream.rows = stream.rows, []
    seqs = f"seq_num {rows[0][layout.SEQ_NUM]}-{rows[-1][layout.SEQ_NUM]}"
    try:
        arrays = {k: _stack(run, stream, k, [row.pop(k) for row in rows if k in row])
                  for k in stream.array_keys}  # fmt: skip
        table = _table(stream, rows)
    except ROW_ERRORS as exc:
        run.record_error(f"stream {stream.name}: rows {seqs} do not fit the descriptor's "
                         f"data keys: {exc}")  # fmt: skip
        return
    try:
        _write(run, stream, table, arrays)
    except httpx.HTTPStatusError as exc:
        run.record_error(f"stream {stream.name}: rows {seqs} refused by Tiled: {exc}")


def _table(stream: Stream, rows: list[dict[str, Any]]) -> pa.Table:
    """The rows as TiledWriter makes them (types inferred); later batches in the first's."""
    table = pa.Table.from_pylist(rows)
    if stream.schema is None:
        schema = table.schema
        for i, f in enumerate(schema):  # columns of nothing but None: strings
            if pa.types.is_null(f.type):
                schema = schema.set(i, f.with_type(pa.string()))
            elif pa.types.is_list(f.type) and pa.types.is_null(f.type.value_type):
                schema = schema.set(i, f.with_type(pa.list_(pa.string())))
        stream.schema = schema
    if table.schema != stream.schema:
        table = table.select(stream.schema.names).cast(stream.schema)
    return table


def _stack(run: RunTarget, stream: Stream, key: str, values: list) -> np.ndarray | None:
    if not values:
        return None
    node = stream.arrays.get(key)
    dtype = node.dtype if node is not None else run.data_keys[key].get("dtype_numpy")
    if dtype is not None and np.dtype(dtype).kind == "O":
        dtype = None
    array = np.array(values, dtype=dtype)
    shape = tuple(run.data_keys[key].get("shape", ()))
    if array.shape[1:] != shape:
        raise ValueError(f"{key}: values of shape {array.shape[1:]}, the descriptor says "
                         f"{list(shape)}")  # fmt: skip
    return array


def _write(run: RunTarget, stream: Stream, table: pa.Table,
           arrays: dict[str, np.ndarray | None]) -> None:  # fmt: skip
    first = table[layout.SEQ_NUM][0].as_py()
    for key, array in arrays.items():
        if array is not None:
            _write_array(run, stream, key, array)
    if stream.table is None:
        metadata = {k: v for k, v in run.data_keys.items() if k in table.column_names}
        stream.table = run.call(
            lambda: stream.node.create_appendable_table(
                schema=stream.schema, key=layout.TABLE, access_tags=run.access_tags,
                metadata=truncate_json_overflow(metadata)),
            f"create table {stream.name}",
        )  # fmt: skip
    run.call(lambda: _append_once(stream, table, first), f"append to {stream.name}")
    stream.rows_written += table.num_rows


def _write_array(run: RunTarget, stream: Stream, key: str, array: np.ndarray) -> None:
    """Internal arrays as array nodes beside the table, extended batch by batch."""
    node = stream.arrays.get(key)
    if node is None:
        metadata = {**truncate_json_overflow(run.data_keys[key]),
                    "dtype_numpy": str(array.dtype)}  # fmt: skip
        stream.arrays[key] = run.call(
            lambda: stream.node.write_array(array, key=key, metadata=metadata,
                                            dims=stream.dims_of(array.shape),
                                            access_tags=run.access_tags),
            f"write array {key}",
        )  # fmt: skip
        run.notes.append(f"Internal array data for '{key}' in stream '{stream.name}' "
                         "written as zarr.")  # fmt: skip
        return
    # At the table's row count: a retried patch rewrites the same rows, never adds.
    offset = (stream.rows_written,) + (0,) * (array.ndim - 1)
    run.call(lambda: node.patch(array, offset=offset, extend=True), f"extend array {key}")


def _append_once(stream: Stream, table: pa.Table, first_seq: int) -> None:
    """Append unless an earlier try whose answer was lost already did."""
    if stream.rows_written and _already_written(stream, first_seq):
        return
    stream.table.append_partition(0, table)


def _already_written(stream: Stream, first_seq: int) -> bool:
    try:
        seqs = stream.table.read([layout.SEQ_NUM])[layout.SEQ_NUM]
    except Exception:
        return False
    return len(seqs) > stream.rows_written or (len(seqs) and first_seq in set(seqs))
