"""Runs the web view no longer keeps come from Tiled: real Kafka, real Tiled, real RunEngine."""

from __future__ import annotations

import time

import bluesky.plan_stubs as bps
import pytest
from bluesky import RunEngine
from bluesky.plans import count, scan
from event_model import RunRouter
from fastapi.testclient import TestClient

from runstream.consumers.cellformat import cell_text
from runstream.consumers.tiled import connect_catalog, tiled_factory
from runstream.consumers.web.app import create_app
from runstream.consumers.web.model import RunStore
from runstream.consumers.web.settings import WebSettings
from runstream.producer import KafkaPublisher, lineage
from runstream.producer.plans import sim_hw
from tests.kafka_tools import free_port, unique_prefix
from tests.waiting import eventually
from tests.web_tools import chromium, web_process


class PlanFailedError(Exception):
    """The failing plan's own error."""


def _failing(det):
    """A run that reads twice, then fails: its stop says ``fail``."""
    yield from bps.open_run({"plan_name": "failing"})
    for _ in range(2):
        yield from bps.trigger_and_read([det])
    raise PlanFailedError("on purpose")


def _events(emitted, uid: str) -> tuple[list[str], list[dict]]:
    descriptors = {
        d["uid"]
        for n, d in emitted
        if n == "descriptor" and d["run_start"] == uid and d["name"] == "primary"
    }
    first = next(d for n, d in emitted if n == "descriptor" and d["uid"] in descriptors)
    keys = list(first["data_keys"])
    return keys, [d for n, d in emitted if n == "event" and d["descriptor"] in descriptors]


def test_runs_the_view_does_not_keep_are_read_from_tiled(
    kafka_bootstrap, new_topic, tiled_server, tmp_path, monkeypatch
) -> None:
    topic, catalog_name = new_topic(), unique_prefix("cat")
    catalog = connect_catalog(tiled_server.url, tiled_server.api_key, catalog_name)
    publisher = KafkaPublisher(topic, kafka_bootstrap, tmp_path / "outbox", partitions=1)
    RE = RunEngine({})
    RE.preprocessors.append(lineage)
    emitted: list[tuple[str, dict]] = []
    RE.subscribe(publisher)
    writer = RunRouter([tiled_factory(catalog, max_latency=0.1)])  # writes at each stop
    RE.subscribe(writer)
    RE.subscribe(lambda n, d: emitted.append((n, d)))
    hw = sim_hw()
    uids = [*RE(scan([hw.det, hw.det4], hw.motor, -1, 1, 7)), *RE(count([hw.det], 5))]
    with pytest.raises(PlanFailedError):
        RE(_failing(hw.det))
    uids.append(next(d["uid"] for n, d in emitted if n == "start" and d["plan_name"] == "failing"))
    last = RE(count([hw.det], 2))[0]  # the one closed run the view keeps
    never_ends = unique_prefix("never-ends")  # in Tiled only, without a stop
    writer("start", {"uid": never_ends, "time": time.time(), "scan_id": 99, "plan_name": "x"})
    catalog.create_container(key="not-a-run")
    assert publisher.flush(30) == 0
    publisher.close()

    monkeypatch.setenv("RUNSTREAM_WEB_KEEP_RUNS", "1")  # the web process's settings
    monkeypatch.setenv("RUNSTREAM_TILED_API_KEY", tiled_server.api_key)
    with web_process(kafka_bootstrap, topic, tmp_path / "web.log", "--tiled-url",
                     tiled_server.url, "--tiled-catalog", catalog_name) as web:  # fmt: skip
        eventually(lambda: [r["uid"] for r in web.api.get("/api/runs").json()] == [last],
                   60, "the view holding only the last run")  # fmt: skip
        assert web.api.get(f"/api/runs/{last}").json()["source"] == "live"
        for uid, status in zip(uids, ["success", "success", "fail"], strict=True):
            detail = web.api.get(f"/api/runs/{uid}").json()
            keys, events = _events(emitted, uid)
            assert detail["source"] == "tiled"
            assert detail["summary"]["status"] == status
            assert detail["summary"]["streams"] == {"primary": len(events)}
            assert detail["start"]["uid"] == uid and detail["stop"]["run_start"] == uid
            assert [s["keys"] for s in detail["streams"]] == [keys]
            page = web.api.get(f"/api/runs/{uid}/streams/primary/rows",
                               params={"offset": 1, "limit": 3}).json()  # fmt: skip
            assert page["source"] == "tiled" and page["total"] == len(events)
            want = events[1:4]
            assert [r["seq_num"] for r in page["rows"]] == [e["seq_num"] for e in want]
            assert [r["time"] for r in page["rows"]] == [e["time"] for e in want]
            assert [r["data"] for r in page["rows"]] == [e["data"] for e in want]
            assert [r["cells"] for r in page["rows"]] == [
                {k: cell_text(e["data"][k])[0] for k in keys} for e in want
            ]
        open_one = web.api.get(f"/api/runs/{never_ends}").json()
        assert (open_one["summary"]["status"], open_one["stop"]) == ("incomplete", None)
        assert open_one["streams"] == [] and open_one["source"] == "tiled"
        not_a_run = web.api.get("/api/runs/not-a-run")
        assert not_a_run.status_code == 502 and "not as a Bluesky run" in not_a_run.text
        unknown = web.api.get("/api/runs/no-such-run")
        assert unknown.status_code == 404 and "no run 'no-such-run'" in unknown.json()["detail"]
        assert "in Tiled" in unknown.json()["detail"]
        missing = web.api.get(f"/api/runs/{uids[0]}/streams/baseline/rows")
        assert missing.status_code == 404 and "no stream 'baseline'" in missing.json()["detail"]
        assert tiled_server.api_key not in (tmp_path / "web.log").read_text()

        # the run page works for a run read from Tiled: every row, and a drawn plot
        keys, events = _events(emitted, uids[0])
        with chromium() as browser:
            page = browser.new_page()
            page.goto(f"{web.url}runs/{uids[0]}")
            rows = "table.rows[data-stream=primary] tbody tr[data-seq-num]"
            page.wait_for_function(f"n => document.querySelectorAll('{rows}').length == n",
                                   arg=len(events))  # fmt: skip
            shown = page.eval_on_selector_all(
                rows, "trs => trs.map(tr => [...tr.cells].map(td => td.textContent))"
            )
            assert [[r[0], *r[2:]] for r in shown] == [
                [str(e["seq_num"]), *(cell_text(e["data"][k])[0] for k in keys)] for e in events
            ]
            assert "read from Tiled" in page.inner_text("#run-header")
            page.wait_for_selector(".stream[data-stream=primary] .plot canvas")


def test_tiled_unreachable_or_refusing_is_a_clear_503_or_502(tiled_server) -> None:
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    # links name the server browsers see; reads go to the read URL, here a dead one
    dead = WebSettings(tiled_url=tiled_server.url, tiled_read_url=url, tiled_timeout=2)
    app = create_app(RunStore(), dead)
    with TestClient(app) as client:
        for path in ("/api/runs/gone", "/api/runs/gone/streams/primary/rows"):
            answer = client.get(path)
            assert answer.status_code == 503
            assert f"Tiled at {url} does not answer" in answer.json()["detail"]
        documented = client.get("/openapi.json").json()["paths"]["/api/runs/{uid}"]["get"]
        assert {"404", "502", "503"} <= set(documented["responses"])
    wrong_key = WebSettings(tiled_url=tiled_server.url, tiled_api_key="not-the-key")
    with TestClient(create_app(RunStore(), wrong_key)) as client:
        answer = client.get("/api/runs/gone")
        assert answer.status_code == 502
        assert "refused the API key" in answer.json()["detail"]
        assert "not-the-key" not in answer.text
