"""External data (files written by detectors) as Tiled array nodes pointing at the files.

Old-style ``resource``/``datum`` and new-style ``stream_resource``/``stream_datum``
documents are brought to the newest schema by bluesky-tiled-plugins'
``RunNormalizer``, and its consolidators say which files and which array shape a
stream datum adds: the layout the ecosystem's readers expect, without a second
copy of that knowledge here. This module only keeps the per-run bookkeeping; the
writer decides when the accumulated changes go to Tiled (one request per array
per batch, not one per datum).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import jsonschema
from bluesky_tiled_plugins.writing.consolidators import (
    ConsolidatorBase,
    Patch,
    consolidator_factory,
)
from bluesky_tiled_plugins.writing.tiled_writer import RunNormalizer
from event_model import unpack_event_page

log = logging.getLogger(__name__)

#: The documents that only describe external data, handed to `ExternalData.asset`.
ASSET_DOCUMENTS = frozenset({"resource", "datum", "datum_page", "stream_resource", "stream_datum"})

# What the normalizer or a consolidator raises on documents it cannot place.
EXTERNAL_ERRORS = (KeyError, ValueError, TypeError, RuntimeError, NotImplementedError,
                   jsonschema.ValidationError)  # fmt: skip


@dataclass
class ExternalArray:
    """One external data key of one stream: its consolidator and what Tiled has not seen yet."""

    stream: str
    data_key: str
    consolidator: ConsolidatorBase
    node: Any = None
    data_source_id: int | None = None
    patches: list[Patch] = field(default_factory=list)

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
        self._normalizer = RunNormalizer()
        self._normalizer.subscribe(self._normalized_descriptor, "descriptor")
        self._normalizer.subscribe(self._normalized_resource, "stream_resource")
        self._normalizer.subscribe(self._normalized_datum, "stream_datum")
        self._descriptors: dict[str, Mapping[str, Any]] = {}  # by uid, normalized
        self._resources: dict[str, Mapping[str, Any]] = {}  # stream resources by uid
        self._by_resource: dict[str, ExternalArray] = {}
        self.arrays: dict[tuple[str, str], ExternalArray] = {}  # by (stream, data key)
        self.external_keys: dict[str, list[str]] = {}  # by descriptor uid

    # -- documents, as the writer receives them ----------------------------------

    def descriptor(self, doc: Mapping[str, Any]) -> None:
        keys = [k for k, v in doc.get("data_keys", {}).items() if v.get("external") is not None]
        self.external_keys[doc["uid"]] = keys
        if keys:
            self._normalizer.descriptor(doc)

    def asset(self, name: str, doc: Mapping[str, Any]) -> None:
        """A resource, datum (page), stream resource or stream datum: the normalizer's as is."""
        getattr(self._normalizer, name)(doc)

    def event(self, doc: Mapping[str, Any]) -> None:
        """Events matter here only for their datum references (external keys)."""
        keys = self.external_keys.get(doc["descriptor"])
        if keys:
            self._normalizer.event(_only(doc, keys))

    def event_page(self, page: Mapping[str, Any]) -> None:
        keys = self.external_keys.get(page["descriptor"])
        if keys:
            for event in unpack_event_page(page):
                self._normalizer.event(_only(event, keys))

    def stop(self, doc: Mapping[str, Any]) -> None:
        """Datums referenced before they arrived are placed now."""
        self._normalizer.stop(doc)

    def pending(self, stream: str) -> bool:
        return any(a.patches for a in self.of_stream(stream))

    def of_stream(self, stream: str) -> list[ExternalArray]:
        return [a for a in self.arrays.values() if a.stream == stream]

    # -- normalized documents -----------------------------------------------------

    def _normalized_descriptor(self, name: str, doc: Mapping[str, Any]) -> None:
        self._descriptors[doc["uid"]] = doc

    def _normalized_resource(self, name: str, doc: Mapping[str, Any]) -> None:
        self._resources[doc["uid"]] = doc

    def _normalized_datum(self, name: str, doc: Mapping[str, Any]) -> None:
        array = self._array_for(doc["stream_resource"], doc["descriptor"])
        patch = array.consolidator.consume_stream_datum(doc)
        self._on_change(array.stream)  # before the patch counts as pending
        array.patches.append(patch)

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


def _only(event: Mapping[str, Any], keys: list[str]) -> dict[str, Any]:
    """The event with its external keys only: the normalizer copies what it is given."""
    data, stamps = event["data"], event["timestamps"]
    return {
        **event,
        "data": {k: data[k] for k in keys if k in data},
        "timestamps": {k: stamps[k] for k in keys if k in stamps},
        "filled": {k: v for k, v in event.get("filled", {}).items() if k in keys},
    }
