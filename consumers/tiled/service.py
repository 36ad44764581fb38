"""``runstream consume tiled``: the consumer runtime with a Tiled writer per run."""

from __future__ import annotations

import argparse
import os

from ..services import ConsumerService
from .writer import MAX_ARRAY_SIZE, connect_catalog, tiled_factory


def _arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--tiled-url", default=os.environ.get("RUNSTREAM_TILED_URL"),
                        help="Tiled server (RUNSTREAM_TILED_URL); API key from "
                        "RUNSTREAM_TILED_API_KEY")  # fmt: skip
    parser.add_argument("--catalog", default="raw", help="catalog container (default raw)")
    parser.add_argument("--batch-rows", type=int, default=10_000,
                        help="rows per table write at most (default 10000)")  # fmt: skip
    parser.add_argument("--max-latency", type=float, default=0.5,
                        help="seconds a row may wait to be written (default 0.5)")  # fmt: skip
    parser.add_argument("--max-array-size", type=int, default=MAX_ARRAY_SIZE,
                        help="internal arrays with more elements become array nodes, "
                        "smaller ones table columns, as TiledWriter's (default "
                        f"{MAX_ARRAY_SIZE}); 0: all arrays as nodes, for SQLite table "
                        "storage (the local server)")  # fmt: skip


def _factories(args: argparse.Namespace) -> list:
    if not args.tiled_url:
        raise ValueError("give --tiled-url or RUNSTREAM_TILED_URL")
    if args.batch_rows < 1 or args.max_latency <= 0:
        raise ValueError("--batch-rows and --max-latency must be positive")
    if args.max_array_size < 0:
        raise ValueError("--max-array-size must be 0 or more")
    catalog = connect_catalog(args.tiled_url, os.environ.get("RUNSTREAM_TILED_API_KEY"),
                              args.catalog)  # fmt: skip
    return [tiled_factory(catalog, args.batch_rows, args.max_latency, args.stop_event,
                          args.max_array_size)]  # fmt: skip


SERVICE = ConsumerService(
    "tiled", "write every run into a Tiled catalog (BlueskyRun layout), live and exactly once",
    _arguments, _factories,
)  # fmt: skip
