"""The layers of the code are a checked rule: import-linter's contracts in pyproject.toml.

import-linter reads a package from one folder, while runstream maps its top-level
folders into one namespace; the check runs on a copy laid out as the wheel has it.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SUBPACKAGES = ("schemas", "producer", "consumers")


def lay_out_as_installed(into: Path) -> Path:
    ignore = shutil.ignore_patterns("__pycache__")
    package = into / "runstream"
    shutil.copytree(ROOT / "runstream", package, ignore=ignore)
    for name in SUBPACKAGES:
        shutil.copytree(ROOT / name, package / name, ignore=ignore)
    return into


def lint_imports(tree: Path) -> subprocess.CompletedProcess[str]:
    lint = Path(sys.executable).with_name("lint-imports")
    return subprocess.run(
        [str(lint), "--no-cache", str(ROOT / "pyproject.toml")],
        cwd=tree,
        env={"PYTHONPATH": str(tree), "PATH": ""},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_layers_hold(tmp_path: Path) -> None:
    result = lint_imports(lay_out_as_installed(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def test_a_consumer_importing_the_producer_breaks_the_rule(tmp_path: Path) -> None:
    tree = lay_out_as_installed(tmp_path)
    (tree / "runstream" / "consumers" / "sneaky.py").write_text(
        "from runstream.producer import KafkaPublisher\n"
    )
    result = lint_imports(tree)
    assert result.returncode != 0
    assert "runstream.consumers.sneaky" in result.stdout


def test_production_code_importing_demo_plans_or_ophyd_sim_breaks_the_rule(tmp_path: Path) -> None:
    tree = lay_out_as_installed(tmp_path)
    engine = tree / "runstream" / "producer" / "engine"
    (engine / "eager_demo.py").write_text("from .. import plans\n")
    (engine / "eager_sim.py").write_text("def devices():\n    from ophyd.sim import det\n")
    result = lint_imports(tree)
    assert result.returncode != 0
    assert "runstream.producer.engine.eager_demo -> runstream.producer.plans" in result.stdout
    assert "runstream.producer.engine.eager_sim -> ophyd.sim" in result.stdout


def test_the_contract_importing_a_kafka_client_breaks_the_rule(tmp_path: Path) -> None:
    tree = lay_out_as_installed(tmp_path)
    (tree / "runstream" / "schemas" / "clientish.py").write_text("import confluent_kafka\n")
    (tree / "runstream" / "kafka" / "upward.py").write_text("import runstream.producer\n")
    result = lint_imports(tree)
    assert result.returncode != 0
    assert "runstream.schemas.clientish -> confluent_kafka" in result.stdout
    assert "runstream.kafka.upward -> runstream.producer" in result.stdout


def test_only_runstreams_own_subpackages_import_under_its_name() -> None:
    """From a checkout, the mapped folders import as `runstream.*` and nothing else does."""
    code = (
        "import importlib, runstream\n"
        "for name in ('schemas', 'kafka', 'producer', 'consumers', 'producer.engine'):\n"
        "    importlib.import_module('runstream.' + name)\n"
        "leaks = []\n"
        "for name in ('tests', 'deploy', 'runstream', 'docs'):\n"
        "    try:\n"
        "        importlib.import_module('runstream.' + name)\n"
        "        leaks.append(name)\n"
        "    except ImportError:\n"
        "        pass\n"
        "print(leaks)\n"
    )
    for env in ({}, {"PYTHONPATH": str(ROOT)}):
        result = subprocess.run(
            [sys.executable, "-c", code], cwd=ROOT, env={**env, "PATH": ""},
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == "[]", f"importable under runstream.: {result.stdout}"
