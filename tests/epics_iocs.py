"""caproto's example IOCs as subprocesses, on loopback only, each on a port of its own.

Clients (the engine) find them through `client_env`: no broadcast, the IOCs' ports named
one by one, so several tests and IOCs share a machine. The tests wait for an IOC with
`pv_value`, which asks that IOC's port directly.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import caproto as ca

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

    def start(self, answering_pv: str) -> None:
        """Start it (again, on the same port) and wait until ``answering_pv`` (a PV name
        after the prefix) answers; generous, as a loaded machine starts Python slowly."""
        env = {**os.environ, **SERVER_ENV, "EPICS_CA_SERVER_PORT": str(self.port)}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", f"caproto.ioc_examples.{self.example}",
             "--prefix", self.prefix, "--list-pvs", "--interfaces", "127.0.0.1"],
            env=env, stdout=self.log.open("ab"), stderr=subprocess.STDOUT,
        )  # fmt: skip
        eventually(lambda: pv_value(self.prefix + answering_pv, self.port) is not None, 120,
                   lambda: f"{self.prefix}{answering_pv} to answer; the IOC's log:\n"
                           f"{self.log.read_text()[-3000:]}",
                   fail_fast=process_ended(self.proc, lambda: self.log.read_text()[-3000:]),
                   interval=0.5)  # fmt: skip

    def kill(self) -> None:
        """SIGKILL by pid: the IOC vanishes mid-work, as in a crash or a power cut."""
        assert self.proc is not None and self.proc.poll() is None
        self.proc.kill()
        self.proc.wait(15)

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


def pv_value(pv: str, port: int, timeout: float = 2.0) -> Any:
    """A PV's value as the IOC on ``127.0.0.1:port`` serves it; None while it does not answer.

    caproto's sans-I/O client over one TCP connection straight to that IOC: no search, no
    subprocess, nothing from the environment, so a loaded machine only makes it slower.
    """
    try:
        with socket.create_connection(("127.0.0.1", port), timeout) as sock:
            sock.settimeout(timeout)
            return _read(sock, ca.VirtualCircuit(ca.CLIENT, ("127.0.0.1", port), 0), pv, timeout)
    except OSError:  # refused (not listening yet), reset, or silent past the timeout
        return None


def _read(sock: socket.socket, circuit: ca.VirtualCircuit, pv: str, timeout: float) -> Any:
    chan = ca.ClientChannel(pv, circuit)
    sock.sendall(b"".join(circuit.send(
        ca.VersionRequest(0, ca.DEFAULT_PROTOCOL_VERSION), chan.host_name("localhost"),
        chan.client_name("runstream-tests"), chan.create())))  # fmt: skip
    request = None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        received = sock.recv(65536)
        if not received:
            return None
        commands, _ = circuit.recv(received)
        for command in commands:
            circuit.process_command(command)
            if isinstance(command, ca.CreateChFailResponse):
                return None
            if isinstance(command, ca.ReadNotifyResponse) and command.ioid == request.ioid:
                return command.data
        if request is None and chan.states[ca.CLIENT] is ca.CONNECTED:
            request = chan.read()
            sock.sendall(b"".join(circuit.send(request)))
    return None
