"""How the engine knows its callers: the shared token, an OIDC provider, API keys."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from .oidc import ASYMMETRIC


class IdentitySettings(BaseSettings):
    """OIDC, API keys, permissions and the audit log (``RUNSTREAM_OIDC_*``, ``..._FILE``)."""

    model_config = SettingsConfigDict(env_prefix="RUNSTREAM_", extra="ignore")

    oidc_issuer: str | None = Field(
        None, description="The provider's issuer URL (e.g. https://sso/realms/R); unset: no OIDC."
    )
    oidc_audience: str | None = Field(
        None, description="The audience access tokens must name (required with an issuer)."
    )
    oidc_roles_claim: str = Field(
        "realm_access.roles",
        description="Dotted path to the claim listing roles or groups (e.g. groups).",
    )
    oidc_role_prefix: str = Field(
        "", description="Prefix of the provider's role or group names (e.g. runstream-)."
    )
    oidc_cli_client_id: str | None = Field(
        None,
        description="The provider's public client with the device grant that `runstream "
        "login` uses (GET /auth/config names it); unset: no CLI login.",
    )
    oidc_web_client_id: str | None = Field(
        None,
        description="The provider's public client with the authorization-code flow (PKCE) "
        "that the web view's engine panel logs in with; unset: the panel takes a pasted token.",
    )
    oidc_algorithms: list[str] = Field(
        default_factory=lambda: ["RS256"], description="Accepted signature algorithms."
    )
    oidc_leeway: float = Field(30.0, ge=0, description="Clock skew allowed on exp/nbf, seconds.")
    oidc_jwks_min_refetch: float = Field(
        30.0, ge=0, description="Least seconds between JWKS fetches on an unknown key id."
    )
    oidc_jwks_lifespan: float = Field(3600.0, gt=0, description="Seconds the JWKS is trusted.")
    oidc_timeout: float = Field(10.0, gt=0, description="Seconds for discovery and JWKS reads.")
    api_keys_file: Path | None = Field(
        None, description="SQLite file of API keys (hashes only); default <home>/engine/keys.db."
    )
    permissions_file: Path | None = Field(
        None,
        description="TOML file of the plans and devices each role may use; unset: every "
        "registered one. Reloaded on POST /permissions/reload.",
    )
    audit_file: Path | None = Field(
        None, description="SQLite file of the audit log; default <home>/engine/audit.db."
    )

    @model_validator(mode="after")
    def _coherent(self) -> IdentitySettings:
        if self.oidc_issuer and not self.oidc_audience:
            raise ValueError("RUNSTREAM_OIDC_ISSUER needs RUNSTREAM_OIDC_AUDIENCE")
        unsafe = sorted(set(self.oidc_algorithms) - set(ASYMMETRIC))
        if unsafe:
            raise ValueError(f"oidc_algorithms: public-key algorithms only, not {unsafe}")
        return self
