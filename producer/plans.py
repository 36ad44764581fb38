"""The multi-run plans of Bluesky's tutorial (sequential, nested, recursive runs).

They are the first thing every part of runstream must carry: the engine serves
them as named plans, the tests and the demo run them. Devices default to
`ophyd.sim`'s; pass ``hw=`` to run them on others with the same names.
"""

from __future__ import annotations

from collections.abc import Generator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import bluesky.plan_stubs as bps
import bluesky.preprocessors as bpp
from bluesky.plans import rel_scan, scan

Plan = Generator[Any, Any, Any]

_sim: SimpleNamespace | None = None


def sim_hw(files_dir: Path | None = None) -> SimpleNamespace:
    """One shared set of `ophyd.sim` devices (made on first use).

    ``files_dir`` is where the file-backed detectors (``img``...) write, decided
    by the first call; a Tiled server must be allowed to read it.
    """
    global _sim
    if _sim is None:
        from ophyd.sim import hw

        if files_dir is not None:
            files_dir.mkdir(parents=True, exist_ok=True)
        _sim = hw(save_path=str(files_dir) if files_dir is not None else None)
    return _sim


def sequential_runs(npts: int = 10, *, hw: Any = None) -> Plan:
    """Two single-run plans, one after the other."""
    hw = hw or sim_hw()
    yield from scan([hw.det1], hw.motor1, -1, 1, npts)
    yield from rel_scan([hw.det1, hw.det2], hw.motor1, -1, 1, npts)


def _inner(npts: int, hw: Any) -> Plan:
    @bpp.set_run_key_decorator("run_2")
    @bpp.run_decorator(md={})
    def inner() -> Plan:
        yield from bps.declare_stream(hw.motor1, hw.motor2, hw.det2, name="primary")
        for j in range(npts):
            yield from bps.mov(hw.motor1, j * 0.1 + 1, hw.motor2, j * 0.2 - 2)
            yield from bps.trigger_and_read([hw.motor1, hw.motor2, hw.det2])

    return (yield from inner())


def nested_runs(npts: int = 10, *, hw: Any = None) -> Plan:
    """An outer run ('run_1') interrupted by an inner run ('run_2') of npts + 1 points."""
    hw = hw or sim_hw()

    @bpp.set_run_key_decorator("run_1")
    @bpp.run_decorator(md={})
    def outer() -> Plan:
        yield from bps.declare_stream(hw.motor, hw.det, name="primary")
        for j in range(npts // 2):
            yield from bps.mov(hw.motor, j * 0.2)
            yield from bps.trigger_and_read([hw.motor, hw.det])
        yield from _inner(npts + 1, hw)
        for j in range(npts // 2, npts):
            yield from bps.mov(hw.motor, j * 0.2)
            yield from bps.trigger_and_read([hw.motor, hw.det])

    return (yield from outer())


def recursive_runs(npts: int = 4, *, depth: int = 3, hw: Any = None) -> Plan:
    """A run that opens itself again inside, ``depth`` runs deep, keys run_key_1..depth."""
    hw = hw or sim_hw()

    def level(n: int, npts: int) -> Plan:
        if n > depth:
            return

        @bpp.set_run_key_decorator(f"run_key_{n}")
        @bpp.run_decorator(md={})
        def plan() -> Plan:
            for j in range(npts // 2):
                yield from bps.mov(hw.motor1, j * 0.2)
                yield from bps.trigger_and_read([hw.motor1, hw.det1])
            yield from level(n + 1, npts + 2)
            for j in range(npts // 2, npts):
                yield from bps.mov(hw.motor1, j * 0.2)
                yield from bps.trigger_and_read([hw.motor1, hw.det1])

        yield from plan()

    yield from level(1, npts)


SEED_PLANS = {
    "sequential_runs": sequential_runs,
    "nested_runs": nested_runs,
    "recursive_runs": recursive_runs,
}
