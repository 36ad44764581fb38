"""The web view's live model: retention, replays, changes, values, decimation."""

from __future__ import annotations

from event_model import RunRouter, compose_run

from runstream.consumers.cellformat import cell_text
from runstream.consumers.protocols import per_run
from runstream.consumers.web import plotdata
from runstream.consumers.web.model import LiveRun, RunFeed, RunStore
from runstream.consumers.web.settings import RetentionSettings

DATA_KEYS = {
    "motor": {"dtype": "number", "shape": [], "source": "sim"},
    "det": {"dtype": "integer", "shape": [], "source": "sim"},
    "name": {"dtype": "string", "shape": [], "source": "sim"},
}


def _run(feed, n: int, md: dict | None = None, stop: bool = True, det=lambda i: i) -> str:
    bundle = compose_run(metadata={"hints": {"dimensions": [[["motor"], "primary"]]}, **(md or {})})
    feed("start", bundle.start_doc)
    desc = bundle.compose_descriptor(name="primary", data_keys=DATA_KEYS)
    feed("descriptor", desc.descriptor_doc)
    for i in range(n):
        data = {"motor": i * 0.5, "det": det(i), "name": f"r{i}"}
        feed("event", desc.compose_event(data=data, timestamps=dict.fromkeys(data, 0.0)))
    if stop:
        feed("stop", bundle.compose_stop())
    return bundle.start_doc["uid"]


def _store(**retention) -> tuple[RunStore, RunRouter, list[float]]:
    now = [0.0]
    store = RunStore(RetentionSettings(**retention), clock=lambda: now[0])
    return store, RunRouter([per_run(lambda: RunFeed(store))]), now


def test_rows_keep_every_event_formatted_by_value() -> None:
    store, router, _ = _store()
    uid = _run(router, 5, det=lambda i: i if i != 3 else 2.5)  # an integer key reads a float
    rows = store.read(uid, lambda r: r.streams["primary"].rows(0, 100))
    assert [r["seq_num"] for r in rows] == [1, 2, 3, 4, 5]
    assert [r["data"]["det"] for r in rows] == [0, 1, 2, 2.5, 4]
    assert [r["cells"]["det"] for r in rows] == [cell_text(v)[0] for v in [0, 1, 2, 2.5, 4]]
    assert rows[1]["cells"] == {"motor": "0.500", "det": "1", "name": "r1"}
    summary = store.summaries()[0]
    assert (summary["status"], summary["streams"]) == ("success", {"primary": 5})


def test_closed_runs_beyond_the_count_or_age_go_open_ones_stay() -> None:
    store, router, now = _store(keep_runs=2, keep_seconds=60)
    open_uid = _run(router, 1, stop=False)
    closed = [_run(router, 1) for _ in range(3)]
    assert {s["uid"] for s in store.summaries()} == {open_uid, *closed[1:]}
    version, _, removed = store.changes_since(0)
    assert removed == [closed[0]]
    now[0] = 61
    store.expire()
    assert [s["uid"] for s in store.summaries()] == [open_uid]
    assert store.changes_since(version)[2] == closed[1:]


def test_changes_since_names_only_what_changed() -> None:
    store, router, _ = _store()
    first = _run(router, 2)
    version, runs, _ = store.changes_since(-1)
    assert [r["uid"] for r in runs] == [first]
    second = _run(router, 2)
    _, runs, removed = store.changes_since(version)
    assert [r["uid"] for r in runs] == [second] and removed == []
    assert store.changes_since(version, uid=first)[1] == []


def test_a_replayed_start_begins_the_run_again_and_abandon_marks_it_incomplete() -> None:
    store = RunStore()
    feed = RunFeed(store)
    bundle = compose_run()
    desc = bundle.compose_descriptor(name="primary", data_keys=DATA_KEYS)
    data = {"motor": 1.0, "det": 1, "name": "x"}
    event = desc.compose_event(data=data, timestamps=dict.fromkeys(data, 0.0))
    for _ in range(2):  # the consumer lost its partition mid-run and read the run again
        for name, doc in [("start", bundle.start_doc), ("descriptor", desc.descriptor_doc),
                          ("event", event)]:  # fmt: skip
            feed(name, doc)
    uid = bundle.start_doc["uid"]
    assert store.read(uid, lambda r: r.streams["primary"].count) == 1
    feed.abandon("revoked: partition moved")
    summary = store.summaries()[0]
    assert (summary["status"], summary["reason"]) == ("incomplete", "revoked: partition moved")


def test_other_documents_are_kept_as_they_came() -> None:
    store, router, _ = _store(keep_other_documents=1)
    bundle = compose_run()
    router("start", bundle.start_doc)
    for _ in range(2):
        resource = bundle.compose_resource(
            spec="AD_HDF5", root="/", resource_path="a.h5", resource_kwargs={}
        )
        router("resource", resource.resource_doc)
    detail = store.read(bundle.start_doc["uid"], lambda r: (list(r.other), r.other_count))
    assert detail[1] == 2 and detail[0][0]["name"] == "resource"


def test_a_large_run_is_decimated_for_the_plot_without_losing_peaks() -> None:
    store, router, _ = _store()
    uid = _run(router, 0, stop=False)
    descriptor = store.read(uid, lambda r: next(iter(r.by_descriptor)))
    n = 100_000
    page = {
        "descriptor": descriptor, "uid": "p", "seq_num": list(range(1, n + 1)),
        "time": [0.0] * n, "timestamps": {}, "filled": {},
        "data": {"motor": [i * 0.5 for i in range(n)], "name": ["x"] * n,
                 "det": [1000 if i == 54_321 else i % 7 for i in range(n)]},
    }  # fmt: skip
    router("event_page", page)
    plot = store.read(uid, lambda r: plotdata.plot(r.streams["primary"], 2000))
    curve = plot["lines"]
    assert plot["events"] == n and curve["decimated"] and len(curve["x"]) == 2000
    assert curve["x_field"] == "motor" and max(curve["series"]["det"]) == 1000
    assert curve["x"][0] == 0.0 and curve["x"][-1] == (n - 1) * 0.5
    assert store.read(uid, lambda r: r.streams["primary"].rows(n - 1, 10))[0]["seq_num"] == n


def test_an_event_page_keeps_what_its_events_one_by_one_keep() -> None:
    import numpy as np
    import pytest

    store, router, _ = _store()
    values = [(0.5, 1, "a"), (1.5, 2.5, None), (np.float64(2.5), np.int64(3), "c")]
    runs = []
    for as_page in (False, True):
        uid = _run(router, 0, stop=False)
        descriptor = store.read(uid, lambda r: next(iter(r.by_descriptor)))
        events = [{"descriptor": descriptor, "uid": f"e{i}", "seq_num": i + 1, "time": 1.0,
                   "data": dict(zip(("motor", "det", "name"), v, strict=True)),
                   "timestamps": {}} for i, v in enumerate(values)]  # fmt: skip
        if as_page:
            router("event_page", {
                "descriptor": descriptor, "uid": [e["uid"] for e in events],
                "seq_num": [e["seq_num"] for e in events], "time": [1.0] * 3, "timestamps": {},
                "data": {k: [e["data"][k] for e in events] for k in ("motor", "det", "name")},
            })  # fmt: skip
        else:
            for event in events:
                router("event", event)
        runs.append(store.read(uid, lambda r: r.streams["primary"].rows(0, 10)))
    assert runs[0] == runs[1] and [r["data"]["det"] for r in runs[1]] == [1, 2.5, 3]
    data = {"motor": [1.0, 2.0], "det": [1], "name": ["x"]}
    ragged = {"descriptor": descriptor, "uid": ["x"], "seq_num": [4], "time": [1.0],
              "timestamps": {}, "data": data}  # fmt: skip
    with pytest.raises(ValueError, match="unequal length"):  # event-model's router would cut it
        store.change(uid, "event_page", LiveRun.add_event_page, ragged)
    assert store.read(uid, lambda r: r.streams["primary"].count) == 3  # refused whole


def test_a_grid_scan_is_a_heat_map_placed_by_position() -> None:
    store, router, _ = _store()
    dims = [[["y"], "primary"], [["x"], "primary"]]
    md = {"hints": {"dimensions": dims}, "shape": [2, 3], "extents": [[0, 1], [0, 2]]}
    bundle = compose_run(metadata=md)
    router("start", bundle.start_doc)
    keys = {k: {"dtype": "number", "shape": [], "source": "s"} for k in ("x", "y", "det")}
    desc = bundle.compose_descriptor(name="primary", data_keys=keys)
    router("descriptor", desc.descriptor_doc)
    for y in (0, 1):
        for x in (0, 1, 2):
            data = {"x": float(x), "y": float(y), "det": float(10 * y + x)}
            router("event", desc.compose_event(data=data, timestamps=dict.fromkeys(data, 0.0)))
    plot = store.read(bundle.start_doc["uid"], lambda r: plotdata.plot(r.streams["primary"], 100))
    assert plot["kind"] == "grid"
    assert plot["grid"]["image"] == [[0.0, 1.0, 2.0], [10.0, 11.0, 12.0]]


def test_2d_data_is_an_image_of_the_latest_frame_and_a_summary_per_row() -> None:
    import numpy as np

    store, router, _ = _store()
    bundle = compose_run()
    router("start", bundle.start_doc)
    keys = {"cam": {"dtype": "array", "shape": [400, 300], "source": "s"},
            "total": {"dtype": "number", "shape": [], "source": "s"}}  # fmt: skip
    desc = bundle.compose_descriptor(name="primary", data_keys=keys)
    router("descriptor", desc.descriptor_doc)
    for i in range(2):
        data = {"cam": np.full((400, 300), float(i)), "total": float(i)}
        router("event", desc.compose_event(data=data, timestamps=dict.fromkeys(data, 0.0)))
    uid = bundle.start_doc["uid"]
    plot = store.read(uid, lambda r: plotdata.plot(r.streams["primary"], 100))
    assert plot["kind"] == "image" and plot["frame"]["shape"] == [400, 300]
    image = plot["frame"]["image"]
    assert len(image) <= plotdata.IMAGE_SIDE and {v for row in image for v in row} == {1.0}
    rows = store.read(uid, lambda r: r.streams["primary"].rows(0, 5))
    assert rows[1]["cells"]["cam"] == "<400x300 mean 1.000>"


def _detector_run(feed, points: int, stack: int = 1) -> str:
    """A run as ophyd-async's SimBlobDetector makes it: events without the frames, one
    stream_datum per point for the frame and for its sum, and a 1-D spectrum in the events."""
    bundle = compose_run(metadata={"hints": {"dimensions": [[["x"], "primary"]]}})
    feed("start", bundle.start_doc)
    frame = {"dtype": "array", "shape": [stack, 4, 5], "source": "file", "external": "STREAM:"}
    total = {"dtype": "number", "shape": [1], "source": "file", "external": "STREAM:"}
    spec = {"dtype": "array", "shape": [8], "source": "sim"}
    keys = {"x": {"dtype": "number", "shape": [], "source": "sim"}, "bdet": frame,
            "bdet-sum": total, "spec": spec}  # fmt: skip
    desc = bundle.compose_descriptor(name="primary", data_keys=keys)
    feed("descriptor", desc.descriptor_doc)
    resources = [
        bundle.compose_stream_resource(
            mimetype="application/x-hdf5",
            uri="file://localhost/d/a.h5",
            data_key=key,
            parameters={"dataset": dataset},
        )
        for key, dataset in (("bdet", "/entry/data/data"), ("bdet-sum", "/entry/sum"))
    ]
    for resource in resources:
        feed("stream_resource", resource.stream_resource_doc)
    for i in range(points):
        for resource in resources:
            feed("stream_datum", resource.compose_stream_datum(
                indices={"start": i, "stop": i + 1}, seq_nums={"start": i + 1, "stop": i + 2},
                descriptor=desc.descriptor_doc))  # fmt: skip
        data = {"x": i * 0.5, "spec": [float(i + k) for k in range(8)]}
        feed("event", desc.compose_event(data=data, timestamps=dict.fromkeys(data, 0.0)))
    feed("stop", bundle.compose_stop())
    return bundle.start_doc["uid"]


def test_stream_resources_and_datums_are_frames_not_raw_documents() -> None:
    import warnings

    with warnings.catch_warnings():  # starlette's notice about its httpx-based test client
        warnings.simplefilter("ignore")
        from fastapi.testclient import TestClient

    from runstream.consumers.web.app import create_app
    from runstream.consumers.web.settings import WebSettings

    store, router, _ = _store()
    uid = _detector_run(router, 4)
    summary = store.summaries()[0]
    assert summary["frames"] == {"primary": {"bdet": 4, "bdet-sum": 4}}
    assert (summary["resources"], summary["other_documents"]) == (2, 0)
    client = TestClient(create_app(store, WebSettings()))
    detail = client.get(f"/api/runs/{uid}").json()
    assert detail["other"] == []
    lines = [(r["data_key"], r["file"], r["dataset"], r["shape"], r["frames"])
             for r in detail["resources"]]  # fmt: skip
    assert lines == [("bdet", "a.h5", "/entry/data/data", [1, 4, 5], 4),
                     ("bdet-sum", "a.h5", "/entry/sum", [1], 4)]  # fmt: skip
    frames = detail["streams"][0]["frames"]
    assert frames["bdet"] == {"kind": "image", "shape": [1, 4, 5], "count": 4}
    assert frames["bdet-sum"]["kind"] == "scalar"
    rows = client.get(f"/api/runs/{uid}/streams/primary/rows").json()["rows"]
    assert [r["cells"]["bdet"] for r in rows] == [f"frame {i}" for i in range(4)]
    assert [r["cells"]["bdet-sum"] for r in rows] == [f"frame {i}" for i in range(4)]
    plot = client.get(f"/api/runs/{uid}/streams/primary/plot").json()
    assert plot["spectra"] == {"spec": [float(3 + k) for k in range(8)]}  # the latest
    # no Tiled configured: the frame is refused with why; unknown frames are 404s
    no_tiled = client.get(f"/api/runs/{uid}/streams/primary/frames/bdet")
    assert no_tiled.status_code == 503 and "no Tiled is configured" in no_tiled.json()["detail"]
    assert client.get(f"/api/runs/{uid}/streams/primary/frames/bdet?index=4").status_code == 404
    assert client.get(f"/api/runs/{uid}/streams/primary/frames/x").status_code == 404
    scalar = client.get(f"/api/runs/{uid}/streams/primary/frames/bdet-sum")
    assert scalar.status_code == 404 and "one value per event" in scalar.json()["detail"]


def test_a_frame_is_sliced_to_its_first_image_and_rows_map_to_frames() -> None:
    from runstream.consumers.web.frames import KeyFrames, frame_kind, frame_slice

    assert frame_slice(7, [240, 320]) == "7"
    assert frame_slice(7, [1, 240, 320]) == "7,0"  # a stack: its first image
    assert frame_slice(7, [3, 2, 240, 320]) == "7,0,0"
    assert frame_slice(2, [100]) == "2" and frame_kind([100]) == "spectrum"
    assert frame_kind([1]) == frame_kind([]) == "scalar"
    frames = KeyFrames()
    frames.add(1, 3, 2)  # two events, one frame each
    frames.add(3, 4, 1)
    frames.add(4, 5, 3)  # one event, three frames: the event's first
    assert [frames.frame_of(s) for s in (1, 2, 3, 4, 5)] == [0, 1, 2, 3, None]
    assert frames.count == 6
