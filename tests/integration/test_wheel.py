"""The wheel is all runstream needs: built from the tracked files, installed into a fresh
venv, it runs `runstream broker up` with an empty jar cache and imports as one namespace.

Run alone with ``pytest -m wheel``. The fresh venv has no system site-packages; runstream
comes only from the wheel (installed with ``--no-deps``), and its dependencies from the
test environment's site-packages, put on ``sys.path`` after the venv's own by a ``.pth``
line. That keeps the test in seconds without a network install of every dependency,
while the editable install of the checkout stays out of reach (its finder is a ``.pth``
of that directory, which a plain path entry does not run).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
import venv
import zipfile
from pathlib import Path

import pytest
from confluent_kafka.admin import AdminClient

from tests.kafka_tools import free_port

pytestmark = pytest.mark.wheel
ROOT = Path(__file__).resolve().parents[2]
FOREIGN_NAMES = ("schemas", "producer", "consumers")  # names that belong to other projects


def _tracked_tree(into: Path) -> Path:
    """The checkout's tracked files, as a fresh clone has them (working versions)."""
    files = subprocess.run(
        ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True
    ).stdout.split(b"\0")
    for name in filter(None, files):
        source = ROOT / name.decode()
        if source.is_file():
            target = into / name.decode()
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(source.read_bytes())
    return into


def _build_wheel(tmp_path: Path) -> tuple[Path, str]:
    source = _tracked_tree(tmp_path / "src")
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-v", "-w", str(tmp_path / "dist"),
         str(source)],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    output = built.stdout + built.stderr
    assert built.returncode == 0, output
    (wheel,) = (tmp_path / "dist").glob("runstream-*.whl")
    return wheel, output


def _fresh_venv(tmp_path: Path, wheel: Path) -> Path:
    home = tmp_path / "venv"
    venv.create(home, with_pip=True, system_site_packages=False)
    python = home / "bin" / "python"
    installed = subprocess.run(
        [str(python), "-m", "pip", "install", "--no-deps", "--no-index", str(wheel)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert installed.returncode == 0, installed.stdout + installed.stderr
    site = Path(
        subprocess.run(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            capture_output=True, text=True, check=True,
        ).stdout.strip()
    )  # fmt: skip
    (site / "zz_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return home


def test_wheel_installs_one_namespace_and_runs_the_broker(tmp_path: Path) -> None:
    wheel, build_output = _build_wheel(tmp_path)
    assert "deprecat" not in build_output.lower(), build_output  # setuptools says nothing
    assert "BuildBackendWarning" not in build_output, build_output

    names = zipfile.ZipFile(wheel).namelist()
    assert {n.split("/")[0] for n in names} == {"runstream", "runstream-0.1.0.dist-info"}
    shipped = (
        "runstream/resources/kafka/pom.xml",
        "runstream/schemas/envelope.schema.json",
        "runstream/producer/engine/app.py",
        "runstream/consumers/tiled/writer.py",
        "runstream/consumers/web/static/index.html",  # the web view works offline
        "runstream/consumers/web/static/vendor/uPlot.iife.min.js",
        "runstream/consumers/web/static/vendor/uPlot.LICENSE",
    )
    assert set(shipped) <= set(names)

    home = _fresh_venv(tmp_path, wheel)
    python, runstream = home / "bin" / "python", home / "bin" / "runstream"
    work = tmp_path / "elsewhere"  # not the checkout: nothing importable from the cwd
    work.mkdir()
    probe = subprocess.run(
        [str(python), "-c",
         "import importlib.util, json, runstream, runstream.producer, runstream.consumers;"
         "print(json.dumps({'file': runstream.__file__, 'foreign': "
         f"[n for n in {FOREIGN_NAMES!r} if importlib.util.find_spec(n)]}}))"],
        cwd=work, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert probe.returncode == 0, probe.stderr
    found = json.loads(probe.stdout)
    assert Path(found["file"]).is_relative_to(home), found  # the wheel's, not the checkout's
    assert found["foreign"] == []

    port, controller = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RUNSTREAM_", "PYTHON"))}
    env.update(
        RUNSTREAM_HOME=str(tmp_path / "home"),
        RUNSTREAM_CACHE=str(tmp_path / "cache"),  # empty: Maven copies the jars in
        RUNSTREAM_BROKER_PORT=str(port),
        RUNSTREAM_BROKER_CONTROLLER_PORT=str(controller),
    )

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([str(runstream), *args], cwd=work, env=env, capture_output=True,
                              text=True, timeout=600)  # fmt: skip

    try:
        up = run("broker", "up")
        assert up.returncode == 0, up.stderr
        assert "fetching Apache Kafka" in up.stderr  # the cache was empty
        assert up.stdout.strip().splitlines()[-1] == f"127.0.0.1:{port}"
        admin = AdminClient({"bootstrap.servers": f"127.0.0.1:{port}"})
        assert admin.list_topics(timeout=30).brokers  # a broker answers there
    finally:
        down = run("broker", "down")
    assert down.returncode == 0, down.stderr
    assert run("broker", "status").returncode != 0
    package = Path(found["file"]).parent
    assert not (package / "resources" / "kafka" / "target").exists()  # the install stays as is
