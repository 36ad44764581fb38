"""Identities of the engine's callers: OIDC tokens, API keys, roles, permissions, audit."""

from .audit import AuditLog
from .keys import KeyRequestError, KeyStore
from .oidc import OidcVerifier, TokenRefused
from .permissions import Permissions, PermissionsError
from .roles import ROLES, Identity, Role
from .settings import IdentitySettings

__all__ = [
    "ROLES",
    "AuditLog",
    "Identity",
    "IdentitySettings",
    "KeyRequestError",
    "KeyStore",
    "OidcVerifier",
    "Permissions",
    "PermissionsError",
    "Role",
    "TokenRefused",
]
