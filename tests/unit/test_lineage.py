"""The lineage preprocessor on the seed's plans, with a real RunEngine."""

from __future__ import annotations

from bluesky import RunEngine

from runstream.producer import lineage
from runstream.producer.plans import nested_runs, recursive_runs, sequential_runs


def _starts(plan) -> list[dict]:
    RE = RunEngine({})
    RE.preprocessors.append(lineage)
    starts: list[dict] = []
    RE.subscribe(lambda name, doc: starts.append(doc) if name == "start" else None)
    RE(plan)
    return starts


def test_nested_inner_run_names_its_outer_run() -> None:
    outer, inner = _starts(nested_runs(4))
    assert outer["run_key"] == "run_1" and "parent_uid" not in outer
    assert inner["run_key"] == "run_2" and inner["parent_uid"] == outer["uid"]


def test_recursive_runs_chain_parents() -> None:
    runs = _starts(recursive_runs(2, depth=3))
    assert [r["run_key"] for r in runs] == ["run_key_1", "run_key_2", "run_key_3"]
    assert "parent_uid" not in runs[0]
    assert runs[1]["parent_uid"] == runs[0]["uid"]
    assert runs[2]["parent_uid"] == runs[1]["uid"]


def test_sequential_runs_have_the_default_key_and_no_parent() -> None:
    runs = _starts(sequential_runs(3))
    assert len(runs) == 2
    assert all(r["run_key"] is None and "parent_uid" not in r for r in runs)


def test_the_plans_own_metadata_wins() -> None:
    import bluesky.plan_stubs as bps
    import bluesky.preprocessors as bpp

    @bpp.set_run_key_decorator("k")
    @bpp.run_decorator(md={"run_key": "mine"})
    def plan():
        yield from bps.null()

    (start,) = _starts(plan())
    assert start["run_key"] == "mine"


def test_return_value_of_the_plan_is_kept() -> None:
    RE = RunEngine({})
    RE.preprocessors.append(lineage)
    uids = RE(nested_runs(2))
    assert len(uids) == 2
