"""The web view works offline: every script and stylesheet its pages load ships in the package."""

from __future__ import annotations

import re
import warnings

from runstream.consumers.web.app import STATIC, create_app
from runstream.consumers.web.model import RunStore
from runstream.consumers.web.settings import WebSettings

with warnings.catch_warnings():  # starlette's notice about its httpx-based test client
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient


def test_pages_load_only_packaged_assets() -> None:
    client = TestClient(create_app(RunStore(), WebSettings()))
    for page in ("/", "/runs/some-uid"):
        html = client.get(page).text
        assets = re.findall(r'(?:src|href)="([^"]+)"', html)
        assert any(a.endswith(".js") for a in assets)
        for asset in assets:
            if asset == "/":
                continue
            assert asset.startswith("/static/"), asset
            assert client.get(asset).status_code == 200, asset
    for path in STATIC.rglob("*"):
        if path.suffix in (".html", ".css") or (
            path.suffix == ".js" and "vendor" not in path.parts
        ):
            assert not re.search(r"https?://|//cdn", path.read_text()), path
    assert (STATIC / "vendor" / "uPlot.LICENSE").read_text().startswith("The MIT License")
    assert client.get("/docs").status_code == 404  # FastAPI's docs page would load a CDN
    assert client.get("/openapi.json").json()["paths"]


def test_every_answer_keeps_its_referrer_and_frames_to_itself() -> None:
    client = TestClient(create_app(RunStore(), WebSettings()))
    for path in ("/", "/static/engine.js", "/api/runs", "/no/such/page"):
        headers = client.get(path).headers
        assert headers["referrer-policy"] == "no-referrer", path
        assert headers["x-frame-options"] == "DENY", path
        assert headers["x-content-type-options"] == "nosniff", path


def test_the_engine_panel_is_off_without_an_engine_url() -> None:
    client = TestClient(create_app(RunStore(), WebSettings()))
    assert client.get("/api/config").json()["engine"] is False
    assert client.get("/api/engine/status").status_code == 404
    assert "/api/engine/status" not in client.get("/openapi.json").json()["paths"]


def test_a_run_links_to_tiled_when_a_tiled_url_is_given() -> None:
    from event_model import compose_run

    from runstream.consumers.web.model import RunFeed

    store = RunStore()
    start = compose_run().start_doc
    RunFeed(store)("start", start)
    settings = WebSettings(tiled_url="http://tiled.example:8000/", tiled_catalog="raw")
    detail = TestClient(create_app(store, settings)).get(f"/api/runs/{start['uid']}").json()
    assert detail["tiled_url"] == f"http://tiled.example:8000/ui/browse/raw/{start['uid']}"
    plain = TestClient(create_app(store, WebSettings())).get(f"/api/runs/{start['uid']}").json()
    assert plain["tiled_url"] is None
