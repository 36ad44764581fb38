"""``runstream consume``: run the consumer runtime with factories or a named service."""

from __future__ import annotations

import argparse
import contextlib
import logging
import signal
import threading
from collections.abc import Callable, Iterator

from pydantic import ValidationError

from runstream.kafka import KafkaSettings, settings_problem
from runstream.schemas.errors import CommandError

from .runtime import Runtime
from .services import ConsumerService, load_factory, services
from .settings import ConsumerSettings

log = logging.getLogger(__name__)


class UsageError(CommandError, ValueError):
    """Bad command-line input: printed as a one-line error, exit code 2."""

    exit_code = 2


def _common(parser: argparse.ArgumentParser) -> None:
    S = argparse.SUPPRESS  # unset options keep ConsumerSettings' values (env or defaults)
    parser.add_argument(
        "--topic",
        action="append",
        dest="topics",
        default=S,
        metavar="T",
        help="topic to read (repeatable; RUNSTREAM_TOPICS)",
    )
    parser.add_argument("--topic-pattern", default=S, help="regex of topics to read instead")
    parser.add_argument("--group", default=S, help="consumer group (RUNSTREAM_GROUP)")
    parser.add_argument(
        "--bootstrap",
        dest="kafka_bootstrap",
        default=S,
        help="Kafka bootstrap servers (RUNSTREAM_KAFKA_BOOTSTRAP)",
    )
    parser.add_argument(
        "--from-beginning",
        action="store_true",
        default=S,
        help="a group without committed offsets starts at the oldest message",
    )
    parser.add_argument(
        "--http-port",
        type=int,
        default=S,
        help="serve /healthz, /readyz, /metrics on this port (0: off)",
    )
    parser.add_argument(
        "--idle-timeout",
        type=float,
        default=S,
        help="seconds without news after which an open run is closed",
    )
    parser.add_argument("--no-validate", dest="validate_documents", action="store_false",
                        default=S, help="skip event-model schema validation")  # fmt: skip


def settings_from(args: argparse.Namespace) -> ConsumerSettings:
    fields = ConsumerSettings.model_fields
    overrides = {k: v for k, v in vars(args).items() if k in fields}
    try:
        if getattr(args, "kafka_bootstrap", None):
            overrides["kafka"] = KafkaSettings(bootstrap=args.kafka_bootstrap)
        return ConsumerSettings(**overrides)
    except ValidationError as exc:
        raise UsageError(f"bad consumer settings: {settings_problem(exc)}") from None


@contextlib.contextmanager
def stop_on_signals(stop: Callable[[], None]) -> Iterator[None]:
    """SIGTERM and SIGINT call ``stop`` while inside: the service then commits and exits 0,
    also when the signal comes during its start-up."""

    def handler(signum: int, _frame: object) -> None:
        log.info("signal %d: stopping", signum)
        stop()

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, restored in previous.items():
            signal.signal(sig, restored)


def run_until_signalled(runtime: Runtime) -> int:
    """Run the loop; SIGTERM and SIGINT make it commit and return, exit code 0."""
    with stop_on_signals(runtime.stop):
        runtime.run()
    return 0


def _run(args: argparse.Namespace, factories_of: Callable[[argparse.Namespace], list],
         service: ConsumerService | None = None) -> int:  # fmt: skip
    args.stop_event = threading.Event()  # set at SIGTERM: lets waiting callbacks give up
    settings = settings_from(args)
    with stop_on_signals(args.stop_event.set):  # from here on: a signal is a clean stop
        try:
            factories = factories_of(args)
            runtime = Runtime(settings, factories, args.stop_event)
            detach = service.attach(args, runtime) if service and service.attach else None
        except CommandError:
            raise
        except ValueError as exc:  # a bad factory, service option or setting
            raise UsageError(str(exc)) from None
        try:
            runtime.run()
        finally:
            if detach is not None:
                detach()
    return 0


def _generic_factories(args: argparse.Namespace) -> list:
    specs = getattr(args, "factory", None) or []
    if not specs:
        raise UsageError("give --factory package.module:callable, or a service: "
                         + ", ".join(services()))  # fmt: skip
    return [load_factory(spec) for spec in specs]


def register(
    sub: argparse._SubParsersAction, local_tiled_key: Callable[[str], str | None] | None = None
) -> None:
    """Add ``runstream consume``; ``local_tiled_key(url)`` gives a local Tiled server's key."""
    parser = sub.add_parser(
        "consume",
        help="route Kafka documents per run to RunRouter factories or a named service",
        description="Consume runstream topics in a consumer group, giving every run its own "
        "callbacks. Runs until SIGTERM/SIGINT, then commits what it processed and exits 0.",
    )
    parser.add_argument("--factory", action="append", metavar="MODULE:CALLABLE",
                        help="RunRouter factory to run (repeatable)")  # fmt: skip
    _common(parser)
    parser.set_defaults(func=lambda args: _run(args, _generic_factories))
    kinds = parser.add_subparsers(dest="service", metavar="SERVICE")
    for service in services().values():
        p = kinds.add_parser(service.name, help=service.help, description=service.help)
        _common(p)
        service.add_arguments(p)
        p.set_defaults(func=lambda args, s=service: _run(args, s.factories, s),
                       local_tiled_key=local_tiled_key)  # fmt: skip
