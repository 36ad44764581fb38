"""What the runs list asks for: a filter by plan, status and text, checked and applied.

One filter serves both halves of the list: the live model's runs are matched here
(`RunQuery.matches` on a run's summary), and the runs older than the live model are
searched in Tiled with the same filter turned into Tiled's search parameters
(`RunQuery.tiled_filters`). The runs page applies the same rules to pushed runs
(runs.js ``matches``), so a run does not jump in or out of the list as it changes.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from fastapi import Query

from .model import INCOMPLETE, OPEN

Status = Literal["open", "success", "abort", "fail", "incomplete"]
#: Summary fields the text filter looks in (Tiled searches the whole start and stop).
TEXT_FIELDS = ("uid", "plan_name", "run_key", "scan_id", "reason")
WORD = re.compile(r"[^\W_]+", re.UNICODE)
MAX_TEXT = 200
PLAN = "Only runs of this plan"
TEXT = (
    "Only runs whose uid, plan, run key, scan id or reason hold every word (live runs), "
    "or whose start or stop document holds words starting so (runs in Tiled)"
)


@dataclass(frozen=True)
class RunQuery:
    """A filter of the runs list; an empty field matches every run."""

    plan: str | None = None
    status: Status | None = None
    text: str | None = None

    def matches(self, summary: dict[str, Any]) -> bool:
        """Whether a run (its summary) passes the filter; the text is matched case-blind."""
        if self.plan and summary.get("plan_name") != self.plan:
            return False
        if self.status and summary.get("status") != self.status:
            return False
        if self.text:
            words = " ".join(str(summary.get(k) or "") for k in TEXT_FIELDS).lower()
            return all(w in words for w in self.text.lower().split())
        return True

    @property
    def live_only(self) -> bool:
        """Only live runs can match: a run in Tiled without its stop is ``incomplete``."""
        return self.status == OPEN

    def tiled_filters(self) -> list[tuple[str, dict[str, Any]]]:
        """The filter as Tiled's queries: ``(name, {field: value})``, values as Tiled encodes them.

        The runs' container may hold other nodes: only those with a start document are runs.
        """
        queries: list[tuple[str, dict[str, Any]]] = [
            ("keypresent", {"key": "start.uid", "exists": "true"})
        ]
        if self.plan:
            queries.append(("eq", {"key": "start.plan_name", "value": json.dumps(self.plan)}))
        if self.status == INCOMPLETE:
            queries.append(("keypresent", {"key": "stop.exit_status", "exists": "false"}))
        elif self.status:
            queries.append(("eq", {"key": "stop.exit_status", "value": json.dumps(self.status)}))
        phrases = [WORD.findall(word) for word in (self.text or "").split()]
        if any(phrases):  # each word a phrase of its tokens, its last a prefix (SQLite's FTS5)
            text = " ".join('"' + " ".join(tokens) + '"*' for tokens in phrases if tokens)
            queries.append(("fulltext", {"text": text}))
        return queries


def tiled_params(queries: list[tuple[str, dict[str, Any]]]) -> dict[str, list[Any]]:
    """Tiled's ``filter[<name>][condition][<field>]`` parameters; a query given twice, twice."""
    params: dict[str, list[Any]] = {}
    for name, fields in queries:
        for field, value in fields.items():
            params.setdefault(f"filter[{name}][condition][{field}]", []).append(value)
    return params


def run_query(
    plan: Annotated[str | None, Query(min_length=1, max_length=MAX_TEXT, description=PLAN)] = None,
    status: Annotated[Status | None, Query(description="Only runs in this state")] = None,
    text: Annotated[str | None, Query(max_length=MAX_TEXT, description=TEXT)] = None,
) -> RunQuery:
    """The list's filter from the query string (FastAPI answers 422 to a malformed one)."""
    return RunQuery(plan, status, text.strip() or None if text else None)
