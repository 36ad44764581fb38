"""An engine API with a real RunEngine and a real key store, and an API key for each role."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from runstream.producer.engine import Engine, PlanRegistry, TaskStore
from runstream.producer.engine.app import create_app
from runstream.producer.engine.auth import Guard, guard_for
from runstream.producer.engine.identity import KeyStore
from runstream.producer.engine.identity.audit import AuditLog
from runstream.producer.engine.identity.permissions import Permissions
from runstream.producer.engine.identity.roles import ROLES
from runstream.producer.engine.settings import EngineSettings

TOKEN = "shared-s3cret-token"  # noqa: S105 - a test credential


def configured_guard(env: dict[str, str]) -> tuple[EngineSettings, Guard]:
    """The engine's settings and guard as ``env`` alone configures them (every other
    RUNSTREAM_ variable of this process set aside), as a deployed engine reads them."""
    with pytest.MonkeyPatch.context() as patch:
        for name in [n for n in os.environ if n.startswith("RUNSTREAM_")]:
            patch.delenv(name)
        for name, value in env.items():
            patch.setenv(name, value)
        settings = EngineSettings()
        return settings, guard_for(settings, None)


@dataclass
class RoleService:
    client: TestClient
    engine: Engine
    guard: Guard
    keys: dict[str, str]  # role -> the key itself

    def auth(self, role: str) -> dict[str, str]:
        """The Authorization header of the role's key (``token``: the shared token)."""
        secret = TOKEN if role == "token" else self.keys[role]
        return {"Authorization": f"Bearer {secret}"}


@contextmanager
def role_service(
    tmp_path: Path, registry: PlanRegistry, permissions_file: Path | None = None
) -> Iterator[RoleService]:
    """The engine (its queue stopped: tasks are queued, never run) behind a guard with a key
    per role, the permissions file given, and an audit log in ``tmp_path/audit.db``."""
    store = KeyStore(tmp_path / "keys.db")
    keys = {role: store.create(f"{role}-key", [role], None, "test")[0] for role in ROLES}
    guard = Guard(
        TOKEN,
        open_reads=True,
        keys=store,
        permissions=Permissions(permissions_file),
        audit=AuditLog(tmp_path / "audit.db"),
    )
    engine = Engine(TaskStore(tmp_path / "tasks.db"), registry)
    engine.set_queue_running(False)
    engine.start()
    try:
        with TestClient(create_app(engine, guard)) as client:
            yield RoleService(client, engine, guard, keys)
    finally:
        engine.close()
        engine.store.close()
        guard.audit.close()
        store.close()
