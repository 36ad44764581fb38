"""Runs whose resources name no run, as older bluesky emitted them, for the tests.

A real RunEngine runs `nested_detector_runs`: an outer and an inner run (run keys),
each with its own file-writing detector (`ophyd.sim.SynSignalWithRegistry`, which emits
``resource`` and ``datum`` documents), their readings interleaved so both resources
come while both runs are open. `old_style` strips ``run_start`` from resources, as
bluesky did before it stamped them, on the way to the publisher under test.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Generator
from pathlib import Path
from typing import Any

import bluesky.plan_stubs as bps
import bluesky.preprocessors as bpp
import numpy as np
from bluesky import RunEngine
from ophyd.sim import SynSignalWithRegistry

from runstream import schemas

Doc = tuple[str, dict]


def old_style(name: str, doc: dict) -> dict:
    """``doc`` as bluesky emitted it before resources named their run."""
    if name in ("resource", "stream_resource"):
        return {k: v for k, v in doc.items() if k != "run_start"}
    return doc


def detector(name: str, files_dir: Path, value: float) -> SynSignalWithRegistry:
    return SynSignalWithRegistry(func=lambda: np.full((3, 4), value), name=name,
                                 save_path=str(files_dir), labels={"detectors"})  # fmt: skip


def nested_detector_runs(files_dir: Path, npts: int = 3) -> Generator[Any, Any, Any]:
    """An outer and an inner run, each reading its own detector, both open at every read."""
    files_dir.mkdir(parents=True, exist_ok=True)
    outer_det, inner_det = detector("outer_img", files_dir, 1), detector("inner_img", files_dir, 2)

    def read(det: SynSignalWithRegistry, key: str):
        return bpp.set_run_key_wrapper(bps.trigger_and_read([det]), key)

    def opened(key: str, md: dict):
        return bpp.set_run_key_wrapper(bps.open_run(md), key)

    def body():
        yield from opened("outer", {"purpose": "outer"})
        yield from opened("inner", {"purpose": "inner"})
        for _ in range(npts):
            yield from read(inner_det, "inner")
            yield from read(outer_det, "outer")
        yield from bpp.set_run_key_wrapper(bps.close_run(), "inner")
        yield from bpp.set_run_key_wrapper(bps.close_run(), "outer")

    return (yield from bpp.stage_wrapper(body(), [outer_det, inner_det]))


def run_engine(*callbacks: Callable[[str, dict], Any]) -> RunEngine:
    RE = RunEngine({})
    for callback in callbacks:
        RE.subscribe(callback)
    return RE


def emitted(files_dir: Path, npts: int = 3) -> list[Doc]:
    """The documents of `nested_detector_runs`, as the RunEngine emitted them (run_start kept)."""
    docs: list[Doc] = []
    run_engine(lambda name, doc: docs.append((name, dict(doc))))(
        nested_detector_runs(files_dir, npts)
    )
    return docs


def by_run(docs: list[Doc]) -> dict[str, list[tuple[str, Any]]]:
    """Each run's documents, ``(name, uid or datum id)`` in order, from the documents' own
    ``run_start`` (the truth the publisher must reach without it)."""
    index = schemas.RunIndex()
    runs: dict[str, list[tuple[str, Any]]] = defaultdict(list)
    for name, doc in docs:
        runs[index.run_of(name, doc)].append((name, doc.get("uid") or doc.get("datum_id")))
    return runs
