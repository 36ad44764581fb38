"""The engine's devices: gathered from device modules, named, connected, looked up by name.

ophyd-async devices are made unconnected and must be connected in the RunEngine's
event loop before a plan uses them; the engine connects them all at once, as
``ophyd_async.core.init_devices`` would, and keeps a device that fails with its
error so that the others are served. ophyd (v1) devices connect by themselves.
Users name sub-devices as they write them in Python (``stage.x``,
``motor.user_readback``) or as ophyd-async names them (``stage-x``).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from ophyd_async.core import Device as AsyncDevice

from runstream.schemas.errors import RunstreamError

log = logging.getLogger(__name__)

#: Seconds a connection attempt may take past its own timeout before it is given up.
GRACE = 2.0
#: The longest error text kept for a device (an EPICS device's lists every PV).
MAX_ERROR = 600


class UnknownDeviceError(RunstreamError, LookupError):
    """No device, and no sub-device of one, has that name."""


class DeviceNotConnectedError(RunstreamError, RuntimeError):
    """The device (or the device it belongs to) is not connected."""


def is_device(obj: Any) -> bool:
    """An ophyd-async device (signals too), or anything readable the ophyd way."""
    if isinstance(obj, AsyncDevice):
        return True
    return hasattr(obj, "read") and hasattr(obj, "name") and hasattr(obj, "describe")


def gather(modules: Iterable[ModuleType], files_dir: Path | None) -> dict[str, Any]:
    """The devices of the modules by name: module-level ones, or ``make_devices(files_dir)``'s.

    A device without a name (ophyd-async's default) is given its variable's or key's name.
    """
    devices: dict[str, Any] = {}
    for module in modules:
        make = getattr(module, "make_devices", None)
        found = make(files_dir) if callable(make) else vars(module)
        for var, obj in found.items():
            if not is_device(obj):
                continue
            if isinstance(obj, AsyncDevice) and not obj.name:
                obj.set_name(var)
            name = var if callable(make) else getattr(obj, "name", None)
            if isinstance(name, str) and name:
                devices[name] = obj
    return devices


@dataclass
class DeviceEntry:
    """One top-level device and what is known of its connection."""

    name: str
    device: Any
    error: str | None = None
    attempted: bool = False  # an ophyd-async device: a connection was tried

    @property
    def asynchronous(self) -> bool:
        return isinstance(self.device, AsyncDevice)

    @property
    def connected(self) -> bool:
        if self.asynchronous:
            return self.attempted and self.error is None
        return bool(getattr(self.device, "connected", True))

    @property
    def problem(self) -> str | None:
        """Why a plan may not use this device now; None when it may."""
        if self.connected:
            return None
        if self.error:
            return self.error
        return "not connected yet" if self.asynchronous else "not connected"


class Devices(Mapping[str, Any]):
    """The engine's top-level devices by name (a mapping to the device objects)."""

    def __init__(self, devices: Mapping[str, Any]) -> None:
        self.entries = {name: DeviceEntry(name, device) for name, device in devices.items()}

    def __getitem__(self, name: str) -> Any:
        return self.entries[name].device

    def __iter__(self) -> Iterator[str]:
        return iter(self.entries)

    def __len__(self) -> int:
        return len(self.entries)

    @property
    def connected(self) -> int:
        return sum(entry.connected for entry in self.entries.values())

    def entry(self, name: str) -> DeviceEntry:
        found = self.entries.get(name)
        if found is None:
            raise UnknownDeviceError(f"unknown device {name!r}")
        return found

    def resolve(self, name: str) -> Any:
        """The device or sub-device of that name, refused if its device is not connected."""
        entry, device = self._find(name)
        problem = entry.problem if entry.asynchronous else None
        if problem is not None:
            raise DeviceNotConnectedError(f"device {entry.name!r} is not connected: {problem}")
        return device

    def _find(self, name: str) -> tuple[DeviceEntry, Any]:
        if name in self.entries:
            return self.entries[name], self.entries[name].device
        top, dot, rest = name.partition(".")
        if dot and top in self.entries:
            found = _descend(self.entries[top].device, rest.split("."))
            if found is not None:
                return self.entries[top], found
        for entry in self.entries.values():  # ophyd-async's own names: stage-x
            if entry.asynchronous and name.startswith(f"{entry.name}-"):
                found = _named_child(entry.device, name)
                if found is not None:
                    return entry, found
        raise UnknownDeviceError(f"unknown device {name!r}")

    def lost(self, names: Iterable[str], reason: str) -> None:
        """Devices that stopped answering mid-plan: not connected until connected again."""
        for name in names:
            try:
                entry, _ = self._find(name)
            except UnknownDeviceError:
                continue
            if entry.asynchronous and entry.error is None:
                entry.error = f"stopped answering: {reason}"
                log.warning("device %s stopped answering: %s", entry.name, reason)

    def connect_all(self, loop: asyncio.AbstractEventLoop, timeout: float) -> None:
        """Connect every ophyd-async device at once in ``loop``; failures are kept, not raised."""
        entries = [e for e in self.entries.values() if e.asynchronous]
        if entries:
            _connect(entries, loop, timeout)
        for entry in entries:
            if entry.error:
                log.error("device %s did not connect: %s", entry.name, entry.error)
        log.info("%d of %d devices connected", self.connected, len(self))

    def connect(self, name: str, loop: asyncio.AbstractEventLoop, timeout: float) -> DeviceEntry:
        """Try one device again (e.g. after its IOC restarted) and answer its state."""
        entry = self.entry(name)
        if entry.asynchronous:  # afresh: a device that once connected would answer at once
            _connect([entry], loop, timeout, force=True)
        elif hasattr(entry.device, "wait_for_connection"):
            try:
                entry.device.wait_for_connection(timeout=timeout)
                entry.error = None
            except Exception as exc:
                entry.error = _why(exc)
        log.info("device %s reconnect: %s", name, entry.problem or "connected")
        return entry


def _descend(device: Any, parts: list[str]) -> Any:
    """The sub-device at the attribute path ``parts``: components only, never any attribute."""
    for part in parts:
        if isinstance(device, AsyncDevice):
            device = dict(device.children()).get(part)
        elif part in getattr(device, "component_names", ()):
            device = getattr(device, part)
        else:
            return None
        if device is None:
            return None
    return device


def _named_child(device: Any, name: str) -> Any:
    for _, child in device.children():
        if child.name == name:
            return child
        found = _named_child(child, name) if name.startswith(f"{child.name}-") else None
        if found is not None:
            return found
    return None


def _connect(
    entries: list[DeviceEntry], loop: asyncio.AbstractEventLoop, timeout: float, force: bool = False
) -> None:
    """Connect ophyd-async devices concurrently in the RunEngine's loop; record each outcome."""

    async def attempt(entry: DeviceEntry) -> str | None:
        try:
            await asyncio.wait_for(
                entry.device.connect(timeout=timeout, force_reconnect=force), timeout + GRACE
            )
        except TimeoutError:
            return f"no connection within {timeout:g} s"
        except Exception as exc:
            return _why(exc)
        return None

    async def attempt_all() -> list[str | None]:
        return await asyncio.gather(*(attempt(e) for e in entries))

    future = asyncio.run_coroutine_threadsafe(attempt_all(), loop)
    try:
        errors = future.result(timeout + 2 * GRACE)
    except concurrent.futures.TimeoutError:
        future.cancel()
        errors = ["the RunEngine's event loop did not answer"] * len(entries)
    for entry, error in zip(entries, errors, strict=True):
        entry.attempted, entry.error = True, error


def _why(exc: BaseException) -> str:
    """An exception as one line (ophyd-async's name every PV on a line of its own)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    text = f"{type(exc).__name__}: {'; '.join(lines)}" if lines else type(exc).__name__
    return text if len(text) <= MAX_ERROR else text[: MAX_ERROR - 3] + "..."
