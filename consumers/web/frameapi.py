"""A detector frame for the run page, read from Tiled with this service's own credentials.

Frames written to files reach Tiled through the Tiled writer, which registers them as
array nodes ``<catalog>/<run>/<stream>/<key>``. Tiled serves a slice of such a node as a
PNG itself (scaled between the slice's 1st and 99th percentiles); this route passes that
PNG on, so the browser never holds a Tiled API key. The colour scale's numbers come from
a coarse JSON slice of the same frame. A spectrum (1-D per event) comes as JSON values.

While a run goes, Kafka's documents announce frames before the Tiled writer has
registered them (it writes in batches), so the newest frame Tiled has is served, read
from the node's shape: ``X-Frame-Index`` says which one, and the page asks again for
the one it wanted. A page that names the frame it shows (``shown``) gets 204 while that
one is still the newest Tiled has: no image read again while it waits.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from typing import Annotated, Any

import httpx
import numpy as np
from fastapi import APIRouter, HTTPException, Query, status
from fastapi.responses import JSONResponse, Response

from .frames import IMAGE, SPECTRUM, frame_kind, frame_slice
from .model import LiveRun, RunStore
from .tiled_runs import TiledAnswerError, TiledRuns, TiledUnreachableError

log = logging.getLogger(__name__)

PNG = "image/png"
JSON = "application/json"
NOT_YET = (404, 422)  # Tiled: no such node yet; a frame its file does not show yet
RANGE_SAMPLES = 100  # per side of the coarse slice the colour scale's numbers come from
ANSWERS: dict[int | str, dict[str, Any]] = {
    200: {"content": {PNG: {}, JSON: {}},
          "description": "PNG for an image, JSON values for a spectrum; headers X-Frame-Index "
                         "(the frame served: the one asked for, or the newest Tiled has when "
                         "it has not that one yet), X-Frame-Count (frames the run announced), "
                         "X-Frame-Range 'low high' (an image's colour scale)"},
    204: {"description": "the frame ``shown`` is still the newest Tiled has (X-Frame-Index)"},
    404: {"description": "unknown run, stream, key or frame; or the frame is not in Tiled yet"},
    502: {"description": "Tiled answered with an error"},
    503: {"description": "Tiled does not answer, or none is configured"},
}  # fmt: skip


def _key_of(run: LiveRun, stream: str, key: str, index: int | None) -> tuple[list[int], int, int]:
    """(per-event shape, frame index, frames so far) of a key the run's documents point at."""
    frames = run.frames.of(stream, key)
    if frames is None or stream not in run.streams:
        raise HTTPException(
            status.HTTP_404_NOT_FOUND,
            f"run {run.uid} has no frames of {key!r} in stream {stream!r}",
        )
    shape = [int(n) for n in run.streams[stream].data_keys.get(key, {}).get("shape") or []]
    chosen = frames.count - 1 if index is None else index
    if not 0 <= chosen < frames.count:
        raise HTTPException(
            status.HTTP_404_NOT_FOUND,
            f"run {run.uid} has {frames.count} frames of {key!r}, no frame {index}",
        )
    return shape, chosen, frames.count


class TiledFrames:
    """Slices of a run's array nodes from Tiled, errors as HTTP answers that say why."""

    def __init__(self, tiled: TiledRuns | None) -> None:
        self.tiled = tiled
        self.pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="frames")

    def _tiled(self) -> TiledRuns:
        if self.tiled is None:
            raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE,
                                "no Tiled is configured: frames written to files are not "
                                "shown (set RUNSTREAM_TILED_URL)")  # fmt: skip
        return self.tiled

    def served(self, uid: str, stream: str, key: str, index: int) -> int:
        """``index``, or the newest frame Tiled has when it has not that one yet (the writer
        registers a live run's frames in batches); 404 while it has none."""
        tiled = self._tiled()
        try:
            shape = tiled.array_shape(uid, stream, key)
        except TiledUnreachableError as exc:
            raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, str(exc)) from None
        except TiledAnswerError as exc:
            raise HTTPException(status.HTTP_502_BAD_GATEWAY, str(exc)) from None
        have = shape[0] if shape else 0
        if have == 0:
            raise HTTPException(status.HTTP_404_NOT_FOUND,
                                f"no frame of {key!r} is in Tiled yet")  # fmt: skip
        return min(index, have - 1)

    def get(self, uid: str, stream: str, key: str, index: int, shape: list[int],
            fmt: str, step: int = 1) -> Any:  # fmt: skip
        """The frame's slice as ``fmt`` (bytes for PNG, parsed JSON for JSON)."""
        tiled = self._tiled()
        where = frame_slice(index, shape) + (f",::{step},::{step}" if step > 1 else "")
        what = f"run {uid} frame {index} of {stream}/{key}"
        path = "array/full/" + tiled.node_path(uid, stream, key)
        try:
            found = tiled.client.get(path, params={"slice": where, "format": fmt})
        except httpx.TransportError as exc:
            answer = f"Tiled at {tiled.url} does not answer: {exc}"
            raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, answer) from None
        if found.status_code in NOT_YET:
            raise HTTPException(status.HTTP_404_NOT_FOUND,
                                f"frame {index} of {key!r} is not in Tiled yet")  # fmt: skip
        if found.is_error:
            log.warning("%s: Tiled at %s answered HTTP %s", what, tiled.url,
                        found.status_code)  # fmt: skip
            raise HTTPException(status.HTTP_502_BAD_GATEWAY,
                                f"Tiled at {tiled.url} answered HTTP {found.status_code} "
                                f"for {what}")  # fmt: skip
        return found.content if fmt == PNG else found.json()

    def scale(self, uid: str, stream: str, key: str, index: int, shape: list[int]) -> str:
        """'low high': the 1st and 99th percentiles Tiled scales the PNG between, from a
        coarse slice (the colour scale's numbers)."""
        step = max(1, -(-max(shape[-2:]) // RANGE_SAMPLES))
        values = np.asarray(self.get(uid, stream, key, index, shape, JSON, step), dtype=float)
        finite = values[np.isfinite(values)]
        if finite.size == 0:
            return "nan nan"
        low, high = np.percentile(finite, [1, 99])
        return f"{low:.6g} {high:.6g}"


def routes(store: RunStore, tiled: TiledRuns | None) -> APIRouter:
    """``/api/runs/{uid}/streams/{stream}/frames/{key}``: one frame of a run's detector."""
    router = APIRouter(prefix="/api", tags=["frames"])
    frames = TiledFrames(tiled)

    @router.get("/runs/{uid}/streams/{stream}/frames/{key}", response_class=Response,
                responses=ANSWERS)  # fmt: skip
    def frame(
        uid: str,
        stream: str,
        key: str,
        index: Annotated[int | None, Query(ge=0, description="Frame (default: the latest)")] = None,
        shown: Annotated[int | None, Query(ge=0, description="The frame the page shows")] = None,
    ) -> Response:
        """Frame ``index`` of ``key``: its first image for an image or a stack, as Tiled's PNG."""
        try:
            shape, chosen, count = store.read(uid, lambda r: _key_of(r, stream, key, index))
        except KeyError:
            raise HTTPException(
                status.HTTP_404_NOT_FOUND, f"no run {uid!r} in the view (unknown or expired)"
            ) from None
        kind = frame_kind(shape)
        if kind not in (IMAGE, SPECTRUM):
            raise HTTPException(status.HTTP_404_NOT_FOUND,
                                f"{key!r} holds one value per event: no frame to draw")  # fmt: skip
        wanted, chosen = chosen, frames.served(uid, stream, key, chosen)
        headers = {"X-Frame-Index": str(chosen), "X-Frame-Count": str(count),
                   "Cache-Control": "no-store"}  # fmt: skip
        if chosen != wanted and chosen == shown:  # Tiled has nothing newer than what is shown
            return Response(status_code=status.HTTP_204_NO_CONTENT, headers=headers)
        if kind == SPECTRUM:
            values = frames.get(uid, stream, key, chosen, shape, JSON)
            return JSONResponse({"index": chosen, "count": count, "values": values}, 200, headers)
        # the picture and its colour scale's numbers: two reads of Tiled at once
        scale = frames.pool.submit(frames.scale, uid, stream, key, chosen, shape)
        picture = frames.get(uid, stream, key, chosen, shape, PNG)
        headers["X-Frame-Range"] = scale.result()
        return Response(picture, media_type=PNG, headers=headers)

    return router
