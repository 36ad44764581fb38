"""Fixtures several integration modules share, defined once so that each is made once a
session (a fixture imported into two test modules would be made twice)."""

from tests.keycloak import keycloak  # noqa: F401  (the session's Keycloak, a fixture)
