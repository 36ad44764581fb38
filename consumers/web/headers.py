"""Headers every answer of the web view carries, for a page that holds people's tokens.

No referrer leaves the page (a provider's one-time code is in its address for a moment),
no framing by other sites (clickjacking the engine's controls), and no guessing of content
types. A pure ASGI wrapper, not Starlette's BaseHTTPMiddleware, so the Server-Sent Events
streams pass through unbuffered.
"""

from __future__ import annotations

from typing import Any

HEADERS = (
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
    (b"x-content-type-options", b"nosniff"),
)


class SecurityHeaders:
    """Adds `HEADERS` to every HTTP answer of ``app``."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def sending(message: dict) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", ()), *HEADERS]
            await send(message)

        await self.app(scope, receive, sending)
