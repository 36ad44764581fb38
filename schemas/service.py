"""What every runstream service says over HTTP besides its own API.

Both sides keep these: the engine serves its controls, the web view relays them;
the engine, the consumer services and the web view answer health the same way.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, get_args

from typing_extensions import TypedDict  # pydantic reads it on Python 3.11 (answer models)

#: What a caller may ask of a running plan, in the RunEngine's own words.
Control = Literal["pause", "resume", "stop", "abort", "halt"]
CONTROLS: tuple[Control, ...] = get_args(Control)


class Health(TypedDict):
    """The body of ``/healthz`` and ``/readyz``: ok, or the problems that say why not."""

    ok: bool
    problems: list[str]


def health(problems: Sequence[str] = ()) -> tuple[int, Health]:
    """(HTTP status, body) of a health or readiness answer: 200 with no problem, else 503."""
    listed = [str(p) for p in problems]
    return (503 if listed else 200), Health(ok=not listed, problems=listed)
