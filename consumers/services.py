"""The consumer services ``runstream consume <service>`` offers: each is the runtime plus factories.

To add one, write a module with a `ConsumerService` named ``SERVICE`` and list
the module here. A service that serves something besides its callbacks (the web
view) gives ``attach``: called with the built runtime before it runs, it returns
what to call when the runtime has stopped. A service with settings of its own
lists their pydantic-settings models in ``settings`` (read by the deployment
checks); one with ``host`` and ``port`` fields names a server the service runs.
"""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .protocols import Factory

if TYPE_CHECKING:
    from .runtime import Runtime

SERVICE_MODULES = [
    "runstream.consumers.table",
    "runstream.consumers.plot",
    "runstream.consumers.tiled.service",
    "runstream.consumers.web.service",
]


@dataclass(frozen=True)
class ConsumerService:
    name: str
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    factories: Callable[[argparse.Namespace], list[Factory]]
    attach: Callable[[argparse.Namespace, Runtime], Callable[[], None]] | None = None
    settings: tuple[type, ...] = ()


def services() -> dict[str, ConsumerService]:
    found = {}
    for module in SERVICE_MODULES:
        service = importlib.import_module(module).SERVICE
        found[service.name] = service
    return found


def load_factory(spec: str) -> Factory:
    """``package.module:callable`` -> the callable, or ValueError saying what is wrong."""
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise ValueError(f"factory {spec!r} is not of the form package.module:callable")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ValueError(f"factory {spec!r}: cannot import {module_name}: {exc}") from None
    target = module
    for part in attr.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            raise ValueError(f"factory {spec!r}: {module_name} has no {attr}") from None
    if not callable(target):
        raise ValueError(f"factory {spec!r} is a {type(target).__name__}, not callable")
    return target
