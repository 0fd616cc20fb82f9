"""A real daemon (service + cheroot) on a free loopback port, and a tiny HTTP client for tests."""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from cheroot import wsgi

from imgsearchd.config import load_config
from imgsearchd.server import create_app
from imgsearchd.service import Service

from conftest import write_config


class Live:
    """A running server: its service, base URL and request helpers."""

    def __init__(self, service: Service, base: str, token: str = "") -> None:
        self.service = service
        self.base = base
        self.token = token

    def request(self, method: str, path: str, params: dict[str, Any] | None = None, body: bytes | None = None,
                headers: dict[str, str] | None = None, timeout: float = 120) -> tuple[int, Any, dict[str, str]]:
        query = urllib.parse.urlencode(params or {})
        req = urllib.request.Request(f"{self.base}{path}{'?' + query if query else ''}", data=body, method=method)
        for key, value in (headers or {}).items():
            req.add_header(key, value)
        if self.token and "Authorization" not in (headers or {}):
            req.add_header("Authorization", f"Bearer {self.token}")
        try:
            with urllib.request.urlopen(req, timeout=timeout) as response:
                raw = response.read()
                return response.status, json.loads(raw), dict(response.headers)
        except urllib.error.HTTPError as exc:
            raw = exc.read()
            return exc.code, json.loads(raw), dict(exc.headers)

    def get(self, path: str, **params: Any) -> tuple[int, Any]:
        status, body, _ = self.request("GET", path, params)
        return status, body

    def post(self, path: str, body: bytes, content_type: str, **params: Any) -> tuple[int, Any]:
        status, data, _ = self.request("POST", path, params, body, {"Content-Type": content_type})
        return status, data

    def wait_job(self, job_id: str, timeout: float = 300) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status, job = self.get(f"/jobs/{job_id}")
            assert status == 200, job
            if job["state"] in ("done", "failed"):
                return job
            time.sleep(0.1)
        raise AssertionError(f"job {job_id} not done in {timeout} s")


def server_config(tmp_path: Path, **overrides: dict[str, Any]) -> Path:
    sections: dict[str, dict[str, Any]] = {
        "server": {"host": "127.0.0.1", "port": 8080},
        "index": {"data_dir": str(tmp_path / "data"), "extractors": ["efficientnet"], "fallback_extractor": "",
                  "loader_threads": 2, "rebuild_after_changes": 1000, "rebuild_after_seconds": 60},
        "extractors.efficientnet": {"device": "cpu", "batch_size": 8},
    }
    for section, values in overrides.items():
        sections.setdefault(section, {}).update(values)
    return write_config(tmp_path / "imgsearchd.toml", sections)


@contextmanager
def live_server(config_path: Path, load: bool = True) -> Iterator[Live]:
    """Serve on 127.0.0.1:<free port>; ``load=False`` leaves the service starting (503)."""
    config = load_config(config_path)
    service = Service(config)
    server = wsgi.Server(("127.0.0.1", 0), create_app(service), numthreads=64, server_name="imgsearchd-test")
    server.prepare()
    thread = threading.Thread(target=server.serve, daemon=True)
    thread.start()
    host, port = server.bind_addr[:2]
    live = Live(service, f"http://{host}:{port}", config.server["token"])
    try:
        if load:
            service.load()
        yield live
    finally:
        server.stop()
        if load:
            service.close()
