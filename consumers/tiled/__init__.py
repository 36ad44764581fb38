"""The Tiled writer: every run into a Tiled catalog in the Bluesky layout, live, exactly once."""

from .writer import RunWriter, connect_catalog, tiled_factory

__all__ = ["RunWriter", "connect_catalog", "tiled_factory"]
