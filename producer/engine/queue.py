"""The task queue and the worker thread that owns the RunEngine.

The worker thread is the only caller of ``RE(plan)`` and of the calls that
continue a paused plan (``resume``, and ``abort``/``stop``/``halt`` once paused),
because those block until the plan ends or pauses again. Everything the RunEngine
allows from other threads while a plan runs (``request_pause``, and ``abort``,
``stop``, ``halt`` which cancel its task) is called directly from the caller's
thread. The RunEngine's own state machine decides what is allowed when; a
refused transition is a `ControlError`.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any

from bluesky import RunEngine
from bluesky.utils import RunEngineInterrupted

from runstream.schemas.errors import RunstreamError
from runstream.schemas.service import CONTROLS, Control

from .devices import DeviceEntry
from .events import EventHub
from .guards import DeviceTimeoutError, DeviceTimeouts, give_reason, rephrase_timeouts
from .registry import PlanRegistry, RequestError
from .store import PAUSED, QUEUED, RUNNING, TaskStore

log = logging.getLogger(__name__)

DocumentCallback = Callable[[str, Mapping[str, Any]], Any]
Preprocessor = Callable[[Any], Any]
ReadyCheck = Callable[[], str | None]
#: What a task ended as, by the control that ended it.
ENDED_BY: dict[Control, tuple[str, str]] = {
    "abort": ("aborted", "abort"),
    "halt": ("halted", "abort"),
    "stop": ("stopped", "success"),
}
#: How long the RunEngine's event loop may take to answer a readiness ping.
LOOP_PING_TIMEOUT = 1.0
#: How long a control waits for a task shown as running to be running in the RunEngine.
START_GRACE = 5.0


class ControlError(RunstreamError, RuntimeError):
    """A control or request the engine refuses in its present state (HTTP 409)."""


class Engine:
    """One RunEngine fed from a persistent queue of tasks."""

    def __init__(
        self,
        store: TaskStore,
        registry: PlanRegistry,
        *,
        subscribers: list[DocumentCallback] = (),  # type: ignore[assignment]
        preprocessors: list[Preprocessor] = (),  # type: ignore[assignment]
        ready_checks: list[ReadyCheck] = (),  # type: ignore[assignment]
        events: EventHub | None = None,
        max_queue: int = 1000,
        timeouts: DeviceTimeouts = DeviceTimeouts(),  # noqa: B008 (frozen)
    ) -> None:
        self.store = store
        self.registry = registry
        self.events = events or EventHub()
        self.max_queue, self.timeouts = max_queue, timeouts
        self._subscribers = list(subscribers)
        self._preprocessors = list(preprocessors)
        self._ready_checks = list(ready_checks)
        self._cv = threading.Condition()
        self._commands: deque[tuple[Control, str]] = deque()  # (control, reason) for the worker
        self._control_lock = threading.Lock()
        self._closing = False
        self._current: str | None = None  # the task id the RunEngine is on
        self._ended_by: tuple[Control, str] | None = None  # (control, reason)
        self._run_task: dict[str, str] = {}  # run uid -> task id
        self.runs_opened = self.runs_closed = 0
        self._loop = asyncio.new_event_loop()  # every RunEngine's: devices are connected in it
        self.RE = self._new_run_engine()
        self.interrupted = store.recover()
        if self.interrupted:  # as after a failed task: nothing moves until an operator says so
            store.set_meta("queue_running", False)
            log.warning("queue stopped after a restart cut a task short; start it to go on")
        self._thread = threading.Thread(target=self._work, name="runstream-engine", daemon=True)

    def _new_run_engine(self) -> RunEngine:
        RE = RunEngine({}, loop=self._loop, context_managers=[], call_returns_result=True)
        RE.preprocessors.extend(self._preprocessors)
        RE.preprocessors.append(give_reason(lambda: self._ended_by))
        RE.preprocessors.append(rephrase_timeouts)  # the outermost
        self.timeouts.guard(RE)  # a dead IOC fails the plan, naming the device
        RE.subscribe(self._on_document)
        for callback in self._subscribers:
            RE.subscribe(callback)
        RE.state_hook = self._on_state
        return RE

    # -- lifecycle -----------------------------------------------------------------

    def start(self) -> None:
        """Connect the devices (those that fail are kept with their error), then take tasks."""
        self.registry.devices.connect_all(self._loop, self.timeouts.connect)
        self._thread.start()

    def connect_device(self, name: str) -> DeviceEntry:
        """Try one device again, e.g. after its IOC restarted (UnknownDeviceError if none)."""
        return self.registry.devices.connect(name, self._loop, self.timeouts.connect)

    def close(self, timeout: float = 10.0) -> None:
        """Stop taking tasks; a running plan is aborted so its runs are closed."""
        with self._cv:
            self._closing = True
            self._cv.notify_all()
        state = self.RE.state
        if state not in ("idle", "panicked"):
            with contextlib.suppress(ControlError):
                self.control("abort", "engine shutting down")
        self._thread.join(timeout)

    # -- requests ------------------------------------------------------------------

    def submit(self, plan: str, args: list[Any], kwargs: dict[str, Any], by: str = "") -> dict:
        """Check the request now (a bad one never enters the queue) and queue it for ``by``."""
        generator = self.registry.build(plan, args, kwargs)
        generator.close()
        if len(self.store.queue_ids()) >= self.max_queue:
            raise ControlError(f"the queue is full ({self.max_queue} tasks)")
        task = self.store.add(plan, args, kwargs, by or None)
        log.info("task %s queued: %s", task["task_id"], plan)
        self.events.publish("task", task_id=task["task_id"], state=QUEUED, plan=plan)
        with self._cv:
            self._cv.notify_all()
        return task

    def remove(self, task_id: str) -> bool:
        removed = self.store.remove(task_id)
        if removed:
            self.events.publish("task", task_id=task_id, state="removed")
        return removed

    @property
    def queue_running(self) -> bool:
        return bool(self.store.meta("queue_running", True))

    def set_queue_running(self, running: bool) -> None:
        self.store.set_meta("queue_running", running)
        self.events.publish("queue", running=running)
        with self._cv:
            self._cv.notify_all()

    def status(self) -> dict[str, Any]:
        return {
            "re_state": str(self.RE.state),
            "task_id": self._current,
            "queue_running": self.queue_running,
            "queued": len(self.store.queue_ids()),
        }

    def readiness(self) -> list[str]:
        """Why the engine cannot take work now; empty when it can."""
        problems = []
        if not self._thread.is_alive():
            problems.append("the engine's worker thread is not running")
        if self.RE.state == "panicked":
            problems.append("the RunEngine is panicked")
        elif not self._loop_answers():
            problems.append("the RunEngine's event loop is blocked")
        for check in self._ready_checks:
            problem = check()
            if problem:
                problems.append(problem)
        return problems

    def _loop_answers(self) -> bool:
        answered = threading.Event()
        try:
            self.RE.loop.call_soon_threadsafe(answered.set)
        except RuntimeError:
            return False
        return answered.wait(LOOP_PING_TIMEOUT)

    # -- control ---------------------------------------------------------------------

    def control(self, action: Control, reason: str = "", defer: bool = False) -> dict[str, Any]:
        """Apply a control by the RunEngine's rules; ControlError when it refuses."""
        if action not in CONTROLS:
            raise ControlError(f"unknown control {action!r}")
        with self._control_lock:
            state = self._state_once_started()
            if action == "pause":
                if state != "running":
                    raise ControlError(f"cannot pause: the RunEngine is {state}")
                self._call(lambda: self.RE.request_pause(defer))
            elif state == "paused":
                if any(True for _ in self._commands):
                    raise ControlError("a control is already on its way to the paused plan")
                if action != "resume":
                    self._ended_by = (action, reason)
                with self._cv:
                    self._commands.append((action, reason))
                    self._cv.notify_all()
            elif action == "resume":
                raise ControlError(f"cannot resume: the RunEngine is {state}, not paused")
            elif state in ("running", "pausing", "suspending"):
                self._ended_by = (action, reason)
                self._call(lambda: self._interrupt(action, reason))
            else:
                raise ControlError(f"cannot {action}: the RunEngine is {state}")
        log.info("control %s (task %s)%s", action, self._current, f": {reason}" if reason else "")
        self.events.publish("control", action=action, reason=reason, task_id=self._current)
        return self.status()

    def _state_once_started(self) -> str:
        """The RunEngine's state, past the moment a task is shown running but ``RE(plan)``
        has not left "idle" yet: a control in that moment is for the task, not refused."""
        with self._cv:  # woken by the RunEngine's state hook and by a task's end
            self._cv.wait_for(
                lambda: self._current is None or self.RE.state != "idle", timeout=START_GRACE
            )
        return str(self.RE.state)

    def _interrupt(self, action: Control, reason: str) -> Any:
        if action == "abort":
            return self.RE.abort(reason)
        return getattr(self.RE, action)()

    def _call(self, call: Callable[[], Any]) -> None:
        from bluesky._vendor.super_state_machine.errors import TransitionError

        try:
            call()
        except (TransitionError, RuntimeError) as exc:
            raise ControlError(str(exc)) from None

    # -- the worker thread ----------------------------------------------------------------

    def _work(self) -> None:
        while True:
            with self._cv:
                while not self._closing and not self._ready_for_work():
                    self._cv.wait(0.5)
                if self._closing and not self._commands:
                    return
                command = self._commands.popleft() if self._commands else None
            if command is not None:
                action, reason = command
                call = {
                    "resume": self.RE.resume,
                    "abort": lambda reason=reason: self.RE.abort(reason),
                    "stop": self.RE.stop,
                    "halt": self.RE.halt,
                }[action]
                self._drive(call)
                continue
            queued = self.store.queue_ids()
            if queued:
                self._start(queued[0])

    def _ready_for_work(self) -> bool:
        if self._commands:
            return True
        if self.RE.state != "idle" or not self.queue_running:
            return False
        return bool(self.store.queue_ids())

    def _start(self, task_id: str) -> None:
        self._current, self._ended_by = task_id, None  # before the store shows it running
        task = self.store.claim(task_id)  # queued -> running at once: no edit slips in between
        if task is None:  # removed meanwhile
            with self._cv:
                self._current = None
                self._cv.notify_all()
            return
        try:
            plan = self.registry.build(task["plan"], task["args"], task["kwargs"])
        except RequestError as exc:  # e.g. the configuration changed since it was queued
            self._finish(task_id, "failed", "fail", str(exc))
            return
        self.events.publish("task", task_id=task_id, state=RUNNING, plan=task["plan"])
        log.info("task %s started: %s", task_id, task["plan"])
        self.RE.md["task_id"] = task_id
        self._drive(lambda: self.RE(plan, submitted_by=task["submitted_by"] or "unknown"))

    def _drive(self, call: Callable[[], Any]) -> None:
        """Run the RunEngine until the plan ends or pauses, and record which."""
        task_id = self._current
        error = None
        try:
            call()
        except RunEngineInterrupted:
            pass
        except (concurrent.futures.CancelledError, Exception) as exc:
            error = f"{type(exc).__name__}: {exc}"
            log.warning("task %s failed: %s", task_id, error)
            if isinstance(exc, DeviceTimeoutError):  # refused by name until connected again
                self.registry.devices.lost(exc.devices, str(exc))
        if task_id is None:
            return
        if self.RE.state == "paused":
            self.store.update(task_id, state=PAUSED)
            self.events.publish("task", task_id=task_id, state=PAUSED)
            return
        if self._ended_by is not None:
            state, exit_status = ENDED_BY[self._ended_by[0]]
            reason = self._ended_by[1]
        elif error is not None:
            state, exit_status, reason = "failed", "fail", error
        else:
            state, exit_status, reason = "completed", "success", ""
        self._finish(task_id, state, exit_status, reason)

    def _finish(self, task_id: str, state: str, exit_status: str, reason: str) -> None:
        self.RE.md.pop("task_id", None)
        with self._cv:
            self._current, self._ended_by = None, None
            self._cv.notify_all()
        self.store.update(
            task_id, state=state, ended=time.time(), exit_status=exit_status, reason=reason
        )
        if state != "completed":
            self.set_queue_running(False)  # the operator decides what runs next
        if self.RE.state == "panicked":
            log.error("the RunEngine panicked during task %s; making a new one", task_id)
            self.RE = self._new_run_engine()
        log.info("task %s %s (%s)", task_id, state, exit_status)
        self.events.publish("task", task_id=task_id, state=state, exit_status=exit_status)

    # -- the RunEngine's callbacks ------------------------------------------------------

    def _on_state(self, new: Any, old: Any) -> None:
        with self._cv:
            self._cv.notify_all()
        self.events.publish("engine", state=str(new), previous=str(old), task_id=self._current)

    def _on_document(self, name: str, doc: Mapping[str, Any]) -> None:
        if name == "start":
            task_id = doc.get("task_id")
            if not isinstance(task_id, str):
                return
            self._run_task[doc["uid"]] = task_id
            run = {
                "uid": doc["uid"],
                "scan_id": doc.get("scan_id"),
                "run_key": doc.get("run_key"),
                "parent_uid": doc.get("parent_uid"),
                "exit_status": None,
                "reason": None,
            }
            self._update_runs(task_id, lambda runs: [*runs, run])
            self.runs_opened += 1
            log.info("run %s opened by task %s", doc["uid"], task_id)
            self.events.publish("run_opened", task_id=task_id, **run)
        elif name == "stop":
            uid = doc.get("run_start")
            task_id = self._run_task.pop(uid, None)
            if task_id is None:
                return
            status, reason = doc.get("exit_status"), doc.get("reason", "")

            def close(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
                return [
                    {**r, "exit_status": status, "reason": reason} if r["uid"] == uid else r
                    for r in runs
                ]

            self._update_runs(task_id, close)
            self.runs_closed += 1
            log.info("run %s closed (%s) in task %s", uid, status, task_id)
            self.events.publish(
                "run_closed", task_id=task_id, uid=uid, exit_status=status, reason=reason
            )

    def _update_runs(self, task_id: str, change: Callable[[list], list]) -> None:
        task = self.store.get(task_id)
        if task is not None:
            self.store.update(task_id, runs=change(task["runs"]))
