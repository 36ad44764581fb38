"""Demo plans and devices: the multi-run plans of Bluesky's tutorial (sequential,
nested, recursive runs), a run whose suspender opens a run of its own, `ophyd.sim`'s
devices, and ophyd-async's simulated stage and blob detector (frames in HDF5 files).

They are the first thing every part of runstream must carry: the tests and the demo
run them, and the engine serves them when its plan and device modules name this
module (the default). Production code never imports it. Devices default to
`ophyd.sim`'s; pass ``hw=`` to run the plans on others with the same names.
"""

from __future__ import annotations

import threading
from collections.abc import Generator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import bluesky.plan_stubs as bps
import bluesky.preprocessors as bpp
from bluesky.plans import rel_scan, scan
from bluesky.suspenders import SuspendBoolHigh
from ophyd import Signal

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


def make_devices(files_dir: Path | None = None) -> dict[str, Any]:
    """The engine's device-module hook: `ophyd.sim`'s objects by name (devices among them)."""
    return dict(vars(sim_hw(files_dir)))


def sim_detectors(files_dir: Path) -> dict[str, Any]:
    """ophyd-async's simulated stage and blob detector by name, unconnected (connect them in
    the RunEngine's event loop before a plan uses them).

    The detector writes its frames to HDF5 files under ``files_dir`` and says so with
    ``stream_resource``/``stream_datum`` documents; its blob brightens as the stage nears
    the origin. ophyd-async is imported here, when asked for, as ``ophyd.sim`` is above.
    """
    from ophyd_async.core import StaticPathProvider, UUIDFilenameProvider
    from ophyd_async.sim import PatternGenerator, SimBlobDetector, SimStage

    files_dir.mkdir(parents=True, exist_ok=True)
    pattern = PatternGenerator()
    files = StaticPathProvider(UUIDFilenameProvider(), files_dir)
    return {"stage": SimStage(pattern, name="stage"),
            "bdet": SimBlobDetector(files, pattern, name="bdet")}  # fmt: skip


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


def suspended_run(npts: int = 5, hold: float = 0.2, *, hw: Any = None) -> Plan:
    """A run suspended halfway; the suspender's pre-plan opens a run of its own ('pre_plan').

    The suspend signal is raised from inside the plan (once, so a rewind does not
    raise it again) and lowered ``hold`` seconds later, as a beam dump would be.
    """
    hw = hw or sim_hw()
    flag = Signal(name="suspend_flag", value=0)
    tripped = threading.Event()

    @bpp.set_run_key_decorator("pre_plan")
    # The RunEngine injects a pre-plan around the preprocessors: name its key in md.
    @bpp.run_decorator(md={"purpose": "suspender pre-plan", "run_key": "pre_plan"})
    def pre_plan() -> Plan:
        yield from bps.trigger_and_read([hw.det])

    suspender = SuspendBoolHigh(flag, sleep=0, pre_plan=pre_plan, tripped_message="suspend flag")

    @bpp.set_run_key_decorator("main")
    @bpp.run_decorator(md={})
    def body() -> Plan:
        for j in range(npts):
            if j == npts // 2 and not tripped.is_set():
                tripped.set()
                flag.put(1)
                threading.Timer(max(hold, 0.0), flag.put, args=(0,)).start()
            yield from bps.checkpoint()
            yield from bps.mov(hw.motor, j * 0.1)
            yield from bps.trigger_and_read([hw.motor, hw.det])

    return (yield from bpp.suspend_wrapper(body(), suspender))


SEED_PLANS = {
    "sequential_runs": sequential_runs,
    "nested_runs": nested_runs,
    "recursive_runs": recursive_runs,
}
