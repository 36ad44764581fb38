"""The key rule: which run (start uid) every document belongs to.

Only start, descriptor, stop, resource and stream_resource name their run;
the rest point at a descriptor or a resource. `RunIndex` keeps those small maps
per run and forgets a run at its stop, so memory stays bounded by open runs.
A resource without ``run_start`` (older bluesky) names no run: `unlabeled.RunKeys`
finds its run and tells the index with `RunIndex.adopt`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


class RunIndex:
    def __init__(self) -> None:
        self._parent: dict[str, str] = {}  # descriptor/resource/stream_resource uid -> run
        self._children: dict[str, list[str]] = {}  # run -> those uids
        self._open: dict[str, None] = {}  # runs started and not stopped, in start order

    @property
    def open_runs(self) -> list[str]:
        """Runs whose start was seen and whose stop was not, oldest first."""
        return list(self._open)

    def parent(self, uid: str) -> str | None:
        """The run of a descriptor, resource or stream_resource uid seen (or adopted)."""
        return self._parent.get(uid)

    def adopt(self, uid: str, run: str) -> None:
        """Record that resource ``uid`` (which named no run) belongs to ``run``."""
        self._parent[uid] = run
        self._children.setdefault(run, []).append(uid)

    def run_of(self, name: str, doc: Mapping[str, Any]) -> str | None:
        """The start uid of ``doc``'s run, remembering what later documents will need.

        Returns None when the document points at nothing this index has seen.
        """
        if name == "start":
            self._children.setdefault(doc["uid"], [])
            self._open[doc["uid"]] = None
            return doc["uid"]
        if name in ("event", "event_page"):
            return self._parent.get(doc["descriptor"])
        if name in ("datum", "datum_page"):
            return self._parent.get(doc["resource"])
        if name == "stream_datum":
            return self._parent.get(doc.get("stream_resource", "")) or self._parent.get(
                doc.get("descriptor", "")
            )
        if name in ("descriptor", "resource", "stream_resource"):
            run = doc.get("run_start")
            if run is None:
                return None
            self.adopt(doc["uid"], run)
            return run
        if name == "stop":
            run = doc["run_start"]
            self.forget(run)
            return run
        return None

    def forget(self, run: str) -> None:
        """Drop what is kept for ``run`` (done at its stop; for a run given up, by hand)."""
        self._open.pop(run, None)
        for uid in self._children.pop(run, ()):
            self._parent.pop(uid, None)
