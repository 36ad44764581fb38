"""Per-run tables from a real RunEngine: every row, right values, rewritten on replay."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from bluesky import RunEngine
from event_model import RunRouter

from runstream.consumers.cellformat import cell
from runstream.consumers.table import RunTable, table_factory
from runstream.producer.plans import nested_runs, recursive_runs
from tests.table_text import table_rows


def _record(plan, out: Path, echo=None) -> list[tuple[str, dict]]:
    RE = RunEngine({})
    docs: list[tuple[str, dict]] = []
    RE.subscribe(lambda n, d: docs.append((n, d)))
    RE.subscribe(RunRouter([table_factory(out, echo)]))
    RE(plan)
    return docs


def _expectedtable_rows(docs, run_uid: str) -> list[list[str]]:
    descriptors = {d["uid"]: d for n, d in docs if n == "descriptor" and d["run_start"] == run_uid}
    rows = []
    for name, doc in docs:
        if name == "event" and doc["descriptor"] in descriptors:
            keys = list(descriptors[doc["descriptor"]]["data_keys"])
            rows.append([str(doc["seq_num"]), *(cell(doc["data"][k], 10).strip() for k in keys)])
    return rows


def test_nested_runs_each_file_holds_exactly_itstable_rows(tmp_path: Path) -> None:
    echo = io.StringIO()
    docs = _record(nested_runs(6), tmp_path, echo)
    starts = [d for n, d in docs if n == "start"]
    assert len(starts) == 2
    for start in starts:
        path = tmp_path / f"{start['scan_id']}-{start['uid'][:8]}.txt"
        text = path.read_text()
        got = [[r[0], *r[2:]] for r in table_rows(text)]  # drop the clock column
        assert got == _expectedtable_rows(docs, start["uid"])
        assert start["uid"] in text
        assert "failed to format" not in text
    # 6 outer rows, 7 inner rows: nothing lost, every value in place
    assert sorted(len(table_rows((tmp_path / f"{s['scan_id']}-{s['uid'][:8]}.txt").read_text()))
                  for s in starts) == [6, 7]  # fmt: skip
    # terminal lines carry the run's tag, so interleaved runs are told apart
    lines = echo.getvalue().splitlines()
    for start in starts:
        tag = f"[scan {start['scan_id']} {start['uid'][:8]}]"
        assert sum(line.startswith(tag) and "| " in line for line in lines) > 6


def test_recursive_runs_three_files(tmp_path: Path) -> None:
    docs = _record(recursive_runs(4), tmp_path)
    starts = [d for n, d in docs if n == "start"]
    assert len(starts) == 3
    for start in starts:
        text = (tmp_path / f"{start['scan_id']}-{start['uid'][:8]}.txt").read_text()
        assert [[r[0], *r[2:]] for r in table_rows(text)] == _expectedtable_rows(docs, start["uid"])
        assert "run ended: success" in text


def test_values_formatted_by_what_they_are(tmp_path: Path) -> None:
    table = RunTable(tmp_path, None)
    table(
        "start", {"uid": "u" * 36, "time": 0, "scan_id": 7, "run_key": "k", "parent_uid": "p" * 36}
    )
    table("descriptor", {
        "uid": "d", "run_start": "u" * 36, "name": "primary", "time": 0,
        "data_keys": {"motor": {"dtype": "integer", "shape": [], "source": "s"},
                      "img": {"dtype": "array", "shape": [2, 3], "source": "s"},
                      "note": {"dtype": "string", "shape": [], "source": "s"}},
    })  # fmt: skip
    one, zero = np.ones((2, 3)), np.zeros((2, 3))
    table("event", {"descriptor": "d", "seq_num": 1, "time": 0,
                    "data": {"motor": 0, "img": one, "note": "short"}})  # fmt: skip
    table("event", {"descriptor": "d", "seq_num": 2, "time": 0,
                    "data": {"motor": 0.25, "img": zero, "note": "x" * 40}})  # fmt: skip
    table("event_page", {"descriptor": "d", "uid": ["e3"], "seq_num": [3], "time": [0],
                         "data": {"motor": [1e-9], "img": [one], "note": [None]},
                         "timestamps": {"motor": [0], "img": [0], "note": [0]}})  # fmt: skip
    table("stop", {"run_start": "u" * 36, "exit_status": "success", "num_events": {"primary": 3}})
    text = (tmp_path / "7-uuuuuuuu.txt").read_text()
    rows = table_rows(text)
    assert [r[2] for r in rows] == ["0", "0.250", "1.000e-09"]  # int, float, tiny float
    assert rows[0][3] == "<2x3 mean 1.000>"
    assert rows[1][4] == "x" * 9 + "~"  # cut to the column
    assert rows[2][4] == ""
    assert "run key k" in text and "inside run pppppppp" in text


def test_replay_rewrites_the_file_to_the_same_content(tmp_path: Path) -> None:
    RE = RunEngine({})
    docs: list[tuple[str, dict]] = []
    RE.subscribe(lambda n, d: docs.append((n, d)))
    RE(nested_runs(4))
    outer = next(d for n, d in docs if n == "start")
    router = RunRouter([table_factory(tmp_path, None)])
    for name, doc in docs:
        router(name, doc)
    first = (tmp_path / f"1-{outer['uid'][:8]}.txt").read_text()
    # the same run again, from its start, as after a consumer crash
    router2 = RunRouter([table_factory(tmp_path, None)])
    for name, doc in docs:
        router2(name, doc)
    assert (tmp_path / f"1-{outer['uid'][:8]}.txt").read_text() == first


def test_abandoned_run_is_marked_incomplete(tmp_path: Path) -> None:
    table = RunTable(tmp_path, None)
    table("start", {"uid": "a" * 36, "time": 0, "scan_id": 1})
    table.abandon("idle for 600 s")
    assert "run incomplete: idle for 600 s" in (tmp_path / "1-aaaaaaaa.txt").read_text()
