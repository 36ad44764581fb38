"""Registry of the subcommands that live beside the services they run.

Each entry adds one subcommand to ``runstream``; keep the imports inside the
functions so that ``runstream --help`` stays fast.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

Register = Callable[[argparse._SubParsersAction], None]


def _broker(sub: argparse._SubParsersAction) -> None:
    from .localstack import register_broker

    register_broker(sub)


def _demo(sub: argparse._SubParsersAction) -> None:
    from .demo import register

    register(sub)


def _consume(sub: argparse._SubParsersAction) -> None:
    from runstream.consumers.cli import register

    from .tiledserver import local_key_for

    register(sub, local_tiled_key=local_key_for)


def _tiled(sub: argparse._SubParsersAction) -> None:
    from .tiledserver import register

    register(sub)


def _engine(sub: argparse._SubParsersAction) -> None:
    from runstream.producer.engine.cli import register

    register(sub)


def _keys(sub: argparse._SubParsersAction) -> None:
    from runstream.producer.engine.identity.cli import register

    register(sub)


def _login(sub: argparse._SubParsersAction) -> None:
    from runstream.producer.engine.identity.login import register

    register(sub)


REGISTRY: list[Register] = [_broker, _consume, _demo, _tiled, _engine, _keys, _login]
