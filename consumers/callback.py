"""The base of runstream's per-run callbacks: event-model's dispatch plus three hooks.

`RunCallback` is event-model's `DocumentRouter`: calling it with ``(name, doc)``
calls the method of that name, and an ``event_page`` reaches a subclass that only
defines ``event`` one event at a time (and the other way round). runstream adds the
hooks the consumer runtime calls (`protocols.Ticking`, `protocols.CatchingUp`,
`protocols.Abandonable`):

- ``tick()``, every ``tick_interval`` from the consumer thread, for time-based work
  (closing a batch, a throttled redraw);
- ``caught_up()``, when a poll finds nothing more after messages came (write what a
  batch holds back now: nothing else is coming for the moment);
- ``abandon(reason)``, when the run is dropped without its stop (partition revoked,
  shutdown, idle timeout); nothing more reaches the callback after it.

The table, plot, Tiled writer and web view callbacks subclass it. A user's own
RunRouter factory may return any callable; the hooks are optional.
"""

from __future__ import annotations

from event_model import DocumentRouter

__all__ = ["RunCallback"]


class RunCallback(DocumentRouter):
    """One run's callback: a method per document name, and the runtime's hooks.

    A method returns None: to DocumentRouter that means "the document passes through
    unchanged"; calling the callback returns ``(name, doc)``, which the runtime ignores.
    Define ``event`` or ``event_page`` or both: a page reaching a callback with only
    ``event`` is unpacked into events (and an event packed into a page the other way),
    so a hot path defines the form it receives most, or both.
    """

    def tick(self) -> None:
        """Time-based work; called every ``tick_interval`` while the run is open."""

    def caught_up(self) -> None:
        """The consumer found nothing more to read for now, after messages came."""

    def abandon(self, reason: str) -> None:
        """The run was dropped without its stop, for ``reason``; nothing more comes."""
