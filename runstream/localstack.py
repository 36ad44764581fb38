"""The shape every local-stack command shares: state directory, progress, up/down/status."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from pydantic import ValidationError

from runstream.kafka import KafkaSettings, settings_problem
from runstream.schemas.errors import CommandError

from .broker import LocalBroker
from .settings import LocalSettings


class LocalService(Protocol):
    """What ``runstream broker`` and ``runstream tiled`` drive."""

    dir: Path

    def up(self, progress: Callable[[str], None]) -> str: ...
    def down(self, progress: Callable[[str], None]) -> bool: ...
    def status(self) -> str | None: ...


def progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def local_settings(args: argparse.Namespace) -> LocalSettings:
    overrides = {}
    for field in (
        "home", "broker_port", "broker_controller_port", "broker_nodes", "broker_secure",
        "tiled_port",
    ):  # fmt: skip
        value = getattr(args, field, None)
        if value is not None:
            overrides[field] = value
    try:
        return LocalSettings(**overrides)
    except ValidationError as exc:
        raise CommandError(f"bad local settings: {settings_problem(exc)}") from None


def default_bootstrap(args: argparse.Namespace | None = None) -> str:
    """--bootstrap, else RUNSTREAM_KAFKA_BOOTSTRAP, else the local broker's address."""
    explicit = getattr(args, "bootstrap", None) if args else None
    if explicit:
        return explicit
    try:
        kafka = KafkaSettings()
    except ValidationError as exc:
        problem = settings_problem(exc, "RUNSTREAM_KAFKA_")
        raise CommandError(f"bad Kafka settings: {problem}") from None
    if "bootstrap" in kafka.model_fields_set:
        return kafka.bootstrap
    settings = LocalSettings()
    return LocalBroker(settings).status() or f"127.0.0.1:{settings.broker_port}"


# -- broker -------------------------------------------------------------------


def local_service_action(service: LocalService, action: str, what: str) -> int:
    """``up | down | status`` of a local service: the address is the last line printed."""
    if action == "up":
        print(service.up(progress))
        return 0
    if action == "down":
        service.down(progress)
        return 0
    address = service.status()
    if address is None:
        progress(f"no local {what} is up (state directory {service.dir})")
        return 1
    print(address)
    return 0


def _broker(args: argparse.Namespace) -> int:
    broker = LocalBroker(local_settings(args))
    if args.action == "status" and broker.status() is None:
        nodes = broker.nodes()
        down = [node for node in nodes if not node.up()]
        if len(down) < len(nodes):  # a cluster with some nodes up
            progress("down: " + ", ".join(f"node {n.id} ({n.address})" for n in down)
                     + "; 'runstream broker up' starts them again")  # fmt: skip
            return 1
    return local_service_action(broker, args.action, "broker")


def add_local_command(
    sub: argparse._SubParsersAction, name: str, help: str, description: str | None
) -> argparse.ArgumentParser:
    """A subcommand of the local stack: its description, and ``--home`` for its state."""
    p = sub.add_parser(name, help=help, description=description,
                       formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("--home", help="state directory (RUNSTREAM_HOME)")
    return p


def register_broker(sub: argparse._SubParsersAction) -> None:
    p = add_local_command(
        sub,
        "broker",
        "run a local Kafka broker or cluster (jars from Maven Central)",
        "Start, stop or query the local Kafka broker (or a KRaft cluster with --nodes). Its "
        "data and logs live under $RUNSTREAM_HOME/kafka; its jars are cached under "
        "$RUNSTREAM_CACHE. 'up' and 'status' print the bootstrap list last.",
    )
    p.add_argument("action", choices=["up", "down", "status"])
    p.add_argument(
        "--port",
        dest="broker_port",
        type=int,
        help="client port of the first node, the others follow (default 9092)",
    )
    p.add_argument(
        "--controller-port",
        dest="broker_controller_port",
        type=int,
        help="KRaft controller port of the first node, the others follow (default 9093)",
    )
    p.add_argument(
        "--nodes",
        dest="broker_nodes",
        type=int,
        help="nodes of a local KRaft cluster, each broker and controller (default 1)",
    )
    p.add_argument(
        "--secure", dest="broker_secure", action="store_true", default=None,
        help="TLS and SCRAM-SHA-512 on the client listener; writes $RUNSTREAM_HOME/kafka/"
        "client.json (librdkafka settings, mode 0600)",
    )  # fmt: skip
    p.set_defaults(func=_broker)
