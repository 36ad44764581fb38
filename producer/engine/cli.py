"""``runstream engine`` (the service) and the client commands that talk to it."""

from __future__ import annotations

import argparse
import json
import logging
from typing import Any

from .settings import EngineClientSettings

log = logging.getLogger(__name__)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("engine", help="run the RunEngine service (HTTP API, publishes to Kafka)")
    p.add_argument("--host", help="bind address (default 127.0.0.1)")
    p.add_argument("--port", type=int, help="port (default 8600)")
    p.set_defaults(func=serve)

    def client_parser(name: str, help: str) -> argparse.ArgumentParser:
        q = sub.add_parser(name, help=help)
        q.add_argument("--url", help="the engine (RUNSTREAM_ENGINE_URL, default "
                       "http://127.0.0.1:8600)")  # fmt: skip
        return q

    q = client_parser("submit", "queue a plan: runstream submit PLAN [--arg value ...]")
    q.add_argument("plan")
    q.add_argument("params", nargs=argparse.REMAINDER, help="--name value (JSON or text)")
    q.set_defaults(func=submit)
    q = client_parser("tasks", "list the engine's tasks")
    q.add_argument("--state")
    q.set_defaults(func=tasks)
    for action in ("pause", "resume", "stop", "abort", "halt"):
        q = client_parser(action, f"{action} the running plan")
        q.add_argument("--reason", default="")
        if action == "pause":
            q.add_argument("--defer", action="store_true", help="pause at the next checkpoint")
        q.set_defaults(func=control, action=action)


def _client(args: argparse.Namespace) -> Any:
    """A client of the engine with, in order: RUNSTREAM_API_TOKEN(_FILE), else the login
    `runstream login` stored for that engine (refreshed if it expired), else none."""
    from pydantic import ValidationError

    from runstream.schemas import CommandError

    from .client import EngineClient
    from .identity.logins import token_for

    try:
        settings = EngineClientSettings()
        token = settings.read_token()
    except (ValidationError, ValueError) as exc:
        raise CommandError(f"bad engine client settings: {exc}") from None
    url = args.url or settings.engine_url
    if token is None:
        token = token_for(url)
    return EngineClient(url, token)


def parse_params(params: list[str]) -> dict[str, Any]:
    """``--npts 5 --detectors '["det"]'``: JSON values where they parse, text otherwise."""
    from runstream.schemas import CommandError

    kwargs: dict[str, Any] = {}
    i = 0
    while i < len(params):
        name = params[i]
        if not name.startswith("--") or i + 1 >= len(params):
            raise CommandError(f"expected --name value pairs, got {params[i:]!r}")
        try:
            value = json.loads(params[i + 1])
        except ValueError:
            value = params[i + 1]
        kwargs[name[2:].replace("-", "_")] = value
        i += 2
    return kwargs


def _run(args: argparse.Namespace, call: Any) -> int:
    from runstream.schemas import CommandError

    from .client import EngineClientError

    client = _client(args)
    try:
        print(json.dumps(call(client), indent=2))
    except EngineClientError as exc:
        raise CommandError(str(exc)) from None
    finally:
        client.close()
    return 0


def submit(args: argparse.Namespace) -> int:
    params = list(args.params)
    if "--url" in params[:-1]:  # after the plan name, argparse leaves it among the parameters
        at = params.index("--url")
        args.url = params[at + 1]
        del params[at : at + 2]
    kwargs = parse_params(params)
    return _run(args, lambda c: c.submit(args.plan, [], kwargs))


def tasks(args: argparse.Namespace) -> int:
    return _run(args, lambda c: c.tasks(args.state))


def control(args: argparse.Namespace) -> int:
    return _run(args, lambda c: c.control(args.action, args.reason, getattr(args, "defer", False)))


def serve(args: argparse.Namespace) -> int:
    from .service import run_service

    return run_service(args.host, args.port)
