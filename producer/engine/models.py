"""The engine API's request and answer bodies, and the errors each route documents.

They make the OpenAPI document at /openapi.json; the health answers are the shared
`runstream.schemas.Health`.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from .store import FINAL, PAUSED, QUEUED, RUNNING

TaskState = Literal[QUEUED, RUNNING, PAUSED, *FINAL]  # type: ignore[valid-type]
EndedState = Literal[*FINAL]  # type: ignore[valid-type]
#: The largest page of GET /history.
MAX_PAGE = 500


def as_json(value: Any) -> Any:
    """``value`` with NaN and infinity, which Python's JSON parser reads but JSON lacks, as
    their names."""
    if isinstance(value, float) and value - value != 0:
        return str(value)
    if isinstance(value, list):
        return [as_json(item) for item in value]
    if isinstance(value, dict):
        return {key: as_json(item) for key, item in value.items()}
    return value


def _finite(value: Any) -> Any:
    """Refuse NaN and infinity in a plan's arguments: a task holding one could not be listed."""
    if as_json(value) != value:
        raise ValueError("NaN and infinity are not JSON numbers and are not accepted")
    return value


class TaskRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    plan: str = Field(min_length=1, max_length=200, description="A name from GET /plans")
    args: list[Any] = Field(default_factory=list, max_length=1000)
    kwargs: dict[str, Any] = Field(default_factory=dict)

    _finite_arguments = field_validator("args", "kwargs")(_finite)


class TaskUpdate(BaseModel):
    """New values for a queued task: only the fields given change; checked as a submission."""

    # A field left out is None; a null given is refused by the field's type.

    model_config = ConfigDict(extra="forbid", json_schema_extra={"minProperties": 1})
    plan: str = Field(None, min_length=1, max_length=200)  # type: ignore[assignment]
    args: list[Any] = Field(None, max_length=1000)  # type: ignore[assignment]
    kwargs: dict[str, Any] = None  # type: ignore[assignment]

    _finite_arguments = field_validator("args", "kwargs")(_finite)

    @model_validator(mode="after")
    def _given(self) -> TaskUpdate:
        if not self.model_fields_set:
            raise ValueError("give at least one of plan, args or kwargs")
        return self


class MoveRequest(BaseModel):
    """Where to move a queued task: exactly one of before, after or position."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "oneOf": [{"required": ["before"]}, {"required": ["after"]}, {"required": ["position"]}]
        },
    )
    task_id: str = Field(min_length=1, max_length=200, description="The queued task to move")
    before: str = Field(None, description="Just before this queued task")  # type: ignore[assignment]
    after: str = Field(None, description="Just after this queued task")  # type: ignore[assignment]
    position: int = Field(  # type: ignore[assignment]
        None, ge=0, description="To this place (0 is next; past the end: last)"
    )

    @field_validator("position", mode="before")
    @classmethod
    def _a_number(cls, value: Any) -> Any:
        """A JSON number (2 or 2.0), not a string or a boolean that Python reads as one."""
        if isinstance(value, bool | str):
            raise ValueError(f"position must be a number, not {type(value).__name__}")
        return value

    @model_validator(mode="after")
    def _one_place(self) -> MoveRequest:
        given = [n for n in ("before", "after", "position") if n in self.model_fields_set]
        if len(given) != 1:
            raise ValueError(
                "give exactly one of before (a task id), after (a task id) or position "
                f"(a number), not {' and '.join(given) or 'none'}"
            )
        return self


class BatchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    tasks: list[TaskRequest] = Field(
        min_length=1, max_length=1000, description="Queued in this order, all or none"
    )


class ControlRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: str = Field("", max_length=2000, description="Recorded in the stop documents")
    defer: bool = Field(False, description="pause only: wait for the next checkpoint")


class Submitted(BaseModel):
    task_id: str
    position: int = Field(description="Place in the queue, 0 is next")


class Batched(BaseModel):
    tasks: list[Submitted] = Field(description="The tasks queued, in the order given")


class Validated(BaseModel):
    valid: Literal[True] = Field(description="The request would be accepted; nothing queued")
    plan: str


class Cleared(BaseModel):
    removed: int = Field(description="How many tasks were taken off the queue or forgotten")
    task_ids: list[str] = Field(default_factory=list, description="The tasks taken off the queue")


class Edit(BaseModel):
    """One change to a queued task: who, when, and each changed field before and after."""

    by: str | None
    at: float
    before: dict[str, Any]
    after: dict[str, Any]


class RunRecord(BaseModel):
    """A run a task opened, and how it ended (null while open)."""

    uid: str
    scan_id: int | None = None
    run_key: str | None = None
    parent_uid: str | None = None
    exit_status: str | None = None
    reason: str | None = None


class Task(BaseModel):
    task_id: str
    plan: str
    args: list[Any]
    kwargs: dict[str, Any]
    state: TaskState
    submitted: float
    submitted_by: str | None = Field(None, description="Who queued it (user, key or token)")
    started: float | None = None
    ended: float | None = None
    exit_status: str | None = None
    reason: str | None = None
    runs: list[RunRecord]
    position: int | None = Field(None, description="Place in the queue while queued")
    edits: list[Edit] = Field(default_factory=list, description="Changes made while queued")


class History(BaseModel):
    """A page of ended tasks, newest first."""

    total: int = Field(description="Ended tasks matching the filters, on every page")
    page: int
    size: int
    tasks: list[Task]


class Queue(BaseModel):
    running: bool = Field(description="False: tasks wait until the queue is started")
    tasks: list[Task]


class EngineStatus(BaseModel):
    re_state: str = Field(description="The RunEngine's state (idle, running, paused...)")
    task_id: str | None = Field(description="The task the RunEngine is on")
    queue_running: bool
    queued: int


class PlanDescription(BaseModel):
    model_config = ConfigDict(populate_by_name=True)
    name: str
    description: str
    parameters: dict[str, Any] = Field(
        alias="schema", description="JSON schema of the plan's keyword arguments"
    )
    positional: list[str] = Field(description="Parameters that may be given in args, in order")
    var_positional: str | None = Field(description="The *args parameter, if any")


class DeviceDescription(BaseModel):
    """A top-level device, and whether plans may use it now."""

    model_config = ConfigDict(populate_by_name=True)
    name: str
    type: str = Field(alias="class")
    movable: bool
    description: str
    ophyd_async: bool = Field(description="An ophyd-async device (the engine connects it)")
    connected: bool
    error: str | None = Field(description="Why it did not connect (plans naming it get 422)")


class Problem(BaseModel):
    """Every error answer: what went wrong (a list of field errors for a malformed request)."""

    detail: str | list[dict[str, Any]]


def answers(*codes: int) -> dict[int | str, dict[str, Any]]:
    """The error answers a route documents, each with the `Problem` body."""
    return {code: {"model": Problem, "description": _MEANING[code]} for code in codes}


_MEANING = {
    400: "a body that cannot be read (not UTF-8 JSON)",
    401: "no bearer credential, or one that does not authenticate",
    403: "the caller's role does not allow this",
    404: "no such plan, task or device",
    409: "refused in the engine's present state",
    413: "request body too large",
    422: "malformed request, or arguments the plan refuses",
}
