"""Registry of the subcommands that live beside the services they run."""

from __future__ import annotations

import argparse
from collections.abc import Callable

Register = Callable[[argparse._SubParsersAction], None]

REGISTRY: list[Register] = []
