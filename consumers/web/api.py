"""The JSON API under /api/: runs with lineage, a run's detail, a stream's rows and plot."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, Literal

import numpy as np
from fastapi import APIRouter, Depends, HTTPException, Query, status
from pydantic import BaseModel, Field

from . import plotdata
from .frames import frame_kind
from .livestream import LiveStream
from .model import LiveRun, RunStore
from .runlist import RunQuery, run_query
from .settings import WebSettings
from .tiled_runs import NotInTiledError, TiledRunError, TiledRuns, TiledUnreachableError

MAX_PAGE = 5000
Source = Literal["live", "tiled"]
SOURCE = "live: the view's live model; tiled: read back from Tiled (the view does not hold it)"
TILED_ERRORS: dict[int | str, dict[str, Any]] = {
    502: {"description": "the run is not in the view, and Tiled answered with an error"},
    503: {"description": "the run is not in the view, and Tiled does not answer"},
}


class RunSummary(BaseModel):
    uid: str
    parent_uid: str | None = Field(None, description="The run this one was opened inside")
    run_key: str | None = None
    scan_id: int | None = None
    plan_name: str | None = None
    status: str = Field(description="open, success, abort, fail or incomplete")
    reason: str | None = None
    time: float = Field(description="Start time (seconds since the epoch)")
    stop_time: float | None = None
    streams: dict[str, int] = Field(description="Events per stream")
    other_documents: int = Field(0, description="Documents the view shows only as JSON")
    frames: dict[str, dict[str, int]] = Field(
        default_factory=dict, description="Detector frames so far per stream and data key"
    )
    resources: int = Field(0, description="Stream resources (files) of the run")
    version: int = Field(description="Change counter: grows whenever the run changes")
    source: Source = Field("live", description=SOURCE)


class FrameKey(BaseModel):
    kind: str = Field(description="image (or a stack: its first image), spectrum or scalar")
    shape: list[int] = Field(description="Per event")
    count: int = Field(description="Frames so far")


class ResourceLine(BaseModel):
    uid: str
    data_key: str
    stream: str | None
    file: str
    uri: str
    mimetype: str
    dataset: str | None
    shape: list[int] | None = Field(description="Per event, from the descriptor")
    frames: int


class StreamInfo(BaseModel):
    name: str
    events: int
    keys: list[str]
    data_keys: dict[str, dict[str, Any]]
    plot_kind: str
    x_field: str | None
    y_fields: list[str]
    frames: dict[str, FrameKey] = Field(
        default_factory=dict, description="Data keys whose values are in files, by name"
    )


class OtherDocument(BaseModel):
    name: str
    doc: dict[str, Any]


class RunDetail(BaseModel):
    summary: RunSummary
    start: dict[str, Any]
    stop: dict[str, Any] | None
    streams: list[StreamInfo]
    other: list[OtherDocument] = Field(description="Documents of kinds shown only as raw JSON")
    resources: list[ResourceLine] = Field(
        default_factory=list, description="One line per stream resource: file, dataset, shape"
    )
    tiled_url: str | None = Field(None, description="The run in Tiled, when configured")
    source: Source = Field("live", description=SOURCE)


class Row(BaseModel):
    seq_num: int
    time: float
    data: dict[str, Any] = Field(description="Scalars as they came; arrays as a summary")
    cells: dict[str, str] = Field(description="Each value formatted as the table service does")


class RowsPage(BaseModel):
    run: str
    stream: str
    offset: int
    limit: int
    total: int
    rows: list[Row]
    source: Source = Field("live", description=SOURCE)


class Curves(BaseModel):
    x_field: str
    x: list[float | None]
    series: dict[str, list[float | None]]
    decimated: bool


class Grid(BaseModel):
    field: str
    axes: list[str]
    image: list[list[float | None]]


class Frame(BaseModel):
    field: str
    shape: list[int]
    image: list[list[float | None]]


class PlotData(BaseModel):
    stream: str
    kind: str = Field(description="lines, grid (a heat map) or image")
    events: int
    lines: Curves
    grid: Grid | None = None
    frame: Frame | None = None
    spectra: dict[str, list[float | None]] = Field(
        default_factory=dict, description="The latest value of each 1-D array field (spectrum)"
    )


class ViewConfig(BaseModel):
    engine: bool = Field(description="Whether the engine panel is on")
    tiled_url: str | None
    tiled_runs: bool = Field(False, description="Whether runs older than the view come from Tiled")
    plot_points: int


def _jsonable(doc: Any) -> Any:
    """A document as JSON can carry it (numpy values and arrays included)."""
    if isinstance(doc, dict):
        return {str(k): _jsonable(v) for k, v in doc.items()}
    if isinstance(doc, list | tuple):
        return [_jsonable(v) for v in doc]
    if isinstance(doc, np.ndarray):
        return _jsonable(doc.tolist())
    if isinstance(doc, np.generic):
        return doc.item()
    if isinstance(doc, float) and doc != doc:  # NaN
        return None
    return doc


def tiled_link(settings: WebSettings, uid: str) -> str | None:
    if not settings.tiled_url:
        return None
    return f"{settings.tiled_url.rstrip('/')}/ui/browse/{settings.tiled_catalog}/{uid}"


def _frame_keys(run: LiveRun, stream: LiveStream) -> dict[str, FrameKey]:
    counts = run.frames.counts().get(stream.name, {})
    keys = {}
    for key, count in counts.items():
        shape = [int(n) for n in stream.data_keys.get(key, {}).get("shape") or []]
        keys[key] = FrameKey(kind=frame_kind(shape), shape=shape, count=count)
    return keys


def _resource_lines(run: LiveRun) -> list[ResourceLine]:
    lines = []
    for resource in run.frames.resources.values():
        keys = [s.data_keys[resource.data_key] for s in run.streams.values()
                if resource.data_key in s.data_keys]  # fmt: skip
        shape = keys[0].get("shape") if keys else None
        lines.append(ResourceLine(**resource.line(shape)))
    return lines


def _stream_info(run: LiveRun, stream: LiveStream) -> StreamInfo:
    return StreamInfo(
        name=stream.name,
        events=stream.count,
        keys=list(stream.columns),
        data_keys=_jsonable(stream.data_keys),
        plot_kind=stream.plot.kind,
        x_field=stream.plot.x_field,
        y_fields=stream.plot.y_fields,
        frames=_frame_keys(run, stream),
    )


class RunReader:
    """A run by uid: from the store, else from Tiled when given; HTTP errors that say why not."""

    def __init__(self, store: RunStore, tiled: TiledRuns | None) -> None:
        self.store, self.tiled = store, tiled

    def read(self, uid: str, reader: Callable[[LiveRun], Any]) -> Any:
        """``reader(run)`` under the store's lock, or over the run as Tiled holds it."""
        try:
            return self.store.read(uid, reader)
        except KeyError:
            pass
        if self.tiled is None:
            raise HTTPException(
                status.HTTP_404_NOT_FOUND, f"no run {uid!r} in the view (unknown or expired)"
            )
        try:
            run = self.tiled.run(uid)
        except NotInTiledError as exc:
            raise HTTPException(
                status.HTTP_404_NOT_FOUND, f"no run {uid!r} in the view (unknown or expired); {exc}"
            ) from None
        except TiledUnreachableError as exc:
            raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE,
                                f"run {uid!r} is not in the view; {exc}") from None  # fmt: skip
        except TiledRunError as exc:
            raise HTTPException(status.HTTP_502_BAD_GATEWAY,
                                f"run {uid!r} is not in the view; {exc}") from None  # fmt: skip
        return reader(run)


def stream_of(run: LiveRun, name: str) -> LiveStream:
    stream = run.streams.get(name)
    if stream is None:
        raise HTTPException(
            status.HTTP_404_NOT_FOUND,
            f"run {run.uid} has no stream {name!r}; it has {sorted(run.streams) or 'none'}",
        )
    return stream


def run_detail(run: LiveRun, settings: WebSettings) -> RunDetail:
    return RunDetail(
        summary=RunSummary(**run.summary()),
        start=_jsonable(dict(run.start)),
        stop=_jsonable(dict(run.stop)) if run.stop else None,
        streams=[_stream_info(run, s) for s in run.streams.values()],
        other=[OtherDocument(**_jsonable(o)) for o in run.other],
        resources=_resource_lines(run),
        tiled_url=tiled_link(settings, run.uid),
        source=run.source,
    )


def rows_page(run: LiveRun, name: str, offset: int, limit: int) -> RowsPage:
    stream = stream_of(run, name)
    if offset > stream.count:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            f"offset {offset} is past the end: stream {name!r} has {stream.count} rows",
        )
    rows = stream.rows(offset, limit)
    run.frames.label_rows(name, rows)
    return RowsPage(run=run.uid, stream=name, offset=offset, limit=limit, total=stream.count,
                    rows=[Row(**row) for row in rows],
                    source=run.source)  # fmt: skip


def plot_data(run: LiveRun, name: str, points: int) -> PlotData:
    return PlotData(**plotdata.plot(stream_of(run, name), points))


def routes(store: RunStore, settings: WebSettings, tiled: TiledRuns | None = None) -> APIRouter:
    """The API over ``store``; runs it does not hold are read from ``tiled`` when given."""
    router = APIRouter(prefix="/api", tags=["runs"])
    runs_by_uid = RunReader(store, tiled)

    @router.get("/config", tags=["view"])
    def config() -> ViewConfig:
        """What the pages need to know about this service."""
        return ViewConfig(engine=bool(settings.engine_url), tiled_url=settings.tiled_url,
                          tiled_runs=tiled is not None,
                          plot_points=settings.plot_points)  # fmt: skip

    @router.get("/runs", responses={422: {"description": "a malformed filter"}})
    def runs(query: Annotated[RunQuery, Depends(run_query)]) -> list[RunSummary]:
        """Every run the view holds that passes the filter, newest first; nested runs name
        their parent. Older runs: ``/api/tiled-runs``."""
        return [RunSummary(**s) for s in store.summaries() if query.matches(s)]

    @router.get("/runs/{uid}", responses={404: {"description": "unknown run"}, **TILED_ERRORS})
    def run(uid: str) -> RunDetail:
        return runs_by_uid.read(uid, lambda r: run_detail(r, settings))

    @router.get(
        "/runs/{uid}/streams/{stream}/rows",
        responses={404: {"description": "unknown run or stream"},
                   422: {"description": "bad paging"}, **TILED_ERRORS},
    )  # fmt: skip
    def rows(
        uid: str,
        stream: str,
        offset: Annotated[int, Query(ge=0, description="First row (0 is the first event)")] = 0,
        limit: Annotated[int, Query(ge=1, le=MAX_PAGE, description="Rows at most")] = 1000,
    ) -> RowsPage:
        """One page of a stream's events, in order, formatted and raw."""
        return runs_by_uid.read(uid, lambda r: rows_page(r, stream, offset, limit))

    @router.get(
        "/runs/{uid}/streams/{stream}/plot",
        responses={404: {"description": "unknown run or stream"}, **TILED_ERRORS},
    )
    def plot(
        uid: str,
        stream: str,
        points: Annotated[int | None, Query(ge=10, le=100_000)] = None,
    ) -> PlotData:
        """The stream's plot data, decimated to ``points`` per curve."""
        budget = points or settings.plot_points
        return runs_by_uid.read(uid, lambda r: plot_data(r, stream, budget))

    return router
