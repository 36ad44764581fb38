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

import json
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx
import pyarrow as pa

from runstream.schemas.errors import RunstreamError

from ..tiled import layout
from .livestream import LiveStream
from .model import INCOMPLETE, LiveRun
from .runlist import RunQuery, tiled_params

log = logging.getLogger(__name__)

ARROW = "application/vnd.apache.arrow.file"
SEARCH_PAGE = 100
#: Parents of parents fetched at most for a nested run found by a search.
MAX_NESTING = 8
SEARCH = "the runs search"


class TiledRunError(RunstreamError):
    """Tiled could not give the run."""


class NotInTiledError(TiledRunError):
    """Tiled answered that it has no such run."""


class TiledUnreachableError(TiledRunError):
    """Tiled did not answer (refused, timed out)."""


class TiledAnswerError(TiledRunError):
    """Tiled answered, but with an error or with something that is not a run."""


def run_of(start: Mapping[str, Any], stop: Mapping[str, Any] | None) -> LiveRun:
    """A run as Tiled holds it, before its streams are read: its status from its stop."""
    run = LiveRun(start, version=0)
    run.source = "tiled"
    if stop:
        run.end(stop)
    else:
        run.status = INCOMPLETE
        run.reason = "no stop document in Tiled"
    return run


@dataclass
class FoundRuns:
    """One page of a search of the runs in Tiled, newest start first, as run summaries."""

    runs: list[dict[str, Any]]
    context: list[dict[str, Any]]  # the parents of nested runs found, when not found themselves
    total: int
    next_offset: int | None


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

    def search(self, query: RunQuery, before: float | None, offset: int, limit: int,
               skip: Collection[str] = ()) -> FoundRuns:  # fmt: skip
        """Runs started before ``before`` that pass ``query``, newest first, a page at a time.

        ``skip``: uids the caller holds already (the live model's), left out of the page.
        The parents of nested runs come along (as context) so that the list nests them.
        """
        queries = query.tiled_filters()
        if before is not None:
            queries.append(("comparison", {"operator": "lt", "key": "start.time",
                                           "value": json.dumps(before)}))  # fmt: skip
        params = {**tiled_params(queries), "page[offset]": offset, "page[limit]": limit,
                  "sort": "-start.time", "fields": "metadata"}  # fmt: skip
        body = self._search(params)
        runs = [s for s in self._summaries(body) if s["uid"] not in skip]
        count = body.get("meta", {}).get("count")
        total = int(count) if isinstance(count, int) else offset + len(body["data"])
        more = offset + len(body["data"]) < total and len(body["data"]) > 0
        context = self._parents(runs, set(skip))
        log.info("runs search %s before %s: %d runs from offset %d of %d, %d parents", query,
                 before, len(runs), offset, total, len(context))  # fmt: skip
        return FoundRuns(runs, context, total, offset + len(body["data"]) if more else None)

    def _parents(self, runs: list[dict[str, Any]], known: set[str]) -> list[dict[str, Any]]:
        """The ancestors of nested ``runs`` that neither they nor ``known`` hold."""
        known |= {s["uid"] for s in runs}
        found: list[dict[str, Any]] = []
        wanted = {s["parent_uid"] for s in runs if s.get("parent_uid")} - known
        for _ in range(MAX_NESTING):
            if not wanted:
                break
            queries = [("in", {"key": "start.uid", "value": json.dumps(sorted(wanted))})]
            params = {**tiled_params(queries), "page[offset]": 0, "page[limit]": len(wanted),
                      "fields": "metadata"}  # fmt: skip
            parents = self._summaries(self._search(params))
            found += parents
            known |= wanted
            wanted = {s["parent_uid"] for s in parents if s.get("parent_uid")} - known
        return found

    def _search(self, params: dict[str, Any]) -> dict[str, Any]:
        page = self._get(SEARCH, "search", self.node_path(), **params)
        if page is None:
            raise TiledAnswerError(f"Tiled at {self.url} has no catalog {self.catalog!r}")
        try:
            body = page.json()
            if not isinstance(body.get("data"), list):
                raise TypeError("no list of results")
        except (ValueError, TypeError, AttributeError) as exc:
            raise TiledAnswerError(f"Tiled at {self.url} answered the runs search with "
                                   f"something else than results: {exc}") from None  # fmt: skip
        return body

    def _summaries(self, body: dict[str, Any]) -> list[dict[str, Any]]:
        """The runs of a search's results as summaries; a node that is no run is passed over."""
        summaries = []
        for item in body["data"]:
            try:
                metadata = item["attributes"]["metadata"]
                start, stop = metadata[layout.START], metadata.get(layout.STOP)
                summaries.append(run_of(start, stop if isinstance(stop, Mapping) else None)
                                 .summary())  # fmt: skip
            except (KeyError, TypeError, ValueError) as exc:
                log.warning("Tiled at %s: %s/%s is no run (%s: %s)", self.url, self.catalog,
                            item.get("id"), type(exc).__name__, exc)  # fmt: skip
        return summaries

    def array_shape(self, uid: str, *parts: str) -> list[int] | None:
        """The shape of the array node ``<run>/<parts...>`` as Tiled has it now (a live
        run's grows as the Tiled writer registers frames), None while there is no such node;
        errors as `TiledRunError`s."""
        found = self._get(f"run {uid}", "metadata", self.node_path(uid, *parts))
        if found is None:
            return None
        try:
            return [int(n) for n in found.json()["data"]["attributes"]["structure"]["shape"]]
        except (KeyError, TypeError, ValueError):
            raise TiledAnswerError(f"Tiled at {self.url} has {'/'.join(parts)} of run {uid}, "
                                   "but not as an array") from None  # fmt: skip

    # -- HTTP -----------------------------------------------------------------

    def node_path(self, *parts: str) -> str:
        """``<catalog>/<parts...>``, each part quoted: a node's path for Tiled's endpoints
        (``metadata/``, ``array/full/``, ...) on `client`."""
        return "/".join(quote(p, safe="") for p in (self.catalog, *parts))

    def _get(self, what: str, endpoint: str, path: str, **params: Any) -> httpx.Response | None:
        """The response, or None for a 404; errors as `TiledRunError`s naming ``what``."""
        try:
            response = self.client.get(f"{endpoint}/{path}", params=params)
        except httpx.TransportError as exc:
            if self.reachable:
                log.warning("Tiled at %s does not answer (%s); %s and other runs are not "
                            "readable from it", self.url, type(exc).__name__, what)  # fmt: skip
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
                              f"for {what}")  # fmt: skip
        return response

    def _load(self, uid: str) -> LiveRun:
        found = self._get(f"run {uid}", "metadata", self.node_path(uid))
        if found is None:
            where = f"Tiled at {self.url} (catalog {self.catalog!r})"
            raise NotInTiledError(f"no run {uid!r} in {where}")
        try:
            metadata = found.json()["data"]["attributes"]["metadata"]
            start, stop = metadata[layout.START], metadata.get(layout.STOP)
            if not isinstance(start, Mapping) or "uid" not in start:
                raise KeyError(layout.START)
            streams = self._streams(uid)
            run = run_of(start, stop)
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
            page = self._get(f"run {uid}", "search", self.node_path(uid),
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
        found = self._get(f"run {uid}", "table/full", self.node_path(uid, name, layout.TABLE),
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
