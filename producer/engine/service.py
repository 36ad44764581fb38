"""Assemble the engine service: settings, publisher, RunEngine, HTTP server."""

from __future__ import annotations

import logging
import signal
import socket

from pydantic import ValidationError

log = logging.getLogger(__name__)


def run_service(host: str | None = None, port: int | None = None) -> int:
    """Serve until SIGINT/SIGTERM; the running plan is aborted and the outbox flushed."""
    import uvicorn

    from runstream.kafka import settings_problem
    from runstream.schemas import CommandError

    from .. import KafkaPublisher, OutboxError, PublisherConfigError, lineage
    from .app import create_app
    from .auth import TokenGuard
    from .queue import Engine
    from .registry import PlanRegistry, RequestError
    from .settings import EngineSettings, EngineSettingsError
    from .store import TaskStore

    given = {"engine_host": host, "engine_port": port}
    try:
        settings = EngineSettings(**{k: v for k, v in given.items() if v is not None})
        token = settings.token()
    except (ValidationError, EngineSettingsError) as exc:
        raise CommandError(f"bad engine settings: {settings_problem(exc)}") from None
    if not _can_bind(settings.engine_host, settings.engine_port):
        raise CommandError(
            f"cannot serve on {settings.engine_host}:{settings.engine_port} (taken, or not an "
            "address of this machine); choose another with --host/--port "
            "(RUNSTREAM_ENGINE_HOST, RUNSTREAM_ENGINE_PORT)"
        )
    try:
        registry = PlanRegistry.default(
            settings.plan_modules,
            settings.device_modules,
            settings.allowed_plans or None,
            settings.files_dir,
        )
        publisher = KafkaPublisher.from_settings(settings.publisher)
    except (RequestError, PublisherConfigError, OutboxError) as exc:
        raise CommandError(str(exc)) from None

    def outbox_ready() -> str | None:
        if publisher.outbox.bytes > publisher.max_outbox_bytes:
            return "the publisher's outbox is over its bound"
        return None

    engine = Engine(
        TaskStore(settings.db_path),
        registry,
        subscribers=[publisher],
        preprocessors=[lineage],
        ready_checks=[outbox_ready],
        max_queue=settings.max_queue,
    )
    app = create_app(
        engine,
        TokenGuard(token, settings.open_reads),
        max_body_bytes=settings.max_body_bytes,
        metric_registries=[publisher.metrics.registry],
    )
    engine.start()
    log.info(
        "engine on %s:%s publishing to %s", settings.engine_host, settings.engine_port,
        publisher.topic,
    )  # fmt: skip
    # uvicorn re-raises the signal it stopped on once it has shut down; with the default
    # SIGTERM handler that would end the process before the engine closes its runs below.
    previous = signal.signal(signal.SIGTERM, _exit_cleanly)
    try:
        uvicorn.run(
            app,
            host=settings.engine_host,
            port=settings.engine_port,
            log_level="warning",
            timeout_graceful_shutdown=3,  # live event streams never end by themselves
        )
    finally:
        signal.signal(signal.SIGTERM, previous)
        engine.close()
        left = publisher.close(30)
        engine.store.close()
        if left:
            log.warning("%d documents left in the outbox for the next start", left)
    return 0


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
