"""``runstream consume web``: the consumer runtime feeding a live model, served to browsers.

The runtime polls Kafka on the main thread; the web server (uvicorn) runs on a
thread of its own over the same `RunStore`. The socket is bound before
anything else starts, so a taken port is one clear error, and the URL is
printed only once the server answers.
"""

from __future__ import annotations

import argparse
import logging
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import uvicorn
from pydantic import SecretStr

from ..protocols import per_run
from ..services import ConsumerService, LocalTiledKey, ServiceContext
from .app import create_app
from .model import RunFeed, RunStore
from .settings import WebServiceSettings, WebSettings

if TYPE_CHECKING:
    from ..runtime import Runtime

log = logging.getLogger(__name__)

EXPIRE_EVERY = 10.0  # seconds between checks for closed runs past their age


def _arguments(parser: argparse.ArgumentParser) -> None:
    S = argparse.SUPPRESS  # unset options keep WebSettings' values (env or defaults)
    parser.add_argument("--host", default=S, help="address to listen on "
                        "(default 127.0.0.1; RUNSTREAM_WEB_HOST)")  # fmt: skip
    parser.add_argument("--port", type=int, default=S,
                        help="port of the web app (default 8700; RUNSTREAM_WEB_PORT)")  # fmt: skip
    parser.add_argument("--engine-url", default=S, help="the engine's HTTP API: turns on the "
                        "engine panel (RUNSTREAM_WEB_ENGINE_URL)")  # fmt: skip
    parser.add_argument(
        "--tiled-url",
        default=S,
        help="Tiled server holding the runs: links, and runs the view no longer keeps "
        "(RUNSTREAM_WEB_TILED_URL; key: RUNSTREAM_TILED_API_KEY)",
    )
    parser.add_argument("--tiled-catalog", default=S, help="the runs' container in Tiled "
                        "(RUNSTREAM_WEB_TILED_CATALOG)")  # fmt: skip


@dataclass(frozen=True, kw_only=True)
class WebContext(ServiceContext[WebServiceSettings]):
    """The web view's context: its settings and the run store its feeds and app share."""

    store: RunStore

    @classmethod
    def create(cls, *, settings: WebServiceSettings, stop: threading.Event,
               local_tiled_key: LocalTiledKey | None = None) -> WebContext:  # fmt: skip
        web = _with_local_key(settings.web, local_tiled_key)
        return cls(settings=settings.model_copy(update={"web": web}), stop=stop,
                   local_tiled_key=local_tiled_key, store=RunStore(settings.retention))  # fmt: skip


def _with_local_key(settings: WebSettings, local_key: LocalTiledKey | None) -> WebSettings:
    """The local Tiled server's key when no key is set and the URL is that server's."""
    url = settings.tiled_read_url or settings.tiled_url
    if not url or settings.tiled_api_key is not None or local_key is None:
        return settings
    key = local_key(url)
    return settings.model_copy(update={"tiled_api_key": SecretStr(key)}) if key else settings


def _factories(context: WebContext) -> list:
    store = context.store
    return [per_run(lambda: RunFeed(store))]


class WebServer:
    """uvicorn on a thread, over a socket bound up front."""

    def __init__(self, app: object, settings: WebSettings) -> None:
        try:
            self.sock = socket.create_server((settings.host, settings.port), reuse_port=False)
        except OSError as exc:
            raise ValueError(f"cannot listen on {settings.host}:{settings.port}: "
                             f"{exc.strerror or exc}") from None  # fmt: skip
        host, port = self.sock.getsockname()[:2]
        self.url = f"http://{host if ':' not in host else f'[{host}]'}:{port}/"
        config = uvicorn.Config(app, log_config=None, access_log=False, lifespan="on",
                                timeout_graceful_shutdown=2)  # fmt: skip
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]},
                                       daemon=True, name="runstream-web")  # fmt: skip

    def start(self, timeout: float = 30.0) -> None:
        self.thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise ValueError(f"the web server did not start on {self.url}")
            time.sleep(0.02)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)
        self.sock.close()


def _attach(context: WebContext, runtime: Runtime) -> Callable[[], None]:
    settings, store = context.settings.web, context.store
    app = create_app(store, settings, alive=runtime.alive, ready=runtime.ready,
                     registries=[runtime.metrics.registry])  # fmt: skip
    server = WebServer(app, settings)
    server.start()
    stop = threading.Event()

    def expire() -> None:
        while not stop.wait(EXPIRE_EVERY):
            store.expire()

    threading.Thread(target=expire, daemon=True, name="runstream-web-expire").start()
    log.info("web view on %s", server.url)
    print(f"runstream web view: {server.url}", flush=True)
    if settings.engine_url:
        log.info("engine panel talks to %s", settings.engine_url)

    def detach() -> None:
        stop.set()
        server.stop()

    return detach


SERVICE = ConsumerService(
    "web", "a live web view of the runs: tree of runs, tables, plots, engine panel",
    WebServiceSettings, _arguments, _factories, _attach, WebContext.create,
)  # fmt: skip
