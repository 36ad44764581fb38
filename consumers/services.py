"""The consumer services ``runstream consume <service>`` offers: each is the runtime plus factories.

To add one, write a module with a `ConsumerService` named ``SERVICE`` and list
the module here. A service has one settings model (`ConsumerSettings`, extended by
a model of its own: see `settings`), filled from its options and ``RUNSTREAM_*``
variables, and gets everything it shares in one `ServiceContext`. A service that
serves something besides its callbacks (the web view) gives ``attach``: called with
the built runtime before it runs, it returns what to call when the runtime has
stopped; one that shares more than the context's (the web view's run store) gives
``context``, building a `ServiceContext` subclass.
"""

from __future__ import annotations

import argparse
import importlib
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from .protocols import Factory
from .settings import ConsumerSettings

S = TypeVar("S", bound=ConsumerSettings)

if TYPE_CHECKING:
    from .runtime import Runtime

SERVICE_MODULES = [
    "runstream.consumers.table",
    "runstream.consumers.plot",
    "runstream.consumers.tiled.service",
    "runstream.consumers.web.service",
]

#: The API key of the local Tiled server when a URL is that server's, else None.
LocalTiledKey = Callable[[str], str | None]


@dataclass(frozen=True, kw_only=True)
class ServiceContext(Generic[S]):
    """What one running service shares between its parts, handed to each explicitly."""

    settings: S  # the service's settings model: ConsumerSettings or an extension of it
    stop: threading.Event = field(default_factory=threading.Event)  # set at SIGTERM
    local_tiled_key: LocalTiledKey | None = None  # given by the local stack, if there is one


@dataclass(frozen=True)
class ConsumerService:
    name: str
    help: str
    settings: type[ConsumerSettings]
    add_arguments: Callable[[argparse.ArgumentParser], None]
    factories: Callable[[Any], list[Factory]]  # (its ServiceContext) -> factories
    attach: Callable[[Any, Runtime], Callable[[], None]] | None = None
    context: Callable[..., ServiceContext] = ServiceContext  # (**ServiceContext's fields)


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
