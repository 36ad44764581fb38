"""Who is calling and what they may do: four roles, each including the ones below it.

observer reads; user submits, cancels their own tasks and pauses; expert edits and
controls the whole queue (resume, stop, abort, halt); admin issues API keys. A token's
roles come from a claim (a dotted path, e.g. ``realm_access.roles`` or ``groups``), a key's
from its scopes; the highest one counts.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

Role = Literal["observer", "user", "expert", "admin"]
#: The roles from least to most allowed.
ROLES: tuple[Role, ...] = get_args(Role)


def rank(role: Role | None) -> int:
    """The role's place in `ROLES` (-1 for none): a higher one may do all a lower may."""
    return -1 if role is None else ROLES.index(role)


def highest(names: Iterable[str], prefix: str = "") -> Role | None:
    """The highest role among ``names`` (provider roles, groups or key scopes).

    A group path's leading ``/`` (Keycloak's full group paths) and ``prefix`` (e.g. a
    facility's ``runstream-``) are taken off first; names that are no role are ignored.
    """
    found: Role | None = None
    for name in names:
        bare = name.lstrip("/") if isinstance(name, str) else ""
        if prefix and not bare.startswith(prefix):
            continue
        bare = bare[len(prefix) :]
        if bare in ROLES and rank(bare) > rank(found):  # type: ignore[arg-type]
            found = bare  # type: ignore[assignment]
    return found


#: Subjects the engine gives callers who are not a provider's people: the shared token,
#: no credential, API keys (``key:``) and `runstream keys` (``cli:``).
RESERVED = ("token", "anonymous")
RESERVED_PREFIXES = ("key:", "cli:", "oidc:")


def person(username: str) -> str:
    """A provider's user name as a subject, never one the engine gives others: a user
    named ``token`` or ``key:robot`` is recorded as ``oidc:token``, ``oidc:key:robot``."""
    if username in RESERVED or username.startswith(RESERVED_PREFIXES):
        return f"oidc:{username}"
    return username


def claim(claims: dict[str, Any], path: str) -> list[str]:
    """The names at a dotted ``path`` of the claims: a list, or one string; [] if absent."""
    value: Any = claims
    for part in path.split("."):
        if not isinstance(value, dict) or part not in value:
            return []
        value = value[part]
    if isinstance(value, str):
        return [value]
    return [v for v in value if isinstance(v, str)] if isinstance(value, list) else []


@dataclass(frozen=True)
class Identity:
    """An authenticated caller: ``subject`` is what tasks record as ``submitted_by``."""

    subject: str
    via: Literal["token", "oidc", "key"]
    role: Role | None
    name: str = ""
    expires: float | None = None
    details: dict[str, Any] = field(default_factory=dict)

    def may(self, role: Role) -> bool:
        """This caller's role is ``role`` or above."""
        return rank(self.role) >= rank(role)
