"""A stream's waiting rows into Tiled: one append to its table, array nodes for big arrays.

The table is ``internal``, with the types pyarrow infers from the first batch
(as TiledWriter's); internal arrays the stream writes as array nodes are taken
out of the rows and extended batch by batch at the table's row count. An append
retried after a lost answer is not applied twice.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from functools import partial
from typing import Any

import httpx
import numpy as np
import pyarrow as pa
from bluesky_tiled_plugins.utils import split_table, truncate_json_overflow
from bluesky_tiled_plugins.writing.tiled_writer import MAX_TABLE_COLUMNS

from . import layout
from .fit import fit_array, fit_table
from .ragged import ragged_rows, write_ragged
from .run import RunTarget
from .stream import Stream

log = logging.getLogger(__name__)

#: What rows that do not fit their descriptor raise when made into a table or an array.
ROW_ERRORS = (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError, TypeError,
              ValueError, KeyError)  # fmt: skip


def write_rows(run: RunTarget, stream: Stream) -> None:
    """The stream's waiting rows, written; what Tiled refuses, recorded (what does not fit
    the descriptor is made to fit by `fit`, value by value)."""
    if not stream.pending:
        return
    rows, stream.rows = stream.rows, []
    _set_aside_refused(run, stream, rows)
    arrays = {k: _array(run, stream, k, [row for row in rows if k in row])
              for k in stream.array_keys if k not in stream.refused}  # fmt: skip
    for key, array in list(arrays.items()):
        if array is not None and 0 in array.shape:  # zarr cannot chunk it: TiledWriter's way
            _in_table(run, stream, key, array)
            del arrays[key]
    ragged = {k: ragged_rows(run, stream, k, [row for row in rows if k in row])
              for k in stream.ragged_keys
              if k not in stream.refused and any(k in row for row in rows)}  # fmt: skip
    for key in [*arrays, *ragged]:
        for row in rows:
            row.pop(key, None)
    table = _table(run, stream, rows)
    try:
        _write(run, stream, table, arrays, ragged)
    except httpx.HTTPStatusError as exc:
        run.record_error(f"stream {stream.name}: rows {_seqs(rows)} refused by Tiled: {exc}")


def _table(run: RunTarget, stream: Stream, rows: list[dict[str, Any]]) -> pa.Table:
    """The rows as TiledWriter makes them (types inferred); later batches in the first's.
    Rows that do not make one table in one go, column by column (`fit_table`)."""
    try:
        table = pa.Table.from_pylist(rows)
        if stream.schema is not None and table.schema != stream.schema:
            if sorted(table.column_names) != sorted(stream.schema.names):
                raise KeyError("columns other than the stream table's")
            table = table.select(stream.schema.names).cast(stream.schema)
    except ROW_ERRORS:
        table = fit_table(run, stream, rows)
    if stream.schema is None:
        schema = table.schema
        for i, f in enumerate(schema):  # columns of nothing but None: strings
            if pa.types.is_null(f.type):
                schema = schema.set(i, f.with_type(pa.string()))
            elif pa.types.is_list(f.type) and pa.types.is_null(f.type.value_type):
                schema = schema.set(i, f.with_type(pa.list_(pa.string())))
        stream.schema = schema
    if table.schema != stream.schema:
        table = table.cast(stream.schema)
    return table


def _array(run: RunTarget, stream: Stream, key: str, rows: list[dict[str, Any]]
           ) -> np.ndarray | None:  # fmt: skip
    """The key's values as one array; when they do not make one as the descriptor says,
    as TiledWriter makes them (`fit_array`)."""
    if not rows:
        return None
    try:
        return _stack(run, stream, key, [row[key] for row in rows])
    except ROW_ERRORS:
        return fit_array(run, stream, key, rows)


def _stack(run: RunTarget, stream: Stream, key: str, values: list) -> np.ndarray:
    node = stream.arrays.get(key)
    dtype = node.dtype if node is not None else run.data_keys[key].get("dtype_numpy")
    if dtype is not None and np.dtype(dtype).kind == "O":
        dtype = None
    array = np.array(values, dtype=dtype)
    if 0 in array.shape:  # written to the table, not as an array (`_in_table`)
        return array
    declared = run.data_keys[key].get("shape", ())
    shape = tuple(node.shape[1:]) if node is not None else tuple(declared)
    if array.shape[1:] != shape:
        raise ValueError(f"{key}: values of shape {array.shape[1:]}, the descriptor says "
                         f"{list(shape)}")  # fmt: skip
    return array


def _in_table(run: RunTarget, stream: Stream, key: str, array: np.ndarray) -> None:
    """An array with an axis of length 0 stays in the table, as TiledWriter leaves it."""
    msg = (f"Internal array data for key '{key}' in stream '{stream.name}' has a zero-length "
           f"dimension (shape {array.shape}) and can not be stored as a zarr array; it is "
           "stored in the internal table instead.")  # fmt: skip
    log.warning("run %s: %s", run.uid, msg)
    run.notes.append(msg)


def _set_aside_refused(run: RunTarget, stream: Stream, rows: list[dict[str, Any]]) -> None:
    """Keys Tiled refused in an earlier batch, taken out of these rows with the reason."""
    for key, why in stream.refused.items():
        if any(key in row for row in rows):
            for row in rows:
                row.pop(key, None)
            run.record_error(f"stream {stream.name}: {key} of {_seqs(rows)} set aside: {why}")


def _seqs(rows: list[dict[str, Any]] | pa.Table) -> str:
    if isinstance(rows, pa.Table):
        seqs = rows[layout.SEQ_NUM]
        return f"seq_num {seqs[0].as_py()}-{seqs[-1].as_py()}"
    return f"seq_num {rows[0][layout.SEQ_NUM]}-{rows[-1][layout.SEQ_NUM]}"


def _write(run: RunTarget, stream: Stream, table: pa.Table,
           arrays: dict[str, np.ndarray | None], ragged: dict[str, Any]) -> None:  # fmt: skip
    """Each array node on its own: one Tiled refuses costs only its key (from then on, so
    the rows stay aligned), never the batch's other keys or the table."""
    first = table[layout.SEQ_NUM][0].as_py()
    for key, array in arrays.items():
        if array is not None:
            _apart(run, stream, key, table, partial(_write_array, run, stream, key, array))
    for key, values in ragged.items():
        _apart(run, stream, key, table, partial(write_ragged, run, stream, key, values))
    for key, part in table_parts(table):
        _append_part(run, stream, key, part, first)
    stream.rows_written += table.num_rows


def _apart(run: RunTarget, stream: Stream, key: str, table: pa.Table,
           write: Callable[[], None]) -> None:  # fmt: skip
    try:
        write()
    except httpx.HTTPStatusError as exc:
        _refuse(run, stream, key, table, f"Tiled refused it: {exc}")


def _refuse(run: RunTarget, stream: Stream, key: str, table: pa.Table, why: str) -> None:
    stream.refused[key] = why
    run.record_error(f"stream {stream.name}: {key} of {_seqs(table)} set aside: {why}")


def _append_part(run: RunTarget, stream: Stream, key: str, part: pa.Table, first: int) -> None:
    """One table of the stream (made at its first rows) gets the batch's columns it holds."""
    if key not in stream.tables:
        try:
            _create_table(run, stream, key, part)
        except httpx.HTTPStatusError as exc:  # e.g. list columns in SQLite-backed tables
            nested = [f.name for f in part.schema if pa.types.is_nested(f.type)]
            if not nested:
                raise
            for name in nested:
                _refuse(run, stream, name, part, f"Tiled refused the table holding it: {exc}")
            part = part.drop_columns(nested)
            if stream.schema is not None:
                stream.schema = pa.schema([f for f in stream.schema if f.name not in nested])
            _create_table(run, stream, key, part)
    node = stream.tables[key]
    run.call(lambda: _append_once(stream, node, part, first), f"append to {stream.name}")


def _create_table(run: RunTarget, stream: Stream, key: str, part: pa.Table) -> None:
    metadata = {k: v for k, v in run.data_keys.items() if k in part.column_names}
    schema = stream.schema if key == layout.TABLE else part.schema
    stream.tables[key] = run.call(
        lambda: stream.node.create_appendable_table(
            schema=schema, key=key, access_tags=run.access_tags,
            metadata=truncate_json_overflow(metadata)),
        f"create table {key} of {stream.name}",
    )  # fmt: skip


def table_parts(table: pa.Table) -> list[tuple[str, pa.Table]]:
    """TiledWriter's tables: ``internal``, or, over its column limit, ``internal_0``, ...
    of its `split_table` (columns sorted by name, parts of equal width)."""
    if table.num_columns <= MAX_TABLE_COLUMNS:
        return [(layout.TABLE, table)]
    parts = split_table(table, MAX_TABLE_COLUMNS)
    return [(f"{layout.TABLE}_{i}", part) for i, part in enumerate(parts)]


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


def _append_once(stream: Stream, node: Any, table: pa.Table, first_seq: int) -> None:
    """Append unless an earlier try whose answer was lost already did."""
    if stream.rows_written and _already_written(stream, node, table, first_seq):
        return
    node.append_partition(0, table)


def _already_written(stream: Stream, node: Any, table: pa.Table, first_seq: int) -> bool:
    column = layout.SEQ_NUM if layout.SEQ_NUM in table.column_names else table.column_names[0]
    try:
        seqs = node.read([column])[column]
    except Exception:
        return False
    if len(seqs) > stream.rows_written:
        return True
    return column == layout.SEQ_NUM and bool(len(seqs)) and first_seq in set(seqs)
