"""Which plans and devices each role may name in a request: a TOML file of patterns.

The file (``RUNSTREAM_PERMISSIONS_FILE``) has a table per role, as bluesky-queueserver's
user group permissions have one per group::

    [roles.user]
    allowed_plans = ["count", "scan", "rel_.*"]
    forbidden_devices = ["shutter.*"]

    [roles.expert]
    forbidden_plans = ["_.*"]

Patterns are Python regular expressions matched against the whole name (``re.fullmatch``):
``count`` is that plan only, ``rel_.*`` every plan starting ``rel_``. A name is permitted
when it matches an allowed pattern and no forbidden one (forbidden wins). A missing
``allowed_*`` list allows everything, a missing ``forbidden_*`` list forbids nothing, and a
role without a table is not restricted; with no file at all, every registered plan and
device is permitted. Device names are checked as given, with their parents (``motor`` for
``motor.velocity``): a rule on a device covers its components. Devices a plan reaches by
itself (through ``hw``) are not request arguments and are not checked.

A malformed file (bad TOML, an unknown role or key, a pattern that does not compile) is
refused whole: at start the engine does not start, on reload the rules in force stay.
"""

from __future__ import annotations

import functools
import inspect
import logging
import re
import threading
import time
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from runstream.schemas.errors import RunstreamError

from .roles import ROLES, Identity

if TYPE_CHECKING:
    from ..registry import PlanRegistry

logger = logging.getLogger(__name__)

KINDS = ("plans", "devices")
KEYS = tuple(f"{verdict}_{kind}" for kind in KINDS for verdict in ("allowed", "forbidden"))


class PermissionsError(RunstreamError, ValueError):
    """A permissions file that cannot be used; one line naming the file and the problem."""


@dataclass(frozen=True)
class RoleRules:
    """One role's patterns by key (``allowed_plans``...); a key absent is None."""

    role: str
    patterns: dict[str, tuple[re.Pattern[str], ...] | None]

    def refusal(self, kind: str, names: list[str], source: str) -> str | None:
        """Why one of ``names`` (a name and its parents) is refused, or None."""
        allowed = self.patterns.get(f"allowed_{kind}")
        if allowed is not None and not any(p.fullmatch(n) for p in allowed for n in names):
            shown = ", ".join(repr(p.pattern) for p in allowed[:10])
            shown += ", ..." if len(allowed) > 10 else ""
            return (f"is not allowed for role {self.role}: it matches none of allowed_{kind} "
                    f"[{shown}] in {source}")  # fmt: skip
        for pattern in self.patterns.get(f"forbidden_{kind}") or ():
            if any(pattern.fullmatch(n) for n in names):
                return (f"is forbidden for role {self.role} by pattern {pattern.pattern!r} "
                        f"(forbidden_{kind} in {source})")  # fmt: skip
        return None


@dataclass(frozen=True)
class Rules:
    """The rules of one file as loaded (no file: no rules, everything permitted)."""

    path: Path | None = None
    roles: dict[str, RoleRules] = field(default_factory=dict)
    loaded: float = field(default_factory=time.time)

    def describe(self) -> dict[str, dict[str, list[str] | None]]:
        return {
            role: {k: None if v is None else [p.pattern for p in v] for k, v in r.patterns.items()}
            for role, r in self.roles.items()
        }


def parse(path: Path) -> Rules:
    """The rules in ``path``; `PermissionsError` naming the file and the first problem."""

    def bad(problem: str) -> PermissionsError:
        return PermissionsError(f"permissions file {path}: {' '.join(problem.split())}")

    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise bad(f"cannot read it: {exc.strerror or exc}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise bad(f"not valid TOML: {exc}") from None
    extra = sorted(set(data) - {"roles"})
    if extra:
        raise bad(f"unknown top-level key {extra[0]!r} (the rules go under [roles.<role>])")
    tables = data.get("roles", {})
    if not isinstance(tables, dict):
        raise bad("'roles' must be a table of roles")
    roles: dict[str, RoleRules] = {}
    for role, table in tables.items():
        if role not in ROLES:
            raise bad(f"unknown role {role!r}; roles are {', '.join(ROLES)}")
        if not isinstance(table, dict):
            raise bad(f"[roles.{role}] must be a table")
        unknown = sorted(set(table) - set(KEYS))
        if unknown:
            raise bad(f"[roles.{role}]: unknown key {unknown[0]!r}; keys are {', '.join(KEYS)}")
        patterns: dict[str, tuple[re.Pattern[str], ...] | None] = dict.fromkeys(KEYS)
        for key, values in table.items():
            if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
                raise bad(f"[roles.{role}] {key} must be a list of strings")
            try:
                patterns[key] = tuple(re.compile(v) for v in values)
            except re.error as exc:
                raise bad(f"[roles.{role}] {key}: pattern {exc.pattern!r}: {exc}") from None
        roles[role] = RoleRules(role, patterns)
    return Rules(path, roles)


class Permissions:
    """The rules in force; `reload` swaps them only for a file that parses whole."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path
        self._lock = threading.Lock()
        self.rules = parse(path) if path is not None else Rules()
        if path is not None:
            logger.info("permissions from %s: rules for %s", path, sorted(self.rules.roles))

    def reload(self) -> Rules:
        """Read the file again; on `PermissionsError` the rules in force are kept."""
        if self.path is None:
            raise PermissionsError("no permissions file (set RUNSTREAM_PERMISSIONS_FILE)")
        with self._lock:
            self.rules = parse(self.path)
        logger.info("permissions reloaded from %s", self.path)
        return self.rules

    def offers(self, identity: Identity | None, plan: str) -> bool:
        """Whether ``identity`` may submit ``plan`` at all (its devices aside): what
        ``GET /plans`` lists for them, so a form never offers a plan that would be refused."""
        role = identity.role if identity is not None else None
        found = self.rules.roles.get(role) if role is not None else None
        return found is None or found.refusal("plans", [plan], "") is None

    def check(
        self,
        identity: Identity | None,
        plan: str,
        args: list[Any],
        kwargs: dict[str, Any],
        registry: PlanRegistry,
    ) -> str | None:
        """Why ``identity`` may not submit this request, naming the rule; None if it may.

        A plan the registry does not know, or arguments that do not bind, pass here: the
        submission refuses them itself (404, 422).
        """
        rules = self.rules
        role = identity.role if identity is not None else None
        found = rules.roles.get(role) if role is not None else None
        if found is None or plan not in registry.plans:
            return None
        source = str(rules.path)
        why = found.refusal("plans", [plan], source)
        if why:
            return f"plan {plan!r} {why}"
        for param, name in device_arguments(registry, plan, args, kwargs):
            why = found.refusal("devices", lineage(registry, name), source)
            if why:
                return f"device {name!r} (argument {param!r} of plan {plan!r}) {why}"
        return None


def device_arguments(
    registry: PlanRegistry, plan: str, args: list[Any], kwargs: dict[str, Any]
) -> Iterator[tuple[str, str]]:
    """(parameter, name) of every device name in the request, as the registry reads them:
    strings, or strings in lists, given to device parameters."""
    entry = registry.plans[plan]
    try:
        bound = _signature(entry.func).bind_partial(*args, **kwargs)
    except TypeError:
        return
    params = {p.name: p for p in entry.parameters}
    for name, value in bound.arguments.items():
        param = params.get(name)
        if param is None or not param.devices:
            continue
        values = value if param.kind is inspect.Parameter.VAR_POSITIONAL else (value,)
        for v in values:
            for device in _strings(v):
                yield name, device


@functools.lru_cache(maxsize=512)
def _signature(func: Any) -> inspect.Signature:
    return inspect.signature(func)


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, list):
        for v in value:
            yield from _strings(v)


def lineage(registry: PlanRegistry, name: str) -> list[str]:
    """A device name with its parents (``a.b.c``: ``a.b``, ``a``) and the top-level device an
    ophyd-async child name (``stage-x``) belongs to."""
    parts = name.split(".")
    names = [".".join(parts[:i]) for i in range(len(parts), 0, -1)]
    if "-" in name:
        for entry in registry.devices.entries.values():
            if name.startswith(f"{entry.name}-") and entry.asynchronous:
                names.append(entry.name)
    return names
