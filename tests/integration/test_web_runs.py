"""The runs list for a day's work and the engine panel's devices: Kafka, Tiled, engine, Chromium.

One module-wide stack. Runs written to Tiled before the web view started (never to its
topic) are the list's older half; runs published after it started are its live half.
The web view follows an engine whose device module holds an ophyd-async motor that no
IOC serves, so the engine panel lists a device that did not connect.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from types import SimpleNamespace

import bluesky.plan_stubs as bps
import httpx
import pytest
from bluesky import RunEngine
from bluesky.plans import count, scan
from event_model import RunRouter

from runstream.consumers.tiled import connect_catalog, tiled_factory
from runstream.producer import KafkaPublisher, lineage
from runstream.producer.plans import nested_runs, recursive_runs, sim_hw
from tests.integration.test_engine import TOKEN, EngineProcess
from tests.kafka_tools import create_topic, unique_prefix
from tests.tiled_fixtures import runs_closed
from tests.waiting import eventually
from tests.web_tools import chromium, web_process

pytestmark = pytest.mark.kafka

ROOT = Path(__file__).resolve().parents[2]
PAGE = 4  # runs per page from Tiled (the page's ?limit=)
CA_ENV = {"EPICS_CA_AUTO_ADDR_LIST": "NO", "EPICS_CA_ADDR_LIST": "127.0.0.1"}


class PlanFailedError(Exception):
    """The failing plan's own error."""


def _failing(det):
    yield from bps.open_run({"plan_name": "failing"})
    yield from bps.trigger_and_read([det])
    raise PlanFailedError("on purpose")


@dataclass
class Stack:
    web: object
    page: object
    engine: EngineProcess
    old: list[dict]  # start documents of the runs only Tiled holds, oldest first
    live: list[dict]  # start documents of the runs the view holds
    incomplete: dict  # the start of a run in Tiled without its stop


def _old_runs(RE, hw, writer) -> dict:  # noqa: N803 (bluesky's name)
    """Runs into Tiled only: counts, a scan, a failure, nested and thrice-nested runs."""
    RE(count([hw.det], 2, md={"sample": "quartz"}))
    RE(scan([hw.det], hw.motor, -1, 1, 3))
    with pytest.raises(PlanFailedError):
        RE(_failing(hw.det))
    RE(nested_runs(2, hw=hw))
    RE(recursive_runs(2, hw=hw))
    RE(count([hw.det], 1))
    incomplete = {"uid": unique_prefix("never-ends"), "time": time.time(), "scan_id": 99,
                  "plan_name": "x"}  # fmt: skip
    writer("start", incomplete)
    return incomplete


@pytest.fixture(scope="module")
def stack(kafka_bootstrap: str, tiled_server, tmp_path_factory) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp("web-runs")
    topic = create_topic(kafka_bootstrap, f"{unique_prefix()}.bluesky.runengine.documents", 1)
    catalog_name = unique_prefix("cat")
    catalog = connect_catalog(tiled_server.url, tiled_server.api_key, catalog_name)
    catalog.create_container(key="not-a-run")
    RE = RunEngine({}, context_managers=[])
    RE.preprocessors.append(lineage)
    starts: list[dict] = []
    RE.subscribe(lambda n, d: starts.append(d) if n == "start" else None)
    writer = RunRouter([tiled_factory(catalog, max_latency=0.1)])
    RE.subscribe(writer)
    hw = SimpleNamespace(**vars(sim_hw()))
    incomplete = _old_runs(RE, hw, writer)
    old = list(starts)
    eventually(lambda: runs_closed(catalog, [s["uid"] for s in old]), 60, "old runs in Tiled")

    (tmp / "engine").mkdir()
    engine = EngineProcess(tmp / "engine", kafka_bootstrap, topic)
    modules = ["runstream.producer.plans", str(ROOT / "tests" / "web_devices.py")]
    engine.env.update(CA_ENV, RUNSTREAM_DEVICE_CONNECT_TIMEOUT="1",
                      RUNSTREAM_DEVICE_MODULES=json.dumps(modules))  # fmt: skip
    engine.start()
    try:
        with (
            pytest.MonkeyPatch.context() as env,
            chromium() as browser,
        ):
            env.setenv("RUNSTREAM_TILED_API_KEY", tiled_server.api_key)
            with web_process(kafka_bootstrap, topic, tmp / "web.log", "--engine-url", engine.url,
                             "--tiled-url", tiled_server.url,
                             "--tiled-catalog", catalog_name) as web:  # fmt: skip
                eventually(web.ready, 60, lambda: f"the web view ready: {web.log.read_text()}")
                publisher = KafkaPublisher(topic, kafka_bootstrap, tmp / "outbox", partitions=1)
                RE.subscribe(publisher)
                RE(count([hw.det], 2))
                RE(nested_runs(2, hw=hw))
                assert publisher.flush(30) == 0
                publisher.close()
                live = starts[len(old) :]
                eventually(lambda: len(web.api.get("/api/runs").json()) == len(live), 60,
                           "the live runs in the view")  # fmt: skip
                page = browser.new_page(viewport={"width": 1300, "height": 900})
                page.goto(f"{web.url}?limit={PAGE}")
                page.wait_for_selector("#connection.live")
                yield Stack(web, page, engine, old, live, incomplete)
                assert tiled_server.api_key not in web.log.read_text()
    finally:
        engine.stop()


def _shown(page, selector: str = "#runs [data-run-uid]:not(.filtered-out)") -> list[str]:
    return page.eval_on_selector_all(selector, "els => els.map(e => e.dataset.runUid)")


def _wait_until_shown(page, uids: set[str]) -> None:
    page.wait_for_function(
        "uids => uids.every(u => document.querySelector(`#runs [data-run-uid='${u}']`))",
        arg=sorted(uids), timeout=30_000,
    )  # fmt: skip


def _all_pages(page) -> None:
    """Every page of older runs read: the button goes once the last page is in."""
    while page.is_visible("#load-older"):
        page.click("#load-older")
        page.wait_for_function("() => !document.getElementById('load-older').disabled")


def test_the_list_pages_into_runs_only_tiled_holds(stack: Stack) -> None:
    page = stack.page
    live = {s["uid"] for s in stack.live}
    _wait_until_shown(page, live)
    newest_old = sorted([*stack.old, stack.incomplete], key=lambda s: -s["time"])
    # the first page only: the newest older runs (and the parents of nested ones among them)
    page.wait_for_selector("#runs [data-source=tiled]")
    first = set(_shown(page, "#runs [data-source=tiled]"))
    assert {s["uid"] for s in newest_old[:PAGE]} <= first
    assert len(first) < len(newest_old) and page.is_visible("#load-older")
    _all_pages(page)
    assert set(_shown(page, "#runs [data-source=tiled]")) == {s["uid"] for s in newest_old}
    assert set(_shown(page, "#runs [data-source=live]")) == live
    shown = _shown(page)
    assert len(shown) == len(set(shown)) == len(live) + len(newest_old)  # each run once
    assert "not-a-run" not in shown
    # newest first at the top level
    times = {s["uid"]: s["time"] for s in [*stack.live, *newest_old]}
    tops = [times[uid] for uid in _shown(page, "#runs > li")]
    assert tops == sorted(tops, reverse=True)
    assert "older runs in Tiled" in page.inner_text("#older-state")
    line = page.inner_text(f"[data-run-uid='{stack.incomplete['uid']}'] > .run-line")
    assert "incomplete" in line and "in Tiled" in line


def test_each_run_shows_its_start_time(stack: Stack) -> None:
    page = stack.page
    _all_pages(page)
    for start in [*stack.live, *stack.old]:
        shown = page.inner_text(f"[data-run-uid='{start['uid']}'] > .run-line .start")
        assert shown == datetime.fromtimestamp(start["time"]).strftime("%Y-%m-%d %H:%M:%S")


def _parents(page) -> dict[str, str | None]:
    return page.evaluate(
        """() => Object.fromEntries([...document.querySelectorAll('#runs [data-run-uid]')]
             .map(li => [li.dataset.runUid,
                         li.parentElement.closest('[data-run-uid]')?.dataset.runUid ?? null]))"""
    )


def test_nested_runs_stay_under_their_parents(stack: Stack) -> None:
    page = stack.page
    _all_pages(page)
    where = _parents(page)
    for start in [*stack.old, *stack.live]:
        assert where[start["uid"]] == start.get("parent_uid"), start
    assert sum(1 for s in [*stack.old, *stack.live] if s.get("parent_uid")) == 4


def _filter(page, **values: str) -> None:
    for name in ("plan", "text"):
        page.fill(f"#run-filter [name={name}]", values.get(name, ""))
    page.select_option("#run-filter [name=status]", values.get("status", ""))
    page.dispatch_event("#run-filter", "submit")


def _visible(page, uids: set[str], context: set[str] = frozenset()) -> None:
    """Exactly ``uids`` pass the filter, and ``context`` shows dimmed as their parents."""
    want = {"pass": sorted(uids), "context": sorted(context)}
    page.wait_for_function(
        """want => {
          const got = (sel) =>
            [...document.querySelectorAll(sel)].map(e => e.dataset.runUid).sort();
          const pass = got('#runs [data-run-uid]:not(.filtered-out):not(.context)');
          return JSON.stringify({pass, context: got('#runs .context')}) == JSON.stringify(want)
            && !document.getElementById('load-older').disabled;
        }""",
        arg=want, timeout=30_000,
    )  # fmt: skip


def test_filters_by_plan_status_and_text_over_live_and_tiled_runs(stack: Stack) -> None:
    page = stack.page
    everything = [*stack.old, *stack.live]
    by = lambda f: {s["uid"] for s in everything if f(s)}  # noqa: E731
    try:
        _filter(page, plan="count")
        _visible(page, by(lambda s: s.get("plan_name") == "count"))
        _filter(page, status="fail")
        _visible(page, by(lambda s: s.get("plan_name") == "failing"))
        _filter(page, status="incomplete")
        _visible(page, {stack.incomplete["uid"]})
        _filter(page, text="quartz")  # in the start document: Tiled's full-text search
        _visible(page, by(lambda s: s.get("sample") == "quartz"))
        # a nested run found: its parents show, dimmed, live and from Tiled
        _filter(page, text="run_key_2")
        inner = by(lambda s: s.get("run_key") == "run_key_2")
        _visible(page, inner, by(lambda s: s.get("run_key") == "run_key_1"))
        _filter(page, text="run_2")
        _visible(page, by(lambda s: s.get("run_key") == "run_2"),
                 by(lambda s: s.get("run_key") == "run_1"))  # fmt: skip
        live_one = stack.live[0]["uid"]
        _filter(page, plan="count", text=live_one[:8])
        _visible(page, {live_one})
    finally:
        _filter(page)
    page.wait_for_selector("#load-older:not([hidden])")
    _all_pages(page)
    _visible(page, by(lambda s: True) | {stack.incomplete["uid"]})


def test_the_tiled_runs_api_pages_and_filters(stack: Stack) -> None:
    api = stack.web.api
    live = {s["uid"] for s in stack.live}
    seen: list[str] = []
    offset: int | None = 0
    before = None
    while offset is not None:
        params = {"offset": offset, "limit": 3, **({"before": before} if before else {})}
        body = api.get("/api/tiled-runs", params=params).json()
        assert body["total"] == len(stack.old) + 1 and body["limit"] == 3
        before, offset = body["before"], body["next_offset"]
        seen += [r["uid"] for r in body["runs"]]
        assert all(r["source"] == "tiled" for r in body["runs"])
    assert before == min(s["time"] for s in stack.live)
    assert sorted(seen) == sorted(s["uid"] for s in [*stack.old, stack.incomplete])
    assert not live & set(seen)
    failed = api.get("/api/tiled-runs", params={"status": "fail"}).json()["runs"]
    assert [(r["plan_name"], r["status"]) for r in failed] == [("failing", "fail")]
    assert "on purpose" in failed[0]["reason"]
    assert api.get("/api/tiled-runs", params={"status": "open"}).json()["runs"] == []
    counts = api.get("/api/runs", params={"plan": "count"}).json()
    assert [r["uid"] for r in counts] == [stack.live[0]["uid"]]


@pytest.mark.parametrize(
    ("query", "says"),
    [
        ("/api/tiled-runs?offset=-1", "greater than or equal to 0"),
        ("/api/tiled-runs?offset=x", "valid integer"),
        ("/api/tiled-runs?limit=0", "greater than or equal to 1"),
        ("/api/tiled-runs?limit=500", "less than or equal to 200"),
        ("/api/tiled-runs?before=nan", "finite number"),
        ("/api/tiled-runs?status=done", "'open', 'success', 'abort', 'fail' or 'incomplete'"),
        ("/api/runs?status=done", "'open', 'success', 'abort', 'fail' or 'incomplete'"),
        ("/api/runs?plan=", "at least 1 character"),
        (f"/api/runs?text={'x' * 201}", "at most 200 characters"),
    ],
)
def test_malformed_list_queries_get_a_clear_422(stack: Stack, query: str, says: str) -> None:
    reply = stack.web.api.get(query)
    assert reply.status_code == 422
    assert says in str(reply.json()["detail"])


def test_engine_panel_lists_devices_and_reconnects_one(stack: Stack) -> None:
    page = stack.page
    engine_devices = httpx.get(f"{stack.engine.url}/devices").json()
    missing = next(d for d in engine_devices if d["name"] == "missing")
    assert not missing["connected"] and missing["error"]
    page.wait_for_function(
        "n => document.querySelectorAll('#device-list [data-device]').length == n",
        arg=len(engine_devices),
    )
    rows = page.eval_on_selector_all(
        "#device-list [data-device]",
        "lis => lis.map(li => [li.dataset.device, li.dataset.connected,"
        " li.querySelector('.device-state').textContent])",
    )
    assert rows == [
        [d["name"], str(d["connected"]).lower(),
         "connected" if d["connected"] else f"not connected: {d['error']}"]
        for d in engine_devices
    ]  # fmt: skip
    up = sum(d["connected"] for d in engine_devices)
    assert page.inner_text("#devices-summary") == f"{up} of {len(engine_devices)} connected"
    assert "ophyd-async" in page.inner_text("[data-device=missing] .device-class")

    # without an expert's token no reconnect is offered, and the engine refuses one anyway;
    # with the token it tries, and answers
    reconnect = "[data-device=missing] button.reconnect"
    assert page.is_hidden(reconnect)
    page.evaluate("s => document.querySelector(s).click()", reconnect)
    page.wait_for_function("() => document.getElementById('engine-message').textContent")
    assert "missing: " in page.inner_text("#engine-message")
    assert "bearer token" in page.inner_text("#engine-message")
    page.click("#token-details summary")
    page.fill("#token", TOKEN)
    page.click("#token-form button[type=submit]")
    page.wait_for_selector(reconnect, state="visible")
    page.evaluate("() => { document.getElementById('engine-message').textContent = ''; "
                  "document.querySelector('[data-device=missing]').__old = true; }")  # fmt: skip
    connect = "/api/engine/devices/missing/connect"
    with page.expect_response(lambda r: r.url.endswith(connect)) as answer:
        page.click(reconnect)
    assert answer.value.status == 200 and answer.value.json()["connected"] is False
    page.wait_for_function("() => document.getElementById('engine-message').textContent")
    assert page.inner_text("#engine-message") == "missing: still not connected"
    assert page.evaluate("() => !document.querySelector('[data-device=missing]').__old")
    assert page.get_attribute("[data-device=missing]", "data-connected") == "false"
    assert page.is_enabled(reconnect)
    assert "device missing reconnect" in stack.engine.log.read_text()
