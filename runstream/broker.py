"""A single-node KRaft Apache Kafka broker from Maven Central jars, for local use and tests.

No Docker and no tarball: Maven copies the broker's jars into a cache shared by
every state directory, the store is formatted once, and the JVM runs detached
with its pid recorded so that `down` stops exactly the broker `up` started.
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

from runstream.schemas.errors import RunstreamError

from .process import Progress, port_free, port_open, quiet, runs_with, stop_pid, tail
from .settings import KAFKA_RESOURCES, LocalSettings


class BrokerError(RunstreamError, RuntimeError):
    """The local broker could not be fetched, started or stopped; the message says what to do."""


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
    def _pidfile(self) -> Path:
        return self.dir / "broker.pid"

    @property
    def _statefile(self) -> Path:
        return self.dir / "broker.json"

    @property
    def log_file(self) -> Path:
        return self.dir / "logs" / "server.log"

    # -- status ---------------------------------------------------------------

    def _recorded(self) -> dict | None:
        try:
            state = json.loads(self._statefile.read_text())
            pid = int(self._pidfile.read_text())
        except (OSError, ValueError):
            return None
        state["pid"] = pid
        return state

    def _ours(self, pid: int) -> bool:
        """The pid is a live JVM running our server.properties (guards against pid reuse)."""
        return runs_with(pid, str(self.dir / "server.properties"))

    def status(self) -> str | None:
        """The bootstrap address of the running local broker, or None."""
        state = self._recorded()
        if state and self._ours(state["pid"]) and port_open(state["port"]):
            return f"127.0.0.1:{state['port']}"
        return None

    # -- up -------------------------------------------------------------------

    def fetch_jars(self, progress: Progress = quiet) -> Path:
        """Have Maven copy Kafka's jars into the cache (once), and return their folder."""
        done = self.libs / ".complete"
        if done.exists():
            return self.libs
        mvn = shutil.which("mvn")
        if mvn is None:
            raise BrokerError(
                "Maven ('mvn') is not on PATH; it fetches Kafka's jars from Maven Central. "
                "Install Maven 3.8+ (Debian: apt-get install maven)."
            )
        pom = self.settings.kafka_pom
        if not pom.is_file():
            raise BrokerError(
                f"the broker's pom is missing at {pom}; reinstall runstream "
                "or point RUNSTREAM_KAFKA_POM at a pom that lists Kafka's jars"
            )
        progress(
            f"fetching Apache Kafka {self.settings.kafka_version} jars from Maven Central "
            f"into {self.libs.parent} (first time only)..."
        )
        partial = self.libs.with_name("libs.partial")
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True)
        cmd = [
            mvn, "-B", "-q", "-f", str(pom),
            f"-Dkafka.version={self.settings.kafka_version}",
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
        shutil.rmtree(self.libs, ignore_errors=True)
        partial.rename(self.libs)
        done.write_text(self.settings.kafka_version)
        progress(
            f"fetched {sum(1 for _ in self.libs.glob('*.jar'))} jars "
            f"in {time.monotonic() - started:.0f}s"
        )
        return self.libs

    def _write_config(self, port: int, cport: int) -> Path:
        data = self.dir / "data"
        props = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.voters": f"1@127.0.0.1:{cport}",
            "listeners": f"PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{cport}",
            "advertised.listeners": f"PLAINTEXT://127.0.0.1:{port}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
            "log.dirs": str(data),
            "num.partitions": "1",
            "offsets.topic.replication.factor": "1",
            "offsets.topic.num.partitions": "1",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "transaction.state.log.num.partitions": "1",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            "group.initial.rebalance.delay.ms": "0",
            "num.network.threads": "2",
            "num.io.threads": "2",
            "log.cleaner.dedupe.buffer.size": "16777216",
            "auto.create.topics.enable": "false",
        }
        path = self.dir / "server.properties"
        path.write_text("".join(f"{k}={v}\n" for k, v in props.items()))
        return path

    def _java(self) -> str:
        java = shutil.which("java")
        if java is None:
            raise BrokerError(
                "'java' is not on PATH; the local Kafka broker needs a JDK 17+ "
                "(Debian: apt-get install openjdk-17-jre-headless)."
            )
        return java

    def _format(self, java: str, config: Path, libs: Path) -> None:
        if (self.dir / "data" / "meta.properties").exists():
            return
        result = subprocess.run(
            [java, "-cp", f"{libs}/*", "kafka.tools.StorageTool", "format",
             "-t", cluster_id(), "-c", str(config)],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        if result.returncode != 0:
            output = (result.stdout + result.stderr)[-3000:]
            raise BrokerError(f"formatting the broker's storage failed:\n{output}")

    def up(self, progress: Progress = quiet) -> str:
        """Start the broker unless it runs already; return its bootstrap address."""
        running = self.status()
        if running:
            progress(f"a local broker is already up at {running}")
            return running
        state = self._recorded()
        if state and self._ours(state["pid"]):
            raise BrokerError(
                f"a broker from {self.dir} (pid {state['pid']}) runs but does not answer; "
                "stop it with 'runstream broker down' and look at " + str(self.log_file)
            )
        java = self._java()
        port, cport = self.settings.broker_port, self.settings.broker_controller_port
        for p in (port, cport):
            if not port_free(p):
                raise BrokerError(
                    f"port {p} on 127.0.0.1 is taken by another process; choose free ports with "
                    "--port/--controller-port (RUNSTREAM_BROKER_PORT, "
                    "RUNSTREAM_BROKER_CONTROLLER_PORT)"
                )
        libs = self.fetch_jars(progress)
        (self.dir / "logs").mkdir(parents=True, exist_ok=True)
        config = self._write_config(port, cport)
        self._format(java, config, libs)
        log4j = KAFKA_RESOURCES / "log4j2.properties"
        cmd = [
            java, f"-Xms{self.settings.broker_heap}", f"-Xmx{self.settings.broker_heap}",
            "-XX:+UseG1GC", f"-Dlog4j2.configurationFile={log4j}",
            f"-Dkafka.logs.dir={self.dir / 'logs'}",
            "-cp", f"{libs}/*", "kafka.Kafka", str(config),
        ]  # fmt: skip
        progress(f"starting Kafka broker on 127.0.0.1:{port} (state in {self.dir})...")
        with open(self.dir / "logs" / "stdout.log", "ab") as out:
            proc = subprocess.Popen(
                cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                cwd=self.dir, start_new_session=True,
            )  # fmt: skip
        self._pidfile.write_text(str(proc.pid))
        self._statefile.write_text(json.dumps({"port": port, "controller_port": cport}))
        self._wait_ready(proc, port, progress)
        address = f"127.0.0.1:{port}"
        progress(f"broker up (pid {proc.pid})")
        return address

    def _wait_ready(self, proc: subprocess.Popen, port: int, progress: Progress) -> None:
        started = time.monotonic()
        deadline = started + self.settings.broker_start_timeout
        said = 0.0
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                self._pidfile.unlink(missing_ok=True)
                raise BrokerError(
                    f"the broker exited at start (code {proc.returncode}). "
                    f"Tail of {self.log_file}:\n{tail(self.log_file)}\n"
                    f"Tail of stdout:\n{tail(self.dir / 'logs' / 'stdout.log', 15)}"
                )
            if port_open(port) and broker_answers(f"127.0.0.1:{port}"):
                return
            waited = time.monotonic() - started
            if waited - said >= 5:
                progress(f"waiting for the broker to answer ({waited:.0f}s)...")
                said = waited
            time.sleep(0.25)
        stop_pid(proc.pid, timeout=10)
        raise BrokerError(
            f"the broker did not answer within {self.settings.broker_start_timeout:.0f}s. "
            f"Tail of {self.log_file}:\n{tail(self.log_file)}"
        )

    # -- down -----------------------------------------------------------------

    def down(self, progress: Progress = quiet, timeout: float = 30.0) -> bool:
        """Stop the broker `up` started (by its pid); False if none was running."""
        state = self._recorded()
        if not state or not self._ours(state["pid"]):
            self._pidfile.unlink(missing_ok=True)
            progress("no local broker is running")
            return False
        progress(f"stopping the broker (pid {state['pid']})...")
        stop_pid(state["pid"], timeout)
        self._pidfile.unlink(missing_ok=True)
        progress("broker stopped")
        return True


def broker_answers(bootstrap: str) -> bool:
    """The broker lists itself in metadata (it is unfenced and serving)."""
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": bootstrap, "log_level": 0})
    try:
        return bool(admin.list_topics(timeout=2).brokers)
    except Exception:
        return False
