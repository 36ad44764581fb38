"""The web view end to end: RunEngine -> Kafka -> `runstream consume web` -> Chromium.

One module-wide stack: the runs page is opened before the seed's nested and
recursive plans (plus a grid scan and a count with external data) run; the
tests then look at what the browser saw and shows.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import pytest
from bluesky import RunEngine
from bluesky.plans import count, grid_scan
from ophyd.sim import SynAxis

from runstream.consumers.cellformat import cell_text
from runstream.producer import KafkaPublisher, lineage
from runstream.producer.plans import nested_runs, recursive_runs, sim_hw
from tests.kafka_tools import create_topic, unique_prefix
from tests.waiting import eventually
from tests.web_tools import COLOURED_PIXELS, DRAWN_PIXELS, chromium, screenshot, web_process

pytestmark = pytest.mark.kafka

# Every status a run's element showed, recorded in the page as it changes.
RECORD_STATUSES = """() => {
  window.__seen = {};
  const note = (li) => {
    const uid = li.dataset.runUid;
    (window.__seen[uid] = window.__seen[uid] || []).push(li.dataset.status);
  };
  new MutationObserver((changes) => {
    for (const c of changes) {
      if (c.type === 'attributes' && c.target.dataset.runUid) note(c.target);
      for (const n of c.addedNodes || []) if (n.dataset && n.dataset.runUid) note(n);
    }
  }).observe(document.getElementById('runs'),
             {subtree: true, childList: true, attributes: true, attributeFilter: ['data-status']});
  window.__loadedAt = performance.timeOrigin;
}"""


class GatedAxis(SynAxis):
    """A motor whose first move waits for ``gate``: the plan holds inside the run using it."""

    def __init__(self, *args, gate: threading.Event, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.gate = gate

    def set(self, *args, **kwargs):
        self.gate.wait(60)
        return super().set(*args, **kwargs)


def _publish(bootstrap: str, topic: str, outbox: Path, gate: threading.Event) -> tuple:
    """The plans on a RunEngine thread; the nested plan's inner run holds open until ``gate``."""
    publisher = KafkaPublisher(topic, bootstrap, outbox, partitions=2)
    RE = RunEngine({}, context_managers=[])
    RE.preprocessors.append(lineage)
    emitted: list[tuple[str, dict]] = []
    RE.subscribe(publisher)
    RE.subscribe(lambda n, d: emitted.append((n, d)))
    hw = SimpleNamespace(**vars(sim_hw()))
    hw.motor2 = GatedAxis(name="motor2", gate=gate)  # moved only by the inner run

    def run() -> None:
        RE(nested_runs(6, hw=hw))
        RE(recursive_runs(4, hw=hw))
        RE(grid_scan([hw.det4], hw.motor1, -1, 1, 3, hw.motor, -2, 2, 4))
        RE(count([hw.img, hw.det], 3))  # external data: resource and datum documents
        assert publisher.flush(30) == 0
        publisher.close()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, emitted


@dataclass
class Stack:
    web: object
    page: object
    browser: object
    emitted: list[tuple[str, dict]]
    starts: list[dict]
    seen: dict[str, list[str]]
    bootstrap: str
    topic: str
    tmp: Path


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    """One Chromium for the module (Playwright's sync API allows one at a time per thread)."""
    with chromium() as found:
        yield found


@pytest.fixture(scope="module")
def stack(kafka_bootstrap: str, tmp_path_factory, browser) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp("web")
    topic = create_topic(kafka_bootstrap, f"{unique_prefix()}.bluesky.runengine.documents", 2)
    with web_process(kafka_bootstrap, topic, tmp / "web.log") as web:
        # partitions assigned: documents are read as they come
        eventually(web.ready, 60, lambda: f"the web view ready; its log:\n{web.log.read_text()}")
        page = browser.new_page(viewport={"width": 1200, "height": 800})
        page.goto(web.url)
        page.wait_for_selector("#connection.live")
        page.evaluate(RECORD_STATUSES)
        gate = threading.Event()
        thread, emitted = _publish(kafka_bootstrap, topic, tmp / "outbox", gate)
        # the inner run shows, open, while it runs; then the plans go on
        page.wait_for_function(
            "() => [...document.querySelectorAll('[data-status=open] > .run-line .key')]"
            ".some(k => k.textContent == 'run_2')",
            timeout=60_000,
        )
        gate.set()
        thread.join(120)
        assert not thread.is_alive()
        starts = [d for n, d in emitted if n == "start"]
        page.wait_for_function(
            "n => document.querySelectorAll('[data-run-uid]:not([data-status=open])').length == n",
            arg=len(starts), timeout=60_000,
        )  # fmt: skip
        seen = page.evaluate("() => window.__seen")
        yield Stack(web, page, browser, emitted, starts, seen, kafka_bootstrap, topic, tmp)


def _events(emitted, run_uid: str, stream: str = "primary") -> tuple[list[str], list[dict]]:
    descriptors = {
        d["uid"]: d
        for n, d in emitted
        if n == "descriptor" and d["run_start"] == run_uid and d["name"] == stream
    }
    keys = list(next(iter(descriptors.values()))["data_keys"]) if descriptors else []
    events = [d for n, d in emitted if n == "event" and d["descriptor"] in descriptors]
    return keys, events


def test_runs_appear_live_as_a_tree_without_reload(stack: Stack) -> None:
    page, starts = stack.page, stack.starts
    assert page.evaluate("() => window.__loadedAt") == page.evaluate("() => performance.timeOrigin")
    by_key = {s.get("run_key"): s for s in starts if s.get("run_key")}
    outer, inner = by_key["run_1"], by_key["run_2"]
    # inner under outer, recursive runs three deep, each one element with its parent named
    assert page.locator(f"[data-run-uid='{outer['uid']}'] [data-run-uid='{inner['uid']}']").count()
    assert page.get_attribute(f"[data-run-uid='{inner['uid']}']", "data-parent-uid") == outer["uid"]
    deep = by_key["run_key_3"]["uid"]
    chain = (f"[data-run-uid='{by_key['run_key_1']['uid']}'] "
             f"[data-run-uid='{by_key['run_key_2']['uid']}'] [data-run-uid='{deep}']")  # fmt: skip
    assert page.locator(chain).count() == 1
    assert page.locator("[data-run-uid]").count() == len(starts)
    for start in starts:  # top-level runs have no parent attribute
        if not start.get("parent_uid"):
            assert page.get_attribute(f"[data-run-uid='{start['uid']}']", "data-parent-uid") is None
    # seen while they ran: the inner runs showed as open before they ended
    assert stack.seen[inner["uid"]][0] == "open" and stack.seen[inner["uid"]][-1] == "success"
    # newest first at the top level
    tops = page.eval_on_selector_all("#runs > li", "els => els.map(e => e.dataset.runUid)")
    top_starts = sorted((s for s in starts if not s.get("parent_uid")), key=lambda s: -s["time"])
    assert tops == [s["uid"] for s in top_starts]
    line = page.inner_text(f"[data-run-uid='{inner['uid']}'] > .run-line")
    assert f"scan {inner['scan_id']}" in line and "run_2" in line and "success" in line
    assert "primary 7" in line  # events per stream
    assert page.is_hidden("#engine")  # no --engine-url: read-only
    screenshot(page, stack.tmp, "web-runs.png")


def test_api_lists_runs_with_lineage(stack: Stack) -> None:
    runs = {r["uid"]: r for r in stack.web.api.get("/api/runs").json()}
    assert set(runs) == {s["uid"] for s in stack.starts}
    for start in stack.starts:
        run = runs[start["uid"]]
        assert run["parent_uid"] == start.get("parent_uid")
        assert run["run_key"] == start.get("run_key")
        assert (run["scan_id"], run["plan_name"]) == (start["scan_id"], start.get("plan_name"))
        assert run["status"] == "success"
        _, events = _events(stack.emitted, start["uid"])
        assert run["streams"]["primary"] == len(events)


def test_run_page_has_one_row_per_event_and_a_drawn_plot(stack: Stack) -> None:
    page = stack.browser.new_page(viewport={"width": 1200, "height": 900})
    for start in stack.starts:
        keys, events = _events(stack.emitted, start["uid"])
        page.goto(f"{stack.web.url}runs/{start['uid']}")
        rows = "table.rows[data-stream=primary] tbody tr[data-seq-num]"
        page.wait_for_function(f"n => document.querySelectorAll('{rows}').length == n",
                               arg=len(events))  # fmt: skip
        shown = page.eval_on_selector_all(
            rows, "trs => trs.map(tr => [...tr.cells].map(td => td.textContent))"
        )
        expected = [[str(e["seq_num"]), *(cell_text(e["data"][k])[0] for k in keys)]
                    for e in events]  # fmt: skip
        assert [[r[0], *r[2:]] for r in shown] == expected
        assert page.eval_on_selector_all(rows, "trs => trs.map(t => +t.dataset.seqNum)") == [
            e["seq_num"] for e in events
        ]
        canvas = page.wait_for_selector(".stream[data-stream=primary] .plot canvas")
        if start.get("plan_name") == "grid_scan":
            page.wait_for_selector(".stream[data-stream=primary] canvas.heat")
            heat = page.query_selector(".stream[data-stream=primary] canvas.heat")
            assert page.evaluate(DRAWN_PIXELS, heat) > 1000
        elif start.get("run_key") == "run_2":
            # the first curve's colour is on the canvas: the detector was drawn, not only axes
            page.wait_for_function(
                "c => (document.querySelector(c) || {}).textContent?.includes('det2')",
                arg=".stream[data-stream=primary] .plot-caption",
            )
            curve = page.query_selector(".stream[data-stream=primary] .plot canvas")
            assert page.evaluate(COLOURED_PIXELS, [curve, [31, 119, 180]]) > 50
            screenshot(page, stack.tmp, "web-run.png")
        assert page.evaluate(DRAWN_PIXELS, canvas) > 100
    assert page.evaluate("() => window.__rsLatency === undefined")  # the benchmark's hook: off
    page.close()


def test_unknown_document_kinds_show_as_raw_json(stack: Stack) -> None:
    start = next(s for s in stack.starts if s.get("plan_name") == "count")
    page = stack.browser.new_page()
    page.goto(f"{stack.web.url}runs/{start['uid']}")
    raw = page.wait_for_selector("pre.raw-json[data-document=resource]")
    resource = next(d for n, d in stack.emitted if n == "resource")
    assert f'"uid": "{resource["uid"]}"' in raw.inner_text()
    assert page.locator("pre.raw-json[data-document=datum]").count() == 3
    page.goto(f"{stack.web.url}runs/no-such-run")  # an unknown run: a message, not a blank page
    assert "no-such-run" in page.wait_for_selector("#run-error").inner_text()
    page.close()


@pytest.mark.parametrize(
    ("path", "code", "says"),
    [
        ("/api/runs/no-such-run", 404, "no run 'no-such-run'"),
        ("/api/runs/{uid}/streams/nope/rows", 404, "no stream 'nope'"),
        ("/api/runs/{uid}/streams/primary/rows?limit=0", 422, "greater than or equal to 1"),
        ("/api/runs/{uid}/streams/primary/rows?limit=99999", 422, "less than or equal to 5000"),
        ("/api/runs/{uid}/streams/primary/rows?offset=-1", 422, "greater than or equal to 0"),
        ("/api/runs/{uid}/streams/primary/rows?offset=x", 422, "valid integer"),
        ("/api/runs/{uid}/streams/primary/rows?offset=999", 422, "past the end"),
        ("/api/runs/{uid}/streams/primary/plot?points=1", 422, "greater than or equal to 10"),
        ("/api/events?since=-5", 422, "greater than or equal to -1"),
        ("/api/engine/status", 404, "Not Found"),
    ],
)
def test_bad_api_input_gets_a_clear_4xx(stack: Stack, path: str, code: int, says: str) -> None:
    reply = stack.web.api.get(path.format(uid=stack.starts[0]["uid"]))
    assert reply.status_code == code
    assert says in str(reply.json()["detail"])


def test_rows_api_pages_through_a_stream(stack: Stack) -> None:
    start = next(s for s in stack.starts if s.get("run_key") == "run_2")
    keys, events = _events(stack.emitted, start["uid"])
    got = []
    offset = 0
    while True:
        page = stack.web.api.get(f"/api/runs/{start['uid']}/streams/primary/rows",
                                 params={"offset": offset, "limit": 3}).json()  # fmt: skip
        assert page["total"] == len(events)
        if not page["rows"]:
            break
        got += page["rows"]
        offset += len(page["rows"])
    assert [r["seq_num"] for r in got] == [e["seq_num"] for e in events]
    assert [r["data"][keys[-1]] for r in got] == [e["data"][keys[-1]] for e in events]
    assert stack.web.api.get("/openapi.json").json()["info"]["title"] == "runstream web view"


def test_replaying_the_topic_gives_the_same_view(stack: Stack) -> None:
    def view(api) -> tuple[list, dict]:
        runs = [{k: v for k, v in r.items() if k != "version"} for r in api.get("/api/runs").json()]
        rows = {r["uid"]: api.get(f"/api/runs/{r['uid']}/streams/primary/rows").json()["rows"]
                for r in runs if "primary" in r["streams"]}  # fmt: skip
        return runs, rows

    tree = "() => [...document.querySelectorAll('[data-run-uid]')].map(e => " \
           "[e.dataset.runUid, e.dataset.parentUid || null, e.parentElement.id || " \
           "e.parentElement.parentElement.dataset.runUid])"  # fmt: skip
    first_tree = stack.page.evaluate(tree)
    with web_process(stack.bootstrap, stack.topic, stack.tmp / "replay.log") as again:
        eventually(lambda: len(again.api.get("/api/runs").json()) >= len(stack.starts), 60,
                   "the replay to bring every run")  # fmt: skip
        page = stack.browser.new_page(viewport={"width": 1200, "height": 800})
        page.goto(again.url)
        page.wait_for_function(
            "n => document.querySelectorAll('[data-run-uid]:not([data-status=open])').length == n",
            arg=len(stack.starts),
        )  # fmt: skip
        assert page.evaluate(tree) == first_tree
        assert view(again.api) == view(stack.web.api)
        page.close()


def test_health_and_metrics(stack: Stack) -> None:
    assert stack.web.api.get("/healthz").json() == {"ok": True, "problems": []}
    assert stack.web.ready()
    assert stack.web.api.get("/readyz").json() == {"ok": True, "problems": []}
    metrics = stack.web.api.get("/metrics").text
    assert f"runstream_web_runs {float(len(stack.starts))}" in metrics
    assert "runstream_consumer_documents_total" in metrics


def test_a_large_run_is_paged_with_every_row_and_a_decimated_plot(browser) -> None:
    """The page of a 2,500-event run: the last page follows, every page holds its rows."""
    import socket

    import uvicorn
    from event_model import compose_run

    from runstream.consumers.web.app import create_app
    from runstream.consumers.web.model import RunFeed, RunStore
    from runstream.consumers.web.settings import WebSettings

    store = RunStore()
    feed = RunFeed(store)
    bundle = compose_run(metadata={"hints": {"dimensions": [[["x"], "primary"]]}})
    keys = {k: {"dtype": "number", "shape": [], "source": "s"} for k in ("x", "det")}
    desc = bundle.compose_descriptor(name="primary", data_keys=keys)
    n = 2500
    feed("start", bundle.start_doc)
    feed("descriptor", desc.descriptor_doc)
    feed("event_page", {"descriptor": desc.descriptor_doc["uid"], "uid": "p", "time": [1.0] * n,
                        "seq_num": list(range(1, n + 1)), "timestamps": {}, "filled": {},
                        "data": {"x": [i * 0.5 for i in range(n)],
                                 "det": [float(i % 9) for i in range(n)]}})  # fmt: skip
    sock = socket.create_server(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(create_app(store, WebSettings(plot_points=1000)),
                                           log_config=None))  # fmt: skip
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        eventually(lambda: server.started, 30, "the web server to serve")
        page = browser.new_page()
        page.goto(f"http://127.0.0.1:{sock.getsockname()[1]}/runs/{bundle.start_doc['uid']}")
        rows = "tr[data-seq-num]"
        page.wait_for_function(f"() => document.querySelectorAll('{rows}').length == 500")
        seqs = page.eval_on_selector_all(rows, "trs => trs.map(t => +t.dataset.seqNum)")
        assert seqs == list(range(2001, 2501))  # following: the last page
        page.click(".pager button:text('previous')")
        page.wait_for_function(f"() => document.querySelectorAll('{rows}').length == 1000"
                               " && document.querySelector('tr[data-seq-num]').dataset.seqNum"
                               " == '1001'")  # fmt: skip
        assert "decimated to 1000 points" in page.inner_text(".plot-caption")
        page.close()
    finally:
        server.should_exit = True
        thread.join(10)
