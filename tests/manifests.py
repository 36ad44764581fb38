"""The deployment artefacts under deploy/, read the way their runtimes read them, and checked
against the code they run.

Every ``check_*`` function returns a list of problems (empty: all is well), so the tests can
feed it the real manifests and deliberately broken ones. What the code offers is taken from
the code itself: the ``runstream`` argparse parser, the pydantic settings classes, the routes
the engine's app declares, a live consumer health server, a Tiled app, Tiled's CLI.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import functools
import importlib
import importlib.util
import io
import json
import os
import re
import shlex
import shutil
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlsplit

import yaml

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
OVERLAYS = ("dev", "production", "strimzi")
COMPOSE_FILE = DEPLOY / "compose" / "compose.yml"
DOCKERFILE = DEPLOY / "Dockerfile"
DOCKERIGNORE = DEPLOY / "Dockerfile.dockerignore"
HEALTHCHECK_SCRIPT = DEPLOY / "docker" / "healthcheck.py"
GUIDE = DEPLOY / "README.md"

#: The image's name (any registry, any tag) and its ENTRYPOINT.
IMAGE_NAME = "runstream"
IMAGE_ENTRYPOINT = ["runstream"]

#: Secrets an overlay uses without defining them: the operators create them (see the guide).
EXTERNAL_SECRETS: dict[str, frozenset[str]] = {
    "dev": frozenset(),
    "production": frozenset(
        {
            "runstream-api-token",
            "runstream-kafka-client",
            "runstream-tiled",
            "runstream-tiled-db",
            "runstream-tiled-tls",
        }
    ),
}
EXTERNAL_SECRETS["strimzi"] = EXTERNAL_SECRETS["production"]

#: Containers allowed a writable root filesystem, and why.
WRITABLE_ROOT = {"kafka": "the official Kafka image writes its server.properties at start"}

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

#: Kubernetes versions whose schemas every built-in resource must satisfy (strict mode).
KUBE_VERSIONS = ("1.30.0", "latest")

WORKLOADS = ("Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job")
ANY_ADDRESS = ("0.0.0.0", "::")


# -- rendering ------------------------------------------------------------------------------


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


def find(resources: list[dict], kind: str, name: str) -> dict:
    """The resource of this kind whose name is ``name`` or starts with ``name-<hash>``."""
    for res in resources:
        got = res["metadata"]["name"]
        if res.get("kind") == kind and (
            got == name or re.fullmatch(rf"{name}-[a-z0-9]{{10}}", got)
        ):
            return res
    raise KeyError(f"{kind}/{name}")


def render(overlay: str) -> list[dict]:
    """The overlay's resources as ``kubectl kustomize`` prints them (a fresh copy each call)."""
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml's, when PyYAML has it
    text = _rendered(K8S / "overlays" / overlay)
    return [doc for doc in yaml.load_all(text, Loader=loader) if doc]


def load_compose(path: Path = COMPOSE_FILE) -> dict:
    return yaml.safe_load(path.read_text())


# -- what the code offers -------------------------------------------------------------------


@functools.cache
def runstream_parser() -> argparse.ArgumentParser:
    from runstream.cli import build_parser

    return build_parser()


def parse_runstream(args: list[str]) -> tuple[argparse.Namespace | None, str | None]:
    """``runstream ARGS`` through the real parser: (namespace, None) or (None, the error)."""
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            return runstream_parser().parse_args(args), None
        except SystemExit as exc:
            lines = err.getvalue().strip().splitlines()
            if exc.code == 0:
                return None, "only prints help"
            return None, lines[-1] if lines else "refused by runstream's parser"


def parse_tiled(args: list[str]) -> tuple[dict | None, str | None]:
    """``tiled ARGS`` through Tiled's own command line: (the command's parameters, None) or
    (None, the error)."""
    import typer
    from tiled.commandline.main import cli_app

    command = typer.main.get_command(cli_app)
    try:
        ctx = command.make_context("tiled", list(args))
        path = []
        while hasattr(command, "resolve_command"):
            name, command, rest = command.resolve_command(ctx, [*ctx._protected_args, *ctx.args])
            path.append(name)
            ctx = command.make_context(name, rest, parent=ctx)
    except Exception as exc:  # typer vendors click: its exceptions have no public base here
        message = exc.format_message() if hasattr(exc, "format_message") else repr(exc)
        return None, message or "only prints help"
    return {"command": path, **ctx.params}, None


def env_names(settings_class: type) -> set[str]:
    """The environment variables a pydantic settings class reads."""
    prefix = settings_class.model_config.get("env_prefix", "")
    return {(prefix + name).upper() for name in settings_class.model_fields}


_ENV_READ = re.compile(
    r"""os\.(?:environ\.get|getenv)\(\s*["'](RUNSTREAM_\w+)["']"""
    r"""|os\.environ\[\s*["'](RUNSTREAM_\w+)["']\s*\]"""
)


def direct_reads(*paths: Path) -> set[str]:
    """RUNSTREAM_* variables read straight from os.environ in these files (or folders)."""
    found: set[str] = set()
    for path in paths:
        files = sorted(path.rglob("*.py")) if path.is_dir() else [path]
        for file in files:
            for match in _ENV_READ.finditer(file.read_text()):
                found.add(match.group(1) or match.group(2))
    return found


def _service_paths() -> dict[str, list[Path]]:
    """Each consumer service's own source: its module, or its whole subpackage."""
    from consumers.services import SERVICE_MODULES

    paths = {}
    for name in SERVICE_MODULES:
        module = importlib.import_module(name)
        file = Path(module.__file__)
        own = file.parent if module.__package__ != "consumers" else file
        paths[module.SERVICE.name] = [own]
    return paths


@functools.cache
def allowed_env(kind: str) -> frozenset[str]:
    """The RUNSTREAM_* variables a container of this kind reads (its settings and direct reads).

    Kinds: ``engine``, ``consume:<service>``, ``client`` (submit, stop, ...).
    """
    from consumers.config import ConsumerSettings
    from producer.config import PublisherSettings
    from producer.engine.config import EngineSettings

    common = direct_reads(ROOT / "runstream" / "cli.py")
    if kind == "engine":
        return frozenset(
            common
            | env_names(EngineSettings)
            | env_names(PublisherSettings)
            | direct_reads(ROOT / "producer")
        )
    if kind == "client":
        return frozenset(common | direct_reads(ROOT / "producer" / "engine" / "cli.py"))
    if kind.startswith("consume"):
        services = _service_paths()
        own = {p for paths in services.values() for p in paths}
        shared = [p for p in (ROOT / "consumers").glob("*.py") if p not in own]
        names = common | env_names(ConsumerSettings) | direct_reads(*shared)
        service = kind.partition(":")[2]
        if service:
            names |= direct_reads(*services[service])
        return frozenset(names)
    return frozenset()


def deployment_env() -> dict[str, set[str]]:
    """Every RUNSTREAM_* variable a deployed service reads, by service kind (for the guide)."""
    from consumers.services import services

    kinds = ["engine", "client", *(f"consume:{name}" for name in services())]
    return {kind: set(allowed_env(kind)) for kind in kinds}


@functools.cache
def tiled_env_names() -> frozenset[str]:
    from tiled.config import CatalogConfig
    from tiled.server.settings import Settings

    return frozenset(env_names(Settings) | env_names(CatalogConfig))


@contextlib.contextmanager
def environment(values: Mapping[str, str | None], clear_prefix: str = "RUNSTREAM_") -> Iterator:
    """os.environ with only ``values`` for ``clear_prefix`` variables, restored afterwards."""
    saved = dict(os.environ)
    try:
        for name in [n for n in os.environ if n.startswith(clear_prefix)]:
            del os.environ[name]
        os.environ.update({k: v for k, v in values.items() if v is not None})
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def settings_for(kind: str, env: Mapping[str, str | None]) -> tuple[dict[str, Any], list[str]]:
    """The service's settings objects built from ``env``, and the validation errors."""
    from pydantic import ValidationError
    from pydantic_settings import SettingsError

    from consumers.config import ConsumerSettings
    from producer.config import PublisherSettings
    from producer.engine.config import EngineSettings

    classes: dict[str, type] = {}
    if kind == "engine":
        classes = {"engine": EngineSettings, "publisher": PublisherSettings}
    elif kind.startswith("consume"):
        classes = {"consumer": ConsumerSettings}
    built, problems = {}, []
    with environment(env):
        for name, cls in classes.items():
            try:
                built[name] = cls()
            except (ValidationError, SettingsError) as exc:
                problems.append(f"{cls.__name__} refuses the environment: {exc}")
    return built, problems


@functools.cache
def engine_routes() -> dict[str, bool]:
    """GET paths of the engine's app -> whether they need the token when reads are closed."""
    from producer.engine.app import create_app
    from producer.engine.auth import TokenGuard

    guard = TokenGuard("token", open_reads=False)
    app = create_app(object(), guard)  # type: ignore[arg-type]  (routes only; never served)
    routes = {}
    for route in app.routes:
        if "GET" in getattr(route, "methods", ()) and "{" not in route.path:
            deps = [d.dependency for d in getattr(route, "dependencies", [])]
            routes[route.path] = guard.read in deps
    return routes


@functools.cache
def consumer_status(path: str) -> int:
    """The status a consumer's real health server answers for ``path`` (alive and ready)."""
    from prometheus_client import CollectorRegistry

    from consumers.health import HealthServer

    server = HealthServer("127.0.0.1", 0, CollectorRegistry(), lambda: True, lambda: True)
    try:
        url = f"http://127.0.0.1:{server.port}{path}"
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                return response.status
        except urllib.error.HTTPError as exc:
            return exc.code
    finally:
        server.close()


@functools.cache
def _tiled_client(config_text: str) -> Any:
    import warnings

    with warnings.catch_warnings():  # starlette's notice about its httpx-based test client
        warnings.simplefilter("ignore")
        from fastapi.testclient import TestClient
    from tiled.adapters.mapping import MapAdapter
    from tiled.config import Authentication, MetricsConfig
    from tiled.server.app import build_app

    config = yaml.safe_load(config_text) or {}
    app = build_app(
        MapAdapter({}),
        authentication=Authentication(**(config.get("authentication") or {})),
        server_settings={"metrics": MetricsConfig(**(config.get("metrics") or {}))},
    )
    return TestClient(app)  # no lifespan: routes answer without a catalog


def tiled_status(config_text: str, path: str) -> int:
    """What a Tiled app with this configuration's authentication and metrics answers."""
    return _tiled_client(config_text).get(path).status_code


def tiled_config_problems(text: str) -> list[str]:
    """The configuration through Tiled's own parser, with placeholders for its ${...}."""
    from tiled.config import parse_configs

    placeholders = {name: f"postgresql://u:p@h:5432/{name.lower()}" for name in _names(text)}
    with environment(placeholders, clear_prefix="TILED_"), _temp_file(text) as path:
        try:
            parse_configs(path)
        except Exception as exc:  # pydantic, yaml, import errors: all say what is wrong
            return [f"Tiled refuses the configuration: {exc}"]
    return []


@contextlib.contextmanager
def _temp_file(text: str) -> Iterator[Path]:
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "config.yml"
        path.write_text(text)
        yield path


def _names(text: str) -> set[str]:
    """The variables a Tiled configuration expands (``$NAME`` or ``${NAME}``)."""
    return {a or b for a, b in re.findall(r"\$\{(\w+)\}|\$([A-Za-z_]\w*)", text)}


# -- containers, from Kubernetes or compose -------------------------------------------------


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
        return image_name(self.image) == IMAGE_NAME

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


def image_name(image: str) -> str:
    last = image.rsplit("/", 1)[-1]
    return last.split("@", 1)[0].split(":", 1)[0]


def _by_name(resources: list[dict], kind: str) -> dict[tuple[str, str], dict]:
    return {
        (r["metadata"].get("namespace", ""), r["metadata"]["name"]): r
        for r in resources
        if r.get("kind") == kind
    }


def pod_templates(resources: list[dict]) -> Iterator[tuple[dict, dict]]:
    for res in resources:
        if res.get("kind") in WORKLOADS:
            yield res, res["spec"]["template"]
        elif res.get("kind") == "CronJob":
            yield res, res["spec"]["jobTemplate"]["spec"]["template"]


def _secret_files(secret: dict | None) -> dict[str, str | None] | None:
    if secret is None:
        return None
    files: dict[str, str | None] = {
        k: base64.b64decode(v).decode() for k, v in (secret.get("data") or {}).items()
    }
    files.update(secret.get("stringData") or {})
    return files


def secret_value(resources: list[dict], namespace: str, name: str, key: str) -> str | None:
    files = _secret_files(_by_name(resources, "Secret").get((namespace, name)))
    return (files or {}).get(key)


def k8s_containers(resources: list[dict]) -> list[Container]:
    config_maps = _by_name(resources, "ConfigMap")
    secrets = _by_name(resources, "Secret")
    found = []
    for res, template in pod_templates(resources):
        ns = res["metadata"].get("namespace", "")
        spec = template["spec"]
        volumes = {v["name"]: v for v in spec.get("volumes", [])}
        claims = {t["metadata"]["name"] for t in res["spec"].get("volumeClaimTemplates", [])}
        for c in [*spec.get("initContainers", []), *spec["containers"]]:
            env: dict[str, str | None] = {}
            for source in c.get("envFrom", []):
                if "configMapRef" in source:
                    cm = config_maps.get((ns, source["configMapRef"]["name"]), {})
                    env.update({k: str(v) for k, v in (cm.get("data") or {}).items()})
                if "secretRef" in source:
                    keys = _secret_files(secrets.get((ns, source["secretRef"]["name"]))) or {}
                    env.update(dict.fromkeys(keys))
            for item in c.get("env", []):
                value = item.get("value")
                ref = (item.get("valueFrom") or {}).get("configMapKeyRef")
                if ref:
                    cm = config_maps.get((ns, ref["name"]), {})
                    value = (cm.get("data") or {}).get(ref["key"])
                env[item["name"]] = None if value is None else str(value)
            ports: dict[str | int, int] = {}
            for port in c.get("ports", []):
                ports[port["containerPort"]] = port["containerPort"]
                if "name" in port:
                    ports[port["name"]] = port["containerPort"]
            probes = [
                (kind, c[kind]["httpGet"].get("port"), c[kind]["httpGet"].get("path", "/"))
                for kind in ("startupProbe", "livenessProbe", "readinessProbe")
                if "httpGet" in c.get(kind, {})
            ]
            hooks = [
                hook["exec"]["command"]
                for hook in (c.get("lifecycle") or {}).values()
                if "exec" in hook
            ]
            mounts = {}
            for m in c.get("volumeMounts", []):
                mounts[m["mountPath"]] = _mount(
                    volumes.get(m["name"]), m, claims, ns, config_maps, secrets
                )
            entrypoint = IMAGE_ENTRYPOINT if image_name(c["image"]) == IMAGE_NAME else []
            argv = [*(c.get("command") or entrypoint), *c.get("args", [])]
            where = f"{res['kind']}/{res['metadata']['name']}/{c['name']}"
            found.append(Container(where, c["image"], argv, env, ports, probes, hooks, mounts, ns))
    return found


def _mount(
    volume: dict | None, mount: dict, claims: set[str], ns: str, config_maps: dict, secrets: dict
) -> Mount:
    if volume is None:
        name = mount["name"]
        return Mount(f"template:{name}") if name in claims else Mount(f"missing:{name}")
    if "secret" in volume:
        name = volume["secret"]["secretName"]
        files = _secret_files(secrets.get((ns, name)))
        return Mount(f"secret:{name}", _items(volume["secret"], files, mount))
    if "configMap" in volume:
        name = volume["configMap"]["name"]
        cm = config_maps.get((ns, name))
        files = None if cm is None else {k: str(v) for k, v in (cm.get("data") or {}).items()}
        return Mount(f"configMap:{name}", _items(volume["configMap"], files, mount))
    if "persistentVolumeClaim" in volume:
        return Mount(f"pvc:{volume['persistentVolumeClaim']['claimName']}")
    if "emptyDir" in volume:
        return Mount("emptyDir")
    return Mount("other")


def _items(source: dict, files: dict | None, mount: dict) -> dict | None:
    if files is None:
        return None
    if "items" in source:
        files = {item["path"]: files.get(item["key"]) for item in source["items"]}
    if mount.get("subPath"):
        return {"": files.get(mount["subPath"])} if mount["subPath"] in files else {}
    return files


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
        entrypoint = _as_list(svc.get("entrypoint"))
        if not entrypoint and image_name(image) == IMAGE_NAME:
            entrypoint = IMAGE_ENTRYPOINT
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


@functools.cache
def load_healthcheck() -> Any:
    spec = importlib.util.spec_from_file_location("runstream_image_healthcheck", HEALTHCHECK_SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# -- checks on one container -----------------------------------------------------------------


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
        wanted = _names(text)
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
    for number in {v for k, v in c.ports.items() if isinstance(k, int)}:
        if number != port:
            problems.append(f"{c.where}: declares port {number}; the service listens on {port}")
    for probe, ref, path in c.probes:
        number = c.ports.get(ref) if isinstance(ref, str) else ref
        if number is None:
            problems.append(f"{c.where}: {probe} names port {ref!r}, which is not declared")
        elif number != port:
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


# -- checks on a Kubernetes render ------------------------------------------------------------


@functools.cache
def _patch_schema_cache() -> None:
    import kubernetes_validate.utils as kv

    kv.schema_contents = functools.cache(kv.schema_contents)


def check_schemas(resources: list[dict]) -> list[str]:
    """Built-in kinds against the Kubernetes schemas (strict); custom resources against ours."""
    import jsonschema
    import kubernetes_validate.utils as kv

    _patch_schema_cache()
    versions = [kv.latest_version() if v == "latest" else v for v in KUBE_VERSIONS]
    problems = []
    for res in resources:
        where = f"{res.get('kind')}/{res.get('metadata', {}).get('name')}"
        group = res.get("apiVersion", "").rpartition("/")[0]
        if group in CUSTOM_SCHEMAS:
            schema = CUSTOM_SCHEMAS[group].get(res.get("kind"))
            if schema is None:
                problems.append(f"{where}: no schema for {res.get('kind')} in {group}")
                continue
            for error in jsonschema.Draft202012Validator(schema).iter_errors(res):
                path = ".".join(str(p) for p in error.absolute_path)
                problems.append(f"{where}: {path}: {error.message}")
            continue
        for version in versions:
            try:
                kv.validate(res, version, strict=True)
            except kv.ValidationError as exc:
                path = ".".join(str(p) for p in exc.path)
                problems.append(f"{where} (Kubernetes {version}): {path}: {exc.message}")
            except kv.SchemaNotFoundError as exc:
                problems.append(f"{where}: {exc.message}")
    return problems


def _matches(selector: Mapping[str, str], labels: Mapping[str, str]) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def _templates_in(resources: list[dict], namespace: str) -> list[tuple[dict, dict]]:
    return [
        (r, t)
        for r, t in pod_templates(resources)
        if r["metadata"].get("namespace", "") == namespace
    ]


def check_selectors(resources: list[dict]) -> list[str]:
    """Services, budgets and monitors select pods (or Services) that exist; ports resolve."""
    problems = []
    containers = {c.where: c for c in k8s_containers(resources)}
    services = _by_name(resources, "Service")
    for res, template in pod_templates(resources):
        selector = res["spec"].get("selector", {}).get("matchLabels", {})
        if not _matches(selector, template["metadata"].get("labels", {})):
            problems.append(
                f"{res['kind']}/{res['metadata']['name']}: its selector does not "
                "match its own pod template"
            )
        name = res["spec"].get("serviceName")
        if name and (res["metadata"].get("namespace", ""), name) not in services:
            problems.append(
                f"{res['kind']}/{res['metadata']['name']}: serviceName {name} is no Service here"
            )
    for (ns, name), svc in services.items():
        selector = svc["spec"].get("selector")
        if not selector:
            continue
        chosen = [
            (r, t)
            for r, t in _templates_in(resources, ns)
            if _matches(selector, t["metadata"].get("labels", {}))
        ]
        if not chosen:
            problems.append(f"Service/{name}: selects no pods ({selector})")
            continue
        for port in svc["spec"].get("ports", []):
            target = port.get("targetPort", port["port"])
            if not any(
                target in containers[f"{r['kind']}/{r['metadata']['name']}/{c['name']}"].ports
                for r, t in chosen
                for c in t["spec"]["containers"]
            ):
                problems.append(
                    f"Service/{name}: port {port['port']} targets {target!r}, "
                    "which no selected container declares"
                )
    for (ns, name), pdb in _by_name(resources, "PodDisruptionBudget").items():
        selector = pdb["spec"].get("selector", {}).get("matchLabels", {})
        if not any(
            _matches(selector, t["metadata"].get("labels", {}))
            for _, t in _templates_in(resources, ns)
        ):
            problems.append(f"PodDisruptionBudget/{name}: selects no pods ({selector})")
    for (ns, name), ingress in _by_name(resources, "Ingress").items():
        for rule in ingress["spec"].get("rules", []):
            for path in rule.get("http", {}).get("paths", []):
                backend = path["backend"]["service"]
                svc = services.get((ns, backend["name"]))
                port = backend["port"].get("name", backend["port"].get("number"))
                if svc is None:
                    problems.append(f"Ingress/{name}: no Service {backend['name']}")
                elif not any(port in (p.get("name"), p["port"]) for p in svc["spec"]["ports"]):
                    problems.append(
                        f"Ingress/{name}: Service {backend['name']} has no port {port!r}"
                    )
    problems += _check_monitors(resources, containers)
    return problems


def _check_monitors(resources: list[dict], containers: dict[str, Container]) -> list[str]:
    problems = []
    services = _by_name(resources, "Service")
    for (ns, name), monitor in _by_name(resources, "ServiceMonitor").items():
        selector = monitor["spec"].get("selector", {}).get("matchLabels", {})
        chosen = [
            s
            for (sns, _), s in services.items()
            if sns == ns and _matches(selector, s["metadata"].get("labels", {}))
        ]
        if not chosen:
            problems.append(f"ServiceMonitor/{name}: selects no Service ({selector})")
        for endpoint in monitor["spec"].get("endpoints", []):
            for svc in chosen:
                port = next(
                    (p for p in svc["spec"]["ports"] if p.get("name") == endpoint.get("port")), None
                )
                if port is None:
                    problems.append(
                        f"ServiceMonitor/{name}: Service/{svc['metadata']['name']} "
                        f"has no port named {endpoint.get('port')!r}"
                    )
                    continue
                target = port.get("targetPort", port["port"])
                selector = svc["spec"].get("selector", {})
                for c in containers.values():
                    res = next(
                        r
                        for r, _ in pod_templates(resources)
                        if c.where.startswith(f"{r['kind']}/{r['metadata']['name']}/")
                    )
                    labels = res["spec"]["template"]["metadata"].get("labels", {})
                    if not (_matches(selector, labels) and target in c.ports):
                        continue
                    answer = serves(c, endpoint.get("path", "/metrics"))
                    has_credential = any(
                        k in endpoint for k in ("authorization", "basicAuth", "bearerTokenSecret")
                    )
                    if answer is None:
                        problems.append(
                            f"ServiceMonitor/{name}: {c.where} does not serve "
                            f"{endpoint.get('path')}"
                        )
                    elif answer == "auth" and not has_credential:
                        problems.append(
                            f"ServiceMonitor/{name}: {endpoint.get('path')} of "
                            f"{c.where} needs a credential"
                        )
    return problems


def check_scrape_annotations(resources: list[dict]) -> list[str]:
    """prometheus.io annotations name a port of the pod and a path served without credential."""
    problems = []
    containers = k8s_containers(resources)
    for res, template in pod_templates(resources):
        notes = template["metadata"].get("annotations") or {}
        if notes.get("prometheus.io/scrape") != "true":
            continue
        where = f"{res['kind']}/{res['metadata']['name']}"
        port = int(notes.get("prometheus.io/port", "0"))
        path = notes.get("prometheus.io/path", "/metrics")
        owners = [c for c in containers if c.where.startswith(where + "/") and port in c.ports]
        if not owners:
            problems.append(f"{where}: scrape port {port} is declared by no container")
        for c in owners:
            answer = serves(c, path)
            if answer != "open":
                problems.append(
                    f"{where}: scrape path {path} is "
                    f"{'not served' if answer is None else 'behind a credential'}"
                )
    return problems


def check_references(resources: list[dict], external: frozenset[str] = frozenset()) -> list[str]:
    """ConfigMaps, Secrets and claims that pods, Ingresses and monitors use exist (Secrets may be
    external, when listed), with the keys asked for."""
    problems = []
    config_maps, secrets = _by_name(resources, "ConfigMap"), _by_name(resources, "Secret")
    claims = _by_name(resources, "PersistentVolumeClaim")

    def need(kind: str, ns: str, name: str, key: str | None, where: str) -> None:
        table = config_maps if kind == "ConfigMap" else secrets
        found = table.get((ns, name))
        if found is None:
            if not (kind == "Secret" and name in external):
                problems.append(f"{where}: {kind} {name} is neither defined nor external")
            return
        if key is not None:
            keys = set(found.get("data") or {}) | set(found.get("stringData") or {})
            if key not in keys:
                problems.append(f"{where}: {kind} {name} has no key {key!r}")

    for res, template in pod_templates(resources):
        ns = res["metadata"].get("namespace", "")
        where = f"{res['kind']}/{res['metadata']['name']}"
        spec = template["spec"]
        templates = {t["metadata"]["name"] for t in res["spec"].get("volumeClaimTemplates", [])}
        for volume in spec.get("volumes", []):
            if "configMap" in volume:
                for item in volume["configMap"].get("items", []) or [None]:
                    need("ConfigMap", ns, volume["configMap"]["name"], item and item["key"], where)
            if "secret" in volume:
                for item in volume["secret"].get("items", []) or [None]:
                    need("Secret", ns, volume["secret"]["secretName"], item and item["key"], where)
            if "persistentVolumeClaim" in volume:
                claim = volume["persistentVolumeClaim"]["claimName"]
                if (ns, claim) not in claims:
                    problems.append(f"{where}: PersistentVolumeClaim {claim} is not defined")
        for c in [*spec.get("initContainers", []), *spec["containers"]]:
            mounted = {v["name"] for v in spec.get("volumes", [])} | templates
            for m in c.get("volumeMounts", []):
                if m["name"] not in mounted:
                    problems.append(f"{where}/{c['name']}: mounts {m['name']}, no such volume")
            for source in c.get("envFrom", []):
                for kind, ref in (("ConfigMap", "configMapRef"), ("Secret", "secretRef")):
                    if ref in source:
                        need(kind, ns, source[ref]["name"], None, where)
            for item in c.get("env", []):
                value_from = item.get("valueFrom") or {}
                for kind, ref in (("ConfigMap", "configMapKeyRef"), ("Secret", "secretKeyRef")):
                    if ref in value_from and not value_from[ref].get("optional"):
                        need(kind, ns, value_from[ref]["name"], value_from[ref]["key"], where)
    for (ns, name), ingress in _by_name(resources, "Ingress").items():
        for tls in ingress["spec"].get("tls", []):
            need("Secret", ns, tls["secretName"], None, f"Ingress/{name}")
    for (ns, name), monitor in _by_name(resources, "ServiceMonitor").items():
        for endpoint in monitor["spec"].get("endpoints", []):
            ref = (endpoint.get("authorization") or {}).get("credentials")
            if ref:
                need("Secret", ns, ref["name"], ref["key"], f"ServiceMonitor/{name}")
    return problems


def check_security(resources: list[dict]) -> list[str]:
    """Non-root, no privilege escalation, no capabilities, read-only root where the image
    allows, and requests and limits for CPU and memory, for every container."""
    problems = []
    for res, template in pod_templates(resources):
        spec = template["spec"]
        pod = spec.get("securityContext") or {}
        for c in [*spec.get("initContainers", []), *spec["containers"]]:
            where = f"{res['kind']}/{res['metadata']['name']}/{c['name']}"
            ctx = c.get("securityContext") or {}
            if not ctx.get("runAsNonRoot", pod.get("runAsNonRoot")):
                problems.append(f"{where}: runAsNonRoot is not set")
            if ctx.get("runAsUser", pod.get("runAsUser")) == 0:
                problems.append(f"{where}: runs as uid 0")
            if ctx.get("allowPrivilegeEscalation", True):
                problems.append(f"{where}: allowPrivilegeEscalation is not false")
            if "ALL" not in (ctx.get("capabilities") or {}).get("drop", []):
                problems.append(f"{where}: capabilities are not dropped")
            if not ctx.get("readOnlyRootFilesystem") and c["name"] not in WRITABLE_ROOT:
                problems.append(f"{where}: the root filesystem is writable")
            resources_ = c.get("resources") or {}
            for part in ("requests", "limits"):
                for what in ("cpu", "memory"):
                    if what not in (resources_.get(part) or {}):
                        problems.append(f"{where}: no {what} in {part}")
    return problems


_QUANTITY = {
    "Ki": 2**10,
    "Mi": 2**20,
    "Gi": 2**30,
    "Ti": 2**40,
    "k": 10**3,
    "M": 10**6,
    "G": 10**9,
    "T": 10**12,
}


def quantity_bytes(value: str | int) -> int:
    match = re.fullmatch(r"(\d+)([KMGT]i?|k)?", str(value))
    if not match:
        raise ValueError(f"not a storage quantity: {value!r}")
    return int(match.group(1)) * _QUANTITY.get(match.group(2) or "", 1)


def _replicas(res: dict) -> int:
    return int(res["spec"].get("replicas", 1))


def _workload_of(resources: list[dict], c: Container) -> dict:
    return next(
        r
        for r, _ in pod_templates(resources)
        if c.where.startswith(f"{r['kind']}/{r['metadata']['name']}/")
    )


def _claim_size(resources: list[dict], c: Container, mount: Mount) -> tuple[int, list] | None:
    """(requested bytes, access modes) of the claim behind a mount, when it has one."""
    workload = _workload_of(resources, c)
    if mount.source.startswith("template:"):
        name = mount.source.partition(":")[2]
        spec = next(
            t["spec"]
            for t in workload["spec"]["volumeClaimTemplates"]
            if t["metadata"]["name"] == name
        )
    elif mount.source.startswith("pvc:"):
        claim = _by_name(resources, "PersistentVolumeClaim").get(
            (c.namespace, mount.source.partition(":")[2])
        )
        if claim is None:
            return None
        spec = claim["spec"]
    else:
        return None
    return quantity_bytes(spec["resources"]["requests"]["storage"]), spec.get("accessModes", [])


def _mount_for(c: Container, path: Path) -> Mount | None:
    best = None
    for mount_path, mount in c.mounts.items():
        inside = path == Path(mount_path) or Path(mount_path) in path.parents
        if inside and (best is None or len(mount_path) > len(best[0])):
            best = (mount_path, mount)
    return best[1] if best else None


def check_wiring(resources: list[dict]) -> list[str]:
    """The services agree with each other: the consumers read the engine's topic, in groups of
    their own, with no more replicas than partitions; the engine's state is on volumes big
    enough; URLs and bootstrap addresses name Services of the render."""
    problems = []
    containers = k8s_containers(resources)
    engines = [c for c in containers if c.kind == "engine"]
    consumers = [c for c in containers if c.kind.startswith("consume:")]
    for c in engines:
        workload = _workload_of(resources, c)
        if workload["kind"] != "StatefulSet" or _replicas(workload) != 1:
            problems.append(f"{c.where}: the engine must be a StatefulSet of one replica")
    built = {c.where: settings_for(c.kind, c.env)[0] for c in engines + consumers}
    for c in engines:
        settings = built[c.where]
        if "publisher" not in settings or "engine" not in settings:
            continue
        publisher, engine = settings["publisher"], settings["engine"]
        topic, partitions = publisher.resolved_topic, publisher.partitions
        outbox = _mount_for(c, Path(publisher.outbox_dir))
        size = outbox and _claim_size(resources, c, outbox)
        if not size:
            problems.append(f"{c.where}: the outbox {publisher.outbox_dir} is on no volume claim")
        elif size[0] < 2 * publisher.max_outbox_bytes:
            problems.append(
                f"{c.where}: the outbox volume is under twice RUNSTREAM_MAX_OUTBOX_BYTES"
            )
        state = _mount_for(c, engine.state_dir)
        if not (state and _claim_size(resources, c, state)):
            problems.append(f"{c.where}: the task database {engine.db_path} is on no claim")
        for k in consumers:
            consumer = built[k.where].get("consumer")
            if consumer is None:
                continue
            pattern = consumer.topic_pattern
            if topic not in consumer.topics and not (pattern and re.fullmatch(pattern, topic)):
                problems.append(f"{k.where}: reads {consumer.topics}, not the engine's {topic}")
            replicas = _replicas(_workload_of(resources, k))
            if replicas > partitions:
                problems.append(f"{k.where}: {replicas} replicas for {partitions} partitions")
    groups: dict[str, str] = {}
    for k in consumers:
        consumer = built[k.where].get("consumer")
        workload = _workload_of(resources, k)["metadata"]["name"]
        if consumer is None:
            continue
        if groups.setdefault(consumer.group, workload) != workload:
            problems.append(
                f"{k.where}: shares the group {consumer.group} with {groups[consumer.group]}"
            )
    for c in containers:
        workload = _workload_of(resources, c)
        for path, mount in c.mounts.items():
            size = _claim_size(resources, c, mount)
            if (
                size
                and size[1] == ["ReadWriteOnce"]
                and workload["kind"] != "StatefulSet"
                and _replicas(workload) > 1
            ):
                problems.append(
                    f"{c.where}: {_replicas(workload)} replicas share the "
                    f"ReadWriteOnce claim at {path}"
                )
    problems += _check_addresses(resources, containers)
    problems += _check_postgres(resources, containers)
    problems += check_detector_files(containers)
    return problems


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
        mount = _mount_for(c, path)
        for server in servers:
            theirs = _mount_for(server, path)
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


def _service_ports(resources: list[dict], ns: str, host: str) -> set[int] | None:
    """Ports of the Service a short or in-cluster host name means; None: not one of ours."""
    parts = host.split(".")
    if len(parts) > 1 and not (parts[2:3] == ["svc"] or len(parts) == 2):
        return None
    name, namespace = parts[0], parts[1] if len(parts) > 1 else ns
    svc = _by_name(resources, "Service").get((namespace, name))
    return None if svc is None else {p["port"] for p in svc["spec"].get("ports", [])}


def _check_addresses(resources: list[dict], containers: list[Container]) -> list[str]:
    problems = []
    kafkas = {
        (r["metadata"].get("namespace", ""), r["metadata"]["name"]): r
        for r in resources
        if r.get("kind") == "Kafka"
    }
    for c in containers:
        url = c.env.get("RUNSTREAM_TILED_URL")
        if url:
            parts = urlsplit(url)
            ports = _service_ports(resources, c.namespace, parts.hostname or "")
            if ports is None or (parts.port or 80) not in ports:
                problems.append(f"{c.where}: RUNSTREAM_TILED_URL {url} is no Service port here")
        for address in (c.env.get("RUNSTREAM_KAFKA_BOOTSTRAP") or "").split(","):
            if not address or "." in address.split(":")[0]:
                continue  # outside the cluster, or fully qualified: not checked here
            host, _, port = address.partition(":")
            cluster = host.removesuffix("-kafka-bootstrap")
            if host.endswith("-kafka-bootstrap") and (c.namespace, cluster) in kafkas:
                listeners = kafkas[(c.namespace, cluster)]["spec"]["kafka"]["listeners"]
                if int(port) not in {entry["port"] for entry in listeners}:
                    problems.append(f"{c.where}: Kafka {cluster} has no listener on {port}")
                continue
            ports = _service_ports(resources, c.namespace, host)
            if ports is None or int(port) not in ports:
                problems.append(f"{c.where}: bootstrap {address} is no Service port here")
    return problems


def _check_postgres(resources: list[dict], containers: list[Container]) -> list[str]:
    """URIs in Secrets that point at the render's PostgreSQL use its user, password and
    databases."""
    problems = []
    for db in (c for c in containers if image_name(c.image) == "postgres"):
        workload = _workload_of(resources, db)
        services = [
            s
            for s in _by_name(resources, "Service").values()
            if _matches(
                s["spec"].get("selector", {}),
                workload["spec"]["template"]["metadata"].get("labels", {}),
            )
        ]
        names = {s["metadata"]["name"] for s in services}
        password = _env_secret(resources, workload, db, "POSTGRES_PASSWORD")
        databases = {db.env.get("POSTGRES_DB") or db.env.get("POSTGRES_USER")}
        initdb = db.mounts.get("/docker-entrypoint-initdb.d")
        for text in (initdb.files or {}).values() if initdb else ():
            databases |= set(re.findall(r"CREATE DATABASE (\w+)", text or "", re.IGNORECASE))
        for secret in _by_name(resources, "Secret").values():
            for key, value in (_secret_files(secret) or {}).items():
                if not (value or "").startswith(("postgresql://", "postgres://")):
                    continue
                uri = urlsplit(value)
                if (uri.hostname or "").split(".")[0] not in names:
                    continue
                where = f"Secret/{secret['metadata']['name']}[{key}]"
                if uri.username != db.env.get("POSTGRES_USER"):
                    problems.append(f"{where}: user {uri.username} is not POSTGRES_USER")
                if password is not None and uri.password != password:
                    problems.append(f"{where}: the password is not the database's")
                if uri.path.lstrip("/") not in databases:
                    problems.append(f"{where}: database {uri.path} is not created")
    return problems


def _env_secret(resources: list[dict], workload: dict, c: Container, name: str) -> str | None:
    spec = workload["spec"]["template"]["spec"]
    raw = next(x for x in spec["containers"] if c.where.endswith("/" + x["name"]))
    for item in raw.get("env", []):
        ref = (item.get("valueFrom") or {}).get("secretKeyRef")
        if item["name"] == name and ref:
            return secret_value(resources, c.namespace, ref["name"], ref["key"])
    return c.env.get(name)


def check_strimzi(resources: list[dict]) -> list[str]:
    """Strimzi resources hang together and fit runstream: pools and users belong to a Kafka,
    the topics are the engine's (same partitions, room for its messages, a dead-letter topic),
    and the user's ACLs cover the topics and every consumer group."""
    kafkas = {r["metadata"]["name"]: r for r in resources if r.get("kind") == "Kafka"}
    if not kafkas:
        return []
    problems = []
    owned = [r for r in resources if r.get("kind") in ("KafkaNodePool", "KafkaTopic", "KafkaUser")]
    for res in owned:
        cluster = res["metadata"].get("labels", {}).get("strimzi.io/cluster")
        if cluster not in kafkas:
            problems.append(f"{res['kind']}/{res['metadata']['name']}: no Kafka {cluster}")
    pools = [r for r in resources if r.get("kind") == "KafkaNodePool"]
    brokers = sum(
        p["spec"].get("replicas", 0) for p in pools if "broker" in p["spec"].get("roles", [])
    )
    if not any("controller" in p["spec"].get("roles", []) for p in pools):
        problems.append("no KafkaNodePool has the controller role (KRaft)")
    topics = {
        r["spec"].get("topicName", r["metadata"]["name"]): r
        for r in resources
        if r.get("kind") == "KafkaTopic"
    }
    for name, topic in topics.items():
        if topic["spec"].get("replicas", 0) > brokers:
            problems.append(
                f"KafkaTopic/{name}: {topic['spec'].get('replicas')} replicas on {brokers} brokers"
            )
    containers = k8s_containers(resources)
    for c in (c for c in containers if c.kind == "engine"):
        publisher = settings_for(c.kind, c.env)[0].get("publisher")
        if publisher is None:
            continue
        topic = topics.get(publisher.resolved_topic)
        if topic is None:
            problems.append(f"no KafkaTopic {publisher.resolved_topic} (the engine's topic)")
            continue
        if topic["spec"].get("partitions") != publisher.partitions:
            problems.append(
                f"KafkaTopic/{publisher.resolved_topic}: "
                f"{topic['spec'].get('partitions')} partitions, the engine says "
                f"{publisher.partitions}"
            )
        limit = int((topic["spec"].get("config") or {}).get("max.message.bytes", 1048588))
        if limit < publisher.max_message_bytes:
            problems.append(
                f"KafkaTopic/{publisher.resolved_topic}: max.message.bytes "
                "under the engine's RUNSTREAM_MAX_MESSAGE_BYTES"
            )
        dlq = f"{publisher.resolved_topic}.dlq"
        if dlq not in topics:
            problems.append(f"no KafkaTopic {dlq} (dead letters)")
        needs = {
            ("topic", publisher.resolved_topic): {"Write", "Read", "Describe"},
            ("topic", dlq): {"Write", "Describe"},
        }
        for k in (k for k in containers if k.kind.startswith("consume:")):
            consumer = settings_for(k.kind, k.env)[0].get("consumer")
            if consumer is not None:
                needs[("group", consumer.group)] = {"Read"}
        for user in (r for r in resources if r.get("kind") == "KafkaUser"):
            acls = user["spec"].get("authorization", {}).get("acls", [])
            for (kind, name), operations in needs.items():
                granted = set()
                for acl in acls:
                    res = acl["resource"]
                    literal = res.get("patternType", "literal") == "literal"
                    if res["type"] == kind and (
                        name == res["name"] if literal else name.startswith(res["name"])
                    ):
                        granted |= set(acl["operations"])
                if not operations <= granted and "All" not in granted:
                    problems.append(
                        f"KafkaUser/{user['metadata']['name']}: {kind} {name} "
                        f"lacks {sorted(operations - granted)}"
                    )
    return problems


# -- schemas of the custom resources we use (the fields we use) -------------------------------

#: JSON Schemas, by API group and kind, for the custom resources in the overlays: the Strimzi
#: operator's (kafka.strimzi.io/v1) and the Prometheus Operator's ServiceMonitor. Closed
#: objects (additionalProperties: false) where we set fields, so a misspelt one is caught.
CUSTOM_SCHEMAS: dict[str, dict[str, dict]] = yaml.safe_load(r"""
x-definitions:
  name: &name {type: string, pattern: "^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$", maxLength: 253}
  metadata: &metadata
    type: object
    required: [name]
    properties: {name: *name, namespace: *name, labels: {type: object}}
  strimzi-metadata: &strimzi-metadata
    type: object
    required: [name, labels]
    properties:
      name: *name
      namespace: *name
      labels:
        type: object
        required: [strimzi.io/cluster]
        properties: {strimzi.io/cluster: *name}
  resources: &resources
    type: object
    additionalProperties: false
    properties:
      requests: &cpu-memory
        type: object
        additionalProperties: false
        properties: {cpu: {type: [string, number]}, memory: {type: string}}
      limits: *cpu-memory
kafka.strimzi.io:
  KafkaNodePool:
    type: object
    required: [apiVersion, kind, metadata, spec]
    additionalProperties: false
    properties:
      apiVersion: {const: kafka.strimzi.io/v1}
      kind: {const: KafkaNodePool}
      metadata: *strimzi-metadata
      spec:
        type: object
        required: [replicas, roles, storage]
        additionalProperties: false
        properties:
          replicas: {type: integer, minimum: 1}
          roles:
            type: array
            minItems: 1
            uniqueItems: true
            items: {enum: [controller, broker]}
          storage:
            type: object
            required: [type, volumes]
            additionalProperties: false
            properties:
              type: {const: jbod}
              volumes:
                type: array
                minItems: 1
                items:
                  type: object
                  required: [id, type, size]
                  additionalProperties: false
                  properties:
                    id: {type: integer, minimum: 0}
                    type: {enum: [persistent-claim]}
                    size: {type: string, pattern: "^[0-9]+(Ki|Mi|Gi|Ti)$"}
                    class: {type: string}
                    deleteClaim: {type: boolean}
                    kraftMetadata: {enum: [shared]}
          resources: *resources
  Kafka:
    type: object
    required: [apiVersion, kind, metadata, spec]
    additionalProperties: false
    properties:
      apiVersion: {const: kafka.strimzi.io/v1}
      kind: {const: Kafka}
      metadata: *metadata
      spec:
        type: object
        required: [kafka]
        additionalProperties: false
        properties:
          kafka:
            type: object
            required: [listeners]
            additionalProperties: false
            properties:
              version: {type: string}
              metadataVersion: {type: string}
              listeners:
                type: array
                minItems: 1
                items:
                  type: object
                  required: [name, port, type, tls]
                  additionalProperties: false
                  properties:
                    name: {type: string, pattern: "^[a-z0-9]{1,11}$"}
                    # 9090, 9091, 9404 and 9999 are the operator's own
                    port: {type: integer, minimum: 9092, not: {enum: [9404, 9999]}}
                    type: {enum: [internal, route, loadbalancer, nodeport, ingress, cluster-ip]}
                    tls: {type: boolean}
                    authentication:
                      type: object
                      required: [type]
                      properties: {type: {enum: [tls, scram-sha-512, oauth, custom]}}
              authorization:
                type: object
                required: [type]
                properties: {type: {enum: [simple, keycloak, custom]}}
              config: {type: object}
          entityOperator:
            type: object
            additionalProperties: false
            properties: {topicOperator: {type: object}, userOperator: {type: object}}
  KafkaTopic:
    type: object
    required: [apiVersion, kind, metadata, spec]
    additionalProperties: false
    properties:
      apiVersion: {const: kafka.strimzi.io/v1}
      kind: {const: KafkaTopic}
      metadata: *strimzi-metadata
      spec:
        type: object
        required: [partitions, replicas]
        additionalProperties: false
        properties:
          topicName: {type: string, pattern: "^[A-Za-z0-9._-]{1,249}$"}
          partitions: {type: integer, minimum: 1}
          replicas: {type: integer, minimum: 1, maximum: 32767}
          config: {type: object}
  KafkaUser:
    type: object
    required: [apiVersion, kind, metadata, spec]
    additionalProperties: false
    properties:
      apiVersion: {const: kafka.strimzi.io/v1}
      kind: {const: KafkaUser}
      metadata: *strimzi-metadata
      spec:
        type: object
        required: [authentication]
        additionalProperties: false
        properties:
          authentication:
            type: object
            required: [type]
            properties: {type: {enum: [tls, tls-external, scram-sha-512]}}
          authorization:
            type: object
            required: [type, acls]
            additionalProperties: false
            properties:
              type: {const: simple}
              acls:
                type: array
                items:
                  type: object
                  required: [resource, operations]
                  additionalProperties: false
                  properties:
                    resource:
                      type: object
                      required: [type]
                      additionalProperties: false
                      properties:
                        type: {enum: [topic, group, cluster, transactionalId]}
                        name: {type: string, minLength: 1}
                        patternType: {enum: [literal, prefix]}
                    operations:
                      type: array
                      minItems: 1
                      uniqueItems: true
                      items:
                        enum: [Read, Write, Create, Delete, Alter, Describe, ClusterAction,
                               AlterConfigs, DescribeConfigs, IdempotentWrite, All]
                    host: {type: string}
monitoring.coreos.com:
  ServiceMonitor:
    type: object
    required: [apiVersion, kind, metadata, spec]
    additionalProperties: false
    properties:
      apiVersion: {const: monitoring.coreos.com/v1}
      kind: {const: ServiceMonitor}
      metadata: *metadata
      spec:
        type: object
        required: [selector, endpoints]
        additionalProperties: false
        properties:
          selector:
            type: object
            required: [matchLabels]
            additionalProperties: false
            properties: {matchLabels: {type: object}}
          endpoints:
            type: array
            minItems: 1
            items:
              type: object
              required: [port]
              additionalProperties: false
              properties:
                port: {type: string}
                path: {type: string, pattern: "^/"}
                interval: {type: string, pattern: "^[0-9]+[smh]$"}
                scheme: {enum: [http, https]}
                authorization:
                  type: object
                  required: [type, credentials]
                  additionalProperties: false
                  properties:
                    type: {type: string}
                    credentials:
                      type: object
                      required: [name, key]
                      additionalProperties: false
                      properties: {name: *name, key: {type: string}}
""")
del CUSTOM_SCHEMAS["x-definitions"]


# -- the compose file --------------------------------------------------------------------------


def check_compose(compose: dict, base: Path = COMPOSE_FILE.parent) -> list[str]:
    """Services' commands, variables, health checks and ports, and the file's own wiring:
    dependencies, volumes, URLs and bootstrap addresses that name its services."""
    problems = []
    services = compose.get("services") or {}
    containers = {c.where.partition(":")[2]: c for c in compose_containers(compose, base)}
    problems += container_problems(list(containers.values()))
    problems += check_detector_files(list(containers.values()))
    declared = set(compose.get("volumes") or {})
    image_dirs = dockerfile_dirs()
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
                if c.is_runstream and target not in image_dirs:
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
    return c.is_runstream and "HEALTHCHECK" in {i.instruction for i in final_stage()}


# -- the Dockerfile ---------------------------------------------------------------------------


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


def dockerfile_dirs(path: Path = DOCKERFILE) -> set[str]:
    """Directories the final stage makes and gives to its user."""
    made: set[str] = set()
    owned: set[str] = set()
    final = final_stage(path)
    user = next((i.arguments for i in reversed(final) if i.instruction == "USER"), "root")
    for ins in final:
        if ins.instruction == "RUN":
            for part in re.findall(r"mkdir -p ([^&;]+)", ins.arguments):
                made.update(p for p in part.split() if p.startswith("/"))
            for owner, part in re.findall(r"chown -R (\S+) ([^&;]+)", ins.arguments):
                if owner == user:
                    owned.update(p for p in part.split() if p.startswith("/"))
    return {d for d in made if any(d == o or d.startswith(o + "/") for o in owned)}


COMPILERS = (
    "build-essential",
    "gcc",
    "g++",
    "clang",
    "make",
    "cmake",
    "cargo",
    "rustc",
    "gfortran",
    "python3-dev",
    "libc6-dev",
)


def check_dockerfile(text: str) -> list[str]:
    """A non-root user, a health check, OCI labels, ``runstream`` as the entrypoint, and no
    compilers in the image that runs."""
    stages = parse_dockerfile(text)
    if not stages:
        return ["no FROM"]
    final = stages[-1]
    problems = []
    users = [i.arguments.split(":")[0] for i in final if i.instruction == "USER"]
    if not users or users[-1] in ("root", "0"):
        problems.append("the final stage runs as root (no USER, or USER root)")
    health = [i for i in final if i.instruction == "HEALTHCHECK"]
    if not health or health[-1].arguments.strip().upper() == "NONE":
        problems.append("no HEALTHCHECK")
    labels = " ".join(i.arguments for i in final if i.instruction == "LABEL")
    for key in ("title", "description", "version", "revision", "licenses"):
        if f"org.opencontainers.image.{key}=" not in labels:
            problems.append(f"no org.opencontainers.image.{key} label")
    entry = [i for i in final if i.instruction == "ENTRYPOINT"]
    if not entry or entry[-1].json() != IMAGE_ENTRYPOINT:
        problems.append(f"the ENTRYPOINT is not {json.dumps(IMAGE_ENTRYPOINT)} (exec form)")
    for ins in final:
        if ins.instruction == "RUN" and re.search(
            r"(apt-get|apt|apk|yum|dnf) .*install", ins.arguments
        ):
            words = set(ins.arguments.split())
            for compiler in COMPILERS:
                if compiler in words:
                    problems.append(f"the final stage installs {compiler}")
        if ins.instruction == "COPY" and "--from=" in ins.arguments:
            sources = [w for w in ins.arguments.split() if not w.startswith("--")][:-1]
            if sources != ["/opt/runstream"]:
                problems.append(
                    f"the final stage copies {sources} from a build stage, not "
                    "only the finished environment"
                )
    return problems


def dockerignore_allows(path: str, ignore_text: str) -> bool:
    """Whether a build-context path survives the ignore file (patterns, ``!`` exceptions and
    ``**``; a path is out when it or a folder above it matches, and the last match wins)."""
    parts = path.strip("/").split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    allowed = True
    for line in ignore_text.splitlines():
        pattern = line.strip()
        if not pattern or pattern.startswith("#"):
            continue
        negate = pattern.startswith("!")
        pattern = pattern.lstrip("!").strip("/")
        regex = ""
        for token in re.split(r"(\*\*/|\*|\?)", pattern):
            regex += {"**/": "(?:.*/)?", "*": "[^/]*", "?": "[^/]"}.get(token, re.escape(token))
        if any(re.fullmatch(regex, prefix) for prefix in prefixes):
            allowed = negate
    return allowed
