"""One container, whether Kubernetes or compose declares it, and the checks that hold for it
either way: its command, variables, ports, probes and files are ones the code accepts."""

from __future__ import annotations

import functools
import os
import shlex
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import yaml

from tests.deployment.codebase import (
    allowed_env,
    consumer_status,
    engine_routes,
    parse_runstream,
    parse_tiled,
    service_settings,
    settings_for,
    tiled_config_problems,
    tiled_config_variables,
    tiled_env_names,
    tiled_status,
)
from tests.deployment.image import is_ours

#: Variables other than RUNSTREAM_* a runstream container may set: read by libraries or the
#: image's health check.
OTHER_ENV = frozenset(
    {
        "MPLCONFIGDIR",
        "MPLBACKEND",
        "XDG_CACHE_HOME",
        "HOME",
        "TZ",
        "PYTHONUNBUFFERED",
        "HEALTHCHECK_URL",
    }
)

ANY_ADDRESS = ("0.0.0.0", "::")


@dataclass
class Mount:
    source: str  # "secret:NAME", "configMap:NAME", "pvc:NAME", "template:NAME", "emptyDir",
    #              "volume:NAME" (compose), "bind:PATH" (compose)
    files: dict[str, str | None] | None = None  # file name -> text; None: not known here


@dataclass
class Container:
    where: str
    image: str
    argv: list[str]
    env: dict[str, str | None] = field(default_factory=dict)  # None: from a Secret
    ports: dict[str | int, int] = field(default_factory=dict)  # by name and by number
    probes: list[tuple[str, Any, str]] = field(default_factory=list)  # (probe, port, path)
    hooks: list[list[str]] = field(default_factory=list)
    mounts: dict[str, Mount] = field(default_factory=dict)
    namespace: str = ""

    @property
    def is_runstream(self) -> bool:
        return is_ours(self.image)

    @functools.cached_property
    def parsed(self) -> tuple[Any, str | None]:
        program = PurePosixPath(self.argv[0]).name if self.argv else ""
        if program == "runstream":
            return parse_runstream(self.argv[1:])
        if program == "tiled":
            return parse_tiled(self.argv[1:])
        return None, f"runs {self.argv[:1] or 'nothing'}, neither runstream nor tiled"

    @property
    def kind(self) -> str:
        """engine | consume:<service> | consume | client | local | tiled-server | tiled |
        other (not this image) | unknown (its command does not parse)."""
        if not self.is_runstream:
            return "other"
        parsed, error = self.parsed
        if error:
            return "unknown"
        if isinstance(parsed, dict):
            return "tiled-server" if parsed["command"][:1] == ["serve"] else "tiled"
        if parsed.command == "engine":
            return "engine"
        if parsed.command == "consume":
            return f"consume:{parsed.service}" if parsed.service else "consume"
        if parsed.command in ("broker", "tiled", "demo"):
            return "local"
        return "client"

    def file(self, path: str) -> tuple[bool, str | None]:
        """(whether a mount provides ``path``, its text when known); the deepest mount wins."""
        for mount_path, mount in sorted(self.mounts.items(), key=lambda kv: -len(kv[0])):
            rel = os.path.relpath(path, mount_path)
            if rel.startswith(".."):
                continue
            if mount.source.startswith("bind:"):
                host = Path(mount.source[5:]) / ("" if rel == "." else rel)
                return host.is_file(), host.read_text() if host.is_file() else None
            if mount.files is None:
                return mount.source.startswith(("secret:", "configMap:")), None
            return rel in mount.files, mount.files.get(rel)
        return False, None

    def mount_for(self, path: Path) -> Mount | None:
        """The deepest mount that holds ``path``, if any."""
        best = None
        for mount_path, mount in self.mounts.items():
            inside = path == Path(mount_path) or Path(mount_path) in path.parents
            if inside and (best is None or len(mount_path) > len(best[0])):
                best = (mount_path, mount)
        return best[1] if best else None


def tiled_config_text(c: Container) -> str | None:
    parsed, error = c.parsed
    if error or not isinstance(parsed, dict) or "config_path" not in parsed:
        return None
    path = str(parsed["config_path"] or "config.yml")
    _, text = c.file(path)
    return text


def listening(c: Container) -> tuple[str, int] | None:
    """(host, port) the service binds, as its own settings resolve them; None: no server."""
    kind, (parsed, _) = c.kind, c.parsed
    if kind == "engine":
        built, _ = settings_for(kind, c.env)
        engine = built.get("engine")
        if engine is None:
            return None
        port = parsed.port if parsed.port is not None else engine.engine_port
        return parsed.host or engine.engine_host, port
    if kind.startswith("consume:"):
        built, _ = settings_for(kind, c.env)
        consumer = built.get("consumer")
        if consumer is None:
            return None
        return consumer.http_host, getattr(parsed, "http_port", consumer.http_port)
    if kind == "tiled-server":
        config = yaml.safe_load(tiled_config_text(c) or "") or {}
        uvicorn = config.get("uvicorn") or {}
        host = parsed.get("host") or uvicorn.get("host", "127.0.0.1")
        return host, parsed.get("port") or uvicorn.get("port", 8000)
    return None


def service_servers(c: Container) -> list[tuple[str, int]]:
    """(host, port) of servers a consumer service runs besides its health server (the web
    view's app), from its settings models with ``host`` and ``port``, as its options override."""
    parsed, _ = c.parsed
    built, _ = settings_for(c.kind, c.env)
    found = []
    for cls in service_settings(c.kind):
        settings = built.get(cls.__name__)
        if settings is not None and {"host", "port"} <= set(cls.model_fields):
            host = getattr(parsed, "host", None) or settings.host
            port = getattr(parsed, "port", None)
            found.append((host, settings.port if port is None else port))
    return found


def serves(c: Container, path: str) -> str | None:
    """How the container's service answers GET ``path``: "open", "auth" (needs a credential),
    or None (not served)."""
    kind = c.kind
    if kind == "engine":
        routes = engine_routes()
        if path not in routes:
            return None
        built, _ = settings_for(kind, c.env)
        open_reads = built["engine"].open_reads if "engine" in built else True
        return "auth" if routes[path] and not open_reads else "open"
    if kind.startswith("consume:"):
        return None if consumer_status(path) == 404 else "open"
    if kind == "tiled-server":
        status = tiled_status(tiled_config_text(c) or "", path)
        return None if status == 404 else "auth" if status in (401, 403) else "open"
    return None


# -- checks on one container ----------------------------------------------------------------


def shell_invocations(argv: list[str]) -> list[list[str]]:
    """The ``runstream`` command lines in an exec command (directly or in ``sh -c``)."""
    if not argv:
        return []
    if PurePosixPath(argv[0]).name in ("sh", "bash") and argv[1:2] == ["-c"] and len(argv) > 2:
        segments, current = [], []
        for token in shlex.split(argv[2]):
            if token in ("||", "&&", ";", "|"):
                segments.append(current)
                current = []
            else:
                current.append(token)
        segments.append(current)
        return [s for s in segments if s and PurePosixPath(s[0]).name == "runstream"]
    return [argv] if PurePosixPath(argv[0]).name == "runstream" else []


def check_command(c: Container) -> list[str]:
    """The container's command and its exec hooks are real runstream (or tiled) commands."""
    if not c.is_runstream:
        return []
    problems = []
    _, error = c.parsed
    if error:
        problems.append(f"{c.where}: {' '.join(c.argv)}: {error}")
    elif c.kind in ("local", "consume", "client", "tiled"):
        problems.append(f"{c.where}: {' '.join(c.argv)} is not a long-running service")
    for hook in c.hooks:
        invocations = shell_invocations(hook)
        if not invocations:
            problems.append(f"{c.where}: hook {hook} runs no runstream command")
        for argv in invocations:
            _, error = parse_runstream(argv[1:])
            if error:
                problems.append(f"{c.where}: hook {' '.join(argv)}: {error}")
    return problems


def check_env(c: Container) -> list[str]:
    """Variable names are ones the service reads; values are ones its settings accept."""
    kind = c.kind
    if kind in ("other", "unknown"):  # not this image, or a command check_command refuses
        return []
    problems = []
    if kind == "tiled-server":
        text = tiled_config_text(c)
        if text is None:
            return [f"{c.where}: its Tiled configuration file is in no mount"]
        problems += [f"{c.where}: {message}" for message in tiled_config_problems(text)]
        wanted = tiled_config_variables(text)
        allowed = tiled_env_names() | wanted
        for name in sorted(wanted - set(c.env)):
            problems.append(f"{c.where}: the Tiled configuration uses ${{{name}}}, unset here")
    else:
        allowed = allowed_env(kind)
    for name in sorted(c.env):
        if name.startswith(("RUNSTREAM_", "TILED_")):
            if name not in allowed:
                problems.append(f"{c.where}: {name} is not a setting of `{kind}`")
        elif name not in OTHER_ENV:
            problems.append(f"{c.where}: {name} is read by nothing in this image")
    _, invalid = settings_for(kind, c.env)
    problems += [f"{c.where}: {message}" for message in invalid]
    return problems


def check_listening(c: Container) -> list[str]:
    """Declared ports and probes name the port the service binds, on an address they reach,
    and paths it serves without a credential."""
    if c.kind not in ("engine", "tiled-server") and not c.kind.startswith("consume:"):
        return []
    bound = listening(c)
    if bound is None:
        return [f"{c.where}: cannot tell where the service listens (settings refused)"]
    host, port = bound
    problems = []
    if (c.ports or c.probes) and port == 0:
        problems.append(f"{c.where}: the health and metrics server is off (port 0)")
        return problems
    if (c.ports or c.probes) and host not in ANY_ADDRESS:
        problems.append(f"{c.where}: binds {host} only: nothing outside the container reaches it")
    others = service_servers(c) if c.kind.startswith("consume:") else []
    for other_host, other_port in others:
        if other_port in c.ports.values() and other_host not in ANY_ADDRESS:
            problems.append(f"{c.where}: its app binds {other_host} only: nothing reaches it")
    for number in {v for k, v in c.ports.items() if isinstance(k, int)}:
        if number != port and number not in {p for _, p in others}:
            problems.append(f"{c.where}: declares port {number}; the service listens on {port}")
    for probe, ref, path in c.probes:
        number = c.ports.get(ref) if isinstance(ref, str) else ref
        if number is None:
            problems.append(f"{c.where}: {probe} names port {ref!r}, which is not declared")
        elif number != port and number not in {p for _, p in others}:
            problems.append(f"{c.where}: {probe} asks port {number}; the service is on {port}")
        answer = serves(c, path)
        if answer is None:
            problems.append(f"{c.where}: {probe} asks {path}, which `{c.kind}` does not serve")
        elif answer == "auth":
            problems.append(f"{c.where}: {probe} asks {path}, which needs a credential")
    return problems


def check_files(c: Container) -> list[str]:
    """Settings that name a file (token, Kafka settings) point into a mount that has it."""
    if not (c.kind == "engine" or c.kind.startswith("consume:")):
        return []
    problems = []
    for name, value in c.env.items():
        if name.endswith(("_FILE",)) and name.startswith("RUNSTREAM_") and value:
            present, _ = c.file(value)
            if not present:
                problems.append(f"{c.where}: {name}={value} is in no mounted Secret or file")
    return problems


def container_problems(containers: list[Container]) -> list[str]:
    problems = []
    for c in containers:
        for check in (check_command, check_env, check_listening, check_files):
            problems += check(c)
    return problems


# -- checks across containers -----------------------------------------------------------------


def check_detector_files(containers: list[Container]) -> list[str]:
    """The engine's simulated detectors write where a Tiled server reads: the same volume at
    the same path, listed in Tiled's readable_storage."""
    problems = []
    servers = [c for c in containers if c.kind == "tiled-server"]
    for c in (c for c in containers if c.kind == "engine"):
        engine = settings_for(c.kind, c.env)[0].get("engine")
        if engine is None or not servers:
            continue
        path = engine.files_dir
        mount = c.mount_for(path)
        for server in servers:
            theirs = server.mount_for(path)
            if mount is None or theirs is None or theirs.source != mount.source:
                problems.append(
                    f"{c.where}: detector files at {path} are on no volume that "
                    f"{server.where} mounts there"
                )
                continue
            config = yaml.safe_load(tiled_config_text(server) or "") or {}
            readable = (config.get("catalog") or {}).get("readable_storage") or []
            if not any(path == Path(r) or Path(r) in path.parents for r in readable):
                problems.append(f"{server.where}: {path} is not in Tiled's readable_storage")
    return problems
