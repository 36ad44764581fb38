"""Seconds from start to ready for each service in its container, against the same service as
a process on the host (the baseline: what the container adds).

Each service starts alone, as the dev overlay runs it (tests/workloads.py), against a local
Kafka broker and Tiled server; ready is its /readyz answering 200 (the engine: Kafka reachable,
the consumers: partitions assigned). Needs podman (or Docker); builds the image first.

Run from the repository root: python -m tests.benchmarks.bench_containers [--rounds 2] -> one
JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from runstream.broker import LocalBroker
from runstream.consumers.tiled import connect_catalog
from runstream.settings import LocalSettings
from runstream.tiledserver import LocalTiled
from tests.container_engine import Containers, build_image, find_engine
from tests.kafka_tools import create_topic, free_port, unique_prefix
from tests.waiting import eventually, process_ended
from tests.workloads import CONSUMERS, Stack


def host_ready(stack: Stack, name: str, home: Path) -> float:
    """The same service as a process here: seconds from start to /readyz."""
    port = free_port()
    env = {
        **os.environ,
        "RUNSTREAM_HOME": str(home / name),
        "RUNSTREAM_API_TOKEN": stack.token,
        "RUNSTREAM_KAFKA_BOOTSTRAP": stack.bootstrap,
        "RUNSTREAM_TILED_API_KEY": stack.tiled_api_key,
    }
    if name == "engine":
        args = ["engine", "--host", "127.0.0.1", "--port", str(port)]
        env |= {"RUNSTREAM_TOPIC": stack.topic, "RUNSTREAM_PARTITIONS": "2"}
    else:
        args = [
            "consume",
            name,
            "--topic",
            stack.topic,
            "--group",
            unique_prefix(name),
            "--http-port",
            str(port),
        ]
        args += {
            "table": ["--out", str(home / "tables")],
            "plot": ["--out", str(home / "plots")],
            "tiled": ["--tiled-url", stack.tiled_url, "--catalog", stack.catalog],
        }[name]
    began = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, "-m", "runstream.cli", *args],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        eventually(lambda: httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code
                   == 200, 300, f"{name} to be ready", fail_fast=process_ended(proc),
                   ignoring=httpx.HTTPError)  # fmt: skip
        return time.monotonic() - began
    finally:
        proc.terminate()
        proc.wait(60)


def container_ready(stack: Stack, name: str) -> float:
    service = stack.engine() if name == "engine" else stack.consumer(name)
    stack.wait_ready(service)
    stack.containers.terminate(service.container, service.grace)
    stack.containers.command("rm", service.container)  # the next round reuses its name
    return service.ready_after


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    rounds = parser.parse_args().rounds
    engine = find_engine()
    if engine is None:
        raise SystemExit("neither podman nor a Docker engine works here")
    began = time.monotonic()
    image = build_image(engine, timeout=1800)
    build_s = time.monotonic() - began
    size = subprocess.run(
        [engine, "image", "inspect", "--format", "{{.Size}}", image],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        settings = LocalSettings(
            home=home / "local",
            broker_port=free_port(),
            broker_controller_port=free_port(),
            tiled_port=free_port(),
        )
        broker, tiled = LocalBroker(settings), LocalTiled(settings)
        bootstrap, url = broker.up(), tiled.up()
        containers = Containers(engine, unique_prefix("bench"))
        try:
            catalog = unique_prefix("cat")
            connect_catalog(url, tiled.api_key(), catalog)
            topic = create_topic(bootstrap, f"{unique_prefix()}.documents", 2)
            stack = Stack(
                containers,
                image,
                home,
                bootstrap,
                topic,
                url,
                tiled.api_key(),
                catalog,
                secrets.token_hex(16),
            )
            figures = {}
            for name in ["engine", *CONSUMERS]:
                inside = [container_ready(stack, name) for _ in range(rounds)]
                outside = [host_ready(stack, name, home) for _ in range(rounds)]
                figures[name] = {
                    "container_s": round(statistics.median(inside), 1),
                    "host_process_s": round(statistics.median(outside), 1),
                }
        finally:
            containers.remove_all()
            tiled.down()
            broker.down()
    print(
        json.dumps(
            {
                "image": image,
                "image_mb": round(int(size) / 1e6),
                "build_s": round(build_s),
                "ready": figures,
            }
        )
    )


if __name__ == "__main__":
    main()
