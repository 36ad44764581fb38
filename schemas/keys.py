"""The key rule: which run (start uid) every document belongs to.

Only start, descriptor, stop, resource and stream_resource name their run;
the rest point at a descriptor or a resource. `RunIndex` keeps those small maps
per run and forgets a run at its stop, so memory stays bounded by open runs.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


class RunIndex:
    def __init__(self) -> None:
        self._parent: dict[str, str] = {}  # descriptor/resource/stream_resource uid -> run
        self._children: dict[str, list[str]] = {}  # run -> those uids

    @property
    def open_runs(self) -> list[str]:
        return list(self._children)

    def run_of(self, name: str, doc: Mapping[str, Any]) -> str | None:
        """The start uid of ``doc``'s run, remembering what later documents will need.

        Returns None when the document points at nothing this index has seen.
        """
        if name == "start":
            self._children.setdefault(doc["uid"], [])
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
            self._parent[doc["uid"]] = run
            self._children.setdefault(run, []).append(doc["uid"])
            return run
        if name == "stop":
            run = doc["run_start"]
            self.forget(run)
            return run
        return None

    def forget(self, run: str) -> None:
        """Drop what is kept for ``run`` (done at its stop; for a run given up, by hand)."""
        for uid in self._children.pop(run, ()):
            self._parent.pop(uid, None)
