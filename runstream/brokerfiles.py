"""What a local broker needs on disk: Kafka's jars from Maven Central, and each node's config.

`broker` runs the nodes; this module only describes them and fetches what they run.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from runstream.schemas.errors import RunstreamError

from .brokersecurity import LISTENER, BrokerSecurity
from .process import Progress, port_open, quiet, runs_with
from .settings import LocalSettings


class BrokerError(RunstreamError, RuntimeError):
    """The local broker could not be fetched, started or stopped; the message says what to do."""


@dataclass(frozen=True)
class Node:
    """One KRaft process (broker and controller) of the local broker or cluster."""

    id: int
    dir: Path
    port: int
    controller_port: int

    @property
    def config(self) -> Path:
        return self.dir / "server.properties"

    @property
    def pidfile(self) -> Path:
        return self.dir / "broker.pid"

    @property
    def log_file(self) -> Path:
        return self.dir / "logs" / "server.log"

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def pid(self) -> int | None:
        """The pid of this node's JVM if it runs (guards against pid reuse)."""
        try:
            pid = int(self.pidfile.read_text())
        except (OSError, ValueError):
            return None
        return pid if runs_with(pid, str(self.config)) else None

    def up(self) -> bool:
        return self.pid() is not None and port_open(self.port)


@dataclass(frozen=True)
class Layout:
    """What ``up`` made: how many nodes, their first ports, and whether it is secure."""

    nodes: int
    port: int
    controller_port: int
    secure: bool


def fetch_kafka_jars(settings: LocalSettings, libs: Path, progress: Progress = quiet) -> Path:
    """Have Maven copy Kafka's jars into ``libs`` (once), and return that folder."""
    done = libs / ".complete"
    if done.exists():
        return libs
    mvn = shutil.which("mvn")
    if mvn is None:
        raise BrokerError(
            "Maven ('mvn') is not on PATH; it fetches Kafka's jars from Maven Central. "
            "Install Maven 3.8+ (Debian: apt-get install maven)."
        )
    pom = settings.kafka_pom
    if not pom.is_file():
        raise BrokerError(
            f"the broker's pom is missing at {pom}; reinstall runstream "
            "or point RUNSTREAM_KAFKA_POM at a pom that lists Kafka's jars"
        )
    progress(
        f"fetching Apache Kafka {settings.kafka_version} jars from Maven Central "
        f"into {libs.parent} (first time only)..."
    )
    partial = libs.with_name("libs.partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    cmd = [
        mvn, "-B", "-q", "-f", str(pom),
        f"-Dkafka.version={settings.kafka_version}",
        "org.apache.maven.plugins:maven-dependency-plugin:3.7.1:copy-dependencies",
        "-DincludeScope=runtime", f"-DoutputDirectory={partial}",
    ]  # fmt: skip
    started = time.monotonic()
    result = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if result.returncode != 0 or not any(partial.glob("kafka_2.13-*.jar")):
        output = (result.stdout + result.stderr).strip().splitlines()[-25:]
        raise BrokerError(
            "Maven could not fetch Kafka's jars from Maven Central (is the network or a "
            "Maven mirror in ~/.m2/settings.xml reachable?). Maven said:\n" + "\n".join(output)
        )
    shutil.rmtree(libs, ignore_errors=True)
    partial.rename(libs)
    done.write_text(settings.kafka_version)
    progress(
        f"fetched {sum(1 for _ in libs.glob('*.jar'))} jars in {time.monotonic() - started:.0f}s"
    )
    return libs


def server_properties(
    node: Node, voters: list[Node], layout: Layout, security: BrokerSecurity
) -> str:
    """One node's server.properties: KRaft on loopback, sized for a small machine."""
    quorum = ",".join(f"{n.id}@127.0.0.1:{n.controller_port}" for n in voters)
    replicas = str(min(3, layout.nodes))
    min_isr = str(max(1, min(3, layout.nodes) - 1))
    client = LISTENER if layout.secure else "PLAINTEXT"
    props = {
        "process.roles": "broker,controller",
        "node.id": str(node.id),
        "controller.quorum.voters": quorum,
        "listeners": f"{client}://127.0.0.1:{node.port},"
        f"CONTROLLER://127.0.0.1:{node.controller_port}",
        "advertised.listeners": f"{client}://127.0.0.1:{node.port}",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": client,
        "listener.security.protocol.map": f"CONTROLLER:PLAINTEXT,{client}:{client}",
        "log.dirs": str(node.dir / "data"),
        "num.partitions": "1",
        "default.replication.factor": replicas,
        "offsets.topic.replication.factor": replicas,
        "offsets.topic.num.partitions": "1",
        "transaction.state.log.replication.factor": replicas,
        "transaction.state.log.min.isr": min_isr,
        "transaction.state.log.num.partitions": "1",
        "share.coordinator.state.topic.replication.factor": replicas,
        "share.coordinator.state.topic.min.isr": min_isr,
        "group.initial.rebalance.delay.ms": "0",
        "num.network.threads": "2",
        "num.io.threads": "2",
        "log.cleaner.dedupe.buffer.size": "16777216",
        "auto.create.topics.enable": "false",
    }
    if layout.secure:
        props.update(security.broker_properties())
    return "".join(f"{k}={v}\n" for k, v in props.items())
