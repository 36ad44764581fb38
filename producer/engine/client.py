"""The HTTP client the ``runstream`` commands use to talk to a running engine."""

from __future__ import annotations

from typing import Any

import httpx

from runstream.schemas.errors import RunstreamError


class EngineClientError(RunstreamError, RuntimeError):
    """The engine refused a request or could not be reached; the message says which."""


class EngineClient:
    def __init__(self, url: str, token: str | None = None, timeout: float = 30.0) -> None:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.Client(base_url=url, headers=headers, timeout=timeout)

    def close(self) -> None:
        self._http.close()

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise EngineClientError(
                f"cannot reach the engine at {self._http.base_url}: {exc}"
            ) from None
        if response.status_code >= 400:
            try:
                detail = response.json().get("detail", response.text)
            except ValueError:
                detail = response.text
            raise EngineClientError(f"{response.status_code}: {detail}")
        return response.json()

    def submit(self, plan: str, args: list[Any], kwargs: dict[str, Any]) -> dict[str, Any]:
        return self._call("POST", "/tasks", json={"plan": plan, "args": args, "kwargs": kwargs})

    def tasks(self, state: str | None = None) -> list[dict[str, Any]]:
        return self._call("GET", "/tasks", params={"state": state} if state else None)

    def task(self, task_id: str) -> dict[str, Any]:
        return self._call("GET", f"/tasks/{task_id}")

    def control(self, action: str, reason: str = "", defer: bool = False) -> dict[str, Any]:
        return self._call("POST", f"/control/{action}", json={"reason": reason, "defer": defer})

    def queue(self, action: str) -> dict[str, Any]:
        return self._call("POST", f"/queue/{action}")
