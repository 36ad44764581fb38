"""The catalog layout, named once: what the Tiled writer writes and the web view reads back.

It is bluesky-tiled-plugins' TiledWriter's layout, so that its readers (and
``tiled.client``) read runstream's catalog as theirs:

- the catalog, a container with spec ``CatalogOfBlueskyRuns`` 3.0;
- in it one ``BlueskyRun`` 3.0 container per run, keyed by the start uid, with
  metadata ``{"start": ..., "stop": ...}`` (and ``notes``, and runstream's
  ``{"runstream": {"errors": [...]}}`` when something could not be written);
- in a run one ``BlueskyEventStream`` 3.0 + ``composite`` container per stream,
  keyed by its name, the first descriptor as metadata and the later ones in
  ``_config_updates``;
- in a stream the appendable table ``internal`` (``seq_num``, ``time``, the data
  keys, ``ts_<key>``) and, beside it, one array node per data key written as an
  array (big internal arrays, external data) or as a ragged array (internal arrays
  of variable length), with dimensions ``time``, ``dim_int_1``, ... (``dim_rgd_<axis>``
  for an axis of variable length)

No Tiled import here: the web view reads this layout over plain HTTP, and
Tiled's client takes seconds to import. The writer makes `tiled.structures.core.Spec`
of the `SpecName`s.
"""

from __future__ import annotations

from typing import NamedTuple


class SpecName(NamedTuple):
    """A Tiled spec by name and version (``Spec(*spec_name)`` makes tiled's)."""

    name: str
    version: str | None = None


CATALOG_SPEC = SpecName("CatalogOfBlueskyRuns", "3.0")
RUN_SPEC = SpecName("BlueskyRun", "3.0")
STREAM_SPECS = (SpecName("BlueskyEventStream", "3.0"), SpecName("composite"))

#: A run container's metadata keys.
START = "start"
STOP = "stop"
NOTES = "notes"
#: runstream's own key in a run's metadata: ``{"errors": [...]}``, what was not written.
RUNSTREAM = "runstream"
ERRORS = "errors"

#: A stream container's metadata key for the descriptors after its first.
CONFIG_UPDATES = "_config_updates"
#: Descriptor keys that are not part of a stream container's metadata.
NOT_STREAM_METADATA = ("name", "object_keys", "run_start")
#: The structure family of a stream's node inside a run.
STREAM_FAMILY = "container"

#: The appendable table of a stream's internal data, and its columns.
TABLE = "internal"
SEQ_NUM = "seq_num"
TIME = "time"
TIMESTAMP_PREFIX = "ts_"
#: Array dimension names: the first is time, then one per distinct size in the stream.
TIME_DIM = "time"
SIZE_DIM = "dim_int_{}"
#: ... and per axis of unknown size, for ragged arrays.
RAGGED_DIM = "dim_rgd_{}"
