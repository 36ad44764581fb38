"""A consumer service's settings in one typed place, overridable by ``RUNSTREAM_*`` variables.

Every service's settings model is `ConsumerSettings`, extended by a settings model of
its own composed in as one field (``web``, ``tiled``, ...) with its own variable prefix,
as `KafkaSettings` is. `build_settings` lays command-line options over the variables.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

from pydantic import Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from runstream import schemas
from runstream.kafka import KafkaSettings, settings_problem

S = TypeVar("S", bound=BaseSettings)


class ConsumerSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="RUNSTREAM_", extra="ignore")

    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    topics: list[str] = Field(default_factory=lambda: [schemas.document_topic("runstream")])
    topic_pattern: str | None = Field(None, description="Regex of topics to follow instead")
    group: str = "runstream"
    from_beginning: bool = Field(False, description="A new group starts at the oldest message")
    validate_documents: bool = Field(True, description="Check documents against event-model")
    idle_timeout: float = Field(3600.0, gt=0, description="Close a run with no news for this long")
    commit_interval: float = Field(1.0, gt=0)
    tick_interval: float = Field(0.2, gt=0)
    batch_size: int = Field(1000, ge=1)
    order_wait: float = Field(
        2.0,
        ge=0,
        description="Seconds a partition with nothing fetched yet may hold back the others' "
        "messages, which are handled in timestamp order across partitions.",
    )
    tune_gc: bool = Field(
        True,
        description="Freeze startup objects and collect young ones less often: every document "
        "makes short-lived containers, and default collection costs ~30% of replay speed.",
    )
    session_timeout_ms: int = Field(10_000, ge=1000)
    http_host: str = "127.0.0.1"
    http_port: int = Field(0, ge=0, le=65535, description="Health and metrics port; 0 = off")


def composed(model: type[BaseSettings]) -> dict[str, type[BaseSettings]]:
    """The settings models composed into ``model``, by field (``kafka``, a service's own)."""
    return {
        name: info.annotation
        for name, info in model.model_fields.items()
        if isinstance(info.annotation, type) and issubclass(info.annotation, BaseSettings)
    }


def build_settings(model: type[S], given: Mapping[str, Any]) -> S:
    """``model`` from ``RUNSTREAM_*`` variables, with the options in ``given`` winning.

    An option names a field of ``model``, or one of a model composed into it by that
    field's own name (``port``) or prefixed by the part's (``kafka_bootstrap``); other
    names are not settings and are left alone. Bad values raise a one-line ValueError
    saying which part and which variable (``bad web settings: port (RUNSTREAM_WEB_PORT)``).
    """
    parts = composed(model)
    own = {k: v for k, v in given.items() if k in model.model_fields and k not in parts}
    per_part: dict[str, dict[str, Any]] = {name: {} for name in parts}
    for key, value in given.items():
        if key not in own and (found := _part_field(key, parts)):
            per_part[found[0]][found[1]] = value
    for name, part in parts.items():
        what = "consumer" if name in ConsumerSettings.model_fields else name
        own[name] = _validated(part, per_part[name], what)
    return _validated(model, own, "consumer")


def _part_field(key: str, parts: dict[str, type[BaseSettings]]) -> tuple[str, str] | None:
    for name, part in parts.items():
        if key in part.model_fields:
            return name, key
    for name, part in parts.items():
        field = key.removeprefix(f"{name}_")
        if field != key and field in part.model_fields:
            return name, field
    return None


def _validated(model: type[S], values: dict[str, Any], what: str) -> S:
    try:
        return model(**values)
    except ValidationError as exc:  # the model, or one composed into it, refused a value
        prefix = _env_prefix(model, exc.title) or "RUNSTREAM_"
        raise ValueError(f"bad {what} settings: {settings_problem(exc, prefix)}") from None


def _env_prefix(model: type[BaseSettings], title: str) -> str | None:
    """The variable prefix of the model called ``title``: ``model`` or one composed into it."""
    if model.__name__ == title:
        return model.model_config.get("env_prefix")
    for part in composed(model).values():
        if (prefix := _env_prefix(part, title)) is not None:
            return prefix
    return None
