"""Liveness, readiness and Prometheus metrics over HTTP, on a daemon thread.

``/healthz`` answers 200 while the poll loop turns; ``/readyz`` 200 once the
consumer has partitions and polls; both with the body every runstream service
answers (``{"ok": bool, "problems": [...]}``, see `runstream.schemas.service`);
``/metrics`` the Prometheus text format.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from runstream.schemas.service import Health, health

log = logging.getLogger(__name__)

STALLED = "the consumer loop stalled"
NOT_READY = "the consumer has no partitions assigned yet or does not poll"


def liveness(alive: Callable[[], bool]) -> tuple[int, Health]:
    """(status, body) of ``/healthz``: the consumer loop turns."""
    return health([] if alive() else [STALLED])


def readiness(ready: Callable[[], bool]) -> tuple[int, Health]:
    """(status, body) of ``/readyz``: the consumer has its partitions and polls."""
    return health([] if ready() else [NOT_READY])


class HealthServer:
    def __init__(self, host: str, port: int, registry: CollectorRegistry,
                 alive: Callable[[], bool], ready: Callable[[], bool]) -> None:  # fmt: skip
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                if path == "/metrics":
                    self._answer(200, generate_latest(owner.registry), CONTENT_TYPE_LATEST)
                elif path == "/healthz":
                    self._answer_health(*liveness(owner.alive))
                elif path == "/readyz":
                    self._answer_health(*readiness(owner.ready))
                else:
                    self._answer(404, b"not found: try /healthz, /readyz or /metrics\n")

            def _answer(self, code: int, body: bytes, ctype: str = "text/plain") -> None:
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _answer_health(self, code: int, body: Health) -> None:
                self._answer(code, json.dumps(body).encode(), "application/json")

            def log_message(self, format: str, *args: object) -> None:
                log.debug("http: " + format, *args)

        self.registry, self.alive, self.ready = registry, alive, ready
        self.server = ThreadingHTTPServer((host, port), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True,
                                        name="runstream-health")  # fmt: skip
        self._thread.start()
        log.info("health and metrics on http://%s:%d", host, self.port)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
