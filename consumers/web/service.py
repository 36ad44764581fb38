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
from typing import TYPE_CHECKING

import uvicorn
from pydantic import SecretStr, ValidationError

from ..protocols import per_run
from ..services import ConsumerService
from .app import create_app
from .model import RunFeed, RunStore
from .settings import RetentionSettings, WebSettings

if TYPE_CHECKING:
    from ..runtime import Runtime

log = logging.getLogger(__name__)

EXPIRE_EVERY = 10.0  # seconds between checks for closed runs past their age


def _arguments(parser: argparse.ArgumentParser) -> None:
    S = argparse.SUPPRESS  # unset options keep WebSettings' values (env or defaults)
    parser.add_argument("--host", default=S, help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=S, help="port of the web app (default 8700)")
    parser.add_argument("--engine-url", default=S,
                        help="the engine's HTTP API: turns on the engine panel")  # fmt: skip
    parser.add_argument(
        "--tiled-url",
        default=S,
        help="Tiled server holding the runs: links, "
        "and runs the view no longer keeps (key: RUNSTREAM_TILED_API_KEY)",
    )
    parser.add_argument("--tiled-catalog", default=S, help="the runs' container in Tiled")


def _one_line(exc: ValidationError) -> str:
    return "; ".join(f"{'.'.join(map(str, e['loc'])) or 'value'}: {e['msg']}" for e in exc.errors())


def web_settings(args: argparse.Namespace) -> WebSettings:
    given = {k: v for k, v in vars(args).items() if k in WebSettings.model_fields}
    try:
        settings = WebSettings(**given)
    except ValidationError as exc:
        raise ValueError(f"bad web settings: {_one_line(exc)}") from None
    local_key = getattr(args, "local_tiled_key", None)
    url = settings.tiled_read_url or settings.tiled_url
    if url and settings.tiled_api_key is None and local_key is not None:
        key = local_key(url)  # the local server's, when the URL is its own
        if key:
            settings = settings.model_copy(update={"tiled_api_key": SecretStr(key)})
    return settings


def _retention() -> RetentionSettings:
    try:
        return RetentionSettings()
    except ValidationError as exc:
        raise ValueError(f"bad retention settings: {_one_line(exc)}") from None


def _factories(args: argparse.Namespace) -> list:
    args.web_settings = web_settings(args)
    args.web_store = RunStore(_retention())
    store = args.web_store
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


def _attach(args: argparse.Namespace, runtime: Runtime) -> Callable[[], None]:
    settings: WebSettings = args.web_settings
    store: RunStore = args.web_store
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
    _arguments, _factories, _attach, (WebSettings, RetentionSettings),
)  # fmt: skip
