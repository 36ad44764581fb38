"""How a run is named to people: in table headers, plot titles, file names and log lines."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class RunLabel:
    uid: str
    scan_id: Any
    plan_name: str | None
    run_key: str | None
    parent_uid: str | None

    @classmethod
    def from_start(cls, start: Mapping[str, Any]) -> RunLabel:
        return cls(
            uid=start["uid"],
            scan_id=start.get("scan_id"),
            plan_name=start.get("plan_name"),
            run_key=start.get("run_key"),
            parent_uid=start.get("parent_uid"),
        )

    @property
    def short(self) -> str:
        return self.uid[:8]

    @property
    def stem(self) -> str:
        """File name stem: ``<scan_id>-<uid8>`` (scan id 'x' when the start has none)."""
        scan = self.scan_id if self.scan_id is not None else "x"
        return "".join(c if c.isalnum() or c in "-_." else "_" for c in f"{scan}-{self.short}")

    @property
    def tag(self) -> str:
        """Prefix that tells apart lines of runs open at the same time."""
        return f"[scan {self.scan_id} {self.short}]"

    def describe(self) -> str:
        parts = [f"scan {self.scan_id}", f"uid {self.uid}"]
        if self.plan_name:
            parts.append(f"plan {self.plan_name}")
        if self.run_key is not None:
            parts.append(f"run key {self.run_key}")
        if self.parent_uid:
            parts.append(f"inside run {self.parent_uid[:8]}")
        return " | ".join(parts)
