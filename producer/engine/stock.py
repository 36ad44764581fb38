"""The plans every engine serves besides the seed's: Bluesky's standard plans and the
suspender case, whose pre-plan opens a run of its own in the middle of another."""

from __future__ import annotations

import threading
from collections.abc import Callable, Generator
from typing import Any

import bluesky.plan_stubs as bps
import bluesky.plans as bp
import bluesky.preprocessors as bpp
from bluesky.suspenders import SuspendBoolHigh

from ..plans import sim_hw

Plan = Generator[Any, Any, Any]

STANDARD = (
    "count",
    "scan",
    "rel_scan",
    "list_scan",
    "rel_list_scan",
    "grid_scan",
    "rel_grid_scan",
    "log_scan",
    "rel_log_scan",
    "spiral",
    "tune_centroid",
)


def standard_plans() -> dict[str, Callable[..., Plan]]:
    return {name: getattr(bp, name) for name in STANDARD if hasattr(bp, name)}


def suspended_run(npts: int = 5, hold: float = 0.2, *, hw: Any = None) -> Plan:
    """A run suspended halfway; the suspender's pre-plan opens a run of its own ('pre_plan').

    The suspend signal is raised from inside the plan (once, so a rewind does not
    raise it again) and lowered ``hold`` seconds later, as a beam dump would be.
    """
    from ophyd import Signal

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


ENGINE_PLANS: dict[str, Callable[..., Plan]] = {"suspended_run": suspended_run}
