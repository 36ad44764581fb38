"""Runs the live model no longer holds (or never held), read back from Tiled.

The Tiled writer's layout (`runstream.consumers.tiled.layout`): ``<catalog>/<uid>``
a BlueskyRun container with metadata ``{"start", "stop"}``; one container per stream
(the descriptor as its metadata) holding the table ``internal`` (``seq_num``,
``time``, the data keys, ``ts_<key>``). A run is read whole into a `LiveRun` and
its streams' `LiveStream`, so the API formats, pages and plots it with the live
model's own code. Tiled's HTTP API is spoken with httpx (Tiled's client takes
seconds to import). Loaded runs are kept a short while, because the run page reads a
run in many small pages.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import quote

import httpx
import pyarrow as pa

from runstream.schemas.errors import RunstreamError

from ..tiled import layout
from .livestream import LiveStream
from .model import INCOMPLETE, LiveRun

log = logging.getLogger(__name__)

ARROW = "application/vnd.apache.arrow.file"
SEARCH_PAGE = 100


class TiledRunError(RunstreamError):
    """Tiled could not give the run."""


class NotInTiledError(TiledRunError):
    """Tiled answered that it has no such run."""


class TiledUnreachableError(TiledRunError):
    """Tiled did not answer (refused, timed out)."""


class TiledAnswerError(TiledRunError):
    """Tiled answered, but with an error or with something that is not a run."""


class TiledRuns:
    """Read runs from ``<url>/<catalog>``; the last ``keep`` loaded kept ``keep_seconds``."""

    def __init__(self, url: str, catalog: str, api_key: str | None = None, *,
                 timeout: float = 10.0, keep: int = 8, keep_seconds: float = 30.0,
                 clock: Callable[[], float] = time.monotonic) -> None:  # fmt: skip
        self.url = url.rstrip("/")
        self.catalog = catalog.strip("/")
        headers = {"Authorization": f"Apikey {api_key}"} if api_key else {}
        self.client = httpx.Client(base_url=f"{self.url}/api/v1/", headers=headers,
                                   timeout=timeout)  # fmt: skip
        self.keep, self.keep_seconds, self.clock = keep, keep_seconds, clock
        self.lock = threading.Lock()
        self.loaded: OrderedDict[str, tuple[float, LiveRun]] = OrderedDict()
        self.reachable = True

    def close(self) -> None:
        self.client.close()

    def run(self, uid: str) -> LiveRun:
        """The run, whole, or a `TiledRunError` saying why not."""
        with self.lock:
            kept = self.loaded.get(uid)
            if kept is not None and self.clock() - kept[0] < self.keep_seconds:
                return kept[1]
        run = self._load(uid)
        with self.lock:
            self.loaded[uid] = (self.clock(), run)
            self.loaded.move_to_end(uid)
            while len(self.loaded) > self.keep:
                self.loaded.popitem(last=False)
        return run

    # -- HTTP -----------------------------------------------------------------

    def _path(self, *parts: str) -> str:
        return "/".join(quote(p, safe="") for p in (self.catalog, *parts))

    def _get(self, uid: str, endpoint: str, path: str, **params: Any) -> httpx.Response | None:
        """The response, or None for a 404; errors as `TiledRunError`s."""
        try:
            response = self.client.get(f"{endpoint}/{path}", params=params)
        except httpx.TransportError as exc:
            if self.reachable:
                log.warning("Tiled at %s does not answer (%s); run %s and others are not "
                            "readable from it", self.url, type(exc).__name__, uid)  # fmt: skip
            self.reachable = False
            raise TiledUnreachableError(f"Tiled at {self.url} does not answer: {exc}") from None
        if not self.reachable:
            log.info("Tiled at %s answers again", self.url)
            self.reachable = True
        if response.status_code == 404:
            return None
        if response.status_code in (401, 403):
            raise TiledAnswerError(f"Tiled at {self.url} refused the API key (HTTP "
                              f"{response.status_code}): set RUNSTREAM_TILED_API_KEY")  # fmt: skip
        if response.is_error:
            raise TiledAnswerError(f"Tiled at {self.url} answered HTTP {response.status_code} "
                              f"for run {uid}")  # fmt: skip
        return response

    def _load(self, uid: str) -> LiveRun:
        found = self._get(uid, "metadata", self._path(uid))
        if found is None:
            where = f"Tiled at {self.url} (catalog {self.catalog!r})"
            raise NotInTiledError(f"no run {uid!r} in {where}")
        try:
            metadata = found.json()["data"]["attributes"]["metadata"]
            start, stop = metadata[layout.START], metadata.get(layout.STOP)
            if not isinstance(start, Mapping) or "uid" not in start:
                raise KeyError(layout.START)
            streams = self._streams(uid)
            run = LiveRun(start, version=0)
            run.source = "tiled"
            if stop:
                run.stop = stop
                run.status = str(stop.get("exit_status") or "unknown")
                run.reason = stop.get("reason") or None
            else:
                run.status = INCOMPLETE
                run.reason = "no stop document in Tiled"
            for name, descriptor in streams:
                run.streams[name] = self._stream(uid, start, name, descriptor)
        except (KeyError, TypeError, ValueError, pa.ArrowException) as exc:
            log.warning("run %s: Tiled at %s gave no run of the expected layout (%s: %s)",
                        uid, self.url, type(exc).__name__, exc)  # fmt: skip
            raise TiledAnswerError(
                f"Tiled at {self.url} has {self.catalog}/{uid}, but not as a Bluesky run"
            ) from None
        log.info("run %s read from Tiled at %s", uid, self.url)
        return run

    def _streams(self, uid: str) -> list[tuple[str, dict[str, Any]]]:
        """(name, descriptor) of every stream container of the run, in Tiled's order."""
        streams: list[tuple[str, dict[str, Any]]] = []
        offset = 0
        while True:
            page = self._get(uid, "search", self._path(uid),
                             **{"page[offset]": offset, "page[limit]": SEARCH_PAGE})  # fmt: skip
            items = page.json()["data"] if page is not None else []
            for item in items:
                attributes = item["attributes"]
                if attributes.get("structure_family") == layout.STREAM_FAMILY:
                    streams.append((item["id"], {"name": item["id"], **attributes["metadata"]}))
            if len(items) < SEARCH_PAGE:
                return streams
            offset += len(items)

    def _stream(self, uid: str, start: Mapping[str, Any], name: str,
                descriptor: dict[str, Any]) -> LiveStream:  # fmt: skip
        stream = LiveStream(start, descriptor)
        found = self._get(uid, "table/full", self._path(uid, name, layout.TABLE),
                          format=ARROW)  # fmt: skip
        if found is None:  # a stream with no event yet has no table
            return stream
        table = pa.ipc.open_file(pa.BufferReader(found.content)).read_all()
        keys = [k for k in stream.columns if k in table.column_names]
        columns = {k: table.column(k).to_pylist() for k in (layout.SEQ_NUM, layout.TIME, *keys)}
        rows = zip(columns[layout.SEQ_NUM], columns[layout.TIME], strict=True)
        for i, (seq_num, t) in enumerate(rows):
            stream.add(seq_num, t, {k: columns[k][i] for k in keys})
        return stream
