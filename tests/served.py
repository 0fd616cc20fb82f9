"""A real ``imgsearchd serve`` process, for what only a separate process shows: its memory,
its signals, its exit code and log, and permissions dropped for it alone.

``serve`` starts the daemon with the CLI, optionally under an address-space cap (so a
regression fails with MemoryError instead of waking the kernel's OOM killer) or behind
a command prefix (``setpriv``), and ``Served`` reads its resident set from /proc and
talks HTTP to it. Used by the memory, storage and hostile-file tests and
``bench/bench_memory.py``.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from helpers import cli_command, wait_healthy

MIB = 1024 * 1024


class Served:
    """The daemon process: memory from /proc/PID/status, requests on its port."""

    def __init__(self, proc: subprocess.Popen[str], port: int, log: Path) -> None:
        self.proc = proc
        self.base = f"http://127.0.0.1:{port}"
        self.log = log

    def log_tail(self, chars: int = 3000) -> str:
        """The end of the daemon's log (stderr), for failure messages."""
        return self.log.read_text(errors="replace")[-chars:]

    def _status_mib(self, field: str) -> float:
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024
        raise AssertionError(f"no {field} in /proc/{self.proc.pid}/status")

    def rss_mib(self) -> float:
        """Resident memory now."""
        return self._status_mib("VmRSS")

    def peak_mib(self) -> float:
        """The most resident memory since start or the last ``reset_peak`` (the kernel's VmHWM)."""
        return self._status_mib("VmHWM")

    def reset_peak(self) -> None:
        """Start VmHWM again from the current resident size (Linux clear_refs 5)."""
        with open(f"/proc/{self.proc.pid}/clear_refs", "w") as f:
            f.write("5")

    def get(self, route: str, **params: str) -> tuple[int, Any]:
        """GET with query parameters; (status, JSON body)."""
        return self.request("GET", f"{route}?{urllib.parse.urlencode(params)}" if params else route)

    def request(
        self, method: str, path: str, body: bytes | None = None, content_type: str = "", timeout: float = 120
    ) -> tuple[int, Any]:
        req = urllib.request.Request(self.base + path, data=body, method=method)
        if content_type:
            req.add_header("Content-Type", content_type)
        try:
            with urllib.request.urlopen(req, timeout=timeout) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read())


@contextmanager
def serve(config: Path, port: int, address_space_gib: float = 0, prefix: tuple[str, ...] = ()) -> Iterator[Served]:
    """``imgsearchd serve`` on ``port`` (behind ``prefix``, a command such as setpriv);
    stopped with SIGTERM (then SIGKILL) after: ``proc.returncode`` and ``log`` tell how."""
    prefix = tuple(prefix)
    if address_space_gib:
        prlimit = shutil.which("prlimit")
        if prlimit:
            prefix = (prlimit, f"--as={int(address_space_gib * 1024**3)}", *prefix)
    log = config.with_suffix(".log")
    with open(log, "w") as stderr:  # a file, not a pipe nobody reads, which could fill and block
        proc = subprocess.Popen(
            [*prefix, *cli_command("serve", "--config", str(config), "--port", str(port))],
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            text=True,
        )
    served = Served(proc, port, log)
    try:
        try:
            wait_healthy(port, proc)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{served.log_tail()}") from exc
        yield served
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
