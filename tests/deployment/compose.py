"""The compose file read as docker compose reads it, so its services are checked like the
Kubernetes ones and its own wiring (dependencies, volumes, addresses) is checked too."""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from tests.deployment.containers import (
    Container,
    Mount,
    check_detector_files,
    container_problems,
    listening,
)
from tests.deployment.image import dockerfile_dirs, image_entrypoint, image_stage
from tests.deployment.render import COMPOSE_FILE, load_healthcheck

_INTERPOLATION = re.compile(r"\$\{(\w+)(?::?-([^}]*))?\}")


def interpolate(value: str, env: Mapping[str, str] | None = None) -> tuple[str, list[str]]:
    """Compose's ``${VAR}`` / ``${VAR:-default}``: (the value, the variables left unset)."""
    env = env or {}
    unset: list[str] = []

    def sub(match: re.Match) -> str:
        name, default = match.group(1), match.group(2)
        if name in env:
            return env[name]
        if default is None:
            unset.append(name)
            return ""
        return default

    return _INTERPOLATION.sub(sub, value), unset


def _as_list(value: Any) -> list[str]:
    if value is None:
        return []
    return shlex.split(value) if isinstance(value, str) else [str(v) for v in value]


def compose_containers(compose: dict, base: Path = COMPOSE_FILE.parent) -> list[Container]:
    healthcheck = load_healthcheck()
    found = []
    for name, svc in (compose.get("services") or {}).items():
        image = svc.get("image", "")
        entrypoint = _as_list(svc.get("entrypoint")) or image_entrypoint(image)
        argv = [*entrypoint, *_as_list(svc.get("command"))]
        raw = svc.get("environment") or {}
        if isinstance(raw, list):
            raw = dict(item.split("=", 1) if "=" in item else (item, "") for item in raw)
        env = {k: interpolate(str(v))[0] for k, v in raw.items()}
        ports: dict[str | int, int] = {}
        for spec in svc.get("ports", []):
            target = int(str(spec).split(":")[-1].split("/")[0])
            ports[target] = target
        c = Container(f"compose:{name}", image, argv, env, ports)
        for volume in svc.get("volumes", []):
            source, _, rest = str(volume).partition(":")
            target = rest.split(":")[0]
            if source.startswith((".", "/")):
                c.mounts[target] = Mount(f"bind:{(base / source).resolve()}")
            else:
                c.mounts[target] = Mount(f"volume:{source}")
        if "healthcheck" not in svc and c.is_runstream:
            try:
                url = healthcheck.health_url(argv, env)
            except ValueError:
                url = "http://127.0.0.1:0/healthz"
            if url:
                parts = urlsplit(url)
                c.probes.append(("healthcheck", parts.port, parts.path))
        found.append(c)
    return found


def check_compose(compose: dict, base: Path = COMPOSE_FILE.parent) -> list[str]:
    """Services' commands, variables, health checks and ports, and the file's own wiring:
    dependencies, volumes, URLs and bootstrap addresses that name its services."""
    problems = []
    services = compose.get("services") or {}
    containers = {c.where.partition(":")[2]: c for c in compose_containers(compose, base)}
    problems += container_problems(list(containers.values()))
    problems += check_detector_files(list(containers.values()))
    declared = set(compose.get("volumes") or {})
    for name, svc in services.items():
        c = containers[name]
        for other, condition in _depends(svc).items():
            if other not in services:
                problems.append(f"compose:{name}: depends on {other}, no such service")
            elif condition == "service_healthy" and not _has_healthcheck(
                containers[other], services[other]
            ):
                problems.append(
                    f"compose:{name}: waits for {other} to be healthy, which has no health check"
                )
        for target, mount in c.mounts.items():
            if mount.source.startswith("volume:"):
                volume = mount.source.partition(":")[2]
                if volume not in declared:
                    problems.append(f"compose:{name}: volume {volume} is not declared")
                if c.is_runstream and target not in dockerfile_dirs(image=c.image):
                    problems.append(
                        f"compose:{name}: volume at {target}, which the image does "
                        "not make for its user (the volume would be root's)"
                    )
            elif mount.source.startswith("bind:") and not Path(mount.source[5:]).exists():
                problems.append(f"compose:{name}: {mount.source[5:]} does not exist")
        for key, value in (svc.get("environment") or {}).items():
            _, unset = interpolate(str(value))
            problems += [f"compose:{name}: {key} uses ${{{u}}} with no default" for u in unset]
        url = c.env.get("RUNSTREAM_TILED_URL")
        if url:
            parts = urlsplit(url)
            other = containers.get(parts.hostname or "")
            bound = other and listening(other)
            if not bound or bound[1] != (parts.port or 80):
                problems.append(f"compose:{name}: RUNSTREAM_TILED_URL {url} is no service here")
        for address in filter(None, (c.env.get("RUNSTREAM_KAFKA_BOOTSTRAP") or "").split(",")):
            if not any(
                f"//{address}" in (k.env.get("KAFKA_ADVERTISED_LISTENERS") or "")
                for k in containers.values()
            ):
                problems.append(f"compose:{name}: no Kafka service advertises {address}")
    return problems


def _depends(svc: dict) -> dict[str, str]:
    depends = svc.get("depends_on") or {}
    if isinstance(depends, list):
        return dict.fromkeys(depends, "service_started")
    return {k: (v or {}).get("condition", "service_started") for k, v in depends.items()}


def _has_healthcheck(c: Container, svc: dict) -> bool:
    if "healthcheck" in svc:
        return not svc["healthcheck"].get("disable", False)
    return c.is_runstream and "HEALTHCHECK" in {i.instruction for i in image_stage(c.image)}
