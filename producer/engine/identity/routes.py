"""``GET /whoami``, ``GET /auth/config`` (the provider ``runstream login`` uses), the API
keys (admin: list, issue with the key shown once, revoke), the permissions file (read it;
admin: reload it) and the audit log (expert: read it)."""

from __future__ import annotations

import time
from typing import Annotated

from fastapi import Depends, FastAPI, HTTPException, Query, Request, status
from pydantic import BaseModel, ConfigDict, Field

from ..auth import Guard, caller
from ..models import answers
from .keys import KeyRequestError
from .permissions import PermissionsError
from .roles import ROLES, Role


class WhoAmI(BaseModel):
    subject: str = Field(description="What tasks record as submitted_by")
    via: str = Field(description="token (single-user mode), oidc or key")
    role: Role | None = Field(description="The highest role; null: none the engine knows")
    allowed: list[Role] = Field(description="Every role whose routes this caller may use")
    name: str = ""
    expires: float | None = Field(None, description="When the credential expires (Unix time)")


class AuthConfig(BaseModel):
    """Where callers get tokens the engine accepts (`runstream login`, the web view's login)."""

    issuer: str = Field(description="The OIDC provider's issuer URL")
    audience: str = Field(description="The audience the engine's tokens must name")
    cli_client_id: str | None = Field(
        description="The provider's public client for the CLI's device login; null: none"
    )
    web_client_id: str | None = Field(
        None, description="The provider's public client for the web view's login; null: none"
    )


class KeyRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=200)
    scopes: list[Role] = Field(min_length=1, max_length=len(ROLES))
    expires_in: float | None = Field(
        None, ge=1, le=10 * 365 * 86400, description="Seconds until it expires; null: never"
    )


class KeyRecord(BaseModel):
    key_id: str
    name: str
    scopes: list[str]
    created: float
    created_by: str
    expires: float | None
    revoked: float | None


class KeyIssued(KeyRecord):
    key: str = Field(description="The key itself: shown this once, only its hash is kept")


class RolePatterns(BaseModel):
    """A role's patterns (regular expressions, whole names); null: that list is not given."""

    allowed_plans: list[str] | None
    forbidden_plans: list[str] | None
    allowed_devices: list[str] | None
    forbidden_devices: list[str] | None


class PermissionsState(BaseModel):
    file: str | None = Field(description="The permissions file; null: everything is permitted")
    loaded: float = Field(description="When the rules in force were read (Unix time)")
    roles: dict[Role, RolePatterns] = Field(description="Rules by role; a role absent: none")


class AuditEntry(BaseModel):
    """One request that could change state, and the engine's answer to it."""

    seq: int
    time: float = Field(description="When it was answered (Unix time)")
    subject: str = Field(description="Who: the caller's subject, or anonymous")
    role: Role | None
    via: str | None = Field(
        description="token, oidc or key; cli: `runstream keys` on the engine's machine; "
        "null: anonymous"
    )
    method: str = Field(description="The HTTP method, or CLI")
    path: str = Field(description="The request's path, or the command (keys create)")
    task_id: str | None = Field(description="The task(s) it concerns, space-separated")
    key_id: str | None = Field(description="The API key it concerns")
    status: int = Field(description="The answer's status code")
    detail: str | None = Field(description="Why it was refused, for an error answer")
    client: str | None = Field(description="The client's address (cli: the host's name)")


class AuditPage(BaseModel):
    entries: list[AuditEntry] = Field(description="Newest first")
    page: int
    size: int
    total: int = Field(description="Entries in all (with the filter)")


def add_identity_routes(app: FastAPI, guard: Guard) -> None:
    """/whoami always; /keys when the engine has a key store."""

    @app.get(
        "/whoami", tags=["identity"], dependencies=[Depends(guard.identify)],
        responses=answers(401),
    )  # fmt: skip
    def whoami(request: Request) -> WhoAmI:
        """The caller as the engine sees them: subject, how authenticated, role."""
        identity = caller(request)
        allowed = [r for r in ROLES if identity.may(r)]
        return WhoAmI(
            subject=identity.subject,
            via=identity.via,
            role=identity.role,
            allowed=allowed,
            name=identity.name,
            expires=identity.expires,
        )

    add_login_routes(app, guard)
    add_permission_routes(app, guard)
    add_audit_routes(app, guard)
    keys = guard.keys
    if keys is None:
        return
    admin = [Depends(guard.admin)]

    @app.get("/keys", tags=["identity"], dependencies=admin, responses=answers(401, 403))
    def list_keys() -> list[KeyRecord]:
        """Every API key issued, revoked or not (never the keys themselves)."""
        return [KeyRecord(**k) for k in keys.list()]

    @app.post(
        "/keys", tags=["identity"], dependencies=admin, status_code=201,
        responses=answers(400, 401, 403, 413, 422),
    )  # fmt: skip
    def issue_key(request: KeyRequest, http: Request) -> KeyIssued:
        """A new API key; the answer is the only place it is ever shown."""
        expires = None if request.expires_in is None else time.time() + request.expires_in
        try:
            key, record = keys.create(
                request.name, list(request.scopes), expires, caller(http).subject
            )
        except KeyRequestError as exc:  # e.g. a name of blanks
            raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc)) from None
        return KeyIssued(key=key, **record)

    @app.delete(
        "/keys/{key_id}", tags=["identity"], dependencies=admin,
        responses=answers(401, 403, 404, 422),
    )  # fmt: skip
    def revoke_key(key_id: str) -> KeyRecord:
        """Revoke a key at once: it answers 401 from now on."""
        try:
            return KeyRecord(**keys.revoke(key_id))
        except KeyRequestError as exc:
            raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from None


def add_login_routes(app: FastAPI, guard: Guard) -> None:
    """``GET /auth/config``, open to all: the provider and the CLI's client
    (``RUNSTREAM_OIDC_CLI_CLIENT_ID``), or 404 without OIDC."""

    @app.get("/auth/config", tags=["identity"], responses=answers(404))
    def auth_config() -> AuthConfig:
        """The OIDC provider and the public client ``runstream login`` uses (no credential
        needed: nothing here is secret); 404 when the engine takes no OIDC tokens."""
        if guard.oidc is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, "this engine takes no OIDC tokens")
        return AuthConfig(
            issuer=guard.oidc.issuer,
            audience=guard.oidc.audience,
            cli_client_id=guard.cli_client_id,
            web_client_id=guard.web_client_id,
        )


def add_permission_routes(app: FastAPI, guard: Guard) -> None:
    """The rules in force, and reloading them from the file (admin)."""
    permissions = guard.permissions

    def state() -> PermissionsState:
        rules = permissions.rules
        path = None if rules.path is None else str(rules.path)
        return PermissionsState(file=path, loaded=rules.loaded, roles=rules.describe())  # type: ignore[arg-type]

    @app.get(
        "/permissions", tags=["identity"], dependencies=[Depends(guard.read)],
        responses=answers(401, 403),
    )  # fmt: skip
    def permissions_in_force() -> PermissionsState:
        """The plans and devices each role may name, as the permissions file says."""
        return state()

    @app.post(
        "/permissions/reload", tags=["identity"], dependencies=[Depends(guard.admin)],
        responses=answers(401, 403, 409, 422),
    )  # fmt: skip
    def reload_permissions() -> PermissionsState:
        """Read the permissions file again (admin).

        409: the engine has no permissions file; 422: the file is malformed (the rules in
        force stay, and the answer names the problem).
        """
        if permissions.path is None:
            raise HTTPException(
                status.HTTP_409_CONFLICT, "no permissions file (set RUNSTREAM_PERMISSIONS_FILE)"
            )
        try:
            permissions.reload()
        except PermissionsError as exc:
            raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc)) from None
        return state()


def add_audit_routes(app: FastAPI, guard: Guard) -> None:
    """The audit log, newest first (expert)."""

    @app.get(
        "/audit", tags=["identity"], dependencies=[Depends(guard.expert)],
        responses=answers(401, 403, 422),
    )  # fmt: skip
    def audit(
        page: Annotated[int, Query(ge=1, le=1_000_000)] = 1,
        size: Annotated[int, Query(ge=1, le=1000)] = 100,
        subject: Annotated[str | None, Query(max_length=200)] = None,
    ) -> AuditPage:
        """Who changed what, when and from where; filter by ``subject`` (e.g. key:robot)."""
        entries, total = guard.audit.page(page, size, subject)
        return AuditPage(
            entries=[AuditEntry(**e) for e in entries], page=page, size=size, total=total
        )
