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


@cache
def _validator(name: str) -> Callable[[Any], Any]:
    try:
        schema = event_model.schemas[event_model.DocumentNames[name]]
    except KeyError:
        raise ValidationError(name, "no schema for this document name") from None
    return fastjsonschema.compile(_flatten(schema))


def validate(name: str, doc: Mapping[str, Any]) -> None:
    """Raise `ValidationError` naming the offending field if ``doc`` breaks its schema."""
    try:
        _validator(name)(doc)
    except fastjsonschema.JsonSchemaValueException as exc:
        raise ValidationError(name, exc.message) from None
