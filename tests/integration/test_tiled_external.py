"""External data through the Tiled writer: detector files become array nodes clients read.

Real broker, real Tiled server (allowed to read the detector's directory), real
RunEngine with an ``ophyd.sim`` file-backed detector for resource/datum, and
composed stream_resource/stream_datum documents over an HDF5 file.
"""

from __future__ import annotations

import itertools
import uuid

import h5py
import httpx
import numpy as np
from bluesky import RunEngine
from bluesky.plans import count
from event_model import StreamRange, compose_run
from ophyd.sim import SynGauss, SynSignalWithRegistry, motor
from tiled.client import from_uri

from runstream.consumers.tiled import connect_catalog, tiled_factory
from runstream.producer import KafkaPublisher, lineage
from tests.integration.consumer_harness import running, settings
from tests.kafka_tools import unique_prefix
from tests.tiled_fixtures import runs_closed
from tests.waiting import eventually

FRAME = (3, 4)


def _camera(save_path) -> SynSignalWithRegistry:
    """A file-backed detector whose n-th frame is filled with n: order errors show."""
    frames = itertools.count()
    save_path.mkdir(parents=True)
    return SynSignalWithRegistry(
        func=lambda: np.full(FRAME, float(next(frames))), name="cam", save_path=str(save_path),
    )  # fmt: skip


def _reader(tiled_server, name):
    return from_uri(tiled_server.url, api_key=tiled_server.api_key)[name]


def _complete(tiled_server, name, uid) -> bool:
    return runs_closed(_reader(tiled_server, name), [uid])


def test_file_backed_detector_frames_are_readable_arrays(
    kafka_bootstrap, new_topic, tiled_server, tmp_path
):
    topic = new_topic(partitions=1)
    name = unique_prefix("cat")
    catalog = connect_catalog(tiled_server.url, tiled_server.api_key, name)
    files = tiled_server.files / unique_prefix("cam")
    cam = _camera(files)
    det = SynGauss("det", motor, "motor", center=0, Imax=1)
    publisher = KafkaPublisher(topic, kafka_bootstrap, tmp_path / "outbox", partitions=1)
    RE = RunEngine({})
    RE.preprocessors.append(lineage)
    RE.subscribe(publisher)
    # A latency shorter than the plan's delay: the array grows over several writes.
    with running(settings(kafka_bootstrap, topic), [tiled_factory(catalog, max_latency=0.1)]):
        (uid,) = RE(count([cam, det], num=8, delay=0.15))
        assert publisher.flush(30) == 0
        publisher.close()
        eventually(lambda: _complete(tiled_server, name, uid), 60, "the run in Tiled")
    run = _reader(tiled_server, name)[uid]
    assert "runstream" not in run.metadata, run.metadata.get("runstream")
    frames = run["primary"]["cam"].read()
    assert frames.shape == (8, *FRAME)
    saved = sorted(files.glob("*.npy"), key=lambda p: int(p.stem.rsplit("_", 1)[1]))
    np.testing.assert_array_equal(frames, np.stack([np.load(p) for p in saved]))
    assert len(set(frames[:, 0, 0])) == 8  # eight different frames, in the order taken
    table = run["primary"].read()  # bluesky-tiled-plugins joins the table and the array node
    assert table["cam"].shape == (8, *FRAME) and table["det"].shape == (8,)
    assert "cam" not in run["primary"].base["internal"].columns  # no datum ids as data


def _hdf5_run(path, frames: np.ndarray, chunks: list[tuple[int, int]], *, bad_datum=False):
    """Documents of a run whose detector streams into one HDF5 file, in chunks of frames."""
    with h5py.File(path, "w") as f:
        f["/entry/data/data"] = frames
    run = compose_run(metadata={"plan_name": "hdf5_stream"})
    key = {"source": "sim", "dtype": "array", "dtype_numpy": "<f8",
           "shape": list(frames.shape[1:]), "external": "STREAM:"}  # fmt: skip
    descriptor = run.compose_descriptor(data_keys={"cam": key}, name="primary")
    resource = run.compose_stream_resource(
        mimetype="application/x-hdf5", uri=f"file://localhost{path}", data_key="cam",
        parameters={"dataset": "/entry/data/data", "chunk_shape": [1, *frames.shape[1:]]},
    )  # fmt: skip
    docs = [("start", run.start_doc), ("descriptor", descriptor.descriptor_doc),
            ("stream_resource", resource.stream_resource_doc)]  # fmt: skip
    for start, stop in chunks:
        datum = resource.compose_stream_datum(
            indices=StreamRange(start=start, stop=stop),
            seq_nums=StreamRange(start=start + 1, stop=stop + 1),
            descriptor=descriptor.descriptor_doc,
        )
        docs.append(("stream_datum", datum))
    if bad_datum:
        docs.append(("stream_datum", {**datum, "uid": str(uuid.uuid4()),
                                      "stream_resource": "no-such-resource"}))  # fmt: skip
    docs.append(("stop", run.compose_stop()))
    return run.start_doc["uid"], docs


def test_stream_resources_land_as_one_growing_array(
    kafka_bootstrap, new_topic, tiled_server, tmp_path
):
    topic = new_topic(partitions=2)
    name = unique_prefix("cat")
    catalog = connect_catalog(tiled_server.url, tiled_server.api_key, name)
    frames = np.arange(6 * 2 * 5, dtype="<f8").reshape(6, 2, 5)
    good, good_docs = _hdf5_run(tiled_server.files / f"{unique_prefix('h')}.h5", frames,
                                [(0, 2), (2, 5), (5, 6)])  # fmt: skip
    bad, bad_docs = _hdf5_run(tiled_server.files / f"{unique_prefix('h')}.h5", frames,
                              [(0, 6)], bad_datum=True)  # fmt: skip
    publisher = KafkaPublisher(topic, kafka_bootstrap, tmp_path / "outbox", partitions=2)
    try:
        for doc_name, doc in itertools.chain(good_docs, bad_docs):
            publisher(doc_name, doc)
        assert publisher.flush(30) == 0
    finally:
        publisher.close()
    with running(settings(kafka_bootstrap, topic), [tiled_factory(catalog, max_latency=0.1)]):
        for uid in (good, bad):
            eventually(lambda u=uid: _complete(tiled_server, name, u), 60, f"run {uid}")
    cat = _reader(tiled_server, name)
    assert "runstream" not in cat[good].metadata
    np.testing.assert_array_equal(cat[good]["primary"]["cam"].read(), frames)
    # the datum of an unknown resource is the bad run's recorded error; its good part stays
    errors = cat[bad].metadata["runstream"]["errors"]
    assert len(errors) == 1 and "no-such-resource" in errors[0]
    np.testing.assert_array_equal(cat[bad]["primary"]["cam"].read(), frames)


def test_a_datum_of_a_resource_never_sent_is_the_runs_error(tiled_server) -> None:
    """The writer fed directly: a datum naming a resource that never came, then the stop."""
    name = unique_prefix("cat")
    catalog = connect_catalog(tiled_server.url, tiled_server.api_key, name)
    run = compose_run()
    uid = run.start_doc["uid"]
    (writer,), _ = tiled_factory(catalog, max_latency=0.1)("start", run.start_doc)
    writer("start", run.start_doc)
    keys = {"img": {"source": "s", "dtype": "array", "shape": [2], "external": "FILESTORE:"},
            "x": {"source": "s", "dtype": "number", "shape": []}}  # fmt: skip
    descriptor = run.compose_descriptor(data_keys=keys, name="primary")
    writer("descriptor", descriptor.descriptor_doc)
    writer("datum", {"datum_id": "nowhere/0", "resource": "nowhere", "datum_kwargs": {}})
    event = descriptor.compose_event(data={"img": "nowhere/0", "x": 2.5},
                                     timestamps={"img": 1.0, "x": 1.0}, seq_num=1)  # fmt: skip
    writer("event", event)
    writer("stop", run.compose_stop())
    run_node = _reader(tiled_server, name)[uid]
    assert run_node.metadata["stop"]["exit_status"] == "success"
    errors = run_node.metadata["runstream"]["errors"]
    assert len(errors) == 1 and "nowhere" in errors[0]
    assert list(run_node["primary"].read()["x"].values) == [2.5]  # the rest of the run is there


def test_answers_lost_after_tiled_acted_are_not_errors(tiled_server, monkeypatch) -> None:
    """Every create reaches Tiled but its first answer is lost: the retried creates adopt the
    nodes made (a 409 never reaches the writer); the run reads back whole, no error recorded."""
    name = unique_prefix("cat")
    catalog = connect_catalog(tiled_server.url, tiled_server.api_key, name)
    http = catalog.context.http_client
    real_send, lost = http.send, set()

    def send(request, **kwargs):
        response = real_send(request, **kwargs)
        sent = (request.url.path, request.content)
        if request.method == "POST" and sent not in lost:
            lost.add(sent)
            raise httpx.ReadTimeout("the answer was lost", request=request)
        return response

    monkeypatch.setattr(http, "send", send)
    frames = np.arange(2 * 2 * 5, dtype="<f8").reshape(2, 2, 5)
    uid, docs = _hdf5_run(tiled_server.files / f"{unique_prefix('h')}.h5", frames, [(0, 2)])
    run = compose_run()
    keys = {"x": {"source": "s", "dtype": "number", "shape": []},
            "v": {"source": "s", "dtype": "array", "shape": [3]}}  # fmt: skip
    descriptor = run.compose_descriptor(data_keys=keys, name="baseline")
    events = [descriptor.compose_event(data={"x": i * 1.5, "v": np.full(3, i)},
                                       timestamps={"x": 1.0, "v": 1.0}, seq_num=i + 1)
              for i in range(3)]  # fmt: skip
    docs[2:2] = [("descriptor", descriptor.descriptor_doc)] + [("event", e) for e in events]
    # Every array as a node: the local server's SQLite table storage has no list columns.
    writers = tiled_factory(catalog, max_latency=0.1, max_array_size=0)
    (writer,), _ = writers("start", docs[0][1])
    for doc_name, doc in docs:
        writer(doc_name, doc)
    assert len(lost) == 6  # the run, two streams, a table, an array, an external array
    node = _reader(tiled_server, name)[uid]
    assert "runstream" not in node.metadata, node.metadata.get("runstream")
    np.testing.assert_array_equal(node["primary"]["cam"].read(), frames)
    table = node["baseline"].read()
    assert list(table["x"].values) == [0.0, 1.5, 3.0]
    assert table["v"].values.tolist() == [[0.0] * 3, [1.0] * 3, [2.0] * 3]


def test_a_resource_its_consolidator_fails_on_is_recorded_once(tiled_server, tmp_path) -> None:
    """Three datums of a resource its consolidator cannot take (a key the descriptor
    lacks): one error."""
    name = unique_prefix("cat")
    catalog = connect_catalog(tiled_server.url, tiled_server.api_key, name)
    uid, docs = _hdf5_run(tmp_path / "f.h5", np.zeros((3, 2, 2)), [(0, 1), (1, 2), (2, 3)])
    resource = next(d for n, d in docs if n == "stream_resource")
    resource["data_key"] = "not-in-the-descriptor"
    (writer,), _ = tiled_factory(catalog, max_latency=0.1)("start", docs[0][1])
    for doc_name, doc in docs:
        writer(doc_name, doc)
    run_node = _reader(tiled_server, name)[uid]
    assert run_node.metadata["stop"]["exit_status"] == "success"
    (error,) = run_node.metadata["runstream"]["errors"]
    assert resource["uid"] in error and "not-in-the-descriptor" in error
