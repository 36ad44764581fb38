"""The web view's engine panel in Chromium, against a real engine process and Kafka:
who you are and what your role may do, the queue edited in place, the history, the plan
form checked by the engine before anything is sent, controls, and the token kept private.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.integration.test_engine import AUTH, TOKEN, EngineProcess
from tests.kafka_tools import create_topic, unique_prefix
from tests.web_tools import chromium, screenshot, web_process

pytestmark = pytest.mark.kafka


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    with chromium() as found:
        yield found


class Panel:
    """The engine panel of one page, driven as a person would."""

    def __init__(self, page) -> None:
        self.page = page

    def wait(self, script: str, arg=None, timeout: float = 30_000) -> None:
        """Until ``script`` is true in the page; else fail showing what the panel says."""
        from playwright.sync_api import TimeoutError as Timeout

        try:
            self.page.wait_for_function(script, arg=arg, timeout=timeout)
        except Timeout:
            said = {s: self.text(s) for s in ("#who", "#engine-message", "#plan-check")}
            raise AssertionError(f"never true: {script} ({arg!r}); the panel says {said}") from None

    def text(self, selector: str) -> str:
        return self.page.inner_text(selector)

    def use_token(self, secret: str, who: str) -> None:
        if not self.page.evaluate("() => document.getElementById('token-details').open"):
            self.page.click("#token-details summary")
        self.page.fill("#token", secret)
        self.page.click("#token-form button[type=submit]")
        self.wait(
            "() => document.getElementById('token-state').textContent == 'token set for this tab'"
        )
        self.wait("who => document.getElementById('who').textContent == who", who)

    def fill_plan(self, plan: str, **fields: str) -> None:
        self.page.select_option("#plan", plan)
        for name, value in fields.items():
            self.page.fill(f"#plan-fields [data-param={name}]", value)

    def submit(self) -> str:
        """Click Submit (or Save) and return the message the panel then shows."""
        self.page.evaluate("() => { document.getElementById('engine-message').textContent = ''; }")
        self.page.click("#plan-form button[type=submit]")
        self.wait("() => document.getElementById('engine-message').textContent")
        return self.text("#engine-message")

    def queued(self) -> list[str]:
        return self.page.eval_on_selector_all(
            "#queue-list li[data-state=queued]", "els => els.map(e => e.dataset.taskId)"
        )

    def wait_queued(self, ids: list[str]) -> None:
        self.wait(
            "ids => JSON.stringify([...document.querySelectorAll("
            "'#queue-list li[data-state=queued]')].map(e => e.dataset.taskId))"
            " == JSON.stringify(ids)",
            ids,
        )

    def visible(self, selector: str) -> bool:
        return self.page.is_visible(selector)


def engine_queue(engine: EngineProcess) -> list[dict]:
    return httpx.get(f"{engine.url}/queue").json()["tasks"]


def test_engine_panel_edits_the_queue_by_role_and_keeps_the_token_private(
    kafka_bootstrap: str, tmp_path: Path, browser
) -> None:
    topic = create_topic(kafka_bootstrap, f"{unique_prefix()}.bluesky.runengine.documents", 2)
    (tmp_path / "engine").mkdir()
    engine = EngineProcess(tmp_path / "engine", kafka_bootstrap, topic)
    engine.start()
    log = tmp_path / "web.log"
    try:
        with web_process(kafka_bootstrap, topic, log, "--engine-url", engine.url) as web:
            context = browser.new_context(viewport={"width": 1200, "height": 1000})
            page = context.new_page()
            sent: list[tuple[str, dict, str | None]] = []  # every request: URL, headers, body
            page.on("request", lambda r: sent.append((r.url, r.headers, r.post_data)))
            page.goto(web.url)
            panel = Panel(page)
            panel.wait("() => document.getElementById('re-state').textContent == 'idle'")
            # no credential: the engine's state is readable, nothing to change is offered
            assert panel.text("#who") == "not logged in"
            assert not panel.visible("#plan-form") and not panel.visible("[data-action=pause]")
            assert not panel.visible("#log-in")  # the engine names no web login client

            panel.use_token(TOKEN, "shared token · admin")
            assert panel.visible("[data-action=abort]") and panel.visible("#clear-history")
            page.wait_for_selector("#plan option[value=nested_runs]", state="attached")
            page.select_option("#plan", "nested_runs")

            # the form is checked by the engine as it is typed: a refused value is named and
            # marked, and Submit then sends nothing
            assert page.get_attribute("[data-param=npts]", "type") == "number"  # from its schema
            panel.fill_plan("count", detectors='["nodet"]')
            panel.wait("() => document.getElementById('plan-check').className == 'error'")
            assert "unknown device 'nodet'" in panel.text("#plan-check")
            assert page.get_attribute("[data-param=detectors]", "aria-invalid") == "true"
            before = len([u for u, _, _ in sent if u.endswith("/api/engine/tasks")])
            assert "nodet" in panel.submit()
            assert len([u for u, _, _ in sent if u.endswith("/api/engine/tasks")]) == before
            panel.fill_plan("nested_runs", npts="3")
            panel.wait("() => document.getElementById('plan-check').className == 'ok'")
            assert "queued nested_runs" in panel.submit()
            runs = "[data-run-uid]:not([data-status=open])"
            panel.wait(f"() => document.querySelectorAll('{runs}').length == 2", timeout=60_000)

            # the queue held: three tasks, reordered with the buttons and by dragging,
            # one edited in the form, one removed
            page.click("[data-queue=stop]")
            panel.wait(
                "() => document.getElementById('queue-state').textContent.startsWith('stopped')"
            )
            for npts in ("1", "2", "4"):
                panel.fill_plan("nested_runs", npts=npts)
                assert "queued" in panel.submit()
            a, b, c = [t["task_id"] for t in engine_queue(engine)]
            panel.wait_queued([a, b, c])
            assert page.is_disabled(f"[data-task-id='{a}'] [data-act=up]")
            page.click(f"[data-task-id='{a}'] [data-act=down]")
            panel.wait_queued([b, a, c])
            page.drag_and_drop(f"[data-task-id='{c}']", f"[data-task-id='{b}']")
            panel.wait_queued([c, b, a])
            assert [t["task_id"] for t in engine_queue(engine)] == [c, b, a]

            page.click(f"[data-task-id='{b}'] [data-act=edit]")
            assert page.input_value("[data-param=npts]") == "2"
            assert b[:8] in panel.text("#plan-form button[type=submit]")
            page.fill("[data-param=npts]", "5")
            assert f"changed task {b}" in panel.submit()
            edited = next(t for t in engine_queue(engine) if t["task_id"] == b)
            assert edited["kwargs"] == {"npts": 5} and len(edited["edits"]) == 1
            assert [t["task_id"] for t in engine_queue(engine)] == [c, b, a]  # kept its place
            page.wait_for_selector(f"[data-task-id='{b}'] .status:text('edited')")

            page.click(f"[data-task-id='{c}'] [data-act=remove]")
            panel.wait_queued([b, a])
            # the history shows what ended, filtered by state
            page.wait_for_selector(f"#history-list [data-task-id='{c}'][data-state=removed]")
            page.select_option("#history-filter [name=state]", "removed")
            panel.wait(
                "() => [...document.querySelectorAll('#history-list li')]"
                ".every(li => li.dataset.state == 'removed')"
            )

            # a user's key: only their own tasks can be changed, and no expert controls
            issued = httpx.post(f"{engine.url}/keys", json={"name": "uma", "scopes": ["user"]},
                                headers=AUTH).json()  # fmt: skip
            user_key = issued["key"]
            panel.use_token(user_key, "uma · user")
            assert panel.visible("[data-action=pause]") and panel.visible("#plan-form")
            for expert_only in ("[data-action=abort]", "[data-queue=start]", "#clear-queue",
                                "#clear-history", "#device-list .reconnect"):  # fmt: skip
                assert not panel.visible(expert_only), expert_only
            assert page.locator(f"[data-task-id='{a}'] [data-act]").count() == 0  # not theirs
            panel.fill_plan("nested_runs", npts="1")
            assert "queued" in panel.submit()
            mine = engine_queue(engine)[-1]["task_id"]
            page.wait_for_selector(f"[data-task-id='{mine}'] [data-act=remove]")
            screenshot(page, tmp_path, "engine-panel.png")
            assert engine_queue(engine)[-1]["submitted_by"] == f"key:{issued['name']}"
            # what the page hides the engine refuses too, with its reason shown
            page.evaluate("() => document.getElementById('clear-queue').click()")
            panel.wait("() => document.getElementById('engine-message').className == 'error'")
            assert "this needs expert" in panel.text("#engine-message")
            assert len(engine_queue(engine)) == 3

            # back to the shared token: the queue runs again; a long plan paused and aborted
            panel.use_token(TOKEN, "shared token · admin")
            page.click("#clear-queue")
            panel.wait("() => !document.querySelector('#queue-list li')")
            page.click("[data-queue=start]")
            panel.wait("() => document.getElementById('queue-state').textContent[0] == 'r'")
            panel.fill_plan("nested_runs", npts="40")
            assert "queued nested_runs" in panel.submit()
            panel.wait("() => document.querySelectorAll('[data-status=open]').length")
            page.click("#controls [data-action=pause]")
            panel.wait("() => document.getElementById('re-state').textContent == 'paused'")
            assert httpx.get(f"{engine.url}/status").json()["re_state"] == "paused"
            page.click("#controls [data-action=abort]")
            panel.wait("() => document.querySelectorAll('[data-status=abort]').length")

            # the tokens stay in this tab's session: not in the page, a URL or a body
            stored = page.evaluate("k => sessionStorage.getItem(k)", "runstream.engine.token")
            assert stored == TOKEN and page.evaluate("() => localStorage.length") == 0
            for secret in (TOKEN, user_key):
                assert secret not in page.content() and secret not in page.url
                assert not [u for u, _, body in sent if secret in u or secret in (body or "")]
            streams = [h for url, h, _ in sent if url.endswith("/api/engine/events")]
            assert streams[-1].get("authorization") == f"Bearer {TOKEN}"

            # the engine gone: the panel says so rather than show a stale state
            engine.stop()
            panel.wait(
                "() => document.getElementById('re-state').textContent.startsWith('unreachable')"
            )
            assert panel.text("#queue-state") == "?"
            context.close()
    finally:
        engine.stop()
    text = log.read_text()
    assert TOKEN not in text and user_key not in text
