"""A detector's HDF5 frames read from Tiled while the detector still writes the file.

A detector (ophyd-async's) declares a frame ``[1, h, w]`` per event and writes its file
``[N, h, w]`` in SWMR mode, ahead of its documents. Tiled (0.2) fits a whole HDF5 array
to the node's shape ``[n, 1, h, w]`` before it slices, which fails while ``N > n``: without
the writer's live slice, no frame of a running scan reads. The writer is fed directly here
(no broker), against the real local Tiled server.
"""

from __future__ import annotations

import h5py
import numpy as np
from event_model import StreamRange, compose_run
from tiled.client import from_uri

from runstream.consumers.tiled import connect_catalog, tiled_factory
from tests.kafka_tools import unique_prefix

FRAME = (4, 5)
DATASET = "/entry/data/data"


def test_frames_read_from_tiled_while_the_detector_writes_its_file(tiled_server) -> None:
    name = unique_prefix("cat")
    catalog = connect_catalog(tiled_server.url, tiled_server.api_key, name)
    path = tiled_server.files / f"{unique_prefix('live')}.h5"
    run = compose_run(metadata={"plan_name": "live_frames"})
    key = {"source": "sim", "dtype": "array", "dtype_numpy": "<f8", "shape": [1, *FRAME],
           "external": "STREAM:"}  # fmt: skip
    descriptor = run.compose_descriptor(data_keys={"cam": key}, name="primary")
    resource = run.compose_stream_resource(
        mimetype="application/x-hdf5", uri=f"file://localhost{path}", data_key="cam",
        parameters={"dataset": DATASET, "chunk_shape": [1, *FRAME]},
    )  # fmt: skip
    (writer,), _ = tiled_factory(catalog, max_latency=0.0)("start", run.start_doc)
    writer("start", run.start_doc)
    writer("descriptor", descriptor.descriptor_doc)
    writer("stream_resource", resource.stream_resource_doc)

    def announce(start: int, stop: int) -> None:  # the datums of frames written, then a batch
        for i in range(start, stop):
            writer("stream_datum", resource.compose_stream_datum(
                indices=StreamRange(start=i, stop=i + 1),
                seq_nums=StreamRange(start=i + 1, stop=i + 2),
                descriptor=descriptor.descriptor_doc,
            ))  # fmt: skip
        writer.tick()  # a latency of 0: the batch is written now

    with h5py.File(path, "w", libver="latest") as f:
        data = f.create_dataset(DATASET, shape=(0, *FRAME), maxshape=(None, *FRAME),
                                chunks=(1, *FRAME), dtype="<f8")  # fmt: skip
        f.swmr_mode = True

        def take(count: int) -> None:  # frame n is filled with n
            for _ in range(count):
                n = data.shape[0]
                data.resize(n + 1, axis=0)
                data[n] = np.full(FRAME, float(n))
                data.flush()

        take(5)  # the detector is ahead of its documents
        announce(0, 3)
        node = from_uri(tiled_server.url, api_key=tiled_server.api_key)[name][
            run.start_doc["uid"]]["primary"]["cam"]  # fmt: skip
        assert node.shape == (3, 1, *FRAME)
        assert node.data_sources()[0].parameters["slice"] == ":3"
        np.testing.assert_array_equal(node[2], np.full((1, *FRAME), 2.0))
        take(2)
        announce(3, 6)
        node.refresh()
        assert node.shape == (6, 1, *FRAME)
        np.testing.assert_array_equal(node[5, 0], np.full(FRAME, 5.0))
        take(1)
    announce(6, 8)
    writer("stop", run.compose_stop())
    node.refresh()
    # at the stop, the data source as TiledWriter writes it: no slice, the whole file
    (source,) = node.data_sources()
    assert source.parameters == {"dataset": DATASET, "swmr": True, "locking": None}
    frames = node.read()
    assert frames.shape == (8, 1, *FRAME)
    np.testing.assert_array_equal(frames[:, 0, 0, 0], np.arange(8.0))
