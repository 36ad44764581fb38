"""What identities cost the engine: ``GET /status`` and ``POST /tasks/validate`` per second
with an OIDC token, an API key and the shared token, and the token check itself once the
provider's keys are cached.

A real Keycloak (tests/keycloak.py) issues the tokens; the engine (real RunEngine, reads
guarded: ``open_reads`` off, so every request is authenticated) serves on loopback with
uvicorn in this process, and one keep-alive client asks in turn, in rounds that alternate
the credentials so a busy machine slows each alike. Validate needs the ``user`` role, so
the OIDC user (uma) and the API key are users; the shared token is admin. A validate asks
about a real plan (``count`` on ``det``) and queues nothing, so every request sees the same
engine. ``OidcVerifier.verify`` and ``KeyStore.identify`` are timed directly too. Goal:
under 1 ms per token check.

Run: python tests/benchmarks/bench_identity.py [--seconds 3] [--rounds 3] -> one JSON line.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import uvicorn

from runstream.producer.engine import Engine, PlanRegistry, TaskStore
from runstream.producer.engine.app import create_app
from runstream.producer.engine.auth import Guard
from runstream.producer.engine.identity import KeyStore, OidcVerifier

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # run as a script
from tests import keycloak
from tests.kafka_tools import free_port
from tests.waiting import eventually

TOKEN = "bench-shared-token"  # noqa: S105 - a benchmark credential
#: What ``POST /tasks/validate`` is asked: a plan a user would really submit.
VALIDATE_BODY = {"plan": "count", "args": [["det"]], "kwargs": {"num": 3}}


def per_call_us(fn, calls: int) -> dict[str, float]:
    """Microseconds per call of ``fn`` over ``calls``: wall-clock mean, median and 99th
    percentile, and the CPU time of this thread (what a busy machine does not inflate)."""
    times = []
    cpu0 = time.thread_time()
    for _ in range(calls):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e6)
    cpu = (time.thread_time() - cpu0) / calls * 1e6
    times.sort()
    return {
        "mean": round(statistics.fmean(times), 1),
        "p50": round(times[len(times) // 2], 1),
        "p99": round(times[int(len(times) * 0.99)], 1),
        "cpu": round(cpu, 1),
    }


def get_status(client: httpx.Client, headers: dict[str, str]) -> None:
    """One ``GET /status``, which must be answered."""
    reply = client.get("/status", headers=headers)
    assert reply.status_code == 200, reply.text


def post_validate(client: httpx.Client, headers: dict[str, str]) -> None:
    """One ``POST /tasks/validate`` of ``VALIDATE_BODY``, which must be found valid."""
    reply = client.post("/tasks/validate", json=VALIDATE_BODY, headers=headers)
    assert reply.status_code == 200, reply.text
    assert reply.json() == {"valid": True, "plan": "count"}, reply.text


#: Request kind (the prefix of its figures) -> one request of that kind.
REQUESTS: dict[str, Callable[[httpx.Client, dict[str, str]], None]] = {
    "status": get_status,
    "validate": post_validate,
}


def rate(
    ask: Callable[[httpx.Client, dict[str, str]], None],
    client: httpx.Client,
    secret: str,
    seconds: float,
) -> tuple[float, float]:
    """Requests made by ``ask`` answered per second, one after another, and the CPU
    milliseconds per request of this process (client and server both run in it)."""
    headers = {"Authorization": f"Bearer {secret}"}
    done, t0, cpu0 = 0, time.perf_counter(), time.process_time()
    while (spent := time.perf_counter() - t0) < seconds:
        ask(client, headers)
        done += 1
    return done / spent, (time.process_time() - cpu0) / done * 1000


def serve(guard: Guard, home: Path) -> tuple[str, uvicorn.Server, threading.Thread, Engine]:
    engine = Engine(TaskStore(home / "tasks.db"), PlanRegistry.default())
    engine.start()
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(create_app(engine, guard), host="127.0.0.1", port=port, log_level="error")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    eventually(lambda: server.started, 60, "the engine to serve")
    return f"http://127.0.0.1:{port}", server, thread, engine


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="per credential and round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--calls", type=int, default=3000, help="direct verify calls")
    opts = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    figures: dict = {"benchmark": "identity", "cores": os.cpu_count()}
    with tempfile.TemporaryDirectory() as scratch:
        home = Path(scratch)
        t0 = time.monotonic()
        proc, kc, _ = keycloak.start(home)
        figures["keycloak_start_s"] = round(time.monotonic() - t0, 1)
        try:
            verifier = OidcVerifier(kc.issuer, keycloak.AUDIENCE)
            assert verifier.prefetch(), "no signing keys from Keycloak"
            keys = KeyStore(home / "keys.db")
            key, _ = keys.create("bench", ["user"], None, "bench")
            token = kc.token("uma")  # a user: validate needs the role
            verifier.verify(token)
            figures["verify_us"] = per_call_us(lambda: verifier.verify(token), opts.calls)
            figures["key_identify_us"] = per_call_us(lambda: keys.identify(key), opts.calls)
            figures["jwks_fetches"] = verifier.fetches
            guard = Guard(TOKEN, open_reads=False, oidc=verifier, keys=keys)
            url, server, thread, engine = serve(guard, home)
            try:
                credentials = {"shared": TOKEN, "oidc": token, "key": key}
                runs = [(kind, name) for kind in REQUESTS for name in credentials]
                rates: dict[tuple[str, str], list[float]] = {run: [] for run in runs}
                cpus: dict[tuple[str, str], list[float]] = {run: [] for run in runs}
                with httpx.Client(base_url=url, timeout=30) as client:
                    for kind, name in runs:  # warm up
                        rate(REQUESTS[kind], client, credentials[name], 0.3)
                    for _ in range(opts.rounds):
                        for kind, name in runs:
                            per_second, cpu_ms = rate(
                                REQUESTS[kind], client, credentials[name], opts.seconds
                            )
                            rates[kind, name].append(per_second)
                            cpus[kind, name].append(cpu_ms)
                assert engine.store.list() == [], "validate queued a task"
            finally:
                server.should_exit = True
                thread.join(10)
                engine.close()
                engine.store.close()
                keys.close()
                verifier.close()
        finally:
            keycloak.stop(proc)
    for kind in REQUESTS:
        per_second = {
            name: round(statistics.median(r), 1) for (k, name), r in rates.items() if k == kind
        }
        cpu = {name: round(statistics.median(c), 3) for (k, name), c in cpus.items() if k == kind}
        figures[f"{kind}_rps"] = per_second
        figures[f"{kind}_cpu_ms_per_request"] = cpu
        prefix = "" if kind == "status" else f"{kind}_"  # status keeps its original keys
        figures[f"{prefix}oidc_extra_cpu_ms_per_request"] = round(cpu["oidc"] - cpu["shared"], 3)
        figures[f"{prefix}key_extra_cpu_ms_per_request"] = round(cpu["key"] - cpu["shared"], 3)
    figures["goal_ms"] = 1.0
    figures["goal_met"] = figures["verify_us"]["p50"] < 1000 and figures["verify_us"]["cpu"] < 1000
    figures["load_1min"] = round(os.getloadavg()[0], 2)
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
