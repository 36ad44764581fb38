"""Roles from a provider's claims and a key's scopes: the highest known one counts."""

from __future__ import annotations

import pytest

from runstream.producer.engine.auth import Guard
from runstream.producer.engine.identity.roles import Identity, claim, highest, person, rank

KEYCLOAK_CLAIMS = {
    "sub": "a283dba2",
    "realm_access": {"roles": ["offline_access", "user", "uma_authorization"]},
    "resource_access": {"runstream-engine": {"roles": ["expert"]}},
    "groups": ["/facility/staff", "/runstream-admin"],
    "scope": "openid profile",
}


@pytest.mark.parametrize(
    ("path", "names"),
    [
        ("realm_access.roles", ["offline_access", "user", "uma_authorization"]),
        ("resource_access.runstream-engine.roles", ["expert"]),
        ("groups", ["/facility/staff", "/runstream-admin"]),
        ("scope", ["openid profile"]),  # one string is one name
        ("realm_access", []),  # a mapping is no list of names
        ("realm_access.roles.0", []),  # lists are not indexed
        ("missing.roles", []),
        ("sub.x", []),  # through a string
    ],
)
def test_claim_follows_a_dotted_path(path: str, names: list[str]) -> None:
    assert claim(KEYCLOAK_CLAIMS, path) == names


def test_claim_keeps_only_strings() -> None:
    assert claim({"roles": ["user", 3, None, {"admin": 1}, "expert"]}, "roles") == [
        "user",
        "expert",
    ]


@pytest.mark.parametrize(
    ("names", "prefix", "role"),
    [
        (["observer", "user", "expert"], "", "expert"),
        (["admin", "observer"], "", "admin"),
        (["offline_access", "uma_authorization"], "", None),
        ([], "", None),
        (["/user"], "", "user"),  # Keycloak's full group path
        (["/runstream-admin", "admin"], "runstream-", "admin"),
        (["admin", "/runstream-user"], "runstream-", "user"),  # without the prefix: not ours
        (["runstream-superuser"], "runstream-", None),
        (["Admin", "USER"], "", None),  # names are exact
        ([None, 7, "observer"], "", "observer"),  # type: ignore[list-item]
    ],
)
def test_highest_role(names: list, prefix: str, role: str | None) -> None:
    assert highest(names, prefix) == role


def test_each_role_includes_those_below() -> None:
    user = Identity(subject="uma", via="oidc", role="user")
    assert user.may("observer") and user.may("user")
    assert not user.may("expert") and not user.may("admin")
    nobody = Identity(subject="x", via="oidc", role=None)
    assert not nobody.may("observer")
    assert rank(None) < rank("observer") < rank("user") < rank("expert") < rank("admin")


@pytest.mark.parametrize(
    ("username", "subject"),
    [("uma", "uma"), ("token", "oidc:token"), ("anonymous", "oidc:anonymous"),
     ("key:robot", "oidc:key:robot"), ("cli:root", "oidc:cli:root"),
     ("oidc:x", "oidc:oidc:x"), ("tokens", "tokens")],
)  # fmt: skip
def test_a_provider_user_never_takes_a_subject_the_engine_gives_others(
    username: str, subject: str
) -> None:
    assert person(username) == subject
    guard = Guard(None, open_reads=False)
    claims = {"sub": "0c1d", "preferred_username": username, "realm_access": {"roles": ["user"]}}
    assert guard._from_claims(claims).subject == subject
