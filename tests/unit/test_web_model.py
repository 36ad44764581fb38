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
