"""Per-run Tiled writers that write the catalog bluesky-tiled-plugins' TiledWriter writes.

Every document first goes through the reference's own ``RunNormalizer`` (the one
TiledWriter puts in front of its writer; see `Normalizer` for the one check it
skips), so the metadata is the reference's:
``dtype_numpy`` on every data key, reserved keys renamed, resources and datums
turned into stream resources and datums, its notes in the run's ``notes``.
What the normalizer emits reaches the `RunWriter` method of its name. The
layout, TiledWriter's, is named in `layout`; internal arrays of more than
``max_array_size`` elements (TiledWriter's ``MAX_ARRAY_SIZE``, 16, by default;
smaller ones are list columns of the table) and external data are array nodes
beside the stream's table.

Speed: each append is one HTTP request whatever its size, so rows are batched
and a batch is written when it is full or when its oldest row is
``max_latency`` old (checked on the runtime's ``tick``): live runs show up
within about a second, replays go in large batches.

Exactly once: see `run` (a replayed run complete in Tiled is skipped, a
half-written one rewritten) and `rows` (a retried append is not applied twice).
"""

from __future__ import annotations

import copy
import threading
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import jsonschema
from bluesky_tiled_plugins.utils import truncate_json_overflow
from bluesky_tiled_plugins.writing.tiled_writer import (
    MAX_ARRAY_SIZE,
    RESERVED_DATA_KEYS,
    RunNormalizer,
)
from event_model import DocumentNames, unpack_event_page
from tiled.client.container import Container

from ..callback import RunCallback
from ..protocols import Factory, per_run
from . import layout
from .external import ExternalArray, ExternalData, write_external
from .retry import TiledRetry, WriterStoppingError
from .rows import write_rows
from .run import RunTarget, run_specs
from .stream import Stream, open_stream

#: A flush's writes in flight at once, once its stream's nodes exist (`RunWriter._flush`).
FLUSH_POOL = ThreadPoolExecutor(max_workers=4, thread_name_prefix="tiled-flush")
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


class Passthrough:
    """Which documents the normalizer would emit unchanged, so they skip it (its deep copy
    and dispatch were most of the writer's time per event).

    From `RunNormalizer`'s source (the pinned range; `tests/unit/test_tiled_passthrough.py`
    checks it): a ``stream_datum`` comes out as it went in (a copy, validated, which the
    runtime did on arrival); an ``event`` comes out as it went in, less an empty
    ``filled``, when every key of its data and timestamps is an internal data key of the
    run's normalized descriptors (never external in any, no reserved name), as then its
    filtering keeps every key and nothing is renamed or turned into stream datums.
    """

    def __init__(self) -> None:
        self._internal: set[str] = set()
        self._external: set[str] = set()
        self.keys: frozenset[str] = frozenset()  # what an unchanged event's keys are among

    def descriptor(self, doc: Mapping[str, Any]) -> None:
        """A normalized descriptor: its data keys join the run's, as the normalizer's do."""
        for key, spec in doc.get("data_keys", {}).items():
            (self._external if "external" in spec else self._internal).add(key)
        self.keys = frozenset(self._internal - self._external - set(RESERVED_DATA_KEYS))

    def unchanged(self, doc: Mapping[str, Any]) -> bool:
        """Whether the normalizer would emit the event as it is, but for an empty ``filled``
        that it drops and the writer never reads (so the writer takes it without a copy)."""
        keys = self.keys
        return (keys.issuperset(doc["data"]) and keys.issuperset(doc["timestamps"])
                and not doc.get("filled"))  # fmt: skip

    def event(self, doc: Mapping[str, Any]) -> Mapping[str, Any] | None:
        """The event as the normalizer would emit it, when that is the event itself."""
        if not self.unchanged(doc):
            return None
        return doc if "filled" not in doc else {k: v for k, v in doc.items() if k != "filled"}


class RunWriter(RunCallback):
    """A RunRouter callback writing one run.

    Calling it feeds the normalizer; the normalized documents (copies of the
    emitted ones: ours to change) reach the method of their name.
    """

    def __init__(self, catalog: Container, batch_rows: int, max_latency: float,
                 retry: TiledRetry, max_array_size: int = MAX_ARRAY_SIZE) -> None:  # fmt: skip
        super().__init__()
        self.catalog = catalog
        self.max_array_size = max_array_size
        self.batch_rows = batch_rows
        self.max_latency = max_latency
        self.run = RunTarget(retry)
        self.skip = False
        self.streams: dict[str, Stream] = {}  # by descriptor uid
        self.by_name: dict[str, Stream] = {}
        self.external = ExternalData(self._external_arrived)
        self.failed_resources: set[str] = set()  # stream resources whose failure is recorded
        self.normalizer = Normalizer()
        self.normalizer.subscribe(self._normalized)
        self.passthrough = Passthrough()

    def __call__(self, name: str, doc: Mapping[str, Any]) -> None:  # type: ignore[override]
        """A document as emitted, into the normalizer (or past it, when it would come out
        unchanged: `Passthrough`); what it cannot place, recorded."""
        if self.skip:
            return
        try:
            if name == "event":
                self._event(doc)
            elif name == "event_page":
                for event in unpack_event_page(doc):
                    self._event(event)
            elif name == "stream_datum":
                self.stream_datum(doc)  # type: ignore[arg-type]  # read only, never changed
            else:
                self.normalizer(name, doc)
        except WriterStoppingError:
            raise
        except DOCUMENT_ERRORS as exc:
            self.run.record_error(f"{name} {doc.get('uid', '')}: {type(exc).__name__}: {exc}")
            if name == "stop" and self.run.node is not None and not self.skip:
                self.stop(copy.deepcopy(dict(doc)))  # as emitted: the run still ends

    def _event(self, doc: Mapping[str, Any]) -> None:
        if not self.passthrough.unchanged(doc):
            self.normalizer("event", doc)
        elif not self.skip:
            self.event(doc)  # type: ignore[arg-type]  # read only, never changed

    def _normalized(self, name: str, doc: dict[str, Any]) -> None:
        if not self.skip:  # event-model's dispatch; named, as super() costs per event
            RunCallback.__call__(self, name, doc)

    # -- documents, normalized --------------------------------------------------

    def start(self, doc: dict[str, Any]) -> None:
        self.run.uid = doc["uid"]
        self.run.access_tags = doc.pop("tiled_access_tags", None)
        specs = run_specs(doc.pop("tiled_specs", None))
        metadata = {layout.START: truncate_json_overflow(doc)}
        self.skip = not self.run.open(self.catalog, metadata, specs)

    def descriptor(self, doc: dict[str, Any]) -> None:
        self.passthrough.descriptor(doc)
        self.run.data_keys.update(doc.get("data_keys", {}))
        self.external.descriptor(doc)
        stream = self.by_name.get(doc["name"])
        if stream is None:
            stream = open_stream(self.run, doc, self.max_array_size)
            self.by_name[stream.name] = stream
        else:  # a configuration update of a known stream
            stream.update_config(self.run, doc)
        self.streams[doc["uid"]] = stream

    def event(self, doc: dict[str, Any]) -> None:
        """An event with its internal data only (the normalizer passes datums on apart)."""
        stream = self.streams[doc["descriptor"]]
        if not stream.rows:  # else its clock runs already
            self._mark(stream)
        stream.add_row(doc)
        if len(stream.rows) >= self.batch_rows:
            self._flush(stream)

    def stream_resource(self, doc: dict[str, Any]) -> None:
        self.external.stream_resource(doc)

    def stream_datum(self, doc: dict[str, Any]) -> None:
        """A datum's frames into its array; a resource its consolidator fails on is recorded
        once, not once per datum."""
        try:
            self.external.stream_datum(doc)
        except DOCUMENT_ERRORS as exc:
            resource = doc.get("stream_resource", "?")
            if resource not in self.failed_resources:
                self.failed_resources.add(resource)
                self.run.record_error(f"external data of stream resource {resource}: "
                                      f"{type(exc).__name__}: {exc}")  # fmt: skip

    def stop(self, doc: dict[str, Any]) -> None:
        notes = doc.pop("_run_normalizer_notes", [])
        self._flush_all(final=True)
        self.run.close(doc, notes)
        self.run.close_streams(self._nodes())

    # -- runtime hooks ------------------------------------------------------------

    def tick(self) -> None:
        self._flush_waiting(self.max_latency)

    def caught_up(self) -> None:
        """Nothing more to read for now: what waits is written at once. A replay's last
        batch and a slow live run's rows do not wait ``max_latency`` for more that is
        not coming; a busy consumer (a poll always finds messages) batches as before."""
        self._flush_waiting(0.0)

    def _flush_waiting(self, at_least: float) -> None:
        """Flush each stream whose oldest waiting row or frame is ``at_least`` s old."""
        now = time.monotonic()
        for stream in self.by_name.values():
            waiting = stream.pending or self.external.pending(stream.name)
            if waiting and now - stream.oldest >= at_least:
                self._flush(stream)

    def abandon(self, reason: str) -> None:
        """Leave what arrived readable; without a stop the run stays findable as incomplete."""
        if not self.skip and self.run.node is not None:
            self._flush_all()

    # -- writing ------------------------------------------------------------------

    def _flush_all(self, final: bool = False) -> None:
        for stream in self.by_name.values():
            self._flush(stream, final)

    def _flush(self, stream: Stream, final: bool = False) -> None:
        """The stream's waiting rows and external data; ``final`` at the stop (`external`: a
        live run's HDF5 arrays carry a slice that the stop's write drops).

        Once the nodes exist (made in TiledWriter's order), the rows and each array's new
        files are written at once: a live run's frames are readable without waiting on the
        table's append."""
        arrays = self.external.of_stream(stream.name)
        if (stream.tables or not stream.rows) and all(a.node is not None for a in arrays):
            writes = [FLUSH_POOL.submit(self._external, stream, a, final) for a in arrays]
            write_rows(self.run, stream)
            for write in writes:
                write.result()
            return
        write_rows(self.run, stream)
        for array in arrays:
            self._external(stream, array, final)

    def _external(self, stream: Stream, array: ExternalArray, final: bool) -> None:
        try:
            write_external(self.run, stream.node, array, final)
        except httpx.HTTPStatusError as exc:
            self.run.record_error(f"stream {stream.name}: external data {array.data_key} "
                                  f"refused by Tiled: {exc}")  # fmt: skip

    def _nodes(self) -> list[Any]:
        """Every node written, in TiledWriter's order of closing: internal arrays, tables,
        external arrays, streams, the run."""
        streams = list(self.by_name.values())
        return [*(a for s in streams for a in s.arrays.values()),
                *(t for s in streams for t in s.tables.values()),
                *(a.node for a in self.external.arrays.values() if a.node is not None),
                *(s.node for s in streams), self.run.node]  # fmt: skip

    def _mark(self, stream: Stream) -> None:
        """Start the latency clock if nothing of the stream was waiting yet."""
        if not stream.pending and not self.external.pending(stream.name):
            stream.oldest = time.monotonic()

    def _external_arrived(self, stream_name: str) -> None:
        stream = self.by_name.get(stream_name)
        if stream is not None:
            self._mark(stream)


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
