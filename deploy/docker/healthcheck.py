"""The container's health check: GET the ``/healthz`` of the service this container runs.

Standard library only, so the image needs no curl. Which URL to ask:

- ``HEALTHCHECK_URL`` when set (for anything the rules below do not cover);
- ``runstream engine``: ``http://127.0.0.1:<port>/healthz`` with the port from
  ``--port``, else ``RUNSTREAM_ENGINE_PORT``, else 8600;
- ``runstream consume ...``: the health server's port from ``--http-port``, else
  ``RUNSTREAM_HTTP_PORT``; when that is 0 (the server is off) there is nothing to ask
  and the check fails, so turn the server on in any container that is health-checked;
- ``tiled serve ...``: ``--port``, else 8000;
- any other command (``runstream submit``, ``runstream --help``, ...): healthy.

The command is read from ``/proc/1/cmdline``: the container's first process.
Exit code 0 healthy, 1 unhealthy (Docker's convention).
"""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence

ENGINE_PORT = 8600
TILED_PORT = 8000
TIMEOUT_S = 3.0


def _option(args: Sequence[str], name: str) -> str | None:
    for i, arg in enumerate(args):
        if arg == name and i + 1 < len(args):
            return args[i + 1]
        if arg.startswith(name + "="):
            return arg.split("=", 1)[1]
    return None


def _command(argv: Sequence[str]) -> tuple[str, list[str]]:
    """('runstream' | 'tiled' | '', arguments after the program) from a process's argv."""
    for i, arg in enumerate(argv):
        base = os.path.basename(arg)
        if base in ("runstream", "tiled"):
            return base, list(argv[i + 1 :])
    return "", []


def health_url(argv: Sequence[str], env: Mapping[str, str]) -> str | None:
    """The URL to check for a container whose first process has ``argv``; None: nothing to check.

    Raises ValueError when the service should answer but cannot (its health server is off).
    """
    if env.get("HEALTHCHECK_URL"):
        return env["HEALTHCHECK_URL"]
    program, args = _command(argv)
    words = [a for a in args if not a.startswith("-")]
    if program == "runstream" and words[:1] == ["engine"]:
        port = _option(args, "--port") or env.get("RUNSTREAM_ENGINE_PORT") or ENGINE_PORT
        return f"http://127.0.0.1:{int(port)}/healthz"
    if program == "runstream" and words[:1] == ["consume"]:
        port = int(_option(args, "--http-port") or env.get("RUNSTREAM_HTTP_PORT") or 0)
        if port == 0:
            raise ValueError("the consumer's health server is off: set RUNSTREAM_HTTP_PORT")
        return f"http://127.0.0.1:{port}/healthz"
    if program == "tiled" and words[:1] == ["serve"]:
        return f"http://127.0.0.1:{int(_option(args, '--port') or TILED_PORT)}/healthz"
    return None


def first_process_argv() -> list[str]:
    with open("/proc/1/cmdline", "rb") as f:
        return [part.decode() for part in f.read().split(b"\0") if part]


def check(url: str, timeout: float = TIMEOUT_S) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 (http only)
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


def main() -> int:
    try:
        url = health_url(first_process_argv(), os.environ)
    except (OSError, ValueError) as exc:
        print(f"healthcheck: {exc}", file=sys.stderr)
        return 1
    if url is None:
        return 0
    if check(url):
        return 0
    print(f"healthcheck: {url} did not answer 200", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
