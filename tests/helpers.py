"""Helpers shared by the tests (and the benchmarks): waiting, settings files, the CLI as a
process, a real daemon on a loopback port, real photos. Fixtures live in ``conftest``."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import pytest
from PIL import Image

from imgsearchd.api.app import create_app
from imgsearchd.api.listener import make_http_server
from imgsearchd.config import load_config
from imgsearchd.service import Service

REPO = Path(__file__).resolve().parent.parent
# The offline extractor as the tests run it. fp32 on purpose: ``auto`` is bf16 on a CPU with
# avx512_bf16 and fp32 on one without, and tests compare vectors exactly across processes.
# torch: the fixtures compare vectors exactly and start many daemons (test_engines.py runs OpenVINO).
EFFICIENTNET_FP32: dict[str, Any] = {"device": "cpu", "batch_size": 8, "precision": "fp32", "engine": "torch"}
# CLIP ViT-B-32 with seeded random weights, for daemons that need a text tower.
CLIP_RANDOM_FP32: dict[str, Any] = {
    "pretrained": "none",
    "device": "cpu",
    "batch_size": 4,
    "precision": "fp32",
    "engine": "torch",
}

T = TypeVar("T")


# -- the CPU ----------------------------------------------------------------------------------


def bf16_flags() -> tuple[frozenset[str], str]:
    """CPU flags under which ``precision = "auto"`` picks bf16, and how: ``native`` (this CPU's own
    flags: it has avx512_bf16 or amx_bf16) or ``simulated`` (its flags plus avx512_bf16: auto's
    choice is simulated, the bf16 arithmetic is emulated by oneDNN and runs for real, slower)."""
    from imgsearchd.extractors import precision

    flags = precision.cpu_flags()
    if precision.native_bf16(flags):
        return flags, "native"
    return flags | {"avx512_bf16"}, "simulated"


def bf16_report() -> str:
    """One line for the test run's header: which bf16 path this machine's tests take."""
    from imgsearchd.extractors import precision

    flags, path = bf16_flags()
    if path == "native":
        return f"bf16: native ({precision.native_bf16(flags)}): the bf16 tests run this CPU's own bf16 kernels"
    return (
        "bf16: simulated: this CPU has neither avx512_bf16 nor amx_bf16; the bf16 tests tell precision "
        "'auto' it has, and oneDNN emulates the bf16 arithmetic"
    )


# -- waiting ------------------------------------------------------------------------------


def wait_for(check: Callable[[], T], timeout: float = 30.0, what: str = "the condition") -> T:
    """Poll ``check`` until it returns something true and return that; fail after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(0.02)


# -- settings files and the command line ------------------------------------------------------


def toml_value(value: Any) -> str:
    return json.dumps(value)  # JSON strings, numbers, booleans and lists are valid TOML


def write_config(path: Path, sections: dict[str, dict[str, Any]]) -> Path:
    """Write a TOML settings file from {"section": {"key": value}}."""
    lines = []
    for section, values in sections.items():
        lines.append(f"[{section}]")
        lines.extend(f"{key} = {toml_value(value)}" for key, value in values.items())
        lines.append("")
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


def cli_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "imgsearchd.cli", *args]


def cli_here(capsys: pytest.CaptureFixture[str], *args: str) -> subprocess.CompletedProcess[str]:
    """Run ``imgsearchd`` in this process (``cli.main``), for tests of a command's logic: a
    subprocess pays about 2 s of imports (torch) and its models' load. Each command keeps one
    subprocess smoke test (``run_cli``)."""
    from imgsearchd.cli import main as cli

    capsys.readouterr()  # what earlier steps printed is not this command's
    message = ""
    try:
        code = cli.main(list(args))
    except SystemExit as exc:  # argparse refusing the arguments (2), or sys.exit(): as Python exits
        code = 0 if exc.code is None else exc.code if isinstance(exc.code, int) else 1
        message = "" if exc.code is None or isinstance(exc.code, int) else f"{exc.code}\n"
    out, err = capsys.readouterr()
    return subprocess.CompletedProcess(["imgsearchd", *args], code, out, err + message)


def run_cli(
    *args: str, timeout: float = 180, prefix: Sequence[str] = (), env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``imgsearchd`` as a real subprocess."""
    full_env = {**os.environ, **(env or {})}
    full_env.pop("IMGSEARCHD_CONFIG", None)
    return subprocess.run([*prefix, *cli_command(*args)], capture_output=True, text=True, timeout=timeout, env=full_env)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_healthy(port: int, proc: subprocess.Popen[str], timeout: float = 120) -> None:
    """Wait until a daemon process answers ``/health`` with 200; fail if it exits first."""

    def healthy() -> bool:
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else "daemon exited"
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as r:
                return bool(r.status == 200)
        except OSError:
            return False

    wait_for(healthy, timeout, "the daemon to become healthy")


def without_file_permissions_bypass() -> list[str]:
    """A command prefix that makes root obey file permissions (drops CAP_DAC_*), else nothing."""
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("running as root without setpriv: cannot make a file unreadable")
    return [setpriv, "--bounding-set", "-dac_override,-dac_read_search"]


# -- photos -----------------------------------------------------------------------------------


def skimage_photos() -> dict[str, Image.Image]:
    """Real colour photos shipped with scikit-image."""
    from skimage import data

    left, right, _ = data.stereo_motorcycle()
    return {
        "chelsea": Image.fromarray(data.chelsea()),
        "coffee": Image.fromarray(data.coffee()),
        "astronaut": Image.fromarray(data.astronaut()),
        "rocket": Image.fromarray(data.rocket()),
        "motorcycle_left": Image.fromarray(left),
        "motorcycle_right": Image.fromarray(right),
        "immunohistochemistry": Image.fromarray(data.immunohistochemistry()),
        "hubble": Image.fromarray(data.hubble_deep_field()),
        "retina": Image.fromarray(data.retina()).resize((512, 512)),
    }


# -- a real daemon in this process ----------------------------------------------------------------


class Live:
    """A running server: its service, base URL and request helpers."""

    def __init__(self, service: Service, base: str, token: str = "") -> None:
        self.service = service
        self.base = base
        self.token = token
        self.paths: dict[str, Path] = {}  # files a fixture added, by name
        self.root = Path()  # the folder a fixture made them in
        self.job_id = ""  # a job a fixture ran to the end

    def request(
        self,
        method: str,
        path: str,
        params: dict[str, Any] | None = None,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
        timeout: float = 120,
    ) -> tuple[int, Any, dict[str, str]]:
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
        def finished() -> dict[str, Any] | None:
            status, job = self.get(f"/jobs/{job_id}")
            assert status == 200, job
            return job if job["state"] in ("done", "failed") else None

        job = wait_for(finished, timeout, f"job {job_id} to finish")
        assert job is not None
        return job


def server_config(tmp_path: Path, **overrides: dict[str, Any]) -> Path:
    """Settings for a test daemon: efficientnet only (offline), state under ``tmp_path``."""
    sections: dict[str, dict[str, Any]] = {
        "server": {"host": "127.0.0.1", "port": 8080},
        "index": {
            "data_dir": str(tmp_path / "data"),
            "extractors": ["efficientnet"],
            "fallback_extractor": "",
            "loader_threads": 2,
            "rebuild_after_changes": 1000,
            "rebuild_after_seconds": 60,
        },
        "extractors.efficientnet": dict(EFFICIENTNET_FP32),
    }
    for section, values in overrides.items():
        sections.setdefault(section, {}).update(values)
    return write_config(tmp_path / "imgsearchd.toml", sections)


@contextmanager
def live_server(
    config_path: Path,
    load: bool = True,
    watch_overrides: dict[str, Any] | None = None,
    threads: int = 64,
    header_seconds: float | None = None,
    slow_slots: int | None = None,
    extra_watch: Sequence[str] = (),
) -> Iterator[Live]:
    """The real service and HTTP server on 127.0.0.1:<free port>; stopped and closed after.

    ``load=False`` leaves the service starting (503) for the caller to load.
    ``watch_overrides`` replace watch options the config cannot set (check intervals);
    ``extra_watch`` are folders given as ``--watch`` (any bytes: a settings file is UTF-8).
    The HTTP server is the daemon's own (``make_http_server``), with its limits.
    """
    config = load_config(config_path)
    config.extra_watch = list(extra_watch)
    service = Service(config, slow_slots=slow_slots or max(1, threads - 4))
    service.watch_overrides = dict(watch_overrides or {})
    extra = {} if header_seconds is None else {"header_seconds": header_seconds}
    server = make_http_server(config, create_app(service), bind=("127.0.0.1", 0), threads=threads, **extra)
    thread = threading.Thread(target=server.serve, name="test-http", daemon=True)
    thread.start()
    host, port = server.bind_addr[:2]
    live = Live(service, f"http://{host}:{port}", config.server.token)
    try:
        if load:
            service.load()
        yield live
    finally:
        server.stop()
        thread.join(timeout=10)
        service.close()


class NotifySocket:
    """A real unix datagram socket standing in for systemd; records every message."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(0.2)
        self.messages: list[tuple[float, dict[str, str]]] = []
        self.on_ready: list = []
        self._stop = threading.Event()
        self._reading = threading.Event()
        self._reading.set()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def stall(self) -> None:
        """Stop reading and fill the socket's queue, so the daemon's next send blocks (a hung systemd)."""
        self._reading.clear()
        time.sleep(0.3)  # let a recv in progress time out
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as filler:
            filler.setblocking(False)
            try:
                while True:
                    filler.sendto(b"X=filler", str(self.path))
            except BlockingIOError:
                pass

    def resume(self) -> None:
        self._reading.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            if not self._reading.wait(0.1):
                continue
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                return
            fields = dict(line.split("=", 1) for line in data.decode().splitlines() if "=" in line)
            if fields.get("READY") == "1":
                for callback in self.on_ready:
                    callback()
            self.messages.append((time.monotonic(), fields))

    def wait_for(self, key: str, value: str | None = None, after: int = 0, timeout: float = 120) -> int:
        """Index of the first message from ``after`` on that has key (=value)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for i, (_, fields) in enumerate(list(self.messages)[after:], start=after):
                if key in fields and (value is None or fields[key] == value):
                    return i
            time.sleep(0.05)
        raise AssertionError(f"no {key}={value} after message {after}: {[m for _, m in self.messages]}")

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self.sock.close()


def systemd_analyze() -> str:
    """The ``systemd-analyze`` binary; a skip where it is missing (a failure in CI, which installs it)."""
    path = shutil.which("systemd-analyze")
    if path is None:
        if os.environ.get("CI"):
            pytest.fail("systemd-analyze is missing: .ci/run installs Debian's systemd package")
        pytest.skip("systemd-analyze not installed (apt-get install systemd)")
    return path
