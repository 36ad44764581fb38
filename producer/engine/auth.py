"""Who is calling, and may they: the route dependencies of the engine's API.

A bearer credential is one of: the shared token (single-user mode, the demo and
development: whoever has it is admin), an API key (``rsk_...``, its scopes give its role),
or an OIDC access token (its roles claim gives the role). 401 when no credential
authenticates, 403 when the caller's role is below what the route needs, or when the
permissions file keeps the caller's role from a plan or device (`Guard.permit`). The guard
also holds the audit log the app's middleware writes. Nothing here logs a credential.
"""

from __future__ import annotations

import hmac
import logging
from typing import TYPE_CHECKING, Any

from fastapi import HTTPException, Request, status

from .identity.audit import AuditLog
from .identity.keys import PREFIX, KeyStore
from .identity.oidc import OidcVerifier, TokenRefused
from .identity.permissions import Permissions, PermissionsError
from .identity.roles import Identity, Role, claim, highest, person
from .settings import EngineSettings, EngineSettingsError

if TYPE_CHECKING:
    from .registry import PlanRegistry

logger = logging.getLogger(__name__)

#: The shared token's identity: one person, allowed everything.
SHARED = Identity(subject="token", via="token", role="admin", name="shared token")


class Guard:
    """Authenticates requests and checks roles; ``read``/``user``/``expert``/``admin`` are
    the dependencies routes name."""

    def __init__(
        self,
        token: str | None,
        open_reads: bool,
        *,
        oidc: OidcVerifier | None = None,
        keys: KeyStore | None = None,
        roles_claim: str = "realm_access.roles",
        role_prefix: str = "",
        permissions: Permissions | None = None,
        audit: AuditLog | None = None,
        cli_client_id: str | None = None,
        web_client_id: str | None = None,
    ) -> None:
        self._token = token.encode() if token else None
        self.cli_client_id = cli_client_id  # the provider's client for `runstream login`
        self.web_client_id = web_client_id  # ... and for the web view's login (PKCE)
        self.open_reads, self.oidc, self.keys = open_reads, oidc, keys
        self.roles_claim, self.role_prefix = roles_claim, role_prefix
        self.permissions = permissions or Permissions()
        self.audit = audit or AuditLog()

    def identify(self, request: Request) -> Identity:
        """The caller's identity; 401 (saying why, never the credential) if none."""
        header = request.headers.get("authorization", "")
        scheme, _, given = header.partition(" ")
        given = given.strip()
        if scheme.lower() != "bearer" or not given:
            raise _unauthorized("missing bearer token (Authorization: Bearer <token>)")
        if self._token is not None and hmac.compare_digest(given.encode(), self._token):
            request.state.identity = SHARED
            return SHARED
        try:
            if given.startswith(PREFIX) and self.keys is not None:
                request.state.identity = self.keys.identify(given)
                return request.state.identity
            if self.oidc is not None and given.count(".") == 2:
                request.state.identity = self._from_claims(self.oidc.verify(given))
                return request.state.identity
        except (LookupError, TokenRefused) as exc:
            logger.info("refused a credential from %s: %s", _client(request), exc)
            raise _unauthorized(str(exc)) from None
        logger.info("refused a credential from %s: not one the engine knows", _client(request))
        raise _unauthorized("invalid bearer token")

    def _from_claims(self, claims: dict) -> Identity:
        role = highest(claim(claims, self.roles_claim), self.role_prefix)
        subject = person(str(claims.get("preferred_username") or claims["sub"]))
        return Identity(
            subject=subject,
            via="oidc",
            role=role,
            name=str(claims.get("name", "")),
            expires=claims.get("exp"),
            details={"sub": claims["sub"]},
        )

    def close(self) -> None:
        """Close what the guard holds open: the key store, the provider's client, the audit."""
        for held in (self.keys, self.oidc, self.audit):
            if held is not None:
                held.close()

    def require(self, identity: Identity, role: Role) -> Identity:
        """``identity`` if its role is ``role`` or above, else 403 naming both."""
        if not identity.may(role):
            raise HTTPException(
                status.HTTP_403_FORBIDDEN,
                f"{identity.subject} is {identity.role or 'without a role'}; this needs {role}",
            )
        return identity

    def read(self, request: Request) -> Identity | None:
        """Dependency of every read route: open when configured so, else observer."""
        if self.open_reads:
            return None
        return self.require(self.identify(request), "observer")

    def known(self, request: Request) -> Identity | None:
        """The caller where one is known: after a read's dependency, or from a credential
        given to an open read (one that is not valid makes them anonymous, as no credential
        would: the read is open)."""
        found = getattr(request.state, "identity", None)
        if found is not None or "authorization" not in request.headers:
            return found
        try:
            return self.identify(request)
        except HTTPException:
            return None

    def user(self, request: Request) -> Identity:
        """Dependency of submitting, cancelling one's own tasks and pausing."""
        return self.require(self.identify(request), "user")

    def expert(self, request: Request) -> Identity:
        """Dependency of the whole queue's controls and the RunEngine's beyond pause."""
        return self.require(self.identify(request), "expert")

    def admin(self, request: Request) -> Identity:
        """Dependency of API keys."""
        return self.require(self.identify(request), "admin")

    #: Any change of state needs at least a user; routes name a higher role where needed.
    write = user

    def permit(
        self,
        identity: Identity | None,
        plan: str,
        args: list[Any],
        kwargs: dict[str, Any],
        registry: PlanRegistry,
    ) -> None:
        """403 naming the rule (role, pattern, file) when the permissions file keeps this
        caller from the plan or a device the request names; every route that queues or
        validates a request calls this before queueing it."""
        refusal = self.permissions.check(identity, plan, args, kwargs, registry)
        if refusal is not None:
            raise HTTPException(status.HTTP_403_FORBIDDEN, refusal)


def caller(request: Request) -> Identity:
    """The identity the route's guard dependency established for this request."""
    return request.state.identity


#: Single-user mode, as before identities: ``TokenGuard(token, open_reads)``.
TokenGuard = Guard


def guard_for(settings: EngineSettings, token: str | None) -> Guard:
    """The engine's guard: shared token, API keys, OIDC as configured; refuses to make one
    (EngineSettingsError) when no caller could ever authenticate."""
    ident = settings.identity
    try:
        permissions = Permissions(ident.permissions_file)
    except PermissionsError as exc:
        raise EngineSettingsError(str(exc)) from None
    keys = KeyStore(settings.keys_path)
    oidc = None
    if ident.oidc_issuer and ident.oidc_audience:
        oidc = OidcVerifier(
            ident.oidc_issuer,
            ident.oidc_audience,
            algorithms=tuple(ident.oidc_algorithms),
            leeway=ident.oidc_leeway,
            min_refetch=ident.oidc_jwks_min_refetch,
            lifespan=ident.oidc_jwks_lifespan,
            timeout=ident.oidc_timeout,
        )
        if not oidc.prefetch():
            logger.warning("no signing keys from %s yet: OIDC tokens wait for them", oidc.issuer)
    elif token is None and not keys.active():
        keys.close()
        raise EngineSettingsError(
            "no API token: set RUNSTREAM_API_TOKEN (single-user mode), or RUNSTREAM_OIDC_ISSUER "
            "and RUNSTREAM_OIDC_AUDIENCE, or issue an API key (runstream keys create)"
        )
    return Guard(
        token,
        settings.open_reads,
        oidc=oidc,
        keys=keys,
        roles_claim=ident.oidc_roles_claim,
        role_prefix=ident.oidc_role_prefix,
        cli_client_id=ident.oidc_cli_client_id,
        web_client_id=ident.oidc_web_client_id,
        permissions=permissions,
        audit=AuditLog(settings.audit_path),
    )


def _unauthorized(detail: str) -> HTTPException:
    return HTTPException(
        status.HTTP_401_UNAUTHORIZED, detail, headers={"WWW-Authenticate": "Bearer"}
    )


def _client(request: Request) -> str:
    return request.client.host if request.client else "?"
