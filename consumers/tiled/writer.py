"""Per-run Tiled writers in the layout of bluesky-tiled-plugins' TiledWriter.

Layout: a ``BlueskyRun`` 3.0 container keyed by the start uid with metadata
``{"start": ..., "stop": ...}``; per stream a ``BlueskyEventStream`` 3.0 +
``composite`` container (the descriptor as metadata) holding an appendable
table ``internal`` with ``seq_num``, ``time``, the data keys and ``ts_<key>``.

Speed: each append is one HTTP request whatever its size, so rows are batched
column-wise and a batch is written when it is full or when its oldest row is
``max_latency`` old (checked on the runtime's ``tick``): live runs show up
within about a second, replays go in large batches. Event pages extend the
columns as they are, never unpacked into events.

Exactly once: the runtime replays an unfinished run from its start, so at a
start document a run already complete in Tiled is skipped, and a run left
half-written (no stop) is deleted and written again from the start.

External data (detector files) goes through `external.ExternalData` and lands
as array nodes beside the table, flushed with the stream's rows.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx
import numpy as np
import pyarrow as pa
from tiled.client import from_uri
from tiled.client.container import Container
from tiled.client.utils import handle_error
from tiled.structures.core import Spec
from tiled.utils import safe_json_dump

from ..protocols import Factory, per_run
from .external import ASSET_DOCUMENTS, EXTERNAL_ERRORS, ExternalArray, ExternalData
from .retry import with_retry

log = logging.getLogger(__name__)

RUN_SPEC = Spec("BlueskyRun", version="3.0")
STREAM_SPECS = [Spec("BlueskyEventStream", version="3.0"), Spec("composite")]
CATALOG_SPEC = Spec("CatalogOfBlueskyRuns", version="3.0")


def _arrow_type(key: Mapping[str, Any]) -> pa.DataType:
    """Columns typed by the descriptor's kind, numbers always as float64.

    A descriptor may call a motor ``integer`` that reads floats once it moves
    (ophyd.sim, declare_stream): float64 holds both.
    """
    return {"boolean": pa.bool_(), "string": pa.string()}.get(key.get("dtype"), pa.float64())


def _cell(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


@dataclass
class Stream:
    name: str
    node: Container
    keys: list[str]  # table columns
    array_keys: dict[str, list[int]]  # data keys with a shape: array nodes, by shape
    schema: pa.Schema
    columns: dict[str, list] = field(default_factory=dict)
    oldest: float = 0.0
    table: Any = None
    arrays: dict[str, Any] = field(default_factory=dict)
    rows_written: int = 0

    def __post_init__(self) -> None:
        self.columns = {f.name: [] for f in self.schema}
        self.columns.update({k: [] for k in self.array_keys})

    @property
    def pending(self) -> int:
        return len(self.columns["seq_num"])


class RunWriter:
    """A RunRouter callback writing one run; ``tick`` and ``abandon`` are the runtime's hooks."""

    def __init__(self, catalog: Container, batch_rows: int, max_latency: float,
                 stopping: threading.Event) -> None:  # fmt: skip
        self.catalog = catalog
        self.batch_rows = batch_rows
        self.max_latency = max_latency
        self.stopping = stopping
        self.uid = "?"
        self.node: Container | None = None
        self.skip = False
        self.streams: dict[str, Stream] = {}  # by descriptor uid
        self.by_name: dict[str, Stream] = {}
        self.errors: list[str] = []
        self.external = ExternalData(self._external_arrived)

    def _retry(self, call: Callable[[], Any], what: str) -> Any:
        return with_retry(call, what, self.uid, self.stopping)

    def __call__(self, name: str, doc: Mapping[str, Any]) -> None:
        if self.skip:
            return
        if name in ASSET_DOCUMENTS:
            self._external(self.external.asset, name, doc)
            return
        handler = getattr(self, f"_{name}", None)
        if handler is not None:
            handler(doc)

    # -- documents --------------------------------------------------------------

    def _start(self, doc: Mapping[str, Any]) -> None:
        """Create the run; only when it exists already (a replay) look at what is there."""
        self.uid = uid = doc["uid"]
        node = self._create_run(doc)
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
            node = self._create_run(doc)
            if node is None:
                raise RuntimeError(f"run {uid} is in Tiled again right after its deletion")
        self.node = node

    def _create_run(self, doc: Mapping[str, Any]) -> Container | None:
        """The new run container, or None when the key is taken (HTTP 409)."""
        try:
            return self._retry(
                lambda: self.catalog.create_container(key=doc["uid"], specs=[RUN_SPEC],
                                                      metadata={"start": dict(doc)}),
                "create run",
            )  # fmt: skip
        except httpx.HTTPStatusError as exc:
            if exc.response.status_code == httpx.codes.CONFLICT:
                return None
            raise

    def _descriptor(self, doc: Mapping[str, Any]) -> None:
        assert self.node is not None
        name = doc.get("name", "primary")
        self._external(self.external.descriptor, doc)
        if name in self.by_name:  # a configuration update of a known stream
            self.streams[doc["uid"]] = self.by_name[name]
            return
        data_keys = doc.get("data_keys", {})
        internal = {k: v for k, v in data_keys.items() if v.get("external") is None}
        arrays = {k: list(v["shape"]) for k, v in internal.items() if v.get("shape")}
        keys = [k for k in internal if k not in arrays]
        fields = [pa.field("seq_num", pa.int64()), pa.field("time", pa.float64())]
        fields += [pa.field(k, _arrow_type(data_keys[k])) for k in keys]
        fields += [pa.field(f"ts_{k}", pa.float64()) for k in keys]
        metadata = {k: v for k, v in doc.items() if k not in ("name", "object_keys", "run_start")}
        node = self._retry(
            lambda: self.node.create_container(key=name, metadata=metadata, specs=STREAM_SPECS),
            f"create stream {name}",
        )
        # The plain container: our keys are unique by construction, so skip the
        # composite client's checks (three look-ups per write).
        node = getattr(node, "base", node)
        stream = Stream(name, node, keys, arrays, pa.schema(fields))
        self.streams[doc["uid"]] = self.by_name[name] = stream

    def _receiving(self, doc: Mapping[str, Any], external: Callable[..., None]) -> Stream:
        """The stream an event (page) adds rows to, its clock started, its datum ids passed on."""
        stream = self.streams[doc["descriptor"]]
        if not stream.pending:
            self._mark(stream)
        if self.external.external_keys.get(doc["descriptor"]):
            self._external(external, doc)
        return stream

    def _event(self, doc: Mapping[str, Any]) -> None:
        stream = self._receiving(doc, self.external.event)
        columns, data, stamps = stream.columns, doc["data"], doc["timestamps"]
        columns["seq_num"].append(doc["seq_num"])
        columns["time"].append(doc["time"])
        for k in stream.keys:
            columns[k].append(_cell(data.get(k)))
            columns[f"ts_{k}"].append(stamps.get(k))
        for k in stream.array_keys:
            columns[k].append(data.get(k))
        if stream.pending >= self.batch_rows:
            self._flush(stream)

    def _event_page(self, page: Mapping[str, Any]) -> None:
        stream = self._receiving(page, self.external.event_page)
        rows = len(page["seq_num"])
        columns, data, stamps = stream.columns, page["data"], page["timestamps"]
        columns["seq_num"].extend(page["seq_num"])
        columns["time"].extend(page["time"])
        for k in stream.keys:
            values = data.get(k, [None] * rows)
            columns[k].extend(_cell(v) for v in values)
            columns[f"ts_{k}"].extend(stamps.get(k, [None] * rows))
        for k in stream.array_keys:
            columns[k].extend(data.get(k, [None] * rows))
        if stream.pending >= self.batch_rows:
            self._flush(stream)

    def _stop(self, doc: Mapping[str, Any]) -> None:
        self._external(self.external.stop, doc)
        self._flush_all()
        update = {"stop": dict(doc)}
        if self.errors:
            update["runstream"] = {"errors": self.errors}
        assert self.node is not None
        self._retry(lambda: self.node.update_metadata(metadata=update), "write stop")

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
        columns = stream.columns
        stream.columns = {name: [] for name in columns}
        seqs = columns["seq_num"]
        try:
            arrays = {
                k: self._stack(columns.pop(k), shape) for k, shape in stream.array_keys.items()
            }
            table = pa.table(columns, schema=stream.schema)
        except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError) as exc:
            self._record_error(f"stream {stream.name}: rows seq_num {seqs[0]}-{seqs[-1]} do not "
                               f"fit the descriptor's data keys: {exc}")  # fmt: skip
            return
        try:
            self._write(stream, table, arrays)
        except httpx.HTTPStatusError as exc:
            self._record_error(f"stream {stream.name}: rows seq_num {seqs[0]}-{seqs[-1]} "
                               f"refused by Tiled: {exc}")  # fmt: skip

    @staticmethod
    def _stack(values: list, shape: list[int]) -> np.ndarray:
        array = np.asarray(values, dtype=float)
        if array.shape[1:] != tuple(shape):
            raise ValueError(f"values of shape {array.shape[1:]}, the descriptor says {shape}")
        return array

    def _write(self, stream: Stream, table: pa.Table, arrays: dict[str, np.ndarray]) -> None:
        if stream.table is None:
            stream.table = self._retry(
                lambda: stream.node.create_appendable_table(schema=stream.schema, key="internal"),
                f"create table {stream.name}",
            )
        first = table["seq_num"][0].as_py()
        for key, array in arrays.items():
            self._write_array(stream, key, array)
        self._retry(lambda: self._append_once(stream, table, first), f"append to {stream.name}")
        stream.rows_written += table.num_rows

    def _write_array(self, stream: Stream, key: str, array: np.ndarray) -> None:
        """Array data keys as array nodes beside the table, extended batch by batch."""
        node = stream.arrays.get(key)
        if node is None:
            stream.arrays[key] = self._retry(
                lambda: stream.node.write_array(array, key=key), f"write array {key}"
            )
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
                                        metadata=array.consolidator.metadata, specs=[]),
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

    def _external(self, handler: Callable[..., None], *args: Any) -> None:
        """External documents the normalizer or a consolidator cannot place are the run's errors."""
        try:
            handler(*args)
        except EXTERNAL_ERRORS as exc:
            self._record_error(f"external data: {type(exc).__name__}: {exc}")

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
                  stopping: threading.Event | None = None) -> Factory:  # fmt: skip
    """A RunRouter factory giving every run its own `RunWriter`."""
    stop = stopping or threading.Event()
    return per_run(lambda: RunWriter(catalog, batch_rows, max_latency, stop))
