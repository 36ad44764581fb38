"""The plans every engine serves: Bluesky's standard plans (the demo plans load as modules)."""

from __future__ import annotations

from collections.abc import Callable, Generator
from typing import Any

import bluesky.plans as bp

Plan = Generator[Any, Any, Any]

STANDARD = (
    "count",
    "scan",
    "rel_scan",
    "list_scan",
    "rel_list_scan",
    "grid_scan",
    "rel_grid_scan",
    "log_scan",
    "rel_log_scan",
    "spiral",
    "tune_centroid",
)


def standard_plans() -> dict[str, Callable[..., Plan]]:
    return {name: getattr(bp, name) for name in STANDARD if hasattr(bp, name)}
