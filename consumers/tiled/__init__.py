"""The Tiled writer: every run into a Tiled catalog in the Bluesky layout, live, exactly once.

Its names load on first use: Tiled's and bluesky-tiled-plugins' clients take seconds to
import, and every ``runstream`` command would pay for them.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .run import connect_catalog
    from .writer import RunWriter, tiled_factory

#: Each public name, by the module that defines it.
_MODULES = {"RunWriter": ".writer", "tiled_factory": ".writer", "connect_catalog": ".run"}
__all__ = ["RunWriter", "connect_catalog", "tiled_factory"]


def __getattr__(name: str) -> Any:
    if name in _MODULES:
        return getattr(importlib.import_module(_MODULES[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
