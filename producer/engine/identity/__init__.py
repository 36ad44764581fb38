"""Identities of the engine's callers: OIDC tokens, API keys, roles."""

from .keys import KeyRequestError, KeyStore
from .oidc import OidcVerifier, TokenRefused
from .roles import ROLES, Identity, Role
from .settings import IdentitySettings

__all__ = [
    "ROLES",
    "Identity",
    "IdentitySettings",
    "KeyRequestError",
    "KeyStore",
    "OidcVerifier",
    "Role",
    "TokenRefused",
]
