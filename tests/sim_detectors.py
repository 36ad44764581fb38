"""A device module for the engine in tests: ophyd-async's simulated stage and blob detectors.

``bdet`` follows ``stage`` (its frames' brightness depends on ``stage.x``); ``sdet`` takes a
stack of three images per point (shape ``[3, 240, 320]``) when the engine runs with
``OPHYD_ASYNC_PRESERVE_DETECTOR_STATE=YES``; ``spec`` reads a 1-D spectrum in the events;
``gate`` holds a scan at its HOLD-th point until the test opens it (a file appears), so a test
sees a run that is still going without timing it.
Test code only: the demo and sim devices stay off production paths.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from ophyd_async.core import (
    Array1D,
    AsyncStatus,
    StandardDetector,
    StandardReadable,
    StaticPathProvider,
    TriggerInfo,
    UUIDFilenameProvider,
    soft_signal_rw,
)
from ophyd_async.sim import PatternGenerator, SimBlobDetector, SimStage
from ophyd_async.sim._blob_acquire_logic import BlobAcquireLogic
from ophyd_async.sim._blob_data_logic import BlobDataLogic
from ophyd_async.sim._blob_trigger_logic import BlobTriggerLogic

STACK = 3
HOLD = 4  # the gate holds a scan at this point (the points before it are read)
DOOR = "gate-open"  # the file (in the detectors' folder) that opens the gate
POLL = 0.05  # seconds between the gate's looks for its door
SPECTRUM = np.linspace(0.0, 1.0, 64) ** 2


@dataclass
class StackTrigger(BlobTriggerLogic):
    """The blob detector's trigger, asking for a stack of STACK images per event."""

    async def default_trigger_info(self) -> TriggerInfo:
        return TriggerInfo(collections_per_event=STACK)


class StackPattern(PatternGenerator):
    """Each stack's first image bright, the others dim: which one is shown can be told."""

    def __init__(self) -> None:
        super().__init__()
        self.images = 0

    def generate_point(self, channel: int = 1, high_energy: bool = False) -> float:
        self.images += 1
        return 1.0 if self.images % STACK == 1 else 0.3


class StackDetector(StandardDetector):
    """A SimBlobDetector whose every point is a stack of images."""

    def __init__(self, path: StaticPathProvider, name: str = "") -> None:
        self.pattern_generator = StackPattern()
        self.add_detector_logics(
            StackTrigger(pattern_generator=self.pattern_generator),
            BlobAcquireLogic(pattern_generator=self.pattern_generator),
            BlobDataLogic(path_provider=path, pattern_generator=self.pattern_generator),
        )
        super().__init__(name=name)


class Spectrometer(StandardReadable):
    """A 1-D array read in every event."""

    def __init__(self, name: str = "") -> None:
        with self.add_children_as_readables():
            self.counts = soft_signal_rw(Array1D[np.float64], SPECTRUM)
        super().__init__(name=name)


class Gate(StandardReadable):
    """A detector whose HOLD-th trigger after its stage lasts until ``door`` exists."""

    def __init__(self, door: Path, name: str = "") -> None:
        self.door = door
        self.points = 0
        with self.add_children_as_readables():
            self.passed = soft_signal_rw(int, 0)
        super().__init__(name=name)

    @AsyncStatus.wrap
    async def stage(self) -> None:
        self.points = 0
        await super().stage()

    @AsyncStatus.wrap
    async def trigger(self) -> None:
        self.points += 1
        while self.points == HOLD and not self.door.exists():
            await asyncio.sleep(POLL)
        await self.passed.set(self.points)


def make_devices(files_dir: Path) -> dict[str, Any]:
    files_dir.mkdir(parents=True, exist_ok=True)
    path = StaticPathProvider(UUIDFilenameProvider(), files_dir)
    pattern = PatternGenerator()
    return {
        "stage": SimStage(pattern),
        "bdet": SimBlobDetector(path, pattern),
        "sdet": StackDetector(path),
        "spec": Spectrometer(),
        "gate": Gate(files_dir / DOOR),
    }
