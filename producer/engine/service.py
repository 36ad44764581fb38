"""Assemble the engine service: settings, publisher, RunEngine, HTTP server."""

from __future__ import annotations

import logging

from pydantic import ValidationError

log = logging.getLogger(__name__)


def run_service(host: str | None = None, port: int | None = None) -> int:
    """Serve until SIGINT/SIGTERM; the running plan is aborted and the outbox flushed."""
    import uvicorn
    from runstream.schemas import CommandError

    from .. import KafkaPublisher, OutboxError, PublisherConfigError, lineage
    from .app import create_app
    from .auth import TokenGuard
    from .config import EngineSettings, EngineSettingsError
    from .queue import Engine
    from .registry import PlanRegistry, RequestError
    from .store import TaskStore

    try:
        settings = EngineSettings()
        token = settings.token()
    except (ValidationError, EngineSettingsError) as exc:
        raise CommandError(f"bad engine settings: {exc}") from None
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
    for task_id in engine.interrupted:
        log.warning("task %s was interrupted by the last shutdown", task_id)
    app = create_app(
        engine,
        TokenGuard(token, settings.open_reads),
        max_body_bytes=settings.max_body_bytes,
        metric_registries=[publisher.metrics.registry],
    )
    engine.start()
    log.info(
        "engine on %s:%s publishing to %s",
        host or settings.engine_host,
        port or settings.engine_port,
        publisher.topic,
    )
    try:
        uvicorn.run(
            app,
            host=host or settings.engine_host,
            port=port if port is not None else settings.engine_port,
            log_level="warning",
            timeout_graceful_shutdown=3,  # live event streams never end by themselves
        )
    finally:
        engine.close()
        left = publisher.close(30)
        engine.store.close()
        if left:
            log.warning("%d documents left in the outbox for the next start", left)
    return 0
