"""``runstream demo``: the seed's multi-run plans through the whole local pipeline.

Brings up what is missing (the local broker and the local Tiled server),
starts the web view first and prints its URL, then the table, plot and Tiled
consumer services as processes of their own, runs the sequential, nested and
recursive plans through a RunEngine publishing with `KafkaPublisher`, then a
detector scan (ophyd-async's simulated blob detector over its stage, frames in
HDF5 files that the Tiled writer registers and the web view shows), shows
the per-run tables as they arrive, lists the plot files and the Tiled catalog,
and stops everything it started (with ``--keep``, the broker, Tiled and the web
view stay up).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .broker import LocalBroker
from .localstack import CommandError, LocalService, add_local_command, progress
from .settings import LocalSettings
from .tiledserver import LocalTiled

if TYPE_CHECKING:
    from runstream.producer import KafkaPublisher

log = logging.getLogger(__name__)

PLANS = ("sequential_runs", "nested_runs", "recursive_runs")
DEMO_CATALOG = "raw"
#: The detector scan's extent in the stage's x (its blob is brightest at 0).
DETECTOR_SCAN = (-1.0, 1.0)


@dataclass
class Service:
    """A consumer service run as its own process, its stdout relayed to ours."""

    name: str
    proc: subprocess.Popen
    relay: threading.Thread | None
    readyz: str

    def ready(self) -> bool:
        try:
            with urllib.request.urlopen(self.readyz, timeout=1) as answer:  # noqa: S310 (loopback)
                return answer.status == 200
        except OSError:
            return False

    def stop(self, timeout: float = 30.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait()
        if self.relay is not None:
            self.relay.join(5)
        return code


@dataclass
class Demo:
    settings: LocalSettings
    keep: bool
    npts: int
    out: Path = field(init=False)
    files: Path = field(init=False)
    topic: str = field(init=False)
    started: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        stamp = time.strftime("%Y%m%d-%H%M%S")
        self.out = self.settings.home / "demo" / stamp
        # where the local Tiled server may read detector files from
        self.files = self.settings.tiled_read_dirs[0] / "demo" / stamp
        self.topic = f"demo-{stamp}.bluesky.runengine.documents"

    # -- the local stack --------------------------------------------------------

    @contextlib.contextmanager
    def local(self, service: LocalService, what: str) -> Iterator[str]:
        """The address of a local service: the running one, or one started (and stopped) here."""
        address = service.status()
        if address:
            progress(f"using the local {what} already up at {address}")
            yield address
            return
        address = service.up(progress)
        try:
            yield address
        finally:
            if not self.keep:
                service.down(progress)

    def service(self, kind: str, bootstrap: str, *extra: str, show: bool,
                env: dict[str, str] | None = None) -> Service:  # fmt: skip
        port = _free_port()
        cmd = [
            sys.executable, "-m", "runstream.cli", "consume", kind,
            "--topic", self.topic, "--group", f"demo-{kind}-{self.out.name}",
            "--bootstrap", bootstrap, "--from-beginning", "--http-port", str(port), *extra,
        ]  # fmt: skip
        env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        proc = subprocess.Popen(
            cmd, stdout=subprocess.PIPE if show else subprocess.DEVNULL, text=True, env=env
        )
        relay = None
        if show:

            def copy_lines() -> None:
                assert proc.stdout is not None
                for line in proc.stdout:
                    sys.stdout.write(line)
                    sys.stdout.flush()

            relay = threading.Thread(target=copy_lines, daemon=True, name=f"{kind}-relay")
            relay.start()
        return Service(kind, proc, relay, f"http://127.0.0.1:{port}/readyz")

    def web_view(self, bootstrap: str, tiled_url: str) -> tuple[Service, str]:
        """The web view, logging to ``web.log``; with --keep it outlives the demo."""
        log_path = self.out / "web.log"
        cmd = [
            sys.executable, "-m", "runstream.cli", "consume", "web",
            "--topic", self.topic, "--group", f"demo-web-{self.out.name}",
            "--bootstrap", bootstrap, "--from-beginning",
            "--port", str(self.settings.web_port), "--tiled-url", tiled_url,
            "--tiled-catalog", DEMO_CATALOG,
        ]  # fmt: skip
        with log_path.open("ab") as log_file:
            proc = subprocess.Popen(cmd, stdout=log_file, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, start_new_session=self.keep,
                                    env={**os.environ, "PYTHONUNBUFFERED": "1"})  # fmt: skip
        deadline = time.monotonic() + 60
        while True:
            lines = log_path.read_text(errors="replace").splitlines()
            url = next((ln.split(": ", 1)[1] for ln in lines
                        if ln.startswith("runstream web view: ")), None)  # fmt: skip
            if url:
                return Service("web", proc, None, f"{url}readyz"), url
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                last = lines[-1] if lines else "no output"
                raise CommandError(f"the web view did not start on port "
                                   f"{self.settings.web_port}: {last}")  # fmt: skip
            time.sleep(0.1)

    @staticmethod
    def web_shows(url: str, uids: list[str]) -> bool:
        """Whether the web view holds every run, closed."""
        try:
            with urllib.request.urlopen(f"{url}api/runs", timeout=2) as answer:  # noqa: S310
                runs = {r["uid"]: r["status"] for r in json.load(answer)}
        except (OSError, ValueError):
            return False
        return all(runs.get(uid, "open") != "open" for uid in uids)

    # -- the plans --------------------------------------------------------------

    def publisher(self, bootstrap: str) -> KafkaPublisher:
        from runstream.producer import KafkaPublisher

        publisher = KafkaPublisher(self.topic, bootstrap, self.out / "outbox", partitions=3)
        if not publisher.wait_for_topic(60):
            publisher.close(0)
            raise CommandError(f"could not make the topic {self.topic} on {bootstrap}")
        return publisher

    def run_plans(self, publisher: KafkaPublisher) -> list[str]:
        from bluesky import RunEngine

        from runstream.producer import lineage
        from runstream.producer.plans import SEED_PLANS

        RE = RunEngine({})
        RE.preprocessors.append(lineage)
        RE.subscribe(publisher)
        uids: list[str] = []
        try:
            for name in PLANS:
                progress(f"running {name}({self.npts}) ...")
                uids += RE(SEED_PLANS[name](self.npts))
            progress(f"running a detector scan ({self.npts} frames) ...")
            uids += RE(self.detector_scan())
        finally:
            left = publisher.flush(30)
            publisher.close(10)
        if left:
            raise CommandError(f"{left} documents were not delivered to Kafka (kept in the outbox)")
        return list(uids)

    def detector_scan(self) -> Any:
        """ophyd-async's blob detector over its stage, connected in the RunEngine's event
        loop (as the engine connects such devices); frames go to HDF5 under ``files``."""
        from bluesky.plans import scan
        from bluesky.run_engine import call_in_bluesky_event_loop

        from runstream.producer.plans import sim_detectors

        devices = sim_detectors(self.files)
        for device in devices.values():
            call_in_bluesky_event_loop(device.connect(timeout=30), timeout=60)
        md = {"purpose": "detector frames"}
        return scan([devices["bdet"]], devices["stage"].x, *DETECTOR_SCAN, self.npts, md=md)

    def wait_ready(self, services: list[Service], timeout: float) -> None:
        """Consumers first, so that the tables appear while the plans run."""
        progress("waiting for the table and plot consumers to join their groups ...")
        deadline = time.monotonic() + timeout
        for service in services:
            while not service.ready():
                if service.proc.poll() is not None:
                    raise CommandError(f"the {service.name} consumer exited at start")
                if time.monotonic() > deadline:
                    raise CommandError(f"the {service.name} consumer did not get ready")
                time.sleep(0.2)

    def wait_for_outputs(self, uids: list[str], services: list[Service], catalog: Any,
                         timeout: float) -> None:  # fmt: skip
        deadline = time.monotonic() + timeout
        pending = set(uids)
        while pending and time.monotonic() < deadline:
            for service in services:
                if service.proc.poll() is not None:
                    raise CommandError(
                        f"the {service.name} consumer exited early (code {service.proc.returncode})"
                    )
            for uid in list(pending):
                tables = list((self.out / "tables").glob(f"*-{uid[:8]}.txt"))
                plots = list((self.out / "plots").glob(f"*-{uid[:8]}-*.png"))
                if (
                    tables
                    and plots
                    and "run ended" in tables[0].read_text()
                    and (uid in catalog and catalog[uid].metadata.get("stop"))
                ):
                    pending.discard(uid)
            time.sleep(0.2)
        if pending:
            raise CommandError(
                f"{len(pending)} run(s) did not reach the consumers within {timeout:.0f}s: "
                + ", ".join(sorted(u[:8] for u in pending))
            )

    def summarize(self, uids: list[str], url: str, web_url: str, web: Service) -> None:
        """Where each run went: the files, the catalog, the web view, and what is still up."""
        progress("")
        progress(f"{len(uids)} runs went through Kafka to per-run tables, plots and Tiled:")
        for path in sorted((self.out / "tables").glob("*.txt")):
            progress(f"  table {path}")
        for path in sorted((self.out / "plots").glob("*.png")):
            progress(f"  plot  {path}")
        progress(f"  tiled {url}/api/v1/search/{DEMO_CATALOG}: the same {len(uids)} runs, e.g.")
        progress(f"        from_uri('{url}', api_key=...)['{DEMO_CATALOG}']"
                 ".search(Key('start.run_key') == 'run_2')")  # fmt: skip
        for path in sorted(self.files.glob("*.h5")):
            progress(f"  frames {path}: the detector scan's, registered in Tiled")
        progress(f"  web   {web_url}: the runs as a tree, each with its table and plots, "
                 "the detector's frames on its run's page")  # fmt: skip
        if self.keep:
            progress(f"        stays up (pid {web.proc.pid}; stop it with: kill {web.proc.pid})")
        else:  # the URLs above are down now; the files and the catalog stay
            progress(
                "The web view and the servers the demo started are stopped: `runstream tiled"
                " up` serves the catalog again, `runstream demo --keep` leaves all up."
            )

    def run(self) -> int:
        from runstream.consumers.tiled import connect_catalog  # seconds to import: when used

        self.out.mkdir(parents=True, exist_ok=True)
        progress(f"demo outputs in {self.out}")
        tiled = LocalTiled(self.settings)
        with (
            self.local(LocalBroker(self.settings), "broker") as bootstrap,
            self.local(tiled, "Tiled server") as url,
        ):
            key = tiled.api_key()
            catalog = connect_catalog(url, key, DEMO_CATALOG)
            publisher = self.publisher(bootstrap)
            web, web_url = self.web_view(bootstrap, url)
            progress(f"web view: {web_url}  (open it to watch the runs arrive)")
            services = [
                web,
                self.service("table", bootstrap, "--out", str(self.out / "tables"), show=True),
                self.service("plot", bootstrap, "--out", str(self.out / "plots"), show=False),
                self.service(
                    "tiled",
                    bootstrap,
                    "--tiled-url",
                    url,
                    "--catalog",
                    DEMO_CATALOG,
                    show=False,
                    env={"RUNSTREAM_TILED_API_KEY": key},
                ),
            ]
            try:
                # a cold start of four Python processes on a busy machine can take minutes
                self.wait_ready(services, timeout=180)
                uids = self.run_plans(publisher)
                publisher = None  # closed: let its Kafka client go before the broker does
                self.wait_for_outputs(uids, services, catalog, timeout=90)
                deadline = time.monotonic() + 30
                while not self.web_shows(web_url, uids):
                    if time.monotonic() > deadline:
                        raise CommandError("the web view did not show every run")
                    time.sleep(0.2)
            finally:
                codes = {s.name: s.stop() for s in services if not (self.keep and s is web)}
                if not self.keep:
                    _delete_topics(bootstrap, [self.topic, self.topic + ".dlq"])
            bad = {name: code for name, code in codes.items() if code != 0}
            if bad:
                raise CommandError(f"consumer(s) exited with errors: {bad}")
        self.summarize(uids, url, web_url, web)
        return 0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _delete_topics(bootstrap: str, topics: list[str]) -> None:
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": bootstrap, "logger": log})
    for topic, future in admin.delete_topics(topics, operation_timeout=10).items():
        try:
            future.result(15)
        except Exception as exc:  # a topic never made (no dead letters) is fine
            log.debug("topic %s not deleted: %s", topic, exc)


def _demo(args: argparse.Namespace) -> int:
    from .localstack import local_settings

    return Demo(local_settings(args), keep=args.keep, npts=args.npts).run()


def register(sub: argparse._SubParsersAction) -> None:
    p = add_local_command(
        sub, "demo",
        "run the seed's sequential, nested and recursive plans and a detector scan through "
        "the local pipeline",
        __doc__,
    )  # fmt: skip
    p.add_argument("--keep", action="store_true",
                   help="leave the broker, Tiled and the web view running")  # fmt: skip
    p.add_argument("--npts", type=int, default=6, help="points per run (default 6)")
    p.set_defaults(func=_demo)
