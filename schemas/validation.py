"""Fast validation against event-model's JSON schemas.

event-model's own validators (jsonschema) manage a few thousand events per
second; fastjsonschema compiles each schema to Python and is ~50x faster. It
knows no draft 2020-12 ``unevaluatedProperties``, so schemas of the shape
``allOf: [$ref] + unevaluatedProperties`` are flattened into the equivalent
``properties + additionalProperties`` before compiling.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from functools import cache
from typing import Any

import event_model
import fastjsonschema

from .errors import ValidationError


def _flatten(schema: dict[str, Any]) -> dict[str, Any]:
    schema = copy.deepcopy(schema)
    if "unevaluatedProperties" not in schema:
        return schema
    properties = schema.setdefault("properties", {})
    required = set(schema.get("required", []))
    for part in schema.pop("allOf", []):
        ref = part["$ref"].rsplit("/", 1)[-1]
        partial = schema["$defs"][ref]
        properties.update(partial.get("properties", {}))
        required |= set(partial.get("required", []))
    schema["required"] = sorted(required)
    schema["additionalProperties"] = schema.pop("unevaluatedProperties")
    return schema


_SIMPLE_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "object": (dict,),
    "array": (list, tuple),
    "boolean": (bool,),
}
_NOTES = {"title", "description"}


def _fast_check(schema: dict[str, Any]) -> Callable[[Any], bool] | None:
    """A quick yes for the common, valid case of a flat object schema; None if not flat.

    It answers True only when the document surely passes (required keys there,
    no unknown keys, each value of its property's simple type, or passing that
    property's own compiled validator); otherwise the full validator decides
    and words the error. Events are ~80% of a stream, so this is where the
    time goes.
    """
    if schema.get("type") != "object" or schema.get("additionalProperties") is not False:
        return None
    if "patternProperties" in schema or "$ref" in str(schema.get("properties")):
        return None
    required = frozenset(schema.get("required", ()))
    allowed = frozenset(schema["properties"])
    checks: dict[str, Any] = {}
    for key, sub in schema["properties"].items():
        rest = set(sub) - _NOTES
        kind = sub.get("type")
        if kind in _SIMPLE_TYPES and (
            rest == {"type"} or (kind == "object" and sub.get("additionalProperties") is True
                                 and rest == {"type", "additionalProperties"})
        ):  # fmt: skip
            checks[key] = _SIMPLE_TYPES[kind]
        else:
            checks[key] = fastjsonschema.compile(sub, use_default=False)

    def quick(doc: Any) -> bool:
        if type(doc) is not dict:
            return False
        keys = doc.keys()
        if not (required <= keys and keys <= allowed):
            return False
        for key, value in doc.items():
            check = checks[key]
            if type(check) is tuple:
                if not isinstance(value, check) or (type(value) is bool and bool not in check):
                    return False
            else:
                try:
                    check(value)
                except fastjsonschema.JsonSchemaValueException:
                    return False
        return True

    return quick


@cache
def _validators(name: str) -> tuple[Callable[[Any], bool] | None, Callable[[Any], Any]]:
    schema = _flatten(_schema(name))
    return _fast_check(schema), fastjsonschema.compile(schema, use_default=False)


def _schema(name: str) -> dict[str, Any]:
    try:
        return event_model.schemas[event_model.DocumentNames[name]]
    except KeyError:
        raise ValidationError(name, "no schema for this document name") from None


def validate(name: str, doc: Mapping[str, Any]) -> None:
    """Raise `ValidationError` naming the offending field if ``doc`` breaks its schema."""
    quick, full = _validators(name)
    if quick is not None and quick(doc):
        return
    try:
        full(doc)
    except fastjsonschema.JsonSchemaValueException as exc:
        raise ValidationError(name, exc.message) from None
