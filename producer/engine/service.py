"""Assemble the engine service: settings, publisher, RunEngine, HTTP server.

`EngineService` holds what the service runs on, made once from its settings: the
publisher, the engine fed by it and the HTTP app over the engine. Every refusal
to start is a `CommandError` saying what to change.
"""

from __future__ import annotations

import logging
import signal
import socket
from dataclasses import dataclass

import uvicorn
from fastapi import FastAPI
from pydantic import ValidationError

from runstream.kafka import settings_problem
from runstream.schemas import CommandError

from .. import KafkaPublisher, OutboxError, PublisherConfigError, lineage
from .app import create_app
from .auth import guard_for
from .guards import DeviceTimeouts
from .queue import Engine
from .registry import PlanRegistry, RequestError
from .settings import EngineSettings, EngineSettingsError
from .store import TaskStore

log = logging.getLogger(__name__)

#: Seconds the publisher has at shutdown to hand Kafka what is left (the rest stays in the outbox).
CLOSE_TIMEOUT = 30.0


def run_service(host: str | None = None, port: int | None = None) -> int:
    """Serve until SIGINT/SIGTERM; the running plan is aborted and the outbox flushed."""
    settings, token = _settings(host, port)
    EngineService.assemble(settings, token).serve()
    return 0


def _settings(host: str | None, port: int | None) -> tuple[EngineSettings, str | None]:
    """The settings and the API token, with the command line's host and port over them."""
    given = {"engine_host": host, "engine_port": port}
    try:
        settings = EngineSettings(**{k: v for k, v in given.items() if v is not None})
        token = settings.read_token()
    except (ValidationError, EngineSettingsError) as exc:
        raise CommandError(f"bad engine settings: {settings_problem(exc)}") from None
    if not _can_bind(settings.engine_host, settings.engine_port):
        raise CommandError(
            f"cannot serve on {settings.engine_host}:{settings.engine_port} (taken, or not an "
            "address of this machine); choose another with --host/--port "
            "(RUNSTREAM_ENGINE_HOST, RUNSTREAM_ENGINE_PORT)"
        )
    return settings, token


@dataclass
class EngineService:
    """The engine service's settings and the pieces it shares: publisher, engine, app."""

    settings: EngineSettings
    publisher: KafkaPublisher
    engine: Engine
    app: FastAPI

    @classmethod
    def assemble(cls, settings: EngineSettings, token: str | None) -> EngineService:
        try:
            registry = PlanRegistry.default(
                settings.plan_modules,
                settings.device_modules,
                settings.allowed_plans or None,
                settings.files_dir,
            )
            guard = guard_for(settings, token)
            publisher = KafkaPublisher.from_settings(settings.publisher)
        except (RequestError, PublisherConfigError, OutboxError, EngineSettingsError) as exc:
            raise CommandError(str(exc)) from None
        engine = Engine(
            TaskStore(settings.db_path),
            registry,
            subscribers=[publisher],
            preprocessors=[lineage],
            ready_checks=[lambda: _outbox_problem(publisher)],
            max_queue=settings.max_queue,
            timeouts=DeviceTimeouts(
                settings.device_connect_timeout,
                settings.device_call_timeout,
                settings.device_wait_timeout,
            ),
        )
        app = create_app(
            engine,
            guard,
            max_body_bytes=settings.max_body_bytes,
            metric_registries=[publisher.metrics.registry],
        )
        return cls(settings, publisher, engine, app)

    def serve(self) -> None:
        """Run the engine and its HTTP server until told to stop, then close both."""
        host, port = self.settings.engine_host, self.settings.engine_port
        self.engine.start()
        log.info("engine on %s:%s publishing to %s", host, port, self.publisher.topic)
        # uvicorn re-raises the signal it stopped on once it has shut down; with the default
        # SIGTERM handler that would end the process before the engine closes its runs below.
        previous = signal.signal(signal.SIGTERM, _exit_cleanly)
        try:
            uvicorn.run(
                self.app,
                host=host,
                port=port,
                log_level="warning",
                timeout_graceful_shutdown=3,  # live event streams never end by themselves
            )
        finally:
            signal.signal(signal.SIGTERM, previous)
            self.close()

    def close(self) -> None:
        """Abort a running plan (closing its runs), flush the outbox, close the task store."""
        self.engine.close()
        left = self.publisher.close(CLOSE_TIMEOUT)
        self.engine.store.close()
        if left:
            log.warning("%d documents left in the outbox for the next start", left)


def _outbox_problem(publisher: KafkaPublisher) -> str | None:
    """A readiness check: the outbox is over its bound while Kafka takes nothing."""
    if publisher.outbox.bytes > publisher.max_outbox_bytes:
        return "the publisher's outbox is over its bound"
    return None


def _exit_cleanly(signum: int, _frame: object) -> None:
    """SIGTERM outside uvicorn's own handling: leave through the engine's shutdown, exit 0."""
    raise SystemExit(0)


def _can_bind(host: str, port: int) -> bool:
    """The HTTP server will be able to listen there (checked before anything starts)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        with socket.socket(infos[0][0], socket.SOCK_STREAM) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(infos[0][4])
    except OSError:
        return False
    return True
