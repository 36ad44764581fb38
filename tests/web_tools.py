"""`runstream consume web` as a process, and a real Chromium driven by Playwright, for tests.

Chromium is Debian's package (``apt-get install chromium``); nothing is downloaded.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from tests.kafka_tools import free_port, unique_prefix

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = os.environ.get("RUNSTREAM_TEST_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]  # fmt: skip
# Set to a folder (docs/) to refresh the README's screenshots from the browser test.
SCREENSHOTS = os.environ.get("RUNSTREAM_WEB_SCREENSHOTS")


class WebProcess:
    """``runstream consume web`` on a free port; ``url`` once it printed that it is ready."""

    def __init__(self, bootstrap: str, topic: str, log: Path, *extra: str,
                 group: str | None = None) -> None:  # fmt: skip
        self.port = free_port()
        self.log = log
        self.group = group or unique_prefix("web")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "runstream.cli", "consume", "web", "--topic", topic,
             "--group", self.group, "--bootstrap", bootstrap, "--from-beginning",
             "--port", str(self.port), *extra],
            cwd=ROOT, stdout=subprocess.PIPE, stderr=log.open("ab"), text=True,
            env={**os.environ, "RUNSTREAM_SESSION_TIMEOUT_MS": "6000"},
        )  # fmt: skip
        self.url = self._printed_url()
        self.api = httpx.Client(base_url=self.url, timeout=10)

    def _printed_url(self) -> str:
        found: list[str] = []

        def read() -> None:
            assert self.proc.stdout is not None
            for line in self.proc.stdout:
                if line.startswith("runstream web view: "):
                    found.append(line.split(": ", 1)[1].strip())
                    return

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        reader.join(60)
        if not found:
            self.stop()
            raise AssertionError(f"the web view printed no URL: {self.log.read_text()}")
        return found[0]

    def ready(self) -> bool:
        return self.api.get("/readyz").status_code == 200

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.terminate()
        return self.proc.wait(30)


@contextmanager
def web_process(bootstrap: str, topic: str, log: Path, *extra: str,
                group: str | None = None) -> Iterator[WebProcess]:  # fmt: skip
    web = WebProcess(bootstrap, topic, log, *extra, group=group)
    try:
        yield web
    finally:
        code = web.stop()
        assert code == 0, log.read_text()


@contextmanager
def chromium() -> Iterator[object]:
    """A headless Chromium; the test is skipped only where Chromium is not installed."""
    if not Path(CHROMIUM).exists() and shutil.which("chromium") is None:
        pytest.skip("chromium is not installed (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


# Pixels of a canvas that are not background (transparent or white).
DRAWN_PIXELS = """(canvas) => {
  const d = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
  let n = 0;
  for (let i = 0; i < d.length; i += 4) {
    if (d[i + 3] > 0 && !(d[i] > 240 && d[i + 1] > 240 && d[i + 2] > 240)) n++;
  }
  return n;
}"""

# Pixels of a canvas near a colour (the first curve's stroke).
COLOURED_PIXELS = """([canvas, rgb]) => {
  const d = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
  let n = 0;
  for (let i = 0; i < d.length; i += 4) {
    if (d[i + 3] > 100 && Math.abs(d[i] - rgb[0]) < 40 && Math.abs(d[i + 1] - rgb[1]) < 40
        && Math.abs(d[i + 2] - rgb[2]) < 40) n++;
  }
  return n;
}"""


def screenshot(page: object, tmp: Path, name: str) -> Path:
    """Save a PNG of the page to the test's folder (and to SCREENSHOTS when set)."""
    path = tmp / name
    page.screenshot(path=str(path), full_page=False)  # type: ignore[attr-defined]
    if SCREENSHOTS:
        target = Path(SCREENSHOTS) / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target)
    return path
