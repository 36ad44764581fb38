"""Changes people make to the queue: move, edit, clear, add in a batch; and the history.

A user changes only the queued tasks they submitted, an expert anyone's (`NotYoursError`).
Every request is checked as a submission is (`QueueEditor.check`: the caller's permission,
then plan, arguments and devices by the registry), each change is one store call (a
batch one transaction), and each is published on the engine's event stream as a ``queue``
event saying what changed and who changed it, so every viewer sees it at once.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from starlette.exceptions import HTTPException

from runstream.schemas.errors import RunstreamError

from .identity.roles import Identity
from .queue import ControlError, Engine
from .registry import UnknownPlanError
from .store import QUEUED, NotQueuedError, TaskStore

log = logging.getLogger(__name__)

Request = tuple[str, list[Any], dict[str, Any]]  # plan, args, kwargs
#: (identity, plan, args, kwargs): raises (e.g. a 403 naming the rule) when not permitted.
Permit = Callable[[Identity, str, list[Any], dict[str, Any]], None]
#: What a change may touch, in the order a task shows them.
EDITABLE = ("plan", "args", "kwargs")


class UnknownTaskError(RunstreamError, LookupError):
    """No task of that id (HTTP 404)."""


class NotYoursError(RunstreamError, PermissionError):
    """A user changing a task someone else submitted (HTTP 403)."""


class BatchError(RunstreamError, ValueError):
    """A batch with refused requests, each named by its index and reason; nothing queued."""

    def __init__(self, problems: list[dict[str, Any]]) -> None:
        super().__init__("; ".join(f"task {p['index']}: {p['msg']}" for p in problems))
        self.problems = problems

    @property
    def status(self) -> int:
        """The status all the problems share (404 unknown plans, 403 refused), else 422."""
        codes = {p["status"] for p in self.problems}
        return codes.pop() if len(codes) == 1 else 422


class QueueEditor:
    """The queue's changes on behalf of a caller, over the engine's store and event stream."""

    def __init__(self, engine: Engine, permit: Permit | None = None) -> None:
        self.engine = engine
        self.permit = permit

    @property
    def store(self) -> TaskStore:
        return self.engine.store

    def check(self, identity: Identity, plan: str, args: list[Any], kwargs: dict) -> None:
        """Refuse a request as a submission would, in its order: what ``permit`` refuses,
        an unknown plan (`UnknownPlanError`), bad arguments or devices (`RequestError`)."""
        if self.permit is not None:
            self.permit(identity, plan, args, kwargs)
        self.engine.registry.build(plan, args, kwargs).close()

    def task(self, task_id: str, identity: Identity) -> dict[str, Any]:
        """The task, if ``identity`` may change it: its submitter, or an expert."""
        task = self.store.get(task_id)
        if task is None:
            raise UnknownTaskError(f"unknown task {task_id!r}")
        if task["submitted_by"] != identity.subject and not identity.may("expert"):
            raise NotYoursError(
                f"task {task_id} was submitted by {task['submitted_by'] or 'someone else'}; "
                f"{identity.subject} is {identity.role or 'without a role'}, and only an "
                "expert changes others' tasks"
            )
        return task

    def move(
        self,
        identity: Identity,
        task_id: str,
        *,
        before: str | None = None,
        after: str | None = None,
        position: int | None = None,
    ) -> dict[str, Any]:
        """Move a queued task before or after another queued task, or to a position."""
        self.task(task_id, identity)
        anchor = before or after
        if anchor is not None and self.store.get(anchor) is None:
            raise UnknownTaskError(f"unknown task {anchor!r} to move {task_id} next to")
        try:
            place = self.store.move(task_id, before=before, after=after, position=position)
        except NotQueuedError as exc:
            raise ControlError(f"cannot move task {task_id}: {exc}") from None
        log.info("task %s moved to %d by %s", task_id, place, identity.subject)
        self._publish("moved", identity, task_id=task_id, position=place)
        return self.store.get(task_id)  # type: ignore[return-value]

    def edit(self, identity: Identity, task_id: str, changes: dict[str, Any]) -> dict[str, Any]:
        """Give a queued task a new plan, args or kwargs, checked again as a submission;
        it keeps its id and place, and records who changed what, when."""
        task = self.task(task_id, identity)
        if task["state"] != QUEUED:
            raise ControlError(f"task {task_id} is {task['state']}, not queued: it cannot change")
        new = {name: changes.get(name, task[name]) for name in EDITABLE}
        self.check(identity, new["plan"], new["args"], new["kwargs"])
        before = {n: task[n] for n in EDITABLE if n in changes and changes[n] != task[n]}
        if not before:
            return task
        after = {name: new[name] for name in before}
        record = {"by": identity.subject, "at": time.time(), "before": before, "after": after}
        if not self.store.edit(task_id, after, record):
            found = self.store.get(task_id) or {"state": "gone"}
            raise ControlError(f"task {task_id} is {found['state']}, not queued: it cannot change")
        log.info("task %s edited by %s: %s", task_id, identity.subject, ", ".join(after))
        self._publish("edited", identity, task_id=task_id, fields=list(after))
        return self.store.get(task_id)  # type: ignore[return-value]

    def clear(self, identity: Identity) -> list[str]:
        """Take every queued task off the queue; their ids."""
        removed = self.store.clear_queue()
        log.info("queue cleared by %s: %d tasks removed", identity.subject, len(removed))
        self._publish("cleared", identity, task_ids=removed)
        return removed

    def batch(self, identity: Identity, requests: list[Request]) -> list[dict[str, Any]]:
        """Queue every request, in order, or none: `BatchError` names each refused one."""
        problems = []
        for index, (plan, args, kwargs) in enumerate(requests):
            try:
                self.check(identity, plan, args, kwargs)
            except (RunstreamError, PermissionError, HTTPException) as exc:
                problems.append(_problem(index, exc))
        if problems:
            raise BatchError(problems)
        room = self.engine.max_queue - len(self.store.queue_ids())
        if len(requests) > room:
            raise ControlError(f"the queue has room for {max(room, 0)} tasks, not {len(requests)}")
        tasks = self.store.add_many(requests, identity.subject or None)
        ids = [t["task_id"] for t in tasks]
        log.info("%d tasks queued in a batch by %s", len(ids), identity.subject)
        self._publish("added", identity, task_ids=ids)
        return tasks

    def history(
        self, *, user: str | None, plan: str | None, state: str | None, page: int, size: int
    ) -> tuple[int, list[dict[str, Any]]]:
        """One page (from 1) of the ended tasks, newest first: (total matching, tasks)."""
        return self.store.history(
            user=user, plan=plan, state=state, offset=(page - 1) * size, limit=size
        )

    def clear_history(self, identity: Identity) -> int:
        """Forget every ended task; how many."""
        removed = self.store.clear_history()
        log.info("history cleared by %s: %d tasks", identity.subject, removed)
        self.engine.events.publish(
            "history", change="cleared", removed=removed, by=identity.subject
        )
        return removed

    def _publish(self, change: str, identity: Identity, **data: Any) -> None:
        self.engine.events.publish("queue", change=change, by=identity.subject, **data)


def _problem(index: int, exc: Exception) -> dict[str, Any]:
    """One refused request of a batch, in the shape of FastAPI's validation errors."""
    if isinstance(exc, HTTPException):
        status, message = exc.status_code, str(exc.detail)
    else:
        status = 404 if isinstance(exc, UnknownPlanError) else getattr(exc, "status_code", None)
        status = status or (403 if isinstance(exc, PermissionError) else 422)
        message = str(exc)
    return {
        "index": index,
        "loc": ["body", "tasks", index],
        "msg": message,
        "type": type(exc).__name__,
        "status": status,
    }
