"""What the engine puts around every plan's messages: bounds on what devices are asked,
and the operator's reason in the ``close_run`` of an interrupted plan.

A device whose IOC died answers nothing: ophyd-async reads a dead IOC's PVs for as long
as its signals' own timeouts allow, and an ophyd (v1) move's status never finishes. The
RunEngine has no bound of its own, so the engine bounds each device command and fails the
plan with a reason naming the device (and the PV, where the device says which). The
RunEngine then closes the plan's runs with exit_status 'fail' and that reason; the queue
goes on as after any failed task.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from bluesky import RunEngine
from bluesky.preprocessors import plan_mutator
from bluesky.utils import FailedStatus, Msg, single_gen

from runstream.schemas.errors import RunstreamError

log = logging.getLogger(__name__)

#: RunEngine commands that ask a device something it should answer promptly.
CALLS = ("read", "locate", "stage", "unstage", "trigger", "set", "configure", "prepare",
         "kickoff", "complete", "collect", "declare_stream")  # fmt: skip
#: Commands whose status a later ``wait`` waits for: the devices a stuck wait names.
STARTS = ("set", "trigger", "kickoff", "complete", "prepare")

#: Channel Access's "the channel is gone": epicscorelibs' Disconnected (a call on a
#: disconnected channel) and aioca's CANothing with ECA_DISCONN (a put or a monitor cut off).
DISCONNECTS = ("Disconnected", "CANothing")

Command = Callable[[Msg], Awaitable[Any]]


class DeviceTimeoutError(RunstreamError, TimeoutError):
    """Devices (by name) did not answer, or did not finish, within the engine's bound."""

    def __init__(self, message: str, devices: list[str]) -> None:
        super().__init__(message)
        self.devices = devices


@dataclass(frozen=True)
class DeviceTimeouts:
    """Seconds for a device to connect, to answer one call, and to finish what a plan waits
    for (moves, acquisitions); ``wait`` 0 leaves waits unbounded."""

    connect: float = 10.0
    call: float = 30.0
    wait: float = 600.0

    def guard(self, engine: RunEngine) -> None:
        """Bound the RunEngine's device commands (its command registry, wrapped in place)."""
        started: dict[Any, list[str]] = defaultdict(list)  # wait group -> devices
        for name in CALLS:
            original = engine._command_registry[name]
            engine.register_command(name, _bounded(original, self.call, started))
        original = engine._command_registry["wait"]
        engine.register_command("wait", _bounded_wait(original, self.wait, started))


def _name(obj: Any) -> str:
    return str(getattr(obj, "name", None) or obj)


def _subjects(msg: Msg) -> list[str]:
    """The devices a message asks (``declare_stream`` names its devices in its args)."""
    if msg.obj is not None:
        return [_name(msg.obj)]
    return [_name(obj) for obj in msg.args if hasattr(obj, "name")]


def _listed(names: list[str]) -> str:
    return ", ".join(repr(name) for name in names) or "its devices"


def _unanswered(exc: BaseException | None) -> BaseException | None:
    """What says a device stopped answering behind a failure (the exception itself, or a
    failed status's): a timeout, or its channel's disconnect (an IOC killed answers with
    one at once; it is matched by class name: the engine imports no control layer)."""
    if isinstance(exc, FailedStatus) and exc.args:
        exc = getattr(exc.args[0], "exception", lambda: None)()
    if isinstance(exc, TimeoutError):
        return exc
    if type(exc).__name__ in DISCONNECTS and not getattr(exc, "ok", False):
        return exc  # aioca's CANothing is falsy: compared with None, never by truth
    return None


def _why(failure: BaseException, bound: float) -> str:
    """What a device said with its timeout (ophyd-async names the PV: ``ca://M:mtr1.RBV``)
    or its disconnect (``Channel M:mtr1.OFF disconnected``); the engine's own bound
    (asyncio's timeout says nothing) by its seconds."""
    text = str(failure).strip()
    if not isinstance(failure, TimeoutError):
        return f" lost its connection: {text}"
    return (
        f" timed out: no answer from {text}"
        if text
        else f" timed out: no answer within {bound:g} s"
    )


def _bounded(command: Command, timeout: float, started: dict[Any, list[str]]) -> Command:
    async def bounded(msg: Msg) -> Any:
        group = msg.kwargs.get("group")
        if msg.command in STARTS and group is not None and msg.obj is not None:
            started[group].append(_name(msg.obj))
        try:
            async with asyncio.timeout(timeout):  # inline: no task, so no change of timing
                return await command(msg)
        except Exception as exc:
            if _unanswered(exc) is not exc:
                raise
            what = f"{msg.command} of {_listed(_subjects(msg))}"
            raise DeviceTimeoutError(what + _why(exc, timeout), _subjects(msg)) from exc

    return bounded


def _bounded_wait(command: Command, timeout: float, started: dict[Any, list[str]]) -> Command:
    async def bounded(msg: Msg) -> Any:
        group = msg.args[0] if msg.args else msg.kwargs.get("group")
        devices = started.pop(group, [])
        try:
            async with asyncio.timeout(timeout or None):
                return await command(msg)
        except TimeoutError as exc:
            what = f"waiting for {_listed(devices)}"
            raise DeviceTimeoutError(what + _why(exc, timeout), devices) from exc

    return bounded


def _rephrased(failure: FailedStatus) -> Exception:
    """A status that failed on a timeout or a disconnect (the RunEngine throws it into the
    plan as the status's repr) as a `DeviceTimeoutError` naming its device and what did
    not answer."""
    inner = _unanswered(failure)
    status = failure.args[0] if failure.args else None
    # ophyd's statuses keep their device; ophyd-async's only its name
    device = getattr(status, "device", None) or getattr(status, "obj", None)
    device = device if device is not None else getattr(status, "_name", None)
    if inner is None or not device:
        return failure
    error = DeviceTimeoutError(f"device {_name(device)!r}{_why(inner, 0)}",
                               [_name(device)])  # fmt: skip
    error.__cause__ = failure
    return error


def rephrase_timeouts(plan: Any) -> Any:
    """A preprocessor (the outermost): a timed-out status reaches the plan, and so its runs'
    stop documents, as a `DeviceTimeoutError` saying which device and which PV."""
    reply: Any = None
    thrown: BaseException | None = None
    while True:
        try:
            msg = plan.send(reply) if thrown is None else plan.throw(thrown)
        except StopIteration as done:
            return done.value
        reply, thrown = None, None
        try:
            reply = yield msg
        except FailedStatus as failure:
            thrown = _rephrased(failure)
        except GeneratorExit:
            plan.close()
            raise
        except BaseException as other:  # passed on to the plan unchanged
            thrown = other


def give_reason(ended: Callable[[], tuple[str, str] | None]) -> Callable[[Any], Any]:
    """A preprocessor putting the operator's reason (``ended()``: control, reason) into the
    ``close_run`` messages of an interrupted plan, which a plan closing its runs on the
    RunEngine's RequestAbort (a paused plan aborted) closes with an empty reason."""

    def fill(msg: Msg) -> tuple[Any, None]:
        stopped = ended()
        if (  # with no reason to give, nothing to fill: the message would match again
            msg.command == "close_run"
            and stopped is not None
            and stopped[1]
            and msg.kwargs.get("exit_status") in ("abort", "fail")
            and not msg.kwargs.get("reason")
        ):
            return single_gen(msg._replace(kwargs={**msg.kwargs, "reason": stopped[1]})), None
        return None, None

    def preprocessor(plan: Any) -> Any:
        return (yield from plan_mutator(plan, fill))

    return preprocessor
