"""caproto's example IOCs as subprocesses, on loopback only, each on a port of its own.

Clients (the engine, `pv_value` here) find them through `client_env`: no broadcast, the
IOCs' ports named one by one, so several tests and IOCs share a machine.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from tests.kafka_tools import free_port
from tests.waiting import eventually, process_ended

#: Serving and beaconing on loopback only.
SERVER_ENV = {
    "EPICS_CA_AUTO_ADDR_LIST": "NO",
    "EPICS_CAS_INTF_ADDR_LIST": "127.0.0.1",
    "EPICS_CAS_AUTO_BEACON_ADDR_LIST": "NO",
    "EPICS_CAS_BEACON_ADDR_LIST": "127.0.0.1",
}


class Ioc:
    """One example IOC (``caproto.ioc_examples.<example>``) serving PVs under ``prefix``."""

    def __init__(self, example: str, prefix: str, home: Path, port: int | None = None) -> None:
        self.example, self.prefix = example, prefix
        self.port = port or free_port()
        self.log = home / f"ioc-{prefix.strip(':')}.log"
        self.proc: subprocess.Popen | None = None

    def start(self, answering_pv: str, clients: dict[str, str]) -> None:
        """Start it and wait until ``answering_pv`` (a PV name after the prefix) answers."""
        env = {**os.environ, **SERVER_ENV, "EPICS_CA_SERVER_PORT": str(self.port)}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", f"caproto.ioc_examples.{self.example}",
             "--prefix", self.prefix, "--list-pvs", "--interfaces", "127.0.0.1"],
            env=env, stdout=self.log.open("ab"), stderr=subprocess.STDOUT,
        )  # fmt: skip
        eventually(lambda: pv_value(self.prefix + answering_pv, clients) is not None, 60,
                   lambda: f"{self.prefix}{answering_pv} to answer; the IOC's log:\n"
                           f"{self.log.read_text()[-3000:]}",
                   fail_fast=process_ended(self.proc, lambda: self.log.read_text()[-3000:]),
                   interval=0.5)  # fmt: skip

    def stop(self) -> None:
        """SIGTERM by pid (SIGKILL if it lingers)."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(15)


def client_env(*iocs: Ioc) -> dict[str, str]:
    """What a Channel Access client needs to find exactly these IOCs."""
    return {
        "EPICS_CA_AUTO_ADDR_LIST": "NO",
        "EPICS_CA_ADDR_LIST": " ".join(f"127.0.0.1:{ioc.port}" for ioc in iocs),
    }


def pv_value(pv: str, clients: dict[str, str]) -> str | None:
    """A PV's value as caproto's ``caproto-get`` prints it; None when it does not answer."""
    try:
        done = subprocess.run(
            [sys.executable, "-m", "caproto.commandline.get", "--timeout", "1", pv],
            env={**os.environ, **clients}, capture_output=True, text=True, timeout=20,
        )  # fmt: skip
    except subprocess.TimeoutExpired:  # seen once in a loaded full suite: not answering yet
        return None
    if done.returncode != 0:
        return None
    return done.stdout.split(maxsplit=1)[1].strip() if done.stdout.strip() else None
