"""Bearer-token checks: required for every change of state, and for reads unless open."""

from __future__ import annotations

import hmac

from fastapi import HTTPException, Request, status


class TokenGuard:
    def __init__(self, token: str, open_reads: bool) -> None:
        self._token = token.encode()
        self.open_reads = open_reads

    def _check(self, request: Request) -> None:
        header = request.headers.get("authorization", "")
        scheme, _, given = header.partition(" ")
        if scheme.lower() != "bearer" or not given:
            raise HTTPException(
                status.HTTP_401_UNAUTHORIZED,
                "missing bearer token (Authorization: Bearer <token>)",
                headers={"WWW-Authenticate": "Bearer"},
            )
        if not hmac.compare_digest(given.strip().encode(), self._token):
            raise HTTPException(
                status.HTTP_403_FORBIDDEN, "invalid bearer token",
                headers={"WWW-Authenticate": "Bearer"},
            )  # fmt: skip

    def write(self, request: Request) -> None:
        """Dependency of every route that changes state."""
        self._check(request)

    def read(self, request: Request) -> None:
        """Dependency of every read route; open when configured so."""
        if not self.open_reads:
            self._check(request)
