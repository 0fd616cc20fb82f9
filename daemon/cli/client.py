"""A small HTTP client for a running daemon (used by the thin CLI commands).

Requests to a loopback address never go through a proxy: urllib honours ``http_proxy``
even for 127.0.0.1 (``urllib.request.proxy_bypass('127.0.0.1')`` is False unless
``no_proxy`` names it), so with a proxy in the environment the CLI would talk to the proxy
and report the daemon as not running. Other hosts keep the environment's proxy settings.
"""

from __future__ import annotations

import ipaddress
import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping

from .answers import Answer

LOOPBACK_NAMES = ("localhost", "localhost.localdomain", "ip6-localhost")


class DaemonNotRunning(Exception):
    """Nothing answers at the daemon's address."""


class ApiFailure(Exception):
    """The daemon answered with an error status."""

    def __init__(self, status: int, body: Answer) -> None:
        super().__init__(body.get("error", f"HTTP {status}"))
        self.status = status
        self.body = body
        self.advice: list[str] = []  # lines the CLI found to add (the fallback's advice for a text search)


def is_loopback(host: str) -> bool:
    """True for localhost and any loopback address (127.0.0.0/8, ::1)."""
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def opener_for(host: str) -> urllib.request.OpenerDirector:
    """An opener that skips proxies for a loopback host, else urllib's default (environment proxies)."""
    if is_loopback(host):
        return urllib.request.build_opener(urllib.request.ProxyHandler({}))
    return urllib.request.build_opener()


class Client:
    """GET/POST JSON against ``http://host:port`` with the optional bearer token."""

    def __init__(self, host: str, port: int, token: str = "", timeout: float = 300.0) -> None:
        if host in ("0.0.0.0", "::", ""):
            host = "127.0.0.1"
        self.base = f"http://{host if ':' not in host else f'[{host}]'}:{port}"
        self.token = token
        self.timeout = timeout
        self.opener = opener_for(host)

    def call(
        self,
        method: str,
        path: str,
        params: Mapping[str, object] | None = None,
        body: bytes | None = None,
        content_type: str | None = None,
    ) -> tuple[int, Answer]:
        # surrogateescape: a file name that is not UTF-8 (``caf\udce9.jpg`` from os.fsdecode)
        # goes out as its own bytes (``caf%E9.jpg``), which the daemon decodes back (paths.from_query).
        values = {k: v for k, v in (params or {}).items() if v is not None}
        query = urllib.parse.urlencode(values, encoding="utf-8", errors="surrogateescape")
        request = urllib.request.Request(f"{self.base}{path}{'?' + query if query else ''}", data=body, method=method)
        if self.token:
            request.add_header("Authorization", f"Bearer {self.token}")
        if content_type:
            request.add_header("Content-Type", content_type)
        try:
            with self.opener.open(request, timeout=self.timeout) as response:
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
