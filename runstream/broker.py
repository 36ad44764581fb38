"""A local KRaft Apache Kafka broker, or a cluster of N, from Maven Central jars.

No Docker and no tarball: Maven copies the broker's jars into a cache shared by
every state directory, each node's store is formatted once, and each JVM runs
detached with its pid recorded so that `down` stops exactly the nodes `up`
started. One node keeps its files in ``<home>/kafka``; a cluster's node i in
``<home>/kafka/node-i``, client port ``port + i - 1`` and controller port
``controller_port + i - 1``, every node a broker and a voter of the controller
quorum. ``--secure`` serves the client listener with TLS and SCRAM-SHA-512
(see `brokersecurity`); the controller listener stays plaintext on loopback.
"""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from .brokerfiles import BrokerError, Layout, Node, fetch_kafka_jars, server_properties
from .brokersecurity import BrokerSecurity, write_private
from .process import Progress, port_free, port_open, quiet, stop_pids, tail
from .settings import KAFKA_RESOURCES, LocalSettings

#: Heap of each JVM: one node alone, or each node of a cluster (measured: see the README).
SINGLE_HEAP = "512m"
CLUSTER_HEAP = "384m"


def cluster_id() -> str:
    """16 random bytes, base64url without padding, never starting with '-'."""
    while True:
        cid = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cid.startswith("-"):
            return cid


@dataclass
class LocalBroker:
    settings: LocalSettings

    @property
    def dir(self) -> Path:
        return self.settings.home / "kafka"

    @property
    def libs(self) -> Path:
        return self.settings.cache / f"kafka-{self.settings.kafka_version}" / "libs"

    @property
    def _statefile(self) -> Path:
        return self.dir / "broker.json"

    @property
    def security(self) -> BrokerSecurity:
        return BrokerSecurity(self.dir)

    @property
    def log_file(self) -> Path:
        return self.nodes()[0].log_file

    # -- layout ---------------------------------------------------------------

    def _recorded(self) -> Layout | None:
        try:
            state = json.loads(self._statefile.read_text())
            return Layout(
                int(state.get("nodes", 1)),
                int(state["port"]),
                int(state["controller_port"]),
                bool(state.get("secure", False)),
            )
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def layout(self) -> Layout:
        """The layout asked for; what the state directory holds fills what was not asked."""
        s, recorded = self.settings, self._recorded()
        nodes = s.broker_nodes or (recorded.nodes if recorded else 1)
        secure = bool(recorded and recorded.secure) if s.broker_secure is None else s.broker_secure
        if recorded and not {"broker_port", "broker_controller_port"} & s.model_fields_set:
            return Layout(nodes, recorded.port, recorded.controller_port, secure)
        return Layout(nodes, s.broker_port, s.broker_controller_port, secure)

    def nodes(self, layout: Layout | None = None) -> list[Node]:
        layout = layout or self.layout()
        if layout.nodes == 1:
            return [Node(1, self.dir, layout.port, layout.controller_port)]
        return [
            Node(i, self.dir / f"node-{i}", layout.port + i - 1, layout.controller_port + i - 1)
            for i in range(1, layout.nodes + 1)
        ]

    def client_settings(self) -> dict[str, str]:
        """librdkafka settings a client needs beyond bootstrap.servers (TLS and SCRAM if secure)."""
        return self.security.client_settings() if self.layout().secure else {}

    # -- status ---------------------------------------------------------------

    def status(self) -> str | None:
        """The bootstrap list of the running local broker or cluster, or None."""
        nodes = self.nodes()
        if all(node.up() for node in nodes):
            return ",".join(node.address for node in nodes)
        return None

    def pids(self) -> dict[int, int | None]:
        """Node id -> pid of its running JVM (None when that node is down)."""
        return {node.id: node.pid() for node in self.nodes()}

    def fetch_jars(self, progress: Progress = quiet) -> Path:
        """Have Maven copy Kafka's jars into the cache (once), and return their folder."""
        return fetch_kafka_jars(self.settings, self.libs, progress)

    def _write_config(self, node: Node, layout: Layout) -> Path:
        # Mode 0600: a secure broker's config holds the SCRAM password.
        text = server_properties(node, self.nodes(layout), layout, self.security)
        write_private(node.config, text)
        return node.config

    def _java(self) -> str:
        java = shutil.which("java")
        if java is None:
            raise BrokerError(
                "'java' is not on PATH; the local Kafka broker needs a JDK 17+ "
                "(Debian: apt-get install openjdk-17-jre-headless)."
            )
        return java

    def _format(self, java: str, node: Node, libs: Path, cid: str, layout: Layout) -> None:
        if (node.dir / "data" / "meta.properties").exists():
            return
        args = ["kafka.tools.StorageTool", "format", "-t", cid, "-c", str(node.config)]
        if layout.secure:
            args += ["--add-scram", self.security.scram_argument()]
        # The arguments go through a java @argfile of mode 0600: the SCRAM password never
        # shows in the process list.
        argfile = node.dir / "format.args"
        write_private(argfile, "\n".join(f'"{a}"' for a in args) + "\n")
        try:
            result = subprocess.run(
                [java, "-cp", f"{libs}/*", f"@{argfile}"],
                capture_output=True, text=True, check=False,
            )  # fmt: skip
        finally:
            argfile.unlink(missing_ok=True)
        if result.returncode != 0:
            output = (result.stdout + result.stderr)[-3000:]
            raise BrokerError(f"formatting node {node.id}'s storage failed:\n{output}")

    def _check_state(self, layout: Layout) -> None:
        """A formatted store keeps its node count and its SCRAM users: say so, change nothing."""
        recorded = self._recorded()
        if recorded is None:
            return
        made = self.nodes(recorded)
        if not any((n.dir / "data" / "meta.properties").exists() for n in made):
            return
        if recorded.nodes != layout.nodes or recorded.secure != layout.secure:

            def describe(x: Layout) -> str:
                return f"{x.nodes} node(s), {'secure' if x.secure else 'plaintext'}"

            raise BrokerError(
                f"{self.dir} holds a broker made with {describe(recorded)}, not "
                f"{describe(layout)}; use another state directory (RUNSTREAM_HOME / --home) "
                "or the same options"
            )

    def up(self, progress: Progress = quiet) -> str:
        """Start every node that is not running; return the bootstrap list."""
        layout = self.layout()
        self._check_state(layout)
        nodes = self.nodes(layout)
        running = {node.id for node in nodes if node.up()}
        if len(running) == len(nodes):
            address = ",".join(node.address for node in nodes)
            progress(f"a local broker is already up at {address}")
            return address
        for node in nodes:
            pid = node.pid()
            if node.id not in running and pid is not None:
                raise BrokerError(
                    f"node {node.id} of the broker in {self.dir} (pid {pid}) runs but does not "
                    f"answer; stop it with 'runstream broker down' and look at {node.log_file}"
                )
        java = self._java()
        starting = [node for node in nodes if node.id not in running]
        for node in starting:
            for p in (node.port, node.controller_port):
                if not port_free(p):
                    raise BrokerError(
                        f"port {p} on 127.0.0.1 is taken by another process; choose free ports "
                        "with --port/--controller-port (RUNSTREAM_BROKER_PORT, "
                        "RUNSTREAM_BROKER_CONTROLLER_PORT)"
                    )
        libs = self.fetch_jars(progress)
        if layout.secure:
            self.security.ensure()
        self.dir.mkdir(parents=True, exist_ok=True)
        self._statefile.write_text(json.dumps({
            "nodes": layout.nodes, "port": layout.port,
            "controller_port": layout.controller_port, "secure": layout.secure,
        }))  # fmt: skip
        cid = cluster_id()
        procs = {}
        for node in starting:
            (node.dir / "logs").mkdir(parents=True, exist_ok=True)
            self._write_config(node, layout)
            self._format(java, node, libs, cid, layout)
        for node in starting:
            procs[node.id] = self._start(java, node, libs, layout)
        self._wait_ready(nodes, procs, progress)
        address = ",".join(node.address for node in nodes)
        pids = ", ".join(str(p.pid) for p in procs.values())
        what = "broker" if layout.nodes == 1 else f"{layout.nodes}-node cluster"
        progress(f"{what} up{' (TLS + SCRAM-SHA-512)' if layout.secure else ''} (pid {pids})")
        if layout.secure:
            progress(f"client settings (librdkafka, JSON) in {self.security.client_file}")
        return address

    def _start(self, java: str, node: Node, libs: Path, layout: Layout) -> subprocess.Popen:
        heap = self.settings.broker_heap or (SINGLE_HEAP if layout.nodes == 1 else CLUSTER_HEAP)
        log4j = KAFKA_RESOURCES / "log4j2.properties"
        cmd = [
            java, f"-Xms{heap}", f"-Xmx{heap}",
            "-XX:+UseG1GC", f"-Dlog4j2.configurationFile={log4j}",
            f"-Dkafka.logs.dir={node.dir / 'logs'}",
            "-cp", f"{libs}/*", "kafka.Kafka", str(node.config),
        ]  # fmt: skip
        with open(node.dir / "logs" / "stdout.log", "ab") as out:
            proc = subprocess.Popen(
                cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                cwd=node.dir, start_new_session=True,
            )  # fmt: skip
        node.pidfile.write_text(str(proc.pid))
        return proc

    def _wait_ready(
        self, nodes: list[Node], procs: dict[int, subprocess.Popen], progress: Progress
    ) -> None:
        started = time.monotonic()
        deadline = started + self.settings.broker_start_timeout
        bootstrap = ",".join(node.address for node in nodes)
        client = self.client_settings()
        said = 0.0
        while time.monotonic() < deadline:
            for node in nodes:
                proc = procs.get(node.id)
                if proc is not None and proc.poll() is not None:
                    others = [p.pid for i, p in procs.items() if i != node.id]
                    stop_pids(others, timeout=10)
                    node.pidfile.unlink(missing_ok=True)
                    raise BrokerError(
                        f"the broker (node {node.id}) exited at start (code {proc.returncode}). "
                        f"Tail of {node.log_file}:\n{tail(node.log_file)}\n"
                        f"Tail of stdout:\n{tail(node.dir / 'logs' / 'stdout.log', 15)}"
                    )
            if all(port_open(n.port) for n in nodes) and broker_answers(
                bootstrap, client, len(nodes)
            ):
                return
            waited = time.monotonic() - started
            if waited - said >= 5:
                progress(f"waiting for the broker to answer ({waited:.0f}s)...")
                said = waited
            time.sleep(0.25)
        stop_pids([p.pid for p in procs.values()], timeout=10)
        raise BrokerError(
            f"the broker did not answer within {self.settings.broker_start_timeout:.0f}s. "
            f"Tail of {nodes[0].log_file}:\n{tail(nodes[0].log_file)}"
        )

    # -- down -----------------------------------------------------------------

    def down(self, progress: Progress = quiet, timeout: float = 30.0) -> bool:
        """Stop every node `up` started (by pid, all at once); False if none was running."""
        nodes = self.nodes()
        running = {node.id: pid for node in nodes if (pid := node.pid()) is not None}
        for node in nodes:
            if node.id not in running:
                node.pidfile.unlink(missing_ok=True)
        if not running:
            progress("no local broker is running")
            return False
        progress(f"stopping the broker (pid {', '.join(map(str, running.values()))})...")
        stop_pids(list(running.values()), timeout)
        for node in nodes:
            node.pidfile.unlink(missing_ok=True)
        progress("broker stopped")
        return True


def broker_answers(bootstrap: str, client: dict | None = None, brokers: int = 1) -> bool:
    """Metadata lists at least ``brokers`` brokers (they are unfenced and serving)."""
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": bootstrap, "log_level": 0, **(client or {})})
    try:
        return len(admin.list_topics(timeout=2).brokers) >= brokers
    except Exception:
        return False
