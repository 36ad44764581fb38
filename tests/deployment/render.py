"""Where the deployment artefacts are, and each one read as its own tool reads it: kustomize
for the overlays, YAML for the compose file, Docker's rules for the Dockerfile."""

from __future__ import annotations

import functools
import importlib.util
import json
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
OVERLAYS = ("dev", "production", "strimzi")
COMPOSE_FILE = DEPLOY / "compose" / "compose.yml"
DOCKERFILE = DEPLOY / "Dockerfile"
DOCKERIGNORE = DEPLOY / "Dockerfile.dockerignore"
HEALTHCHECK_SCRIPT = DEPLOY / "docker" / "healthcheck.py"
GUIDE = DEPLOY / "README.md"


# -- Kubernetes -----------------------------------------------------------------------------


def kustomize_command(path: Path) -> list[str]:
    kubectl, kustomize = shutil.which("kubectl"), shutil.which("kustomize")
    if kubectl:
        return [kubectl, "kustomize", str(path)]
    if kustomize:
        return [kustomize, "build", str(path)]
    raise RuntimeError(
        "rendering deploy/k8s needs kubectl (which includes kustomize) or kustomize on PATH"
    )


@functools.cache
def _rendered(path: Path) -> str:
    cmd = kustomize_command(path)
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{done.stderr}")
    return done.stdout


def render(overlay: str) -> list[dict]:
    """The overlay's resources as ``kubectl kustomize`` prints them (a fresh copy each call)."""
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml's, when PyYAML has it
    text = _rendered(K8S / "overlays" / overlay)
    return [doc for doc in yaml.load_all(text, Loader=loader) if doc]


def find(resources: list[dict], kind: str, name: str) -> dict:
    """The resource of this kind whose name is ``name`` or starts with ``name-<hash>``."""
    for res in resources:
        got = res["metadata"]["name"]
        if res.get("kind") == kind and (
            got == name or re.fullmatch(rf"{name}-[a-z0-9]{{10}}", got)
        ):
            return res
    raise KeyError(f"{kind}/{name}")


# -- compose --------------------------------------------------------------------------------


def load_compose(path: Path = COMPOSE_FILE) -> dict:
    return yaml.safe_load(path.read_text())


# -- the image ------------------------------------------------------------------------------


@dataclass
class Instruction:
    instruction: str
    arguments: str

    def json(self) -> list[str] | None:
        try:
            value = json.loads(self.arguments)
        except ValueError:
            return None
        return value if isinstance(value, list) else None


def parse_dockerfile(text: str) -> list[list[Instruction]]:
    """Stages (from FROM to the next FROM) of instructions, continuation lines joined."""
    stages: list[list[Instruction]] = []
    logical, buffer = [], ""
    for line in text.splitlines():
        stripped = line.strip()
        if not buffer and (not stripped or stripped.startswith("#")):
            continue
        if stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            buffer += stripped[:-1] + " "
            continue
        logical.append(buffer + stripped)
        buffer = ""
    for line in logical:
        word, _, rest = line.partition(" ")
        instruction = Instruction(word.upper(), rest.strip())
        if instruction.instruction == "FROM":
            stages.append([instruction])
        elif stages:  # ARGs before the first FROM belong to no stage
            stages[-1].append(instruction)
    return stages


def final_stage(path: Path = DOCKERFILE) -> list[Instruction]:
    return parse_dockerfile(path.read_text())[-1]


@functools.cache
def load_healthcheck() -> Any:
    """The image's health-check script, imported as a module."""
    spec = importlib.util.spec_from_file_location("runstream_image_healthcheck", HEALTHCHECK_SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
