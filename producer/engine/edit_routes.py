"""The routes that edit the queue (move, update, clear, batch, validate) and the history.

A user changes their own queued tasks, an expert anyone's and the whole queue; observers
read. The refusals of `editing` become answers here: 404 unknown task, 403 not yours,
409 not queued (the app's `ControlError` answer), 422 (or the one status every problem
shares) for a batch, naming each refused task.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated

from fastapi import Depends, FastAPI, HTTPException, Query, Request, status

from .auth import Guard, caller
from .editing import BatchError, NotYoursError, QueueEditor, UnknownTaskError
from .models import (
    MAX_PAGE,
    Batched,
    BatchRequest,
    Cleared,
    EndedState,
    History,
    MoveRequest,
    Submitted,
    Task,
    TaskRequest,
    TaskUpdate,
    Validated,
    answers,
)
from .queue import Engine

log = logging.getLogger(__name__)

WITH_BODY = answers(400, 401, 403, 404, 409, 413, 422)


@contextmanager
def _answering() -> Iterator[None]:
    """The editor's refusals as HTTP answers."""
    try:
        yield
    except UnknownTaskError as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from None
    except NotYoursError as exc:
        raise HTTPException(status.HTTP_403_FORBIDDEN, str(exc)) from None
    except BatchError as exc:
        raise HTTPException(exc.status, exc.problems) from None


def add_queue_edit_routes(app: FastAPI, engine: Engine, guard: Guard) -> None:
    """Move, clear, update, batch and validate: before ``/queue/{action}``, which would
    otherwise take ``/queue/move``."""
    editor = QueueEditor(engine, lambda *request: guard.permit(*request, engine.registry))
    _add_queue_changes(app, editor, guard)
    _add_task_changes(app, editor, guard)


def _add_queue_changes(app: FastAPI, editor: QueueEditor, guard: Guard) -> None:
    user, expert = [Depends(guard.user)], [Depends(guard.expert)]

    @app.post("/queue/move", tags=["queue"], dependencies=user, responses=WITH_BODY)
    def move(request: MoveRequest, http: Request) -> Task:
        """Move a queued task before or after another queued one, or to a position
        (0 is next; past the end: last). Users move their own tasks, experts any.

        403: not the caller's task; 404: no such task; 409: it (or the one named) is not
        queued.
        """
        with _answering():
            task = editor.move(caller(http), request.task_id, before=request.before,
                               after=request.after, position=request.position)  # fmt: skip
        return Task(**task)

    @app.delete("/queue", tags=["queue"], dependencies=expert, responses=answers(401, 403))
    def clear(http: Request) -> Cleared:
        """Take every queued task off the queue (expert); a running task is not touched."""
        removed = editor.clear(caller(http))
        return Cleared(removed=len(removed), task_ids=removed)


def _add_task_changes(app: FastAPI, editor: QueueEditor, guard: Guard) -> None:
    user = [Depends(guard.user)]

    @app.patch("/tasks/{task_id}", tags=["tasks"], dependencies=user, responses=WITH_BODY)
    def update(task_id: str, request: TaskUpdate, http: Request) -> Task:
        """Change a queued task's plan, args or kwargs: checked again as a submission
        (404/422 as there), it keeps its id and place, and the edit is recorded.
        Users change their own tasks, experts any.

        403: not the caller's task, or a plan or device the permissions keep from them;
        404: no such task or plan; 409: the task is no longer queued.
        """
        changes = request.model_dump(include=request.model_fields_set)
        with _answering():
            return Task(**editor.edit(caller(http), task_id, changes))

    @app.post(
        "/tasks/batch", tags=["tasks"], dependencies=user, status_code=201, responses=WITH_BODY
    )
    def batch(request: BatchRequest, http: Request) -> Batched:
        """Queue several tasks in order, all or none (user). A refusal names every refused
        task by its index (``loc``: body, tasks, index) and reason; its status is 422, or
        the one all the problems share (404 unknown plans).

        409: the queue has no room for them all.
        """
        requests = [(t.plan, t.args, t.kwargs) for t in request.tasks]
        with _answering():
            tasks = editor.batch(caller(http), requests)
        return Batched(tasks=[Submitted(task_id=t["task_id"], position=t["position"])
                              for t in tasks])  # fmt: skip

    @app.post("/tasks/validate", tags=["tasks"], dependencies=user, responses=WITH_BODY)
    def validate(request: TaskRequest, http: Request) -> Validated:
        """Check a request as ``POST /tasks`` would (plan, arguments, devices, permission),
        answering as it would, and queue nothing.

        403: the permissions keep the caller from the plan or a device; 404: no plan of
        that name; 422: arguments or devices the plan refuses.
        """
        editor.check(caller(http), request.plan, request.args, request.kwargs)
        return Validated(valid=True, plan=request.plan)


def add_history_routes(app: FastAPI, engine: Engine, guard: Guard) -> None:
    """The ended tasks, paged and filtered; cleared by experts."""
    editor = QueueEditor(engine)

    @app.get(
        "/history", tags=["history"], dependencies=[Depends(guard.read)],
        responses=answers(401, 403, 422),
    )  # fmt: skip
    def history(
        user: Annotated[str | None, Query(max_length=200, description="Who submitted")] = None,
        plan: Annotated[str | None, Query(max_length=200)] = None,
        state: EndedState | None = None,
        page: Annotated[int, Query(ge=1, le=1_000_000, description="From 1")] = 1,
        size: Annotated[int, Query(ge=1, le=MAX_PAGE, description="Tasks a page")] = 50,
    ) -> History:
        """Ended tasks (completed, failed, aborted, removed...), newest first."""
        total, tasks = editor.history(user=user, plan=plan, state=state, page=page, size=size)
        return History(total=total, page=page, size=size, tasks=[Task(**t) for t in tasks])

    @app.delete(
        "/history", tags=["history"], dependencies=[Depends(guard.expert)],
        responses=answers(401, 403),
    )  # fmt: skip
    def clear_history(http: Request) -> Cleared:
        """Forget every ended task (expert); queued, running and paused ones stay."""
        return Cleared(removed=editor.clear_history(caller(http)))
