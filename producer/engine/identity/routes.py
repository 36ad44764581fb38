"""``GET /whoami`` and the API keys (admin): list, issue (the key shown once), revoke."""

from __future__ import annotations

import time

from fastapi import Depends, FastAPI, HTTPException, Request, status
from pydantic import BaseModel, ConfigDict, Field

from ..auth import Guard, caller
from ..models import answers
from .keys import KeyRequestError
from .roles import ROLES, Role


class WhoAmI(BaseModel):
    subject: str = Field(description="What tasks record as submitted_by")
    via: str = Field(description="token (single-user mode), oidc or key")
    role: Role | None = Field(description="The highest role; null: none the engine knows")
    allowed: list[Role] = Field(description="Every role whose routes this caller may use")
    name: str = ""
    expires: float | None = Field(None, description="When the credential expires (Unix time)")


class KeyRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=200)
    scopes: list[Role] = Field(min_length=1, max_length=len(ROLES))
    expires_in: float | None = Field(
        None, gt=0, le=10 * 365 * 86400, description="Seconds until it expires; null: never"
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
        responses=answers(401, 403, 422),
    )  # fmt: skip
    def issue_key(request: KeyRequest, http: Request) -> KeyIssued:
        """A new API key; the answer is the only place it is ever shown."""
        expires = None if request.expires_in is None else time.time() + request.expires_in
        key, record = keys.create(request.name, list(request.scopes), expires, caller(http).subject)
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
