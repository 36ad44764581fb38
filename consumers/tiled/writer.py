"""Per-run Tiled writers that write the catalog bluesky-tiled-plugins' TiledWriter writes.

Every document first goes through the reference's own ``RunNormalizer`` (the one
TiledWriter puts in front of its writer; see `Normalizer` for the one check it
skips), so the metadata is the reference's:
``dtype_numpy`` on every data key, reserved keys renamed, resources and datums
turned into stream resources and datums, its notes in the run's ``notes``.
Layout, as TiledWriter's: a ``BlueskyRun`` 3.0 container keyed by the start uid
with metadata ``{"start": ..., "stop": ...}``; per stream a
``BlueskyEventStream`` 3.0 + ``composite`` container (the descriptor as metadata,
later descriptors in ``_config_updates``) holding an appendable table
``internal`` (``seq_num``, ``time``, the data keys, ``ts_<key>``; types as
pyarrow infers them from the rows) and, beside it, array nodes for internal
arrays of more than ``max_array_size`` elements (TiledWriter's ``MAX_ARRAY_SIZE``,
16, by default; smaller ones are list columns of the table) and for external data.

Speed: each append is one HTTP request whatever its size, so rows are batched
and a batch is written when it is full or when its oldest row is
``max_latency`` old (checked on the runtime's ``tick``): live runs show up
within about a second, replays go in large batches.

Exactly once: the runtime replays an unfinished run from its start, so at a
start document a run already complete in Tiled is skipped, and a run left
half-written (no stop) is deleted and written again from the start.
"""

from __future__ import annotations

import copy
import logging
import math
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx
import jsonschema
import numpy as np
import pyarrow as pa
from bluesky_tiled_plugins.utils import truncate_json_overflow
from bluesky_tiled_plugins.writing.tiled_writer import MAX_ARRAY_SIZE, RunNormalizer
from event_model import DocumentNames
from tiled.client import from_uri
from tiled.client.container import Container
from tiled.client.utils import handle_error
from tiled.structures.core import Spec
from tiled.utils import safe_json_dump

from ..protocols import Factory, per_run
from .external import ExternalArray, ExternalData
from .retry import TiledRetry, WriterStoppingError

log = logging.getLogger(__name__)

RUN_SPEC = Spec("BlueskyRun", version="3.0")
STREAM_SPECS = [Spec("BlueskyEventStream", version="3.0"), Spec("composite")]
CATALOG_SPEC = Spec("CatalogOfBlueskyRuns", version="3.0")
#: What the normalizer or a consolidator raises on documents it cannot place.
DOCUMENT_ERRORS = (KeyError, ValueError, TypeError, RuntimeError, NotImplementedError,
                   jsonschema.ValidationError)  # fmt: skip


class Normalizer(RunNormalizer):
    """TiledWriter's normalizer, as it is, but for one check: the events it emits are not
    validated against event-model's schema a second time. The runtime validated every
    document as it arrived, and an event comes out as a subset of the one that went in;
    that check was 80% of the writer's time per event."""

    def emit(self, name: Any, doc: dict[str, Any]) -> None:
        if name is DocumentNames.event or name == "event":
            self.dispatcher.process(name, doc)
        else:
            super().emit(name, doc)


def _as_array_node(key: Mapping[str, Any], max_array_size: int) -> bool:
    """TiledWriter's rule: internal arrays too big for a table cell, or of strings."""
    if "external" in key or key.get("dtype") != "array" or None in key.get("shape", ()):
        return False
    if 0 <= max_array_size < math.prod(key.get("shape", ())):
        return True
    dtype = key.get("dtype_numpy")
    return bool(dtype) and np.dtype(dtype).kind in "USO"


@dataclass
class Stream:
    name: str
    node: Container
    array_keys: list[str]  # internal data keys written as array nodes beside the table
    rows: list[dict[str, Any]] = field(default_factory=list)
    oldest: float = 0.0
    table: Any = None
    schema: pa.Schema | None = None
    arrays: dict[str, Any] = field(default_factory=dict)
    dims: dict[int, str] = field(default_factory=dict)  # array dimension names by size
    config_updates: list[dict[str, Any]] = field(default_factory=list)
    rows_written: int = 0

    @property
    def pending(self) -> int:
        return len(self.rows)

    def dims_of(self, shape: tuple[int, ...]) -> tuple[str, ...]:
        """TiledWriter's names: ``time``, then one name per distinct size in the stream."""
        for size in shape[1:]:
            self.dims.setdefault(size, f"dim_int_{len(self.dims) + 1}")
        return ("time", *(self.dims[size] for size in shape[1:]))


class RunWriter:
    """A RunRouter callback writing one run; ``tick`` and ``abandon`` are the runtime's hooks."""

    def __init__(self, catalog: Container, batch_rows: int, max_latency: float,
                 retry: TiledRetry, max_array_size: int = MAX_ARRAY_SIZE) -> None:  # fmt: skip
        self.catalog = catalog
        self.max_array_size = max_array_size
        self.batch_rows = batch_rows
        self.max_latency = max_latency
        self.retry = retry
        self.uid = "?"
        self.node: Container | None = None
        self.skip = False
        self.access_tags: list[str] | None = None
        self.streams: dict[str, Stream] = {}  # by descriptor uid
        self.by_name: dict[str, Stream] = {}
        self.data_keys: dict[str, Any] = {}
        self.notes: list[str] = []  # what TiledWriter's writer notes, in the run's "notes"
        self.errors: list[str] = []
        self.external = ExternalData(self._external_arrived)
        self.normalizer = Normalizer()
        self.normalizer.subscribe(self._normalized)

    def _retry(self, call: Callable[[], Any], what: str) -> Any:
        return self.retry(call, what, self.uid)

    def __call__(self, name: str, doc: Mapping[str, Any]) -> None:
        if self.skip:
            return
        try:
            self.normalizer(name, doc)
        except WriterStoppingError:
            raise
        except DOCUMENT_ERRORS as exc:
            self._record_error(f"{name} {doc.get('uid', '')}: {type(exc).__name__}: {exc}")
            if name == "stop" and self.node is not None and not self.skip:
                self._stop(copy.deepcopy(dict(doc)))  # as emitted: the run still ends

    def _normalized(self, name: str, doc: dict[str, Any]) -> None:
        """The normalizer's documents, copies of the emitted ones: ours to change."""
        if self.skip:
            return
        getattr(self, f"_{name}")(doc)

    # -- documents, normalized --------------------------------------------------

    def _start(self, doc: dict[str, Any]) -> None:
        """Create the run; only when it exists already (a replay) look at what is there."""
        self.uid = uid = doc["uid"]
        self.access_tags = doc.pop("tiled_access_tags", None)
        extra = doc.pop("tiled_specs", None) or []
        specs = [*(Spec(s) if isinstance(s, str) else Spec(**s) for s in extra), RUN_SPEC]
        metadata = {"start": truncate_json_overflow(doc)}
        node = self._create_run(uid, metadata, specs)
        if node is None:
            existing = self._retry(lambda: self.catalog[uid], "read")
            if existing.metadata.get("stop") is not None:
                log.info("run %s is complete in Tiled already: skipping its replay", uid)
                self.skip = True
                return
            log.warning("run %s is half-written in Tiled: rewriting it from its start", uid)
            self._retry(
                lambda: self.catalog.delete_contents(uid, recursive=True, external_only=False),
                "delete",
            )
            node = self._create_run(uid, metadata, specs)
            if node is None:
                raise RuntimeError(f"run {uid} is in Tiled again right after its deletion")
        self.node = node

    def _create_run(self, uid: str, metadata: dict, specs: list[Spec]) -> Container | None:
        """The new run container, or None when the key is taken (HTTP 409)."""
        try:
            return self._retry(
                lambda: self.catalog.create_container(key=uid, metadata=metadata, specs=specs,
                                                      access_tags=self.access_tags),
                "create run",
            )  # fmt: skip
        except httpx.HTTPStatusError as exc:
            if exc.response.status_code == httpx.codes.CONFLICT:
                return None
            raise

    def _descriptor(self, doc: dict[str, Any]) -> None:
        assert self.node is not None
        name = doc["name"]
        self.data_keys.update(doc.get("data_keys", {}))
        self.external.descriptor(doc)
        stream = self.by_name.get(name)
        if stream is not None:  # a configuration update of a known stream
            self._config_update(stream, doc)
            self.streams[doc["uid"]] = stream
            return
        metadata = {k: v for k, v in doc.items() if k not in ("name", "object_keys", "run_start")}
        node = self._retry(
            lambda: self.node.create_container(key=name, specs=STREAM_SPECS,
                                               metadata=truncate_json_overflow(metadata),
                                               access_tags=self.access_tags),
            f"create stream {name}",
        )  # fmt: skip
        # The plain container: our keys are unique by construction, so skip the
        # composite client's checks (three look-ups per write).
        node = getattr(node, "base", node)
        keys = doc.get("data_keys", {})
        arrays = [k for k, v in keys.items() if _as_array_node(v, self.max_array_size)]
        stream = Stream(name, node, arrays)
        self.streams[doc["uid"]] = self.by_name[name] = stream

    def _config_update(self, stream: Stream, doc: dict[str, Any]) -> None:
        update: dict[str, Any] = {"uid": doc["uid"], "time": doc["time"]}
        if doc.get("configuration"):
            update["configuration"] = doc["configuration"]
        stream.config_updates.append(update)
        metadata = {"_config_updates": truncate_json_overflow(stream.config_updates)}
        self._retry(lambda: stream.node.update_metadata(metadata=metadata, drop_revision=True),
                    f"update stream {stream.name}")  # fmt: skip

    def _event(self, doc: dict[str, Any]) -> None:
        """An event with its internal data only (the normalizer passes datums on apart)."""
        stream = self.streams[doc["descriptor"]]
        self._mark(stream)
        row = {"seq_num": doc["seq_num"], "time": doc["time"], **doc["data"]}
        row.update({f"ts_{k}": v for k, v in doc["timestamps"].items()})
        stream.rows.append(row)
        if stream.pending >= self.batch_rows:
            self._flush(stream)

    def _stream_resource(self, doc: dict[str, Any]) -> None:
        self.external.stream_resource(doc)

    def _stream_datum(self, doc: dict[str, Any]) -> None:
        try:
            self.external.stream_datum(doc)
        except DOCUMENT_ERRORS as exc:
            self._record_error(f"external data: {type(exc).__name__}: {exc}")

    def _stop(self, doc: dict[str, Any]) -> None:
        notes = doc.pop("_run_normalizer_notes", [])
        self._flush_all()
        notes = list(dict.fromkeys(notes + self.notes))
        update: dict[str, Any] = {"stop": doc, **({"notes": notes} if notes else {})}
        if self.errors:
            update["runstream"] = {"errors": self.errors}
        assert self.node is not None
        self._retry(lambda: self.node.update_metadata(metadata=update, drop_revision=True),
                    "write stop")  # fmt: skip

    # -- runtime hooks ------------------------------------------------------------

    def tick(self) -> None:
        now = time.monotonic()
        for stream in self.by_name.values():
            waiting = stream.pending or self.external.pending(stream.name)
            if waiting and now - stream.oldest >= self.max_latency:
                self._flush(stream)

    def abandon(self, reason: str) -> None:
        """Leave what arrived readable; without a stop the run stays findable as incomplete."""
        if not self.skip and self.node is not None:
            self._flush_all()

    # -- writing ------------------------------------------------------------------

    def _flush_all(self) -> None:
        for stream in self.by_name.values():
            self._flush(stream)

    def _flush(self, stream: Stream) -> None:
        self._flush_rows(stream)
        for array in self.external.of_stream(stream.name):
            try:
                self._write_external(stream, array)
            except httpx.HTTPStatusError as exc:
                self._record_error(f"stream {stream.name}: external data {array.data_key} "
                                   f"refused by Tiled: {exc}")  # fmt: skip

    def _flush_rows(self, stream: Stream) -> None:
        if not stream.pending:
            return
        rows, stream.rows = stream.rows, []
        seqs = f"seq_num {rows[0]['seq_num']}-{rows[-1]['seq_num']}"
        try:
            arrays = {k: self._stack(stream, k, [row.pop(k) for row in rows if k in row])
                      for k in stream.array_keys}  # fmt: skip
            table = self._table(stream, rows)
        except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError) as exc:
            self._record_error(f"stream {stream.name}: rows {seqs} do not fit the descriptor's "
                               f"data keys: {exc}")  # fmt: skip
            return
        try:
            self._write(stream, table, arrays)
        except httpx.HTTPStatusError as exc:
            self._record_error(f"stream {stream.name}: rows {seqs} refused by Tiled: {exc}")

    def _table(self, stream: Stream, rows: list[dict[str, Any]]) -> pa.Table:
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

    def _stack(self, stream: Stream, key: str, values: list) -> np.ndarray | None:
        if not values:
            return None
        node = stream.arrays.get(key)
        dtype = node.dtype if node is not None else self.data_keys[key].get("dtype_numpy")
        if dtype is not None and np.dtype(dtype).kind == "O":
            dtype = None
        array = np.array(values, dtype=dtype)
        shape = tuple(self.data_keys[key].get("shape", ()))
        if array.shape[1:] != shape:
            raise ValueError(f"{key}: values of shape {array.shape[1:]}, the descriptor says "
                             f"{list(shape)}")  # fmt: skip
        return array

    def _write(self, stream: Stream, table: pa.Table, arrays: dict[str, np.ndarray | None]) -> None:
        first = table["seq_num"][0].as_py()
        for key, array in arrays.items():
            if array is not None:
                self._write_array(stream, key, array)
        if stream.table is None:
            metadata = {k: v for k, v in self.data_keys.items() if k in table.column_names}
            stream.table = self._retry(
                lambda: stream.node.create_appendable_table(
                    schema=stream.schema, key="internal", access_tags=self.access_tags,
                    metadata=truncate_json_overflow(metadata)),
                f"create table {stream.name}",
            )  # fmt: skip
        self._retry(lambda: self._append_once(stream, table, first), f"append to {stream.name}")
        stream.rows_written += table.num_rows

    def _write_array(self, stream: Stream, key: str, array: np.ndarray) -> None:
        """Internal arrays as array nodes beside the table, extended batch by batch."""
        node = stream.arrays.get(key)
        if node is None:
            metadata = {**truncate_json_overflow(self.data_keys[key]),
                        "dtype_numpy": str(array.dtype)}  # fmt: skip
            stream.arrays[key] = self._retry(
                lambda: stream.node.write_array(array, key=key, metadata=metadata,
                                                dims=stream.dims_of(array.shape),
                                                access_tags=self.access_tags),
                f"write array {key}",
            )  # fmt: skip
            self.notes.append(f"Internal array data for '{key}' in stream '{stream.name}' "
                              "written as zarr.")  # fmt: skip
            return
        # At the table's row count: a retried patch rewrites the same rows, never adds.
        offset = (stream.rows_written,) + (0,) * (array.ndim - 1)
        self._retry(lambda: node.patch(array, offset=offset, extend=True), f"extend array {key}")

    def _write_external(self, stream: Stream, array: ExternalArray) -> None:
        """One request per array and batch: the node with its files, or the files added since."""
        patch = array.take_patch()
        if patch is None:
            return
        source = array.consolidator.get_data_source()
        if array.node is None:
            array.node = self._retry(
                lambda: stream.node.new(source.structure_family, [source], key=array.data_key,
                                        metadata=array.consolidator.metadata, specs=[],
                                        access_tags=self.access_tags),
                f"register external {array.data_key}",
            )  # fmt: skip
            array.data_source_id = self._retry(
                lambda: array.node.data_sources()[0].id, f"read external {array.data_key}"
            )
            return
        source.id = array.data_source_id
        node = array.node
        body = safe_json_dump({"data_source": source})
        params = {"patch_shape": ",".join(map(str, patch.shape)),
                  "patch_offset": ",".join(map(str, patch.offset))}  # fmt: skip
        url = node.uri.replace("/metadata/", "/data_source/", 1)
        self._retry(
            lambda: handle_error(node.context.http_client.put(url, content=body, params=params)),
            f"extend external {array.data_key}",
        )

    def _append_once(self, stream: Stream, table: pa.Table, first_seq: int) -> None:
        """Append unless an earlier try whose answer was lost already did."""
        if stream.rows_written and self._already_written(stream, first_seq):
            return
        stream.table.append_partition(0, table)

    def _already_written(self, stream: Stream, first_seq: int) -> bool:
        try:
            seqs = stream.table.read(["seq_num"])["seq_num"]
        except Exception:
            return False
        return len(seqs) > stream.rows_written or (len(seqs) and first_seq in set(seqs))

    def _mark(self, stream: Stream) -> None:
        """Start the latency clock if nothing of the stream was waiting yet."""
        if not stream.pending and not self.external.pending(stream.name):
            stream.oldest = time.monotonic()

    def _external_arrived(self, stream_name: str) -> None:
        stream = self.by_name.get(stream_name)
        if stream is not None:
            self._mark(stream)

    def _record_error(self, message: str) -> None:
        log.error("run %s: %s", self.uid, message)
        self.errors.append(message)


def connect_catalog(url: str, api_key: str | None, catalog: str) -> Container:
    """The catalog container (made with spec CatalogOfBlueskyRuns 3.0 when missing)."""
    client = from_uri(url, api_key=api_key, structure_clients="numpy")
    if catalog not in client:
        client.create_container(key=catalog, specs=[CATALOG_SPEC])
    node = client[catalog]
    return getattr(node, "base", node)


def tiled_factory(catalog: Container, batch_rows: int = 10_000, max_latency: float = 0.5,
                  stopping: threading.Event | None = None,
                  max_array_size: int = MAX_ARRAY_SIZE) -> Factory:  # fmt: skip
    """A RunRouter factory giving every run its own `RunWriter`, stopped by ``stopping``.

    ``max_array_size``: internal arrays with more elements become array nodes, smaller
    ones list columns of the table (as TiledWriter's); 0 makes every array a node, for
    table storage without list columns (SQLite, as the local Tiled server's).
    """
    retry = TiledRetry(stopping or threading.Event())
    return per_run(lambda: RunWriter(catalog, batch_rows, max_latency, retry, max_array_size))
