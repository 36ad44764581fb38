"""The Tiled writer: every run into a Tiled catalog in the Bluesky layout, live, exactly once.

Its names load on first use: Tiled's and bluesky-tiled-plugins' clients take seconds to
import, and every ``runstream`` command would pay for them.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .writer import RunWriter, connect_catalog, tiled_factory

__all__ = ["RunWriter", "connect_catalog", "tiled_factory"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        return getattr(importlib.import_module(".writer", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
