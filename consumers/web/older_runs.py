"""/api/tiled-runs: the runs list's older half, the runs the live model does not hold, from Tiled.

The web service searches Tiled with its own API key, so a browser never holds one.
Pages are cut at a start time (``before``): the first page's answer says which, and
the later pages pass it back, so runs arriving meanwhile do not shift the pages.
"""

from __future__ import annotations

import logging
import time
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Query, status
from pydantic import BaseModel, Field

from .api import TILED_ERRORS, RunSummary
from .model import RunStore
from .runlist import RunQuery, run_query
from .tiled_runs import TiledRunError, TiledRuns, TiledUnreachableError

log = logging.getLogger(__name__)

MAX_LIMIT = 200


class TiledRunsPage(BaseModel):
    runs: list[RunSummary] = Field(description="Runs that pass the filter, newest start first")
    context: list[RunSummary] = Field(
        description="Parents of nested runs on this page, not on it themselves (they may "
        "not pass the filter): the list shows the nested runs under them"
    )
    offset: int
    limit: int
    total: int = Field(description="Runs in Tiled that pass the filter and started before")
    next_offset: int | None = Field(description="The next page's offset; null after the last")
    before: float | None = Field(
        description="Start time the pages are cut at: the oldest run the live model holds "
        "(now, when it holds none); pass it back for the next pages"
    )


def oldest_live(store: RunStore) -> float:
    """The start time below which runs are older than the live model."""
    summaries = store.summaries()
    return min((s["time"] for s in summaries), default=time.time())


def routes(store: RunStore, tiled: TiledRuns | None) -> APIRouter:
    router = APIRouter(prefix="/api", tags=["runs"])

    @router.get(
        "/tiled-runs",
        responses={404: {"description": "the view reads no runs from Tiled"},
                   422: {"description": "a malformed page or filter"}, **TILED_ERRORS},
    )  # fmt: skip
    def tiled_runs(
        query: Annotated[RunQuery, Depends(run_query)],
        offset: Annotated[int, Query(ge=0, le=10_000_000, description="First run")] = 0,
        limit: Annotated[int, Query(ge=1, le=MAX_LIMIT, description="Runs at most")] = 50,
        before: Annotated[float | None, Query(ge=0, le=1e11, allow_inf_nan=False,
                          description="Only runs started before (seconds since the epoch)")]
        = None,
    ) -> TiledRunsPage:  # fmt: skip
        """Runs older than the live model, from Tiled: paged, filtered as ``/api/runs`` is."""
        if tiled is None:
            raise HTTPException(
                status.HTTP_404_NOT_FOUND, "this view reads no runs from Tiled (no Tiled URL set)"
            )
        cut = oldest_live(store) if before is None else before
        page = TiledRunsPage(runs=[], context=[], offset=offset, limit=limit, total=0,
                             next_offset=None, before=cut)  # fmt: skip
        if query.live_only:
            return page
        held = {s["uid"] for s in store.summaries()}
        try:
            found = tiled.search(query, cut, offset, limit, skip=held)
        except TiledUnreachableError as exc:
            raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, str(exc)) from None
        except TiledRunError as exc:
            raise HTTPException(status.HTTP_502_BAD_GATEWAY, str(exc)) from None
        page.runs = [RunSummary(**s) for s in found.runs]
        page.context = [RunSummary(**s) for s in found.context]
        page.total, page.next_offset = found.total, found.next_offset
        return page

    return router
