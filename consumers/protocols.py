"""What the runtime expects of the code it runs, as protocols (duck-typed).

A *factory* has event-model RunRouter's signature; any existing RunRouter
factory works unchanged. A callback may add three optional hooks, which
`callback.RunCallback` declares for runstream's own callbacks:

* ``tick()``: called from the consumer thread every ``tick_interval`` (also when
  no message arrives), for time-based work: closing batches, throttled redraws.
* ``caught_up()``: called when a poll finds nothing more after messages came: what
  a callback holds back for a batch need wait no longer for one (a replay's end, a
  slow live run), so it can write it at once rather than on a later ``tick``.
* ``abandon(reason)``: called when the runtime drops the run without having seen
  its stop document (partition revoked, shutdown, idle timeout); nothing more
  comes to the callback after it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Protocol, runtime_checkable

Callback = Callable[[str, Mapping[str, Any]], Any]
SubFactory = Callable[[str, Mapping[str, Any]], list[Callback]]
Factory = Callable[[str, Mapping[str, Any]], tuple[list[Callback], list[SubFactory]]]


@runtime_checkable
class Ticking(Protocol):
    def tick(self) -> None: ...


@runtime_checkable
class CatchingUp(Protocol):
    def caught_up(self) -> None: ...


@runtime_checkable
class Abandonable(Protocol):
    def abandon(self, reason: str) -> None: ...


def per_run(make: Callable[[], Callback]) -> Factory:
    """A RunRouter factory that gives every run a fresh callback from ``make()``."""

    def factory(name: str, start: Mapping[str, Any]) -> tuple[list[Callback], list[SubFactory]]:
        return [make()], []

    return factory
