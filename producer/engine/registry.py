"""Named plans and devices, their JSON schemas, and turning a JSON request into a plan.

A request names a plan and gives JSON arguments; strings in device parameters are
resolved to the devices of that name, typed parameters are checked against their
type hints, and every problem is reported by name before anything runs.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import logging
import types
import typing
from collections.abc import Callable, Generator, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

from pydantic import TypeAdapter
from pydantic import ValidationError as PydanticValidationError

from runstream.schemas.errors import RunstreamError

from . import stock
from .devices import DeviceNotConnectedError, Devices, UnknownDeviceError, gather
from .settings import DEMO_MODULES

log = logging.getLogger(__name__)

Plan = Generator[Any, Any, Any]
#: Parameters the engine supplies itself; never part of a request.
INJECTED = ("hw",)
#: Start-document keys the RunEngine or the engine set; a request's ``md`` may not: the run's
#: task and submitter are the engine's record, and ``uid``/``time`` would fail the run.
ENGINE_METADATA = frozenset({"uid", "time", "task_id", "submitted_by", "run_key", "parent_uid"})
POSITIONAL = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
DEVICE_SCHEMA: dict[str, Any] = {
    "description": "device name, list of device names, or (in scans) numbers",
    "anyOf": [
        {"type": "string"},
        {"type": "number"},
        {"type": "array", "items": {"anyOf": [{"type": "string"}, {"type": "number"}]}},
    ],
}


class RequestError(RunstreamError, ValueError):
    """A plan request the engine cannot run: unknown plan or device, or bad arguments."""


class UnknownPlanError(RequestError):
    """A request names no plan this engine serves (HTTP 404)."""


def _summary(obj: Any) -> str:
    doc = inspect.getdoc(obj) or ""
    return doc.split("\n\n", 1)[0].strip()


def _mentions(annotation: Any, names: tuple[str, ...]) -> bool:
    text = annotation if isinstance(annotation, str) else repr(annotation)
    return any(n in text for n in names)


def _named_values(annotation: Any) -> bool:
    """A JSON object of named values, optional or not (bluesky's ``md: dict[str, Any] |
    None``): its strings are values, not device names, though the hint mentions ``Any``."""
    members = [annotation]
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        members = [a for a in typing.get_args(annotation) if a is not type(None)]
    return bool(members) and all(
        typing.get_origin(m) in (dict, Mapping) and typing.get_args(m)[:1] == (str,)
        for m in members
    )


@dataclass
class Parameter:
    """One plan parameter as the API sees it."""

    name: str
    kind: inspect._ParameterKind
    required: bool
    default: Any
    devices: bool  # strings are device names
    adapter: TypeAdapter | None  # checks JSON values against the type hint

    def schema(self) -> dict[str, Any]:
        if self.devices or self.adapter is None:
            schema = dict(DEVICE_SCHEMA) if self.devices else {}
        else:
            try:
                schema = self.adapter.json_schema()
            except Exception:  # a hint pydantic can check but not describe
                schema = {}
        if not self.required and _jsonable(self.default):
            schema["default"] = self.default
        if self.kind is inspect.Parameter.VAR_POSITIONAL:
            schema = {"type": "array", "items": schema, "description": "positional arguments"}
        return schema


def _jsonable(value: Any) -> bool:
    return value is None or isinstance(value, str | int | float | bool)


@dataclass
class PlanEntry:
    """A named plan: its function, its parameters and what it is for."""

    name: str
    func: Callable[..., Plan]
    parameters: list[Parameter] = field(default_factory=list)
    hidden: set[str] = field(default_factory=set)  # injected or not expressible in JSON

    @classmethod
    def of(cls, name: str, func: Callable[..., Plan]) -> PlanEntry:
        try:
            hints = typing.get_type_hints(func)
        except Exception:  # unresolvable hints: fall back to the raw annotations
            hints = {}
        entry = cls(name, func)
        for p in inspect.signature(func).parameters.values():
            annotation = hints.get(p.name, p.annotation)
            if p.name in INJECTED or p.kind is inspect.Parameter.VAR_KEYWORD:
                entry.hidden.add(p.name)
                continue
            if _mentions(annotation, ("Callable",)):
                entry.hidden.add(p.name)  # functions cannot cross the API
                continue
            devices = annotation is inspect.Parameter.empty or (
                _mentions(annotation, ("Readable", "Movable", "Device", "Any"))
                and not _named_values(annotation)
            )
            adapter = None
            if annotation is not inspect.Parameter.empty and not devices:
                try:
                    adapter = TypeAdapter(annotation)
                except Exception:
                    devices = True
            entry.parameters.append(
                Parameter(
                    p.name,
                    p.kind,
                    p.default is inspect.Parameter.empty
                    and p.kind is not inspect.Parameter.VAR_POSITIONAL,
                    p.default,
                    devices,
                    adapter,
                )
            )
        return entry

    def describe(self) -> dict[str, Any]:
        positional = [p.name for p in self.parameters if p.kind in POSITIONAL]
        var = [p.name for p in self.parameters if p.kind is inspect.Parameter.VAR_POSITIONAL]
        return {
            "name": self.name,
            "description": _summary(self.func),
            "schema": {
                "title": self.name,
                "type": "object",
                "properties": {p.name: p.schema() for p in self.parameters},
                "required": [p.name for p in self.parameters if p.required],
            },
            "positional": positional,
            "var_positional": var[0] if var else None,
        }


class PlanRegistry:
    """The plans and devices an engine serves, with the allow-list applied."""

    def __init__(
        self,
        plans: Mapping[str, Callable[..., Plan]],
        devices: Mapping[str, Any],
        allowed: list[str] | None = None,
    ) -> None:
        unknown = sorted(set(allowed or ()) - set(plans))
        if unknown:
            raise RequestError(f"the plan allow-list names unknown plans: {', '.join(unknown)}")
        names = allowed or sorted(plans)
        self.plans = {n: PlanEntry.of(n, plans[n]) for n in names}
        self.devices = Devices(devices)
        self.hw = SimpleNamespace(**self.devices)

    @classmethod
    def default(
        cls,
        plan_modules: list[str] = DEMO_MODULES,  # type: ignore[assignment]
        device_modules: list[str] = DEMO_MODULES,  # type: ignore[assignment]
        allowed: list[str] | None = None,
        files_dir: Path | None = None,
    ) -> PlanRegistry:
        """Bluesky's standard plans, and the plans and devices of the modules named.

        A device module gives its devices as module-level objects, or by a function
        ``make_devices(files_dir)`` returning them by name (for devices that write
        files, such as `ophyd.sim`'s image detectors); see `devices.gather`.
        """
        devices = gather(map(load_module, device_modules), files_dir)
        plans = dict(stock.standard_plans())
        for module in map(load_module, plan_modules):
            for name, obj in vars(module).items():
                if (
                    not name.startswith("_")
                    and inspect.isgeneratorfunction(obj)
                    and obj.__module__ == module.__name__
                ):
                    plans[name] = obj
        return cls(plans, devices, allowed)

    def build(self, plan: str, args: list[Any], kwargs: dict[str, Any]) -> Plan:
        """Check a request and make its plan; RequestError names the first problem."""
        entry = self.plans.get(plan)
        if entry is None:
            raise UnknownPlanError(f"unknown plan {plan!r}; known: {', '.join(sorted(self.plans))}")
        hidden = sorted(set(kwargs) & entry.hidden)
        if hidden:
            raise RequestError(f"plan {plan!r}: parameter {hidden[0]!r} cannot be given")
        sig = inspect.signature(entry.func)
        try:
            bound = sig.bind_partial(*args, **kwargs)
        except TypeError as exc:
            raise RequestError(f"plan {plan!r}: {exc}") from None
        by_name = {p.name: p for p in entry.parameters}
        missing = [p.name for p in entry.parameters if p.required and p.name not in bound.arguments]
        if missing:
            raise RequestError(f"plan {plan!r}: missing required argument {missing[0]!r}")
        for name, value in list(bound.arguments.items()):
            param = by_name[name]
            if param.kind is inspect.Parameter.VAR_POSITIONAL:
                bound.arguments[name] = tuple(self._value(plan, param, v) for v in value)
            else:
                bound.arguments[name] = self._value(plan, param, value)
        md = bound.arguments.get("md")
        taken = sorted(ENGINE_METADATA.intersection(md)) if isinstance(md, dict) else []
        if taken:
            raise RequestError(f"plan {plan!r}: argument 'md': {taken[0]!r} is set by the engine")
        if "hw" in sig.parameters:
            bound.arguments["hw"] = self.hw
        return entry.func(*bound.args, **bound.kwargs)

    def _value(self, plan: str, param: Parameter, value: Any) -> Any:
        if param.devices:
            return self._devices(plan, param, value)
        assert param.adapter is not None
        try:
            checked = param.adapter.validate_python(value, strict=True)
        except PydanticValidationError as exc:
            first = exc.errors()[0]
            raise RequestError(
                f"plan {plan!r}: argument {param.name!r}: {first['msg']} (got {value!r})"
            ) from None
        return value if isinstance(checked, Iterator) else checked

    def _devices(self, plan: str, param: Parameter, value: Any) -> Any:
        if isinstance(value, str):
            try:
                return self.devices.resolve(value)
            except (UnknownDeviceError, DeviceNotConnectedError) as exc:
                raise RequestError(f"plan {plan!r}: argument {param.name!r}: {exc}") from None
        if isinstance(value, list):
            return [self._devices(plan, param, v) for v in value]
        if isinstance(value, dict):
            raise RequestError(
                f"plan {plan!r}: argument {param.name!r}: expected device names, got an object"
            )
        return value


def load_module(spec: str) -> ModuleType:
    """Import a user module by dotted name or from a ``.py`` file."""
    try:
        if spec.endswith(".py"):
            path = Path(spec)
            name = f"runstream_user_{path.stem}"
            module_spec = importlib.util.spec_from_file_location(name, path)
            if module_spec is None or module_spec.loader is None:
                raise ImportError(f"not a Python file: {spec}")
            module = importlib.util.module_from_spec(module_spec)
            module_spec.loader.exec_module(module)
            return module
        return importlib.import_module(spec)
    except Exception as exc:
        raise RequestError(f"cannot load module {spec!r}: {type(exc).__name__}: {exc}") from None
