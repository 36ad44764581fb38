"""Resources without ``run_start``: the one run each belongs to, as a run bundler emitted it.

Older bluesky, replays of old data and legacy topics carry ``resource`` (and some
tools ``stream_resource``) documents that name no run. event-model's RunRouter fans
such a resource, and the datums pointing at it, out to every open run. A Kafka
message has one key, so `RunKeys` finds the one run instead, from emission order:

* one run open: that run. A RunEngine's run bundler emits a run's asset documents
  between that run's start and stop, and before run keys only one run was open.
* several runs open (nested runs): the resource and its datums wait until a document
  of a known run refers to them: an event or event page whose data holds one of its
  datum ids, or a stream datum whose descriptor is known. The bundler emits a save's
  asset documents just before that save's event, so the wait is one event.
* no run open, or every run open when it came ended before anything referred to it:
  returned as `Unkeyed` with its reason, never sent to a guessed run.

Memory stays bounded by open runs: what waits is given up when its last candidate ends.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from .keys import RunIndex

#: The field by which a document points at its parent.
POINTER = {
    "event": "descriptor",
    "event_page": "descriptor",
    "datum": "resource",
    "datum_page": "resource",
    "stream_datum": "stream_resource",
}
_RESOURCES = ("resource", "stream_resource")


@dataclass(frozen=True)
class Keyed:
    """A document and the run (start uid) it belongs to; ``tag`` is the caller's, passed through."""

    run: str
    name: str
    doc: Mapping[str, Any]
    tag: Any = None


@dataclass(frozen=True)
class Unkeyed:
    """A document no run can be found for, and why."""

    name: str
    doc: Mapping[str, Any]
    reason: str
    tag: Any = None


@dataclass
class _Held:
    candidates: dict[str, None]  # runs open when the resource came, not ended since
    runs: tuple[str, ...]  # the same, as they were (for the reason)
    docs: list[tuple[str, Mapping[str, Any], Any]] = field(default_factory=list)
    datum_ids: list[str] = field(default_factory=list)


class RunKeys:
    """The key rule (`RunIndex`) in emission order, with resources that name no run."""

    def __init__(self) -> None:
        self.index = RunIndex()
        self._held: dict[str, _Held] = {}  # resource uid -> what waits for its run
        self._held_datums: dict[str, str] = {}  # datum id -> its held resource's uid

    @property
    def holding(self) -> int:
        """Documents waiting for a reference to tell their run."""
        return sum(len(held.docs) for held in self._held.values())

    def sort(
        self, name: str, doc: Mapping[str, Any], tag: Any = None
    ) -> tuple[list[Keyed], list[Unkeyed]]:
        """What can be keyed now (held documents first, in emission order) and what never can.

        A field the key rule needs and ``doc`` lacks raises KeyError.
        """
        if name in _RESOURCES and doc.get("run_start") is None:
            return self._unlabeled(name, doc, tag)
        held = self._held.get(doc.get(POINTER.get(name, ""), "")) if self._held else None
        if held is not None:
            return self._pointing_at_held(held, name, doc, tag)
        run = self.index.run_of(name, doc)
        if run is None:
            return [], [Unkeyed(name, doc, unknown_reason(name, doc), tag)]
        keyed: list[Keyed] = []
        if self._held and name in ("event", "event_page"):
            for uid in self._referred(doc):
                keyed.extend(self._release(uid, run))
        keyed.append(Keyed(run, name, doc, tag))
        return keyed, self._ended(run) if name == "stop" else []

    def forget(self, run: str) -> list[Unkeyed]:
        """A run given up without its stop; returns what can no longer find its run."""
        self.index.forget(run)
        return self._ended(run)

    # -- resources that name no run --------------------------------------------------

    def _unlabeled(
        self, name: str, doc: Mapping[str, Any], tag: Any
    ) -> tuple[list[Keyed], list[Unkeyed]]:
        uid = doc["uid"]
        open_runs = self.index.open_runs
        if len(open_runs) == 1:
            self.index.adopt(uid, open_runs[0])
            return [Keyed(open_runs[0], name, doc, tag)], []
        if not open_runs:
            reason = f"{name} {uid} names no run_start and no run is open"
            return [], [Unkeyed(name, doc, reason, tag)]
        self._held[uid] = _Held(dict.fromkeys(open_runs), tuple(open_runs), [(name, doc, tag)])
        return [], []

    def _pointing_at_held(
        self, held: _Held, name: str, doc: Mapping[str, Any], tag: Any
    ) -> tuple[list[Keyed], list[Unkeyed]]:
        resource = doc[POINTER[name]]
        if name == "stream_datum":
            run = self.index.parent(doc.get("descriptor") or "")
            if run is not None:
                return [*self._release(resource, run), Keyed(run, name, doc, tag)], []
        else:  # datum, datum_page
            ids = doc["datum_id"]
            for datum_id in [ids] if isinstance(ids, str) else ids:
                self._held_datums[datum_id] = resource
                held.datum_ids.append(datum_id)
        held.docs.append((name, doc, tag))
        return [], []

    def _referred(self, doc: Mapping[str, Any]) -> list[str]:
        """The held resources whose datums an event's (or event page's) data holds."""
        found: list[str] = []
        for value in _values(doc.get("data", {})):
            resource = self._held_datums.get(value) if isinstance(value, str) else None
            if resource is not None and resource not in found:
                found.append(resource)
        return found

    def _release(self, resource: str, run: str) -> list[Keyed]:
        held = self._held.pop(resource)
        for datum_id in held.datum_ids:
            self._held_datums.pop(datum_id, None)
        self.index.adopt(resource, run)
        return [Keyed(run, name, doc, tag) for name, doc, tag in held.docs]

    def _ended(self, run: str) -> list[Unkeyed]:
        lost: list[Unkeyed] = []
        for resource, held in list(self._held.items()):
            held.candidates.pop(run, None)
            if held.candidates:
                continue
            self._held.pop(resource)
            for datum_id in held.datum_ids:
                self._held_datums.pop(datum_id, None)
            reason = (f"{held.docs[0][0]} {resource} names no run_start, and nothing of the runs "
                      f"open when it came ({', '.join(held.runs)}) referred to it before they "
                      "ended")  # fmt: skip
            lost.extend(Unkeyed(name, doc, reason, tag) for name, doc, tag in held.docs)
        return lost


def unknown_reason(name: str, doc: Mapping[str, Any]) -> str:
    """Why a document that points at something never seen has no run."""
    pointer = POINTER.get(name, "run_start")
    return f"{name} points at {pointer} {doc.get(pointer)!r}, never seen"


def _values(data: Mapping[str, Any]) -> Iterator[Any]:
    """An event's values, and an event page's, one by one."""
    for value in data.values():
        if isinstance(value, list):
            yield from value
        else:
            yield value
