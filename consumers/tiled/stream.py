"""One stream of a run: its container in Tiled and the rows waiting for the next batch."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
from bluesky_tiled_plugins.utils import truncate_json_overflow
from tiled.client.container import Container
from tiled.structures.core import Spec

from . import layout
from .run import RunTarget

STREAM_SPECS = [Spec(*spec) for spec in layout.STREAM_SPECS]


def is_ragged(key: Mapping[str, Any]) -> bool:
    """TiledWriter's rule for ragged array nodes: an internal array with an axis of unknown
    size."""
    return "external" not in key and key.get("dtype") == "array" and None in key.get("shape", ())


def as_array_node(key: Mapping[str, Any], max_array_size: int) -> bool:
    """TiledWriter's rule: internal arrays too big for a table cell, or of strings."""
    if "external" in key or key.get("dtype") != "array" or None in key.get("shape", ()):
        return False
    if 0 <= max_array_size < math.prod(key.get("shape", ())):
        return True
    dtype = key.get("dtype_numpy")
    return bool(dtype) and np.dtype(dtype).kind in "USO"


@dataclass
class Stream:
    """A stream's nodes in Tiled, what they hold so far, and the rows not written yet."""

    name: str
    node: Container
    array_keys: list[str]  # internal data keys written as array nodes beside the table
    ragged_keys: list[str] = field(default_factory=list)  # ... and as ragged array nodes
    rows: list[dict[str, Any]] = field(default_factory=list)
    oldest: float = 0.0
    tables: dict[str, Any] = field(default_factory=dict)  # `layout.TABLE` (or its parts)
    schema: pa.Schema | None = None
    arrays: dict[str, Any] = field(default_factory=dict)
    dims: dict[int, str] = field(default_factory=dict)  # array dimension names by size
    config_updates: list[dict[str, Any]] = field(default_factory=list)
    rows_written: int = 0
    refused: dict[str, str] = field(default_factory=dict)  # keys Tiled will not store: why

    @property
    def pending(self) -> int:
        return len(self.rows)

    def add_row(self, event: Mapping[str, Any]) -> None:
        """An event (its internal data only) as a row of the table: seq_num, time, data, ts_."""
        row = {layout.SEQ_NUM: event["seq_num"], layout.TIME: event["time"], **event["data"]}
        row.update({f"{layout.TIMESTAMP_PREFIX}{k}": v for k, v in event["timestamps"].items()})
        self.rows.append(row)

    def dims_of(self, shape: tuple[int | None, ...]) -> tuple[str, ...]:
        """TiledWriter's names: ``time``, then one name per distinct size in the stream, and
        one per axis of unknown size (ragged)."""
        names = [layout.TIME_DIM]
        for axis, size in enumerate(shape[1:], start=1):
            if size is None:
                names.append(layout.RAGGED_DIM.format(axis))
                continue
            self.dims.setdefault(size, layout.SIZE_DIM.format(len(self.dims) + 1))
            names.append(self.dims[size])
        return tuple(names)

    def update_config(self, run: RunTarget, descriptor: Mapping[str, Any]) -> None:
        """A later descriptor of the stream, kept in its metadata's ``_config_updates``."""
        update: dict[str, Any] = {"uid": descriptor["uid"], "time": descriptor["time"]}
        if descriptor.get("configuration"):
            update["configuration"] = descriptor["configuration"]
        self.config_updates.append(update)
        metadata = {layout.CONFIG_UPDATES: truncate_json_overflow(self.config_updates)}
        run.call(lambda: self.node.update_metadata(metadata=metadata, drop_revision=True),
                 f"update stream {self.name}")  # fmt: skip


def open_stream(run: RunTarget, descriptor: Mapping[str, Any], max_array_size: int) -> Stream:
    """The stream's container in the run's, its first descriptor as metadata."""
    name, parent = descriptor["name"], run.node
    assert parent is not None
    metadata = {k: v for k, v in descriptor.items() if k not in layout.NOT_STREAM_METADATA}
    node = run.call(
        lambda: parent.create_container(key=name, specs=STREAM_SPECS,
                                        metadata=truncate_json_overflow(metadata),
                                        access_tags=run.access_tags),
        f"create stream {name}",
    )  # fmt: skip
    # The plain container: our keys are unique by construction, so skip the
    # composite client's checks (three look-ups per write).
    node = getattr(node, "base", node)
    keys = descriptor.get("data_keys", {})
    return Stream(name, node, [k for k, v in keys.items() if as_array_node(v, max_array_size)],
                  [k for k, v in keys.items() if is_ragged(v)])  # fmt: skip
