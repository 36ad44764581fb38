"""Logging in to the web view's engine panel through a real Keycloak's own login page.

Chromium opens the view; "Log in" goes to Keycloak (authorization code with PKCE), a person
types a name and password there, and Keycloak sends the browser back. The panel then shows
who they are and offers only what their role may do; the engine records them as the
submitter. Logging out ends the provider's session too, so the next person logs in afresh.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.integration.test_engine import AUTH, EngineProcess
from tests.integration.test_web_engine import Panel
from tests.kafka_tools import create_topic, unique_prefix
from tests.keycloak import AUDIENCE, PASSWORD, Keycloak, web_client
from tests.web_tools import chromium, web_process

pytestmark = [pytest.mark.oidc, pytest.mark.kafka, pytest.mark.timeout(900)]

WEB_CLIENT = "runstream-web"
EXPERT_ONLY = ("[data-action=abort]", "[data-queue=start]", "#clear-queue", "#clear-history")


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    with chromium() as found:
        yield found


def log_in(panel: Panel, provider: str, user: str, who: str) -> None:
    """Through Keycloak's login form, as a person: the panel then names ``who``."""
    page = panel.page
    page.click("#log-in")
    page.wait_for_selector("#kc-login")  # Keycloak's page, not ours
    assert page.url.startswith(provider)
    page.fill("#username", user)
    page.fill("#password", PASSWORD)
    page.click("#kc-login")
    panel.wait("who => document.getElementById('who').textContent == who", who)


def test_people_log_in_at_the_provider_and_see_what_their_role_allows(
    keycloak: Keycloak, kafka_bootstrap: str, tmp_path: Path, browser
) -> None:
    topic = create_topic(kafka_bootstrap, f"{unique_prefix()}.bluesky.runengine.documents", 2)
    (tmp_path / "engine").mkdir()
    engine = EngineProcess(tmp_path / "engine", kafka_bootstrap, topic)
    engine.env.update(
        RUNSTREAM_OIDC_ISSUER=keycloak.issuer,
        RUNSTREAM_OIDC_AUDIENCE=AUDIENCE,
        RUNSTREAM_OIDC_ROLES_CLAIM="realm_access.roles",
        RUNSTREAM_OIDC_WEB_CLIENT_ID=WEB_CLIENT,
    )
    engine.start()
    log = tmp_path / "web.log"
    try:
        with (
            web_process(kafka_bootstrap, topic, log, "--engine-url", engine.url) as web,
            web_client(keycloak, WEB_CLIENT, web.url.rstrip("/")),
        ):
            httpx.post(f"{engine.url}/queue/stop", headers=AUTH).raise_for_status()
            ursula = keycloak.token("ursula")
            theirs = httpx.post(
                f"{engine.url}/tasks",
                json={"plan": "nested_runs", "kwargs": {"npts": 1}},
                headers={"Authorization": f"Bearer {ursula}"},
            ).json()["task_id"]

            context = browser.new_context(viewport={"width": 1200, "height": 1000})
            page = context.new_page()
            urls: list[str] = []
            page.on("request", lambda r: urls.append(r.url))
            page.goto(web.url)
            panel = Panel(page)
            page.wait_for_selector("#log-in:not([hidden])")
            assert not panel.visible("#plan-form")

            log_in(panel, keycloak.url, "uma", "Uma Test · user")
            assert "code=" not in page.url and "state=" not in page.url  # taken off at once
            uma = page.evaluate("() => sessionStorage.getItem('runstream.engine.token')")
            assert uma and uma.count(".") == 2  # Keycloak's access token, kept in this tab
            assert panel.visible("#plan-form") and panel.visible("[data-action=pause]")
            for expert_only in EXPERT_ONLY:
                assert not panel.visible(expert_only), expert_only
            page.wait_for_selector(f"[data-task-id='{theirs}']")
            assert page.locator(f"[data-task-id='{theirs}'] [data-act]").count() == 0

            page.wait_for_selector("#plan option[value=nested_runs]", state="attached")
            panel.fill_plan("nested_runs", npts="2")
            panel.wait("() => document.getElementById('plan-check').className == 'ok'")
            assert "queued nested_runs" in panel.submit()
            mine = httpx.get(f"{engine.url}/queue").json()["tasks"][-1]
            assert mine["submitted_by"] == "uma"
            page.wait_for_selector(f"[data-task-id='{mine['task_id']}'] [data-act=edit]")
            # what the page does not offer, the engine refuses: another user's task
            refused = page.evaluate(
                """async (id) => (await fetch('/api/engine/tasks/' + id, {method: 'PATCH',
                    headers: {'Content-Type': 'application/json', Authorization: 'Bearer ' +
                      sessionStorage.getItem('runstream.engine.token')},
                    body: JSON.stringify({kwargs: {npts: 9}})})).status""",
                theirs,
            )
            assert refused == 403

            page.click("#log-out")  # out here and at Keycloak: the next login asks again
            panel.wait("() => document.getElementById('who').textContent == 'not logged in'")
            page.wait_for_selector("#log-in:not([hidden])")
            assert page.evaluate("() => sessionStorage.length") == 0
            log_in(panel, keycloak.url, "erik", "Erik Test · expert")
            for expert_only in EXPERT_ONLY:
                assert panel.visible(expert_only), expert_only
            page.wait_for_selector(f"[data-task-id='{theirs}'] [data-act=edit]")  # anyone's
            page.click(f"[data-task-id='{theirs}'] [data-act=remove]")
            page.wait_for_selector(f"#queue-list [data-task-id='{theirs}']", state="detached")

            erik = page.evaluate("() => sessionStorage.getItem('runstream.engine.token')")
            for secret in (uma, erik):
                assert secret not in page.content()
                assert not [u for u in urls if secret in u]
            context.close()
    finally:
        engine.stop()
    text = log.read_text() + engine.log.read_text()
    assert uma not in text and erik not in text
