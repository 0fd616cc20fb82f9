"""A small HTTP client for a running daemon (used by the thin CLI commands)."""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from typing import Any


class DaemonNotRunning(Exception):
    """Nothing answers at the daemon's address."""


class ApiFailure(Exception):
    """The daemon answered with an error status."""

    def __init__(self, status: int, body: dict[str, Any]) -> None:
        super().__init__(body.get("error", f"HTTP {status}"))
        self.status = status
        self.body = body


class Client:
    """GET/POST JSON against ``http://host:port`` with the optional bearer token."""

    def __init__(self, host: str, port: int, token: str = "", timeout: float = 300.0) -> None:
        if host in ("0.0.0.0", "::", ""):
            host = "127.0.0.1"
        self.base = f"http://{host if ':' not in host else f'[{host}]'}:{port}"
        self.token = token
        self.timeout = timeout

    def call(
        self,
        method: str,
        path: str,
        params: dict[str, Any] | None = None,
        body: bytes | None = None,
        content_type: str | None = None,
    ) -> tuple[int, dict[str, Any]]:
        query = urllib.parse.urlencode({k: v for k, v in (params or {}).items() if v is not None})
        request = urllib.request.Request(f"{self.base}{path}{'?' + query if query else ''}", data=body, method=method)
        if self.token:
            request.add_header("Authorization", f"Bearer {self.token}")
        if content_type:
            request.add_header("Content-Type", content_type)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                return response.status, json.loads(response.read() or b"{}")
        except urllib.error.HTTPError as exc:
            try:
                payload = json.loads(exc.read() or b"{}")
            except ValueError:
                payload = {"error": f"HTTP {exc.code}"}
            raise ApiFailure(exc.code, payload) from None
        except (urllib.error.URLError, ConnectionError) as exc:
            reason = getattr(exc, "reason", exc)
            raise DaemonNotRunning(
                f"imgsearchd is not running at {self.base} ({reason}); start it with 'imgsearchd serve'"
            ) from None
