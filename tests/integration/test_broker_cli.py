"""`runstream broker up | status | down` from the command line, on a broker of its own."""

from __future__ import annotations

import os
import socket
from pathlib import Path

from runstream.process import alive
from tests.cli_tools import run_runstream
from tests.kafka_tools import free_port, free_ports


def test_up_status_down(tmp_path: Path) -> None:
    port = free_ports(2)  # two distinct ports: two free_port() calls may give the same one
    cport = port + 1
    env = {
        **os.environ,
        "RUNSTREAM_HOME": str(tmp_path / "home"),
        "RUNSTREAM_BROKER_PORT": str(port),
        "RUNSTREAM_BROKER_CONTROLLER_PORT": str(cport),
    }
    status = run_runstream(env, "broker", "status")
    assert status.returncode != 0
    try:
        up = run_runstream(env, "broker", "up")
        assert up.returncode == 0, up.stderr
        assert up.stdout.strip().splitlines()[-1] == f"127.0.0.1:{port}"
        pid = int((tmp_path / "home" / "kafka" / "broker.pid").read_text())
        assert alive(pid)

        again = run_runstream(env, "broker", "up")
        assert again.returncode == 0
        assert "already up" in again.stderr
        assert again.stdout.strip().splitlines()[-1] == f"127.0.0.1:{port}"
        assert int((tmp_path / "home" / "kafka" / "broker.pid").read_text()) == pid

        status = run_runstream(env, "broker", "status")
        assert status.returncode == 0
        assert status.stdout.strip() == f"127.0.0.1:{port}"
    finally:
        down = run_runstream(env, "broker", "down")
    assert down.returncode == 0
    assert not alive(pid)
    assert run_runstream(env, "broker", "status").returncode != 0


def test_taken_port_is_a_clear_error(tmp_path: Path) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        env = {**os.environ, "RUNSTREAM_HOME": str(tmp_path), "RUNSTREAM_BROKER_PORT": str(port),
               "RUNSTREAM_BROKER_CONTROLLER_PORT": str(free_port())}  # fmt: skip
        up = run_runstream(env, "broker", "up")
    assert up.returncode == 1
    assert f"port {port}" in up.stderr and "taken" in up.stderr
    assert "Traceback" not in up.stderr


def test_missing_java_is_a_clear_error(tmp_path: Path) -> None:
    env = {**os.environ, "RUNSTREAM_HOME": str(tmp_path), "PATH": str(tmp_path / "empty-bin"),
           "RUNSTREAM_BROKER_PORT": str(free_port()),
           "RUNSTREAM_BROKER_CONTROLLER_PORT": str(free_port())}  # fmt: skip
    up = run_runstream(env, "broker", "up")
    assert up.returncode == 1
    assert "'java' is not on PATH" in up.stderr


def test_broker_that_dies_at_start_shows_its_log(tmp_path: Path) -> None:
    env = {**os.environ, "RUNSTREAM_HOME": str(tmp_path), "RUNSTREAM_BROKER_HEAP": "1k",
           "RUNSTREAM_BROKER_PORT": str(free_port()),
           "RUNSTREAM_BROKER_CONTROLLER_PORT": str(free_port())}  # fmt: skip
    up = run_runstream(env, "broker", "up")
    assert up.returncode == 1
    assert "exited at start" in up.stderr
    assert "heap" in up.stderr.lower()  # the JVM's own complaint is shown


def test_bad_cli_arguments() -> None:
    bad = run_runstream(dict(os.environ), "broker", "sideways")
    assert bad.returncode == 2
    assert "invalid choice" in bad.stderr
    port = run_runstream(dict(os.environ), "broker", "status", "--port", "http")
    assert port.returncode == 2
    env = {**os.environ, "RUNSTREAM_BROKER_PORT": "99999"}
    out_of_range = run_runstream(env, "broker", "status")
    assert out_of_range.returncode == 1
    assert "broker_port" in out_of_range.stderr


def test_bad_node_counts_and_a_store_made_otherwise_are_clear_errors(tmp_path: Path) -> None:
    env = {**os.environ, "RUNSTREAM_HOME": str(tmp_path)}
    for nodes in ("0",):
        bad = run_runstream(env, "broker", "up", "--nodes", nodes)
        assert bad.returncode == 1 and "broker_nodes" in bad.stderr
        assert "Traceback" not in bad.stderr
    assert run_runstream(env, "broker", "up", "--nodes", "three").returncode == 2
    # a state directory formatted for one plaintext node is not silently reused otherwise
    kafka = tmp_path / "kafka"
    (kafka / "data").mkdir(parents=True)
    (kafka / "data" / "meta.properties").write_text("node.id=1\n")
    (kafka / "broker.json").write_text(
        f'{{"nodes": 1, "port": {free_port()}, "controller_port": {free_port()}, "secure": false}}'
    )
    for args in (["--nodes", "3"], ["--secure"]):
        other = run_runstream(env, "broker", "up", *args)
        assert other.returncode == 1, other.stderr
        assert "1 node(s), plaintext" in other.stderr and "another state directory" in other.stderr
        assert "Traceback" not in other.stderr
    assert (kafka / "data" / "meta.properties").exists()  # nothing was changed
