"""Resources without run_start find their run (`schemas.RunKeys`), or are refused with a reason."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

from runstream.schemas import RunKeys
from tests.unlabeled_runs import by_run, emitted, old_style


def _sort_all(keys: RunKeys, docs):
    runs, lost = defaultdict(list), []
    for name, doc in docs:
        keyed, unkeyed = keys.sort(name, doc)
        for item in keyed:
            runs[item.run].append((item.name, item.doc.get("uid") or item.doc.get("datum_id")))
        lost += unkeyed
    return runs, lost


def test_nested_runs_from_a_run_engine_each_get_their_own_resources(tmp_path: Path) -> None:
    docs = emitted(tmp_path)
    stripped = [(name, old_style(name, doc)) for name, doc in docs]
    assert sum(n == "resource" and "run_start" not in d for n, d in stripped) == 2
    keys = RunKeys()
    runs, lost = _sort_all(keys, stripped)
    assert lost == []
    assert runs == by_run(docs)  # every document, in its run, in emission order
    assert keys.holding == 0 and keys.index.open_runs == []


def test_one_run_open_takes_the_resource_at_once() -> None:
    keys = RunKeys()
    keys.sort("start", {"uid": "R"})
    keyed, lost = keys.sort("resource", {"uid": "S", "spec": "X"})
    assert [(k.run, k.name) for k in keyed] == [("R", "resource")] and lost == []
    keyed, _ = keys.sort("datum_page", {"resource": "S", "datum_id": ["S/0"]})
    assert [k.run for k in keyed] == ["R"]


def _two_open(keys: RunKeys) -> None:
    for run in ("outer", "inner"):
        keys.sort("start", {"uid": run})
        keys.sort("descriptor", {"uid": f"d-{run}", "run_start": run})


def test_an_event_page_that_refers_to_a_held_datum_releases_it_before_itself() -> None:
    keys = RunKeys()
    _two_open(keys)
    assert keys.sort("resource", {"uid": "S"}, "m1") == ([], [])
    assert keys.sort("datum", {"resource": "S", "datum_id": "S/0"}, "m2") == ([], [])
    assert keys.holding == 2
    keyed, _ = keys.sort("event", {"descriptor": "d-outer", "data": {"x": 1.0}}, "m3")
    assert [k.tag for k in keyed] == ["m3"]  # refers to nothing held: it waits on
    page = {"descriptor": "d-inner", "data": {"x": [1.0, 2.0], "img": ["S/0", "S/1"]}}
    keyed, _ = keys.sort("event_page", page, "m4")
    assert [(k.run, k.tag) for k in keyed] == [("inner", "m1"), ("inner", "m2"), ("inner", "m4")]
    keyed, _ = keys.sort("datum", {"resource": "S", "datum_id": "S/1"})
    assert [k.run for k in keyed] == ["inner"] and keys.holding == 0


def test_a_stream_resource_goes_where_its_stream_datums_descriptor_is() -> None:
    keys = RunKeys()
    _two_open(keys)
    assert keys.sort("stream_resource", {"uid": "SR"}) == ([], [])
    orphan = {"uid": "SD0", "stream_resource": "SR", "descriptor": ""}
    assert keys.sort("stream_datum", orphan) == ([], [])  # no descriptor yet: it waits too
    sd = {"uid": "SD1", "stream_resource": "SR", "descriptor": "d-outer"}
    keyed, _ = keys.sort("stream_datum", sd)
    assert [(k.run, k.doc["uid"]) for k in keyed] == [("outer", "SR"), ("outer", "SD0"),
                                                       ("outer", "SD1")]  # fmt: skip


def test_what_no_run_can_take_is_returned_with_its_reason_and_nothing_else_is_lost() -> None:
    keys = RunKeys()
    keyed, lost = keys.sort("resource", {"uid": "S0"}, "m0")
    assert keyed == [] and [(u.tag, u.reason) for u in lost] == [
        ("m0", "resource S0 names no run_start and no run is open")]  # fmt: skip
    _, lost = keys.sort("datum", {"resource": "nowhere", "datum_id": "nowhere/0"})
    assert lost[0].reason == "datum points at resource 'nowhere', never seen"
    _two_open(keys)
    keys.sort("resource", {"uid": "S"}, "m1")
    keys.sort("datum", {"resource": "S", "datum_id": "S/0"}, "m2")
    keyed, lost = keys.sort("stop", {"run_start": "inner"}, "m3")
    assert [k.tag for k in keyed] == ["m3"] and lost == []  # outer may still refer to it
    keyed, lost = keys.sort("event", {"descriptor": "d-outer", "data": {}}, "m4")
    assert [k.tag for k in keyed] == ["m4"]  # events of other runs pass meanwhile
    keyed, lost = keys.sort("stop", {"run_start": "outer"}, "m5")
    assert [k.tag for k in keyed] == ["m5"]
    assert [u.tag for u in lost] == ["m1", "m2"]
    assert lost[0].reason == (
        "resource S names no run_start, and nothing of the runs open when it came (outer, inner) "
        "referred to it before they ended"
    )
    assert keys.holding == 0


def test_a_run_given_up_gives_up_what_waited_only_for_it() -> None:
    keys = RunKeys()
    _two_open(keys)
    keys.sort("resource", {"uid": "S"}, "m1")
    assert keys.forget("inner") == []
    assert [u.tag for u in keys.forget("outer")] == ["m1"]
    assert keys.index.open_runs == []
