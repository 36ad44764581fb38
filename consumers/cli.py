"""``runstream consume``: run the consumer runtime with factories or a named service."""

from __future__ import annotations

import argparse
import contextlib
import logging
import signal
import threading
from collections.abc import Callable, Iterator
from typing import TypeVar

from pydantic import Field

from runstream.schemas.errors import CommandError

from .runtime import Runtime
from .services import ConsumerService, LocalTiledKey, ServiceContext, load_factory, services
from .settings import ConsumerSettings, build_settings

SettingsT = TypeVar("SettingsT", bound=ConsumerSettings)

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


def settings_from(model: type[SettingsT], args: argparse.Namespace) -> SettingsT:
    """The service's one settings model: the options given win over ``RUNSTREAM_*`` variables."""
    try:
        return build_settings(model, vars(args))
    except ValueError as exc:
        raise UsageError(str(exc)) from None


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


def _run(args: argparse.Namespace, service: ConsumerService,
         local_tiled_key: LocalTiledKey | None = None) -> int:  # fmt: skip
    settings = settings_from(service.settings, args)
    stop = threading.Event()  # set at SIGTERM: lets waiting callbacks give up
    with stop_on_signals(stop.set):  # from here on: a signal is a clean stop
        try:
            context = service.context(settings=settings, stop=stop,
                                      local_tiled_key=local_tiled_key)  # fmt: skip
            runtime = Runtime(settings, service.factories(context), stop)
            detach = service.attach(context, runtime) if service.attach else None
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


class FactorySettings(ConsumerSettings):
    """``runstream consume --factory ...``: the consumer settings and the factories to run."""

    factories: list[str] = Field(
        default_factory=list, description="RunRouter factories, package.module:callable"
    )


def _generic_factories(context: ServiceContext[FactorySettings]) -> list:
    specs = context.settings.factories
    if not specs:
        raise UsageError("give --factory package.module:callable (RUNSTREAM_FACTORIES), "
                         "or a service: " + ", ".join(services()))  # fmt: skip
    return [load_factory(spec) for spec in specs]


def _factory_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--factory",
        action="append",
        dest="factories",
        metavar="MODULE:CALLABLE",
        default=argparse.SUPPRESS,
        help="RunRouter factory to run (repeatable; RUNSTREAM_FACTORIES)",
    )


GENERIC = ConsumerService("factories", "your own RunRouter factories", FactorySettings,
                          _factory_arguments, _generic_factories)  # fmt: skip


def register(sub: argparse._SubParsersAction,
             local_tiled_key: LocalTiledKey | None = None) -> None:  # fmt: skip
    """Add ``runstream consume``; ``local_tiled_key(url)`` gives a local Tiled server's key."""
    parser = sub.add_parser(
        "consume",
        help="route Kafka documents per run to RunRouter factories or a named service",
        description="Consume runstream topics in a consumer group, giving every run its own "
        "callbacks. Runs until SIGTERM/SIGINT, then commits what it processed and exits 0.",
    )
    GENERIC.add_arguments(parser)
    _common(parser)
    parser.set_defaults(func=lambda args: _run(args, GENERIC, local_tiled_key))
    kinds = parser.add_subparsers(dest="service", metavar="SERVICE")
    for service in services().values():
        p = kinds.add_parser(service.name, help=service.help, description=service.help)
        _common(p)
        service.add_arguments(p)
        p.set_defaults(func=lambda args, s=service: _run(args, s, local_tiled_key))
