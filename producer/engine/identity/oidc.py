"""OIDC bearer tokens checked against the provider's discovery document and JWKS.

The issuer's discovery document names the JWKS; its keys are cached by key id. A token
signed with a key id not in the cache makes the verifier fetch the JWKS again (a key
rotation), at most once per ``min_refetch`` seconds so forged key ids cannot make it
hammer the provider. Signature, issuer, audience, expiry and not-before are checked by
PyJWT; HMAC and ``none`` algorithms are never accepted.
"""

from __future__ import annotations

import base64
import json
import logging
import threading
import time
from typing import Any

import httpx
import jwt

logger = logging.getLogger(__name__)

#: Public-key algorithms only: an HMAC token would be checked with a public key as secret.
ASYMMETRIC = (
    "RS256",
    "RS384",
    "RS512",
    "PS256",
    "PS384",
    "PS512",
    "ES256",
    "ES384",
    "ES512",
    "EdDSA",
)


class TokenRefused(Exception):  # noqa: N818 - a refusal, said to the caller as a 401
    """A bearer token that does not authenticate; the message says why, never the token."""


class OidcVerifier:
    """Validates access tokens of one issuer for one audience."""

    def __init__(
        self,
        issuer: str,
        audience: str,
        *,
        algorithms: tuple[str, ...] = ("RS256",),
        leeway: float = 0.0,
        min_refetch: float = 30.0,
        lifespan: float = 3600.0,
        timeout: float = 10.0,
    ) -> None:
        unsafe = set(algorithms) - set(ASYMMETRIC)
        if unsafe:
            raise ValueError(f"refused token algorithms {sorted(unsafe)}: public-key ones only")
        self.issuer, self.audience, self.algorithms = issuer, audience, list(algorithms)
        self.leeway, self.min_refetch, self.lifespan = leeway, min_refetch, lifespan
        self._http = httpx.Client(timeout=timeout, follow_redirects=False)
        self._lock = threading.Lock()
        self._jwks_uri: str | None = None
        self._keys: dict[str, jwt.PyJWK] = {}
        self._fetched = float("-inf")
        self.fetches = 0

    def discover(self) -> str:
        """The JWKS address from the discovery document, whose issuer must be ours."""
        url = f"{self.issuer.rstrip('/')}/.well-known/openid-configuration"
        doc = self._http.get(url).raise_for_status().json()
        if doc.get("issuer") != self.issuer:
            raise ValueError(f"the discovery document at {url} names issuer {doc.get('issuer')!r}")
        return str(doc["jwks_uri"])

    def _refetch(self) -> None:
        """Read the JWKS again (the caller holds the lock); keep the old keys on failure."""
        self._fetched = time.monotonic()
        try:
            if self._jwks_uri is None:
                self._jwks_uri = self.discover()
            data = self._http.get(self._jwks_uri).raise_for_status().json()
            keys = jwt.PyJWKSet.from_dict(data).keys
        except (httpx.HTTPError, ValueError, KeyError, jwt.PyJWTError) as exc:
            logger.warning("cannot read the signing keys of %s: %s", self.issuer, exc)
            return
        self._keys = {k.key_id: k for k in keys if k.key_id and k.public_key_use in (None, "sig")}
        self.fetches += 1
        logger.info("signing keys of %s: %s", self.issuer, sorted(self._keys))

    def prefetch(self) -> bool:
        """Read the discovery document and JWKS now (at start); False if no keys came."""
        with self._lock:
            self._refetch()
        return bool(self._keys)

    def key(self, kid: str) -> jwt.PyJWK:
        """The signing key of that id, fetching the JWKS on a miss (rate-limited)."""
        found = self._keys.get(kid)
        stale = time.monotonic() - self._fetched > self.lifespan
        if found is not None and not stale:
            return found
        with self._lock:
            since = time.monotonic() - self._fetched
            if (kid not in self._keys and since >= self.min_refetch) or since > self.lifespan:
                self._refetch()
            found = self._keys.get(kid)
        if found is None:
            raise TokenRefused("token signed with an unknown key")
        return found

    def verify(self, token: str) -> dict[str, Any]:
        """The token's claims once signature, issuer, audience and times check out."""
        header = _header(token)
        if header.get("alg") not in self.algorithms:
            shown = str(header.get("alg"))[:16]  # the caller wrote it: keep log lines short
            raise TokenRefused(f"token algorithm {shown!r} is not accepted")
        key = self.key(str(header.get("kid", "")))
        try:
            return jwt.decode(
                token,
                key,
                algorithms=self.algorithms,
                audience=self.audience,
                issuer=self.issuer,
                leeway=self.leeway,
                options={"require": ["exp", "iat", "iss", "aud", "sub"]},
            )
        except jwt.ExpiredSignatureError:
            raise TokenRefused("token expired") from None
        except jwt.InvalidAudienceError:
            raise TokenRefused("token not for this audience") from None
        except jwt.InvalidIssuerError:
            raise TokenRefused("token from another issuer") from None
        except jwt.InvalidSignatureError:
            raise TokenRefused("token signature does not verify") from None
        except jwt.PyJWTError as exc:
            raise TokenRefused(f"token refused: {type(exc).__name__}") from None

    def close(self) -> None:
        self._http.close()


def _header(token: str) -> dict[str, Any]:
    """The header, to choose the key: only its segment is read (PyJWT's reader checks the
    whole token character by character, and `jwt.decode` does that again anyway)."""
    head = token.split(".", 1)[0]
    try:
        header = json.loads(base64.urlsafe_b64decode(head + "=" * (-len(head) % 4)))
    except ValueError:  # bad base64, bytes that are no UTF-8, no JSON
        raise TokenRefused("not a JWT") from None
    if token.count(".") != 2 or not isinstance(header, dict):
        raise TokenRefused("not a JWT")
    return header
