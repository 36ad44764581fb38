"""What the Tiled writer benchmarks share: a local Tiled server for the run of a script, and
recorded documents replayed into a writer as ``runstream consume tiled`` feeds it (Kafka
left out), so that scalar and frame figures are taken the same way; and what a replay costs
this process and the Tiled server, apart."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from runstream.consumers.metrics import ConsumerMetrics
from runstream.consumers.router import Router
from runstream.settings import LocalSettings
from runstream.tiledserver import LocalTiled
from tests.benchmarks.cpu import cpu_seconds
from tests.kafka_tools import free_port

Documents = list[tuple[str, dict]]


@contextmanager
def local_tiled(home: Path) -> Iterator[tuple[str, str]]:
    """A local Tiled server under ``home`` (detector files readable in ``home/files``), on a
    free port: its URL and API key, the server stopped on leaving."""
    server = LocalTiled(LocalSettings(home=home, tiled_port=free_port()))
    url = server.up()
    try:
        yield url, server.api_key()
    finally:
        server.down()


class ServiceRouter:
    """Our service's own router (`consumers.router`), fed as the runtime feeds it: each
    document with its run's key and sequence number; `tick` as the runtime's loop ticks,
    `caught_up` when its poll finds nothing more."""

    def __init__(self, factory: Callable) -> None:
        self.router = Router([factory], ConsumerMetrics(), time.monotonic)
        self.seqs: dict[str, int] = {}
        self.starts: dict[str, str] = {}  # descriptor uid -> run uid

    def __call__(self, name: str, doc: dict) -> None:
        starts = self.starts
        uid = doc["uid"] if name == "start" else doc.get("run_start") or starts[doc["descriptor"]]
        if name == "descriptor":
            starts[doc["uid"]] = uid
        seq = self.seqs[uid] = self.seqs.get(uid, -1) + 1
        self.router.route(0, uid, seq, name, doc)

    def tick(self) -> None:
        self.router.tick()

    def caught_up(self) -> None:
        self.router.caught_up()


def service_router(factory: Callable) -> ServiceRouter:
    return ServiceRouter(factory)


def replay(router: Callable[[str, dict], None], backlog: Iterable[Documents]) -> float:
    """Seconds to hand every document of every run to ``router``."""
    began = time.perf_counter()
    for run in backlog:
        for name, doc in run:
            router(name, doc)
    return time.perf_counter() - began


def server_cpu_s(home: Path) -> float:
    """CPU seconds the local Tiled server under ``home`` has used so far (Linux's /proc)."""
    return cpu_seconds(json.loads((home / "tiled" / "server.json").read_text())["pid"])


def replay_costs(router: Callable[[str, dict], None], backlog: Iterable[Documents],
                 home: Path) -> dict[str, float]:  # fmt: skip
    """`replay`'s seconds, and the CPU seconds it cost the writer's process (every thread)
    and the Tiled server under ``home``: where the time went."""
    server, client = server_cpu_s(home), time.process_time()
    wall = replay(router, backlog)
    return {"wall_s": wall, "writer_cpu_s": time.process_time() - client,
            "tiled_server_cpu_s": server_cpu_s(home) - server}  # fmt: skip
