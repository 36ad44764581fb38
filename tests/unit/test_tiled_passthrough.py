"""Events and stream datums that skip TiledWriter's normalizer come out as it would emit them."""

from __future__ import annotations

import copy

from bluesky_tiled_plugins.writing.tiled_writer import RunNormalizer

from runstream.consumers.tiled.writer import Passthrough

KEYS = {"x": {"dtype": "number", "shape": [], "source": "s"},
        "time": {"dtype": "number", "shape": [], "source": "s"},
        "img": {"dtype": "array", "shape": [2], "source": "s",
                "external": "FILESTORE:"}}  # fmt: skip
EVENTS = [
    {"data": {"x": 1.0}, "timestamps": {"x": 1.0}},
    {"data": {"x": 1.0}, "timestamps": {"x": 1.0}, "filled": {}},
    {"data": {"x": 1.0}, "timestamps": {"x": 1.0}, "filled": {"x": False}},
    {"data": {"x": 1.0, "time": 2.0}, "timestamps": {"x": 1.0, "time": 1.0}},
    {"data": {"x": 1.0, "nope": 2.0}, "timestamps": {"x": 1.0, "nope": 1.0}},
]


def test_what_passes_is_what_the_normalizer_emits():
    normalizer, passthrough, emitted = RunNormalizer(), Passthrough(), []
    normalizer.subscribe(lambda name, doc: emitted.append((name, doc)))
    normalizer("start", {"uid": "r", "time": 0.0})
    normalizer("descriptor", {"uid": "d", "run_start": "r", "time": 0.0, "name": "primary",
                              "data_keys": copy.deepcopy(KEYS)})  # fmt: skip
    passthrough.descriptor(emitted[-1][1])
    passed = 0
    for i, body in enumerate(EVENTS, start=1):
        event = {"uid": f"e{i}", "descriptor": "d", "seq_num": i, "time": 1.0, **body}
        same = passthrough.event(copy.deepcopy(event))
        emitted.clear()
        normalizer("event", copy.deepcopy(event))
        if same is not None:
            passed += 1
            assert emitted == [("event", same)]
    assert passed == 2  # the plain event and the one with an empty ``filled``
    datum = {"uid": "sd", "stream_resource": "sr", "descriptor": "d",
             "indices": {"start": 0, "stop": 1}, "seq_nums": {"start": 1, "stop": 2}}  # fmt: skip
    emitted.clear()
    normalizer("stream_datum", copy.deepcopy(datum))
    assert emitted == [("stream_datum", datum)]  # unchanged: the writer takes it as it is
