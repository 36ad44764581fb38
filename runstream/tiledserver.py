"""A local Tiled server with a writable catalog, for the default setup and the tests.

``tiled serve catalog`` with a SQLite catalog, SQLite table storage and array
files, all under ``$RUNSTREAM_HOME/tiled``. The API key comes from
``RUNSTREAM_TILED_API_KEY`` or is generated once into ``tiled/api_key`` (mode
0600); it reaches the server through its environment, never its command line.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import secrets
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from runstream.schemas.errors import RunstreamError

from .process import Progress, port_free, port_open, quiet, runs_with, stop_pid, tail
from .settings import LocalSettings


class TiledError(RunstreamError, RuntimeError):
    """The local Tiled server could not be started or stopped; the message says what to do."""


@dataclass
class LocalTiled:
    """The server, its files and its key. Its storages hold the Tiled writer's layout
    (`runstream.consumers.tiled.layout`): SQLite tables for the streams' appendable tables
    (no list columns: the writer needs ``--max-array-size 0``), array files for its array
    nodes, and the read directories for the detector files its external data points at."""

    settings: LocalSettings
    tables: str = "sqlite"  # the table storage's database: "sqlite", or "duckdb" (as tests use)

    @property
    def dir(self) -> Path:
        return self.settings.home / "tiled"

    @property
    def log_file(self) -> Path:
        return self.dir / "server.log"

    def api_key(self) -> str:
        if self.settings.tiled_api_key:
            return self.settings.tiled_api_key
        path = self.dir / "api_key"
        if not path.exists():
            self.dir.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(secrets.token_hex(32))
        return path.read_text().strip()

    def _recorded(self) -> dict | None:
        try:
            return json.loads((self.dir / "server.json").read_text())
        except (OSError, ValueError):
            return None

    def status(self) -> str | None:
        """The URL of the running local Tiled server, or None."""
        state = self._recorded()
        if not state or not runs_with(state["pid"], str(self.dir / "catalog.db")):
            return None
        url = f"http://127.0.0.1:{state['port']}"
        return url if port_open(state["port"]) and _answers(url) else None

    def up(self, progress: Progress = quiet) -> str:
        running = self.status()
        if running:
            progress(f"a local Tiled server is already up at {running}")
            return running
        port = self.settings.tiled_port
        if not port_free(port):
            raise TiledError(
                f"port {port} on 127.0.0.1 is taken by another process; choose another with "
                "--port (RUNSTREAM_TILED_PORT)"
            )
        tiled = shutil.which("tiled", path=str(Path(sys.executable).parent)) or shutil.which(
            "tiled"
        )
        if tiled is None or not _server_installed():
            raise TiledError(
                "Tiled's server is not installed (runstream's services need only its client): "
                "pip install 'runstream[server]'"
            )
        data = self.dir / "data"
        data.mkdir(parents=True, exist_ok=True)
        catalog = self.dir / "catalog.db"
        cmd = [tiled, "serve", "catalog", str(catalog), "-w", str(data),
               "-w", f"{self.tables}:///{self.dir / f'storage.{self.tables}'}",
               "--host", "127.0.0.1", "--port", str(port)]  # fmt: skip
        for readable in self.settings.tiled_read_dirs:
            readable.mkdir(parents=True, exist_ok=True)
            cmd += ["-r", str(readable)]
        if not catalog.exists():
            cmd.insert(4, "--init")
        env = {**os.environ, "TILED_SINGLE_USER_API_KEY": self.api_key()}
        progress(f"starting Tiled on 127.0.0.1:{port} (catalog in {self.dir})...")
        with open(self.log_file, "ab") as out:
            proc = subprocess.Popen(
                cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                start_new_session=True,
            )  # fmt: skip
        (self.dir / "server.json").write_text(json.dumps({"pid": proc.pid, "port": port}))
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + self.settings.tiled_start_timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise TiledError(
                    f"Tiled exited at start (code {proc.returncode}). "
                    f"Tail of {self.log_file}:\n{tail(self.log_file)}"
                )
            if port_open(port) and _answers(url):
                progress(f"Tiled up (pid {proc.pid})")
                return url
            time.sleep(0.25)
        stop_pid(proc.pid, 10)
        raise TiledError(f"Tiled did not answer within {self.settings.tiled_start_timeout:.0f}s. "
                         f"Tail of {self.log_file}:\n{tail(self.log_file)}")  # fmt: skip

    def down(self, progress: Progress = quiet) -> bool:
        state = self._recorded()
        if not state or not runs_with(state["pid"], str(self.dir / "catalog.db")):
            progress("no local Tiled server is running")
            return False
        progress(f"stopping Tiled (pid {state['pid']})...")
        stop_pid(state["pid"], 20)
        (self.dir / "server.json").unlink(missing_ok=True)
        progress("Tiled stopped")
        return True


def local_key_for(url: str) -> str | None:
    """The local server's API key when ``url`` is the local Tiled server that is up."""
    tiled = LocalTiled(LocalSettings())
    running = tiled.status()
    if running is None or _origin(url) != _origin(running):
        return None
    if tiled.settings.tiled_api_key:
        return tiled.settings.tiled_api_key
    path = tiled.dir / "api_key"
    return path.read_text().strip() if path.exists() else None


def _origin(url: str) -> tuple[str, int | None]:
    parsed = httpx.URL(url)
    host = "127.0.0.1" if parsed.host in ("localhost", "127.0.0.1", "::1") else parsed.host
    return host, parsed.port


def _server_installed() -> bool:
    """Whether Tiled's server and its dependencies (the ``server`` extra) are importable."""
    try:
        return importlib.util.find_spec("tiled.server.app") is not None
    except ImportError:  # tiled.server is there, what it imports is not
        return False


def _answers(url: str) -> bool:
    try:
        return httpx.get(f"{url}/healthz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def _command(args: argparse.Namespace) -> int:
    from .localstack import local_service_action, local_settings

    return local_service_action(LocalTiled(local_settings(args)), args.action, "Tiled server")


def register(sub: argparse._SubParsersAction) -> None:
    from .localstack import add_local_command

    p = add_local_command(sub, "tiled", "run a local Tiled server with a writable catalog", __doc__)
    p.add_argument("action", choices=["up", "down", "status"])
    p.add_argument("--port", dest="tiled_port", type=int,
                   help="port (default 8765; RUNSTREAM_TILED_PORT)")  # fmt: skip
    p.set_defaults(func=_command)
