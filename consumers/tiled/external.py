"""External data (files written by detectors) as Tiled array nodes pointing at the files.

The writer's `RunNormalizer` (bluesky-tiled-plugins) brings old-style
``resource``/``datum`` and new-style ``stream_resource``/``stream_datum``
documents to the newest schema; what it emits arrives here, and its consolidators
say which files and which array shape a stream datum adds: the layout the
ecosystem's readers expect, without a second copy of that knowledge here. This
module keeps the per-run bookkeeping and writes an array's accumulated changes
(`write_external`); the writer decides when (one request per array per batch,
not one per datum).

Live reads: while a run goes, a detector's HDF5 file holds more frames than Tiled's
node registers, and Tiled (0.2) reads an HDF5 array whole before fitting it to the
node's shape; it can drop extra frames only when the file's rank is the node's. A
detector's frame ``[1, 240, 320]`` per event makes the node ``[n, 1, 240, 320]`` over
a file ``[N, 240, 320]``: no slice of it reads until the run's end (``Can not reshape``).
So while the run is open, an HDF5 array's data source also carries ``slice`` (``:rows``,
the file rows registered so far); the stop's write drops it again, and the catalog is
then TiledWriter's (`live_slice`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from math import prod
from typing import Any

from bluesky_tiled_plugins.writing.consolidators import (
    ConsolidatorBase,
    HDF5Consolidator,
    Patch,
    consolidator_factory,
)
from tiled.client.base import BaseClient
from tiled.client.container import Container
from tiled.client.utils import handle_error
from tiled.structures.data_source import DataSource
from tiled.utils import safe_json_dump

from .run import RunTarget

log = logging.getLogger(__name__)


@dataclass
class ExternalArray:
    """One external data key of one stream: its consolidator and what Tiled has not seen yet."""

    stream: str
    data_key: str
    consolidator: ConsolidatorBase
    node: Any = None
    data_source_id: int | None = None
    patches: list[Patch] = field(default_factory=list)
    sliced: bool = False  # Tiled's data source carries the live `slice` (see `live_slice`)

    def take_patch(self) -> Patch | None:
        """The union of the pending patches, which are then no longer pending."""
        patches, self.patches = self.patches, []
        return Patch.combine_patches(patches) if patches else None


class ExternalData:
    """The external data of one run, kept per stream until the writer flushes it.

    ``on_change(stream_name)`` is called just before a stream gains pending data,
    so the writer can start that stream's latency clock.
    """

    def __init__(self, on_change: Callable[[str], None]) -> None:
        self._on_change = on_change
        self._descriptors: dict[str, Mapping[str, Any]] = {}  # by uid, normalized
        self._resources: dict[str, Mapping[str, Any]] = {}  # stream resources by uid
        self._by_resource: dict[str, ExternalArray] = {}
        self.arrays: dict[tuple[str, str], ExternalArray] = {}  # by (stream, data key)

    # -- normalized documents -----------------------------------------------------

    def descriptor(self, doc: Mapping[str, Any]) -> None:
        self._descriptors[doc["uid"]] = doc

    def stream_resource(self, doc: Mapping[str, Any]) -> None:
        self._resources[doc["uid"]] = doc

    def stream_datum(self, doc: Mapping[str, Any]) -> None:
        array = self._array_for(doc["stream_resource"], doc["descriptor"])
        patch = array.consolidator.consume_stream_datum(doc)
        self._on_change(array.stream)  # before the patch counts as pending
        array.patches.append(patch)

    def pending(self, stream: str) -> bool:
        return any(a.patches for a in self.of_stream(stream))

    def of_stream(self, stream: str) -> list[ExternalArray]:
        return [a for a in self.arrays.values() if a.stream == stream]

    def _array_for(self, resource_uid: str, descriptor_uid: str) -> ExternalArray:
        array = self._by_resource.get(resource_uid)
        if array is not None:
            return array
        resource = self._resources.get(resource_uid)
        if resource is None:
            raise KeyError(f"stream datum of unknown stream resource {resource_uid}")
        descriptor = self._descriptors.get(descriptor_uid)
        if descriptor is None:
            raise KeyError(f"stream datum of unknown descriptor {descriptor_uid}")
        stream, key = descriptor.get("name", "primary"), resource["data_key"]
        array = self.arrays.get((stream, key))
        if array is None:  # the stream's first resource for this key
            array = ExternalArray(stream, key, consolidator_factory(resource, descriptor))
            self.arrays[(stream, key)] = array
        else:  # a further file set (a new resource) continues the same array
            array.consolidator.update_from_stream_resource(resource)
        self._by_resource[resource_uid] = array
        return array


def live_slice(consolidator: ConsolidatorBase, source: DataSource) -> str | None:
    """``slice`` for an HDF5 array's data source while the run is open: the file rows its
    node registers so far (``:rows``), so Tiled reads them while the detector writes more.

    The file's rank is its chunks' (the stream resource's ``chunk_shape``, as a detector
    gives it), else the node's; the node's leading axes beyond that rank count file rows
    (``[n, 3, 240, 320]`` over a file of images: ``3 n`` rows). None where a slice is not
    ours to add: other mimetypes, multipart files, a resource with its own slice.
    """
    if type(consolidator) is not HDF5Consolidator:
        return None
    parameters = source.parameters or {}
    if "slice" in parameters or "squeeze" in parameters:
        return None
    shape = tuple(source.structure.shape)
    rank = len(consolidator.chunk_shape) or len(shape)
    if not shape or not 1 <= rank <= len(shape):
        return None
    return f":{prod(shape[: len(shape) - rank + 1])}"


def write_external(run: RunTarget, parent: Container, array: ExternalArray,
                   final: bool = False) -> None:  # fmt: skip
    """One request per array and batch: the node with its files, or the files added since.

    ``final`` (the run's stop): the data source as TiledWriter writes it, without the live
    slice, also when no file was added since it was written with one.
    """
    patch = array.take_patch()
    if patch is None and not (final and array.sliced):
        return
    source = array.consolidator.get_data_source()
    cut = None if final else live_slice(array.consolidator, source)
    if cut is not None:
        source.parameters = {**source.parameters, "slice": cut}
    array.sliced = cut is not None
    if array.node is None:
        array.node = run.call(
            lambda: parent.new(source.structure_family, [source], key=array.data_key,
                               metadata=array.consolidator.metadata, specs=[],
                               access_tags=run.access_tags),
            f"register external {array.data_key}",
        )  # fmt: skip
        array.data_source_id = registered_id(array.node) or run.call(
            lambda: array.node.data_sources()[0].id, f"read external {array.data_key}"
        )
        return
    source.id = array.data_source_id
    node = array.node
    run.call(lambda: put_data_source(node, source, patch), f"extend external {array.data_key}")


def registered_id(node: BaseClient) -> int | None:
    """The id Tiled gave the node's data source, as its answer to the registration carries
    it (tiled's client keeps that answer): no request to read it back."""
    sources = node.item.get("attributes", {}).get("data_sources") or []
    source_id = sources[0].get("id") if len(sources) == 1 else None
    return source_id if isinstance(source_id, int) else None


def put_data_source(node: BaseClient, source: DataSource, patch: Patch | None) -> None:
    """Replace the node's data source (same id, the files so far), its array grown by ``patch``
    (None: the same shape, other parameters).

    What tiled's client (0.2.x) lacks: the server has ``PUT /data_source/{path}``
    with ``patch_shape``/``patch_offset``, the client no method for it. This is
    the request bluesky-tiled-plugins' TiledWriter sends
    (``_update_data_source_for_node``), made the same way, on the node's own
    HTTP client (its authentication, its retries).
    """
    body = safe_json_dump({"data_source": source})
    params = {} if patch is None else {
        "patch_shape": ",".join(map(str, patch.shape)),
        "patch_offset": ",".join(map(str, patch.offset)),
    }  # fmt: skip
    url = node.uri.replace("/metadata/", "/data_source/", 1)
    handle_error(node.context.http_client.put(url, content=body, params=params))
