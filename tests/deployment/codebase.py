"""What the code offers a deployment, taken from the code itself so the artefacts are checked
against the truth: the commands runstream and Tiled accept, the settings each service reads,
the paths each server answers."""

from __future__ import annotations

import argparse
import contextlib
import functools
import importlib
import io
import os
import re
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import yaml

from tests.deployment.render import ROOT

# -- commands -------------------------------------------------------------------------------


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


# -- settings -------------------------------------------------------------------------------


def env_names(settings_class: type) -> set[str]:
    """The environment variables a pydantic settings class reads (aliases included), with
    those of the settings classes composed into it (each under its own prefix)."""
    from pydantic import AliasChoices
    from pydantic_settings import BaseSettings

    prefix = settings_class.model_config.get("env_prefix", "")
    names = set()
    for name, info in settings_class.model_fields.items():
        kind = info.annotation
        alias = info.validation_alias
        if isinstance(kind, type) and issubclass(kind, BaseSettings):
            names |= env_names(kind)
        elif isinstance(alias, AliasChoices):
            names |= {c.upper() for c in alias.choices if isinstance(c, str) and c.isupper()}
        elif isinstance(alias, str):
            names.add(alias.upper())
        else:
            names.add((prefix + name).upper())
    return names


def service_settings(kind: str) -> tuple[type, ...]:
    """The settings models a consumer service has besides ConsumerSettings (``consume:web``):
    those composed into its settings model beyond ConsumerSettings' own."""
    from runstream.consumers.services import services
    from runstream.consumers.settings import ConsumerSettings, composed

    found = services().get(kind.partition(":")[2]) if kind.startswith("consume:") else None
    if found is None:
        return ()
    own = composed(ConsumerSettings)
    return tuple(cls for name, cls in composed(found.settings).items() if name not in own)


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


def _service_settings(service: str) -> set[str]:
    """The variables of the settings classes a consumer service's own module defines."""
    from pydantic_settings import BaseSettings

    from runstream.consumers.services import SERVICE_MODULES

    names: set[str] = set()
    for name in SERVICE_MODULES:
        module = importlib.import_module(name)
        if module.SERVICE.name != service:
            continue
        for value in vars(module).values():
            if isinstance(value, type) and issubclass(value, BaseSettings) \
                    and value.__module__ == module.__name__:  # fmt: skip
                names |= env_names(value)
    return names


def _service_paths() -> dict[str, list[Path]]:
    """Each consumer service's own source: its module, or its whole subpackage."""
    from runstream.consumers.services import SERVICE_MODULES

    paths = {}
    for name in SERVICE_MODULES:
        module = importlib.import_module(name)
        file = Path(module.__file__)
        own = file.parent if module.__package__ != "runstream.consumers" else file
        paths[module.SERVICE.name] = [own]
    return paths


@functools.cache
def allowed_env(kind: str) -> frozenset[str]:
    """The RUNSTREAM_* variables a container of this kind reads (its settings and direct reads).

    Kinds: ``engine``, ``consume:<service>``, ``client`` (submit, stop, ...).
    """
    from runstream.consumers.settings import ConsumerSettings
    from runstream.producer.engine.settings import EngineClientSettings, EngineSettings

    common = direct_reads(ROOT / "runstream" / "cli.py")
    if kind == "engine":
        return frozenset(  # the client's too: the preStop hook runs `runstream stop`
            common
            | env_names(EngineSettings)
            | env_names(EngineClientSettings)
            | direct_reads(ROOT / "producer")
        )
    if kind == "client":
        return frozenset(
            common
            | env_names(EngineClientSettings)
            | direct_reads(ROOT / "producer" / "engine" / "cli.py")
        )
    if kind.startswith("consume"):
        services = _service_paths()
        own = {p for paths in services.values() for p in paths}
        shared = [p for p in (ROOT / "consumers").glob("*.py") if p not in own]
        names = common | env_names(ConsumerSettings) | direct_reads(*shared)
        service = kind.partition(":")[2]
        if service:
            names |= direct_reads(*services[service]) | _service_settings(service)
        for settings_class in service_settings(kind):
            names |= env_names(settings_class)
        return frozenset(names)
    return frozenset()


def deployment_env() -> dict[str, set[str]]:
    """Every RUNSTREAM_* variable a deployed service reads, by service kind (for the guide)."""
    from runstream.consumers.services import services

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

    from runstream.consumers.settings import ConsumerSettings
    from runstream.producer.engine.settings import EngineSettings

    classes: dict[str, type] = {}
    if kind == "engine":
        classes = {"engine": EngineSettings}
    elif kind.startswith("consume"):
        classes = {"consumer": ConsumerSettings}
        classes |= {cls.__name__: cls for cls in service_settings(kind)}
    built, problems = {}, []
    with environment(env):
        for name, cls in classes.items():
            try:
                built[name] = cls()
            except (ValidationError, SettingsError) as exc:
                problems.append(f"{cls.__name__} refuses the environment: {exc}")
    if "engine" in built:  # the publisher's settings are composed into the engine's
        built["publisher"] = built["engine"].publisher
    return built, problems


# -- what the servers answer ----------------------------------------------------------------


@functools.cache
def engine_routes() -> dict[str, bool]:
    """GET paths of the engine's app -> whether they need the token when reads are closed."""
    from runstream.producer.engine.app import create_app
    from runstream.producer.engine.auth import TokenGuard

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

    from runstream.consumers.health import HealthServer

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


# -- Tiled's configuration ------------------------------------------------------------------


def tiled_config_problems(text: str) -> list[str]:
    """The configuration through Tiled's own parser, with placeholders for its ${...}."""
    from tiled.config import parse_configs

    placeholders = {
        name: f"postgresql://u:p@h:5432/{name.lower()}" for name in tiled_config_variables(text)
    }
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


def tiled_config_variables(text: str) -> set[str]:
    """The variables a Tiled configuration expands (``$NAME`` or ``${NAME}``)."""
    return {a or b for a, b in re.findall(r"\$\{(\w+)\}|\$([A-Za-z_]\w*)", text)}
