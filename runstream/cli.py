"""The ``runstream`` command: one entry point, one subcommand per job."""

from __future__ import annotations

import argparse
import logging
import sys
import typing
from collections.abc import Sequence

from runstream.schemas.errors import RunstreamError

log = logging.getLogger("runstream")
OUR_LOGGERS = ("runstream",)


class OneLineParser(argparse.ArgumentParser):
    """Bad command-line input is one line (and exit code 2), not the usage block."""

    def error(self, message: str) -> typing.NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="runstream",
        description="Bluesky documents over Kafka, routed per run.",
    )
    parser.add_argument(
        "-v", "--verbose", action="count", default=0,
        help="more logging (-v: ours at DEBUG, -vv: every library's)",
    )  # fmt: skip
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for register in _extensions():
        register(sub)
    return parser


def _extensions():
    """Subcommands defined next to the code they run."""
    from . import commands

    return commands.REGISTRY


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose > 1 else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    for ours in OUR_LOGGERS:  # our own progress at INFO; other libraries' only when asked
        logging.getLogger(ours).setLevel(logging.DEBUG if args.verbose else logging.INFO)
    try:
        return int(args.func(args) or 0)
    except RunstreamError as exc:  # every failure we expect: one line, never a traceback
        print(f"runstream: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
