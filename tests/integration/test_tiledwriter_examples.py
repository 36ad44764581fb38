"""bluesky-tiled-plugins' own example runs: runstream's Tiled writer writes what TiledWriter
writes, node by node.

Each example document stream (tests/data/tiledwriter_examples, theirs, BSD-3) is rendered
over detector files in a directory the Tiled server may read. TiledWriter writes it
in-process into one catalog; KafkaPublisher -> a real broker -> the consumer runtime with
the Tiled writer's factory writes the same documents into another catalog of the same
server. `tests.tiled_compare` then compares the two runs node by node: specs, metadata,
structures, table values read back, array values, and data sources (mimetype,
parameters, assets).

Table storage:

* the session's server, SQLite tables (the local stack's), every external example, with
  every internal array as a node (``max_array_size`` 0: SQLite has no list columns);
* a server of this module with DuckDB tables (as their test fixture), on a subset: the
  internal events (which need list columns: on SQLite, Tiled refuses their table, HTTP
  500, to TiledWriter too) with and without array nodes, and one external example with
  events and datums in two streams. A second server costs its start (seconds), and the
  other external examples write no table but the same small ``internal`` ones.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np
import pytest
from bluesky_tiled_plugins import TiledWriter
from tiled.client import from_uri

from runstream.consumers.tiled import connect_catalog, tiled_factory
from runstream.producer import KafkaPublisher
from runstream.settings import LocalSettings
from runstream.tiledserver import LocalTiled
from tests.integration.consumer_harness import running, settings
from tests.kafka_tools import create_topic, free_port, unique_prefix
from tests.tiled_compare import Nodes, compare
from tests.tiled_fixtures import TiledServer, runs_closed
from tests.tiledwriter_examples import make_files, render
from tests.waiting import eventually

#: An example and the writers' ``max_array_size`` (None: TiledWriter's default, 16).
Case = tuple[str, int | None]
EXTERNAL = ["external_assets", "external_assets_bytes", "external_assets_legacy",
            "external_assets_multipart_hdf5", "external_assets_shared_resource",
            "external_assets_single_key", "external_assets_single_key_two_files"]  # fmt: skip
SQLITE: list[Case] = [(name, 0) for name in EXTERNAL]
DUCKDB: list[Case] = [("internal_events", None), ("internal_events", 0), ("external_assets", 0)]
#: Longer than a replay of the examples takes: nothing is written before the stop.
LATENCY = 600.0


@dataclass
class Written:
    """Every case of one server, written both ways: its run's uid and documents."""

    server: TiledServer
    ref: str
    ours: str
    files: Path
    uids: dict[Case, str] = field(default_factory=dict)
    docs: dict[Case, list[tuple[str, dict]]] = field(default_factory=dict)


def _sizes(size: int | None) -> dict:
    return {} if size is None else {"max_array_size": size}


def _write_both(server: TiledServer, bootstrap: str, outbox: Path, cases: list[Case]) -> Written:
    """Publish every case into a new topic, write each with TiledWriter while the
    consumer runtime writes them from Kafka, wait for every run's stop."""
    files = make_files(server.files / unique_prefix("examples"))
    written = Written(server, unique_prefix("ref"), unique_prefix("ours"), files)
    for case in cases:
        written.docs[case] = render(case[0], files)
        written.uids[case] = written.docs[case][0][1]["uid"]
    topic = create_topic(bootstrap, f"{unique_prefix()}.bluesky.runengine.documents", 1)
    publisher = KafkaPublisher(topic, bootstrap, outbox, partitions=1)
    try:
        for case in cases:
            for name, doc in written.docs[case]:
                publisher(name, copy.deepcopy(doc))
        assert publisher.flush(30) == 0
    finally:
        publisher.close()
    catalog = connect_catalog(server.url, server.api_key, written.ours)
    # Each run in one batch, as TiledWriter's (its batch is larger than any example): some
    # of its notes say a batch's shape, and a loaded machine could let a short latency
    # split a run that the consumer reads in one go. The stop writes what waits.
    factories = {size: tiled_factory(catalog, max_latency=LATENCY, **_sizes(size))
                 for size in {size for _, size in cases}}  # fmt: skip
    size_of = {written.uids[case]: case[1] for case in cases}

    def factory(name: str, start: dict):
        return factories[size_of[start["uid"]]](name, start)

    reference = connect_catalog(server.url, server.api_key, written.ref)
    with running(settings(bootstrap, topic), [factory]):
        for case in cases:
            writer = TiledWriter(reference, **_sizes(case[1]))
            for name, doc in written.docs[case]:
                writer(name, copy.deepcopy(doc))
        ours = from_uri(server.url, api_key=server.api_key)[written.ours]
        eventually(lambda: runs_closed(ours, written.uids.values()), 90, "every run from Kafka")
    return written


@pytest.fixture(scope="module")
def on_sqlite(tiled_server, kafka_bootstrap, tmp_path_factory) -> Written:
    return _write_both(tiled_server, kafka_bootstrap, tmp_path_factory.mktemp("outbox"), SQLITE)


@pytest.fixture(scope="module")
def duckdb_server(tmp_path_factory) -> Iterator[TiledServer]:
    """The local Tiled server as the session's, but with DuckDB table storage."""
    home = tmp_path_factory.mktemp("tiled-duckdb")
    settings_ = LocalSettings(home=home, tiled_port=free_port())
    server = LocalTiled(settings_, tables="duckdb")
    url = server.up()
    yield TiledServer(url, server.api_key(), server, settings_.tiled_read_dirs[0])
    server.down()


@pytest.fixture(scope="module")
def on_duckdb(duckdb_server, kafka_bootstrap, tmp_path_factory) -> Written:
    return _write_both(duckdb_server, kafka_bootstrap, tmp_path_factory.mktemp("outbox"), DUCKDB)


def _data_keys(docs: list[tuple[str, dict]]) -> dict[str, set[str]]:
    """Each stream's data keys as the documents declare them (``time`` is TiledWriter's
    ``time_``: the name is the table's own column)."""
    keys: dict[str, set[str]] = {}
    for name, doc in docs:
        if name == "descriptor":
            declared = {"time_" if k == "time" else k for k in doc["data_keys"]}
            keys.setdefault(doc["name"], set()).update(declared)
    return keys


def _same_as_tiledwriter(written: Written, case: Case) -> None:
    uid = written.uids[case]
    nodes = Nodes(written.server.url, written.server.api_key)
    try:
        # TiledWriter creates internal arrays, and numbers their dims and notes, in the
        # order of a set of keys: that order is compared as a set (`internal_order_free`).
        order_free = case[0] == "internal_events"
        differences = compare(nodes, written.ref, written.ours, uid, order_free=order_free)
        assert differences == [], "\n".join(differences)
        run = nodes.attributes(f"{written.ours}/{uid}")
        assert run["metadata"]["stop"]["exit_status"] == "success"
        assert "runstream" not in run["metadata"], run["metadata"]["runstream"]  # no errors
        # what was compared holds every key of the documents
        for stream, keys in _data_keys(written.docs[case]).items():
            held = set(nodes.children(f"{written.ours}/{uid}/{stream}"))
            for table in [k for k in held if k.startswith("internal")]:
                held |= set(nodes.attributes(f"{written.ours}/{uid}/{stream}/{table}")
                            ["structure"]["columns"])  # fmt: skip
            assert keys <= held, (stream, keys - held)
    finally:
        nodes.close()


@pytest.mark.parametrize("case", SQLITE, ids=[name for name, _ in SQLITE])
def test_sqlite_tables_as_tiledwriter(on_sqlite: Written, case: Case) -> None:
    _same_as_tiledwriter(on_sqlite, case)


@pytest.mark.parametrize("case", DUCKDB, ids=[f"{name}-{size}" for name, size in DUCKDB])
def test_duckdb_tables_as_tiledwriter(on_duckdb: Written, case: Case) -> None:
    _same_as_tiledwriter(on_duckdb, case)


def test_frames_are_the_files_values(on_sqlite: Written) -> None:
    """Independently of TiledWriter: one key's frames from two files, read back whole."""
    case = ("external_assets_single_key_two_files", 0)
    run = from_uri(on_sqlite.server.url, api_key=on_sqlite.server.api_key)[on_sqlite.ours]
    frames = run[on_sqlite.uids[case]]["primary"]["det-key2"].read()
    parts = []
    for name in ("dataset.h5", "dataset_part2.h5"):
        with h5py.File(on_sqlite.files / name) as f:
            parts.append(f["entry/data/data_2"][()])
    # a frame per index (3 in the first file, 5 in the second), of the declared [1, 13, 17]
    np.testing.assert_array_equal(frames, np.concatenate(parts)[:, np.newaxis])
