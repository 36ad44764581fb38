"""A run's container in the catalog: made at its start, closed at its stop, exactly once.

The runtime replays an unfinished run from its start, so at a start document a
run already complete in Tiled is skipped, and a run left half-written (no stop)
is deleted and written again from the start.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

import httpx
from tiled.client import from_uri
from tiled.client.container import Container
from tiled.structures.core import Spec

from . import layout
from .retry import TiledRetry

log = logging.getLogger(__name__)
T = TypeVar("T")
#: Stream closes in flight at once at a stop.
CLOSE_CONCURRENCY = 8


def connect_catalog(url: str, api_key: str | None, catalog: str) -> Container:
    """The catalog container (made with spec CatalogOfBlueskyRuns 3.0 when missing)."""
    client = from_uri(url, api_key=api_key, structure_clients="numpy")
    if catalog not in client:
        client.create_container(key=catalog, specs=[Spec(*layout.CATALOG_SPEC)])
    node = client[catalog]
    return getattr(node, "base", node)


def run_specs(extra: Iterable[str | Mapping[str, Any]] | None) -> list[Spec]:
    """The start's ``tiled_specs`` (names or ``{name, version}``), then ``BlueskyRun``."""
    specs = [Spec(s) if isinstance(s, str) else Spec(**s) for s in extra or ()]
    return [*specs, Spec(*layout.RUN_SPEC)]


@dataclass
class RunTarget:
    """One run as written: its container, and what every node written into it shares (the
    retry policy, the access tags, the data keys, the notes and errors for its metadata)."""

    retry: TiledRetry
    uid: str = "?"
    node: Container | None = None
    access_tags: list[str] | None = None
    data_keys: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)  # TiledWriter's writer's notes
    errors: list[str] = field(default_factory=list)

    def call(self, call: Callable[[], T], what: str) -> T:
        """``call()`` under the retry policy, its failures said about this run."""
        return self.retry(call, what, self.uid)

    def record_error(self, message: str) -> None:
        """Something of the run that could not be written: logged, and kept for its stop."""
        log.error("run %s: %s", self.uid, message)
        self.errors.append(message)

    def set_aside(self, stream: str, data_key: str, seq_num: int, reason: str) -> None:
        """One field of one row that could not be stored at all (the row's other fields are):
        said, with why, in the run's errors."""
        self.record_error(f"stream {stream}: {data_key} of seq_num {seq_num} set aside: {reason}")

    def open(self, catalog: Container, metadata: dict[str, Any], specs: list[Spec]) -> bool:
        """Create the run's container; False when the run is complete in Tiled already.

        Only when it exists already (a replay) look at what is there.
        """
        uid = self.uid
        self.node = self._create(catalog, metadata, specs)
        if self.node is not None:
            return True
        existing = self.call(lambda: catalog[uid], "read")
        if existing.metadata.get(layout.STOP) is not None:
            log.info("run %s is complete in Tiled already: skipping its replay", uid)
            return False
        log.warning("run %s is half-written in Tiled: rewriting it from its start", uid)
        self.call(
            lambda: catalog.delete_contents(uid, recursive=True, external_only=False), "delete"
        )
        self.node = self._create(catalog, metadata, specs)
        if self.node is None:
            raise RuntimeError(f"run {uid} is in Tiled again right after its deletion")
        return True

    def _create(self, catalog: Container, metadata: dict, specs: list[Spec]) -> Container | None:
        """The new run container, or None when the key is taken (HTTP 409)."""
        try:
            return self.call(
                lambda: catalog.create_container(key=self.uid, metadata=metadata, specs=specs,
                                                 access_tags=self.access_tags),
                "create run",
            )  # fmt: skip
        except httpx.HTTPStatusError as exc:
            if exc.response.status_code == httpx.codes.CONFLICT:
                return None
            raise

    def close(self, stop: dict[str, Any], normalizer_notes: list[str]) -> None:
        """The stop, the notes of the normalizer and the writer, and the errors, as metadata."""
        notes = list(dict.fromkeys(normalizer_notes + self.notes))
        update: dict[str, Any] = {layout.STOP: stop, **({layout.NOTES: notes} if notes else {})}
        if self.errors:
            update[layout.RUNSTREAM] = {layout.ERRORS: self.errors}
        node = self.node
        assert node is not None
        self.call(lambda: node.update_metadata(metadata=update, drop_revision=True), "write stop")

    def close_streams(self, nodes: Iterable[Any]) -> None:
        """Declare the end of writes to each node, as TiledWriter does at a stop: Tiled's
        live subscribers see the run end. The nodes before the last (the run) are closed
        concurrently, one request each in flight at once, then the last. A node Tiled does
        not close is said, not fatal."""
        unique = list({node.uri: node for node in nodes if node is not None}.values())
        if not unique:
            return
        *children, last = unique
        with ThreadPoolExecutor(max_workers=CLOSE_CONCURRENCY) as pool:
            list(pool.map(self._close_stream, children))
        self._close_stream(last)

    def _close_stream(self, node: Any) -> None:
        try:
            self.call(node.close_stream, f"close stream {node.uri}")
        except httpx.HTTPStatusError as exc:
            log.warning("run %s: Tiled did not close the stream of %s: %s", self.uid,
                        node.uri, exc)  # fmt: skip
