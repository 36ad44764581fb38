"""Detached service processes with pid files: start checks, liveness, stopping by pid.

The local broker and the local Tiled server run detached from the command
that started them; a later ``down`` stops exactly that process, by pid, never
by name.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import time
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger(__name__)

Progress = Callable[[str], None]


def quiet(_: str) -> None:
    pass


def tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log written)"


def port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def port_open(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def alive(pid: int) -> bool:
    """True if ``pid`` runs and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def runs_with(pid: int, marker: str) -> bool:
    """The live process ``pid`` has ``marker`` among its arguments (guards against pid reuse)."""
    if not alive(pid):
        return False
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return True  # no /proc: trust the pid file
    return any(marker.encode() in arg for arg in cmdline)


def _reap(pid: int) -> None:
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def stop_pid(pid: int, timeout: float) -> None:
    """SIGTERM, wait up to ``timeout``, then SIGKILL."""
    stop_pids([pid], timeout)


def stop_pids(pids: list[int], timeout: float) -> None:
    """SIGTERM to every pid at once, wait up to ``timeout`` for all, then SIGKILL the rest.

    A cluster's nodes are stopped together: one by one, the last would wait for a
    controller quorum that is already gone.
    """
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    left = list(pids)
    while left and time.monotonic() < deadline:
        for pid in left:
            _reap(pid)
        left = [pid for pid in left if alive(pid)]
        if left:
            time.sleep(0.1)
    for pid in left:
        log.warning("pid %d ignored SIGTERM for %.0fs; killing it", pid, timeout)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    for _ in range(50):
        for pid in left:
            _reap(pid)
        left = [pid for pid in left if alive(pid)]
        if not left:
            return
        time.sleep(0.1)
