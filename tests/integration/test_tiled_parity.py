"""The catalog runstream writes is the one bluesky-tiled-plugins' TiledWriter writes.

The same RunEngine documents (real RunEngine, ``ophyd.sim`` devices: the seed's
sequential, nested and recursive runs, a baseline stream, an internal 2-D array
and a file-backed 2-D detector) go once through TiledWriter in-process into one
catalog, and once through KafkaPublisher -> Kafka (3 partitions) -> the Tiled
service's factory on the consumer runtime into another. The writer starts only
after the whole backlog is in Kafka, so it catches up over every partition.
Both catalogs are then read with bluesky-tiled-plugins' clients, node by node.
"""

from __future__ import annotations

import contextlib

import numpy as np
import pandas as pd
import xarray as xr
from bluesky import RunEngine
from bluesky.plans import count, scan
from bluesky.preprocessors import baseline_wrapper
from bluesky_tiled_plugins import TiledWriter
from ophyd.sim import SynSignal, hw
from tiled.client import from_uri

from runstream.consumers.tiled import connect_catalog, tiled_factory
from runstream.producer import KafkaPublisher, lineage
from runstream.producer.plans import nested_runs, recursive_runs
from runstream.schemas.partition import partition_for
from tests.integration.consumer_harness import running, settings
from tests.kafka_tools import unique_prefix
from tests.tiled_compare import Nodes as TiledNodes
from tests.waiting import eventually

PARTITIONS = 3
ARROW = "application/vnd.apache.arrow.file"


def _plans(devices, frame):
    yield nested_runs(2, hw=devices)
    yield recursive_runs(2, depth=2, hw=devices)
    yield baseline_wrapper(
        scan([devices.det1], devices.motor1, -1, 1, 3, md={"purpose": "baseline"}),
        [devices.motor1, devices.motor2],
    )
    yield count([frame, devices.det], 3, md={"purpose": "internal 2-D array"})
    yield count([devices.img], 2, md={"purpose": "file-backed 2-D detector"})


def _record(tmp_path, bootstrap, topic, files):
    """Run the plans on a real RunEngine publishing to Kafka; the documents as emitted."""
    files.mkdir(parents=True)
    devices = hw(save_path=str(files))
    frame = SynSignal(func=lambda: np.arange(25.0).reshape(5, 5), name="frame")
    publisher = KafkaPublisher(topic, bootstrap, tmp_path / "outbox", partitions=PARTITIONS)
    RE = RunEngine({})
    RE.preprocessors.append(lineage)
    emitted: list[tuple[str, dict]] = []
    RE.subscribe(publisher)
    RE.subscribe(lambda name, doc: emitted.append((name, doc)))
    try:
        for plan in _plans(devices, frame):
            RE(plan)
        # more short runs until the backlog spans every partition (the uids are random)
        while len({partition_for(d["uid"], PARTITIONS) for n, d in emitted if n == "start"}) < 3:
            RE(count([devices.det], 1))
        assert publisher.flush(30) == 0
    finally:
        publisher.close()
    return emitted


def _starts(emitted):
    return [d for n, d in emitted if n == "start"]


class Nodes(TiledNodes):
    """Tiled's HTTP API, read the same way for both catalogs: what each node is and holds."""

    def __init__(self, tiled_server) -> None:
        super().__init__(tiled_server.url, tiled_server.api_key)
        self.url, self.key = tiled_server.url, tiled_server.api_key

    def attributes(self, path: str) -> dict:
        attributes = super().attributes(path)
        structure = attributes.get("structure") or {}
        structure.pop("chunks", None)  # how the writes were batched, not what was written
        return {k: attributes.get(k) for k in ("specs", "metadata", "structure_family")} | {
            "structure": structure
        }

    def array(self, path: str) -> np.ndarray:
        answer = self.http.get(f"/api/v1/array/full/{path}", params={"format": "application/json"})
        answer.raise_for_status()
        return np.asarray(answer.json())


@contextlib.contextmanager
def _v2(run):
    """``run.v2``, then the client registry as it was: bluesky-tiled-plugins' ``.v2`` binds
    "BlueskyRun" to its v2 class in a shallow copy of the registry, which every client of
    the process shares, so every later client would hand out v2 runs."""
    shared = run.structure_clients.__getstate__()
    before = shared["BlueskyRun"]
    try:
        yield run.v2
    finally:
        shared["BlueskyRun"] = before


def _same_node(nodes: Nodes, ref: str, ours: str, path: str) -> None:
    """The node at ``path`` under both catalogs: attributes, children, data."""
    attributes = nodes.attributes(f"{ref}/{path}")
    assert attributes == nodes.attributes(f"{ours}/{path}"), path
    family = attributes["structure_family"]
    if family == "container":
        children = nodes.children(f"{ref}/{path}")
        assert children == nodes.children(f"{ours}/{path}"), path
        for key in children:
            _same_node(nodes, ref, ours, f"{path}/{key}")
    elif family == "table":
        pd.testing.assert_frame_equal(nodes.table(f"{ref}/{path}"), nodes.table(f"{ours}/{path}"))
    elif family == "array":
        np.testing.assert_array_equal(nodes.array(f"{ref}/{path}"), nodes.array(f"{ours}/{path}"))


def test_runstream_catalog_equals_tiled_writers(kafka_bootstrap, new_topic, tiled_server, tmp_path):
    topic = new_topic(partitions=PARTITIONS)
    files = tiled_server.files / unique_prefix("parity")
    emitted = _record(tmp_path, kafka_bootstrap, topic, files)
    starts = _starts(emitted)
    uids = [s["uid"] for s in starts]
    ref_name, our_name = unique_prefix("ref"), unique_prefix("ours")

    reference = TiledWriter(connect_catalog(tiled_server.url, tiled_server.api_key, ref_name))
    for name, doc in emitted:
        reference(name, doc)
    catalog = connect_catalog(tiled_server.url, tiled_server.api_key, our_name)
    stops: list[str] = []
    writers = tiled_factory(catalog, max_latency=0.2)

    def factory(name, start):
        callbacks, sub = writers(name, start)
        return [*callbacks, lambda n, d: stops.append(d["run_start"]) if n == "stop" else None], sub

    with running(settings(kafka_bootstrap, topic), [factory]):
        eventually(lambda: len(stops) == len(uids), 60, "every run written")

    client = from_uri(tiled_server.url, api_key=tiled_server.api_key)
    ref, ours = client[ref_name], client[our_name]
    # creation order is start order, so the latest run is cat[-1]
    assert list(ref) == uids
    assert list(ours) == uids
    assert ours[-1].metadata["start"]["uid"] == ref[-1].metadata["start"]["uid"] == uids[-1]
    for start in starts:
        want = ref[start["scan_id"]].metadata["start"]["uid"]
        assert ours[start["scan_id"]].metadata["start"]["uid"] == want
    nodes = Nodes(tiled_server)
    for uid in uids:
        _same_node(nodes, ref_name, our_name, uid)  # specs, start/stop, streams, tables, arrays
        run_ref, run_ours = ref[uid], ours[uid]
        assert type(run_ref) is type(run_ours)
        for stream in run_ref:
            with _v2(run_ref) as v2_ref, _v2(run_ours) as v2_ours:
                read = getattr(v2_ref, stream).read(), getattr(v2_ours, stream).read()
            xr.testing.assert_identical(*read)
    # what the plans had to produce for the comparison to mean something
    purposes = {s.get("purpose"): s["uid"] for s in starts}
    assert "baseline" in nodes.children(f"{ref_name}/{purposes['baseline']}")

    def shape(uid, key):
        return nodes.attributes(f"{ref_name}/{uid}/primary/{key}")["structure"]["shape"]

    assert shape(purposes["internal 2-D array"], "frame") == [3, 5, 5]
    assert shape(purposes["file-backed 2-D detector"], "img") == [2, 10, 10]
    assert {s.get("run_key") for s in starts} >= {"run_1", "run_2", "run_key_2"}
