"""caproto's example IOCs as subprocesses, on loopback only, each on a port of its own.

Clients (the engine) find them through `client_env`: no broadcast, the IOCs' ports named
one by one, so several tests and IOCs share a machine. The tests wait for an IOC with
`pv_value`, which finds a PV as those clients do: a search sent to the IOC's UDP port,
then a read over TCP on the port the IOC answers with.

That port is not always the one asked for: a caproto IOC whose ``EPICS_CA_SERVER_PORT``
is taken on TCP (by any process's connection, between `free_port` and the IOC's start or
restart) listens on a random port instead and says so in its search replies. Reading the
asked-for port directly then waited two minutes on an IOC that was up and serving, and
failed the setup: likely in the full suite, where many processes open connections.
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


ROOT = Path(__file__).resolve().parents[1]


class Ioc:
    """One example IOC (``caproto.ioc_examples.<example>``, or a module of ours named with its
    dots, given ``args`` of its own) serving PVs under ``prefix``."""

    def __init__(self, example: str, prefix: str, home: Path, port: int | None = None,
                 args: tuple[str, ...] = ()) -> None:  # fmt: skip
        self.example, self.prefix, self.args = example, prefix, args
        self.module = example if "." in example else f"caproto.ioc_examples.{example}"
        self.port = port or free_port()
        self.log = home / f"ioc-{prefix.strip(':')}.log"
        self.proc: subprocess.Popen | None = None

    def start(self, answering_pv: str) -> None:
        """Start it (again, on the same port) and wait until ``answering_pv`` (a PV name
        after the prefix) answers; generous, as a loaded machine starts Python slowly."""
        env = {**os.environ, **SERVER_ENV, "EPICS_CA_SERVER_PORT": str(self.port)}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", self.module, "--prefix", self.prefix, "--list-pvs",
             "--interfaces", "127.0.0.1", *self.args],
            env=env, stdout=self.log.open("ab"), stderr=subprocess.STDOUT, cwd=ROOT,
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
    """A PV's value as the IOC searched on ``127.0.0.1:port`` serves it; None while it does
    not answer.

    caproto's sans-I/O client, as a Channel Access client finds a PV: no subprocess and
    nothing from the environment, so a loaded machine only makes it slower.
    """
    try:
        served_on = _search(pv, port, timeout)
        if served_on is None:
            return None
        with socket.create_connection(("127.0.0.1", served_on), timeout) as sock:
            sock.settimeout(timeout)
            circuit = ca.VirtualCircuit(ca.CLIENT, ("127.0.0.1", served_on), 0)
            return _read(sock, circuit, pv, timeout)
    except OSError:  # refused (not listening yet), reset, or silent past the timeout
        return None


def _search(pv: str, port: int, timeout: float) -> int | None:
    """The TCP port of the IOC that answers a search for ``pv`` on UDP ``127.0.0.1:port``."""
    broadcaster = ca.Broadcaster(ca.CLIENT)
    search = broadcaster.send(ca.VersionRequest(0, ca.DEFAULT_PROTOCOL_VERSION),
                              ca.SearchRequest(pv, 1, ca.DEFAULT_PROTOCOL_VERSION))  # fmt: skip
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        udp.settimeout(timeout)
        udp.sendto(search, ("127.0.0.1", port))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            received, address = udp.recvfrom(ca.MAX_UDP_RECV)
            for command in broadcaster.recv(received, address):
                if isinstance(command, ca.SearchResponse) and command.cid == 1:
                    return command.port
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
