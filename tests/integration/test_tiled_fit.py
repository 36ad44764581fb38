"""Rows that do not fit their descriptor lose no value; tables and streams as TiledWriter's.

Documents go straight into the writer's RunRouter (no Kafka: what is tested is the writer)
and into a real Tiled server; where TiledWriter itself can write them, it writes the same
documents into another catalog to compare with.
"""

from __future__ import annotations

import uuid

import numpy as np
from bluesky_tiled_plugins import TiledWriter
from bluesky_tiled_plugins.writing.tiled_writer import MAX_TABLE_COLUMNS
from event_model import RunRouter
from tiled.client import from_uri
from tiled.client.base import BaseClient

from runstream.consumers.tiled import connect_catalog, tiled_factory
from tests.kafka_tools import unique_prefix


def _documents(keys: dict, rows: list[dict]) -> list[tuple[str, dict]]:
    uid = str(uuid.uuid4())
    descriptor = {"uid": uid + "d", "run_start": uid, "time": 0.0, "name": "primary",
                  "data_keys": keys, "object_keys": {}, "configuration": {}}  # fmt: skip
    docs = [("start", {"uid": uid, "time": 0.0, "scan_id": 1}), ("descriptor", descriptor)]
    for i, data in enumerate(rows, start=1):
        docs.append(("event", {"uid": f"{uid}e{i}", "descriptor": uid + "d", "seq_num": i,
                               "time": float(i), "data": data, "filled": {},
                               "timestamps": {k: float(i) for k in data}}))  # fmt: skip
    stop = {"uid": uid + "s", "run_start": uid, "time": 9.0, "exit_status": "success",
            "num_events": {"primary": len(rows)}}  # fmt: skip
    docs.append(("stop", stop))
    return docs


def _ours(tiled_server, docs, **options):
    """The documents written by runstream's writer; the run as users read it."""
    name = unique_prefix("cat")
    catalog = connect_catalog(tiled_server.url, tiled_server.api_key, name)
    router = RunRouter([tiled_factory(catalog, max_latency=0.1, **options)])
    for doc_name, doc in docs:
        router(doc_name, doc)
    return from_uri(tiled_server.url, api_key=tiled_server.api_key)[name][docs[0][1]["uid"]]


def _theirs(tiled_server, docs):
    """The same documents written by TiledWriter."""
    name = unique_prefix("ref")
    connect_catalog(tiled_server.url, tiled_server.api_key, name)
    client = from_uri(tiled_server.url, api_key=tiled_server.api_key)
    writer = TiledWriter(client[name].base if hasattr(client[name], "base") else client[name])
    for doc_name, doc in docs:
        writer(doc_name, doc)
    return from_uri(tiled_server.url, api_key=tiled_server.api_key)[name][docs[0][1]["uid"]]


SPECTRUM = {"spec": {"dtype": "array", "shape": [20], "source": "s"},
            "x": {"dtype": "number", "shape": [], "source": "s"}}  # fmt: skip


def test_an_array_shorter_than_declared_keeps_every_row_padded_as_tiledwriter(tiled_server):
    rows = [{"spec": list(np.arange(19.0 if i == 3 else 20.0) + i), "x": i * 1.5}
            for i in range(1, 6)]  # fmt: skip
    docs = _documents(SPECTRUM, rows)
    ours, theirs = _ours(tiled_server, docs), _theirs(tiled_server, docs)
    data = ours["primary"].read()
    assert list(data["x"].values) == [1.5, 3.0, 4.5, 6.0, 7.5]
    spec = data["spec"].values
    assert (
        spec.shape == (5, 20)
        and np.isnan(spec[2, 19])
        and list(spec[2, :19]) == list(np.arange(19.0) + 3)
    )
    np.testing.assert_array_equal(spec, theirs["primary"].read()["spec"].values)
    assert any("padded with NaNs" in note for note in ours.metadata["notes"])
    assert ours.metadata["notes"] == theirs.metadata["notes"]
    assert "runstream" not in ours.metadata


def test_a_value_that_cannot_be_stored_is_set_aside_alone(tiled_server):
    rows = [{"spec": list(np.arange(20.0)), "x": float(i)} for i in range(1, 6)]
    rows[3]["spec"] = "not an array"  # seq_num 4
    rows[1]["spec"] = [[1.0, 2.0], [3.0]]  # seq_num 2: ragged, no array of it
    rows[4]["x"] = {"not": "a number"}  # seq_num 5
    run = _ours(tiled_server, _documents(SPECTRUM, rows))
    data = run["primary"].read()
    assert list(data["time"].values) == [1.0, 2.0, 3.0, 4.0, 5.0]  # every row
    assert list(data["x"].values[:4]) == [1.0, 2.0, 3.0, 4.0] and np.isnan(data["x"].values[4])
    spec = data["spec"].values
    assert list(spec[0]) == list(spec[2]) == list(np.arange(20.0))
    assert np.isnan(spec[1]).all() and np.isnan(spec[3]).all()
    errors = run.metadata["runstream"]["errors"]
    assert len(errors) == 3
    assert {e.split(" set aside")[0] for e in errors} == {
        "stream primary: spec of seq_num 2", "stream primary: spec of seq_num 4",
        "stream primary: x of seq_num 5"}  # fmt: skip
    assert all(": " in e.split(" set aside")[1] for e in errors)  # each with its reason


def test_a_later_batch_of_another_type_loses_only_its_odd_values(tiled_server):
    keys = {"x": {"dtype": "number", "shape": [], "source": "s"},
            "y": {"dtype": "number", "shape": [], "source": "s"}}  # fmt: skip
    rows = [{"x": i, "y": float(i)} for i in range(1, 7)]
    rows[4]["x"] = "five"  # seq_num 5, in the second batch (batches of 3)
    run = _ours(tiled_server, _documents(keys, rows), batch_rows=3)
    data = run["primary"].read()
    assert list(data["y"].values) == [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
    assert list(data["x"].values[[0, 1, 2, 3, 5]]) == [1, 2, 3, 4, 6]
    (error,) = run.metadata["runstream"]["errors"]
    assert error.startswith("stream primary: x of seq_num 5 set aside: str value")


def test_tables_over_the_column_limit_are_split_as_tiledwriter_splits_them(tiled_server):
    keys = {
        f"k{i:04d}": {"dtype": "number", "shape": [], "source": "s"}
        for i in range(MAX_TABLE_COLUMNS // 2 + 5)
    }  # with ts_ columns: over the limit
    docs = _documents(keys, [{k: float(i) for k in keys} for i in range(1, 4)])
    ours, theirs = _ours(tiled_server, docs), _theirs(tiled_server, docs)
    tables = sorted(k for k in ours["primary"].base if k.startswith("internal"))
    assert tables == ["internal_0", "internal_1"]
    assert tables == sorted(k for k in theirs["primary"].base if k.startswith("internal"))
    for key in tables:
        mine, ref = ours["primary"].base[key].read(), theirs["primary"].base[key].read()
        assert list(mine.columns) == list(ref.columns)
        assert mine.equals(ref)


def test_every_node_is_closed_at_the_stop(tiled_server, monkeypatch):
    closed: list[str] = []
    original = BaseClient.close_stream

    def close_stream(node):
        original(node)  # the real request: Tiled accepts it
        closed.append(str(node.uri))

    monkeypatch.setattr(BaseClient, "close_stream", close_stream)
    keys = {**SPECTRUM, "small": {"dtype": "array", "shape": [3], "source": "s"}}
    rows = [{"spec": list(np.arange(20.0)), "x": 1.0, "small": [1.0, 2.0, 3.0]}]
    run = _ours(tiled_server, _documents(keys, rows), max_array_size=0)
    uid = run.metadata["start"]["uid"]
    paths = {u.split("/metadata/", 1)[1] for u in closed}
    name = next(iter(paths)).split("/")[0]
    base = f"{name}/{uid}"
    assert paths == {base, f"{base}/primary", f"{base}/primary/internal",
                     f"{base}/primary/spec", f"{base}/primary/small"}  # fmt: skip
    assert closed[-1].endswith(base)  # the run last, as TiledWriter closes it
