"""Hostile load on an HTTP server: many busy clients plus slow-header clients, and a probe.

Used by ``test_http_load`` and ``bench/bench_http_front.py``. The load runs in its own
process (``python tests/http_load.py HOST PORT ...``) so that its event loop does not share a
GIL with the probe or the server; ``probe`` measures ``/health`` from the calling process.

* busy clients: each opens a connection, sends ``GET <path>`` with ``Connection: close``,
  reads the whole answer, and starts over, as fast as it can;
* slow clients: each sends a request line and then one header byte every ``--drip`` seconds,
  never finishing the header (when the server drops it, it reconnects and starts again).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SCRIPT = Path(__file__).resolve()


def _count(counts: dict[str, int], key: str) -> None:
    counts[key] = counts.get(key, 0) + 1


async def _busy(host: str, port: int, path: str, until: float, counts: dict[str, int]) -> None:
    request = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n".encode()
    while time.monotonic() < until:
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), 30)
            writer.write(request)
            answer = await asyncio.wait_for(reader.read(), 30)
            writer.close()
            _count(counts, answer[9:12].decode() if answer.startswith(b"HTTP/") else "no answer")
        except (OSError, TimeoutError) as exc:
            _count(counts, type(exc).__name__)


async def _slow(host: str, port: int, drip: float, until: float, counts: dict[str, int]) -> None:
    while time.monotonic() < until:
        try:
            reader, writer = await asyncio.open_connection(host, port)
            writer.write(b"GET /health HTTP/1.1\r\nX-Slow: ")
            while time.monotonic() < until and not reader.at_eof():
                await asyncio.sleep(drip)
                writer.write(b"a")
                await writer.drain()
            writer.close()
            _count(counts, "slow_dropped" if reader.at_eof() else "slow_held")
        except OSError:
            _count(counts, "slow_dropped")
            await asyncio.sleep(drip)


async def _load(
    host: str, port: int, clients: int, slow: int, seconds: float, path: str, drip: float
) -> dict[str, int]:
    until = time.monotonic() + seconds
    counts: dict[str, int] = {}
    tasks = [_slow(host, port, drip, until, counts) for _ in range(slow)]
    tasks += [_busy(host, port, path, until, counts) for _ in range(clients)]
    await asyncio.gather(*tasks)
    return counts


@dataclass
class Probe:
    """``/health`` latencies (seconds; None for no answer in the timeout) and statuses."""

    latencies: list[float | None] = field(default_factory=list)
    statuses: list[int] = field(default_factory=list)

    @property
    def worst(self) -> float:
        return max((x if x is not None else float("inf")) for x in self.latencies)

    def percentile(self, q: float) -> float:
        ordered = sorted((x if x is not None else float("inf")) for x in self.latencies)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def probe(host: str, port: int, stop: threading.Event, every: float = 0.1, timeout: float = 5.0) -> Probe:
    """Ask for ``/health`` on a fresh connection every ``every`` s until ``stop`` is set."""
    result = Probe()
    request = f"GET /health HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n".encode()
    while not stop.is_set():
        started = time.monotonic()
        try:
            with socket.create_connection((host, port), timeout=timeout) as conn:
                conn.sendall(request)
                head = conn.recv(64)
            result.latencies.append(time.monotonic() - started)
            result.statuses.append(int(head[9:12]) if head.startswith(b"HTTP/") else 0)
        except OSError:
            result.latencies.append(None)
        stop.wait(max(0.0, every - (time.monotonic() - started)))
    return result


def run_load(
    host: str, port: int, clients: int, slow: int, seconds: float, path: str = "/stats", drip: float = 1.0
) -> tuple[dict[str, int], Probe]:
    """Run the load in a child process while probing ``/health`` here; (load counts, probe)."""
    child = subprocess.Popen(
        [sys.executable, str(SCRIPT), host, str(port), str(clients), str(slow), str(seconds), path, str(drip)],
        stdout=subprocess.PIPE,
        text=True,
    )
    stop = threading.Event()
    holder: dict[str, Probe] = {}
    thread = threading.Thread(target=lambda: holder.setdefault("probe", probe(host, port, stop)), name="probe")
    time.sleep(min(1.0, seconds / 4))  # let the load build up before the first probe
    thread.start()
    try:
        out, _ = child.communicate(timeout=seconds + 90)
    finally:
        stop.set()
        thread.join()
        if child.poll() is None:
            child.kill()
            child.wait()
    counts: dict[str, int] = json.loads(out)
    return counts, holder["probe"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    for name, kind in (("host", str), ("port", int), ("clients", int), ("slow", int), ("seconds", float)):
        parser.add_argument(name, type=kind)
    parser.add_argument("path")
    parser.add_argument("drip", type=float)
    args: Any = parser.parse_args(argv)
    counts = asyncio.run(_load(args.host, args.port, args.clients, args.slow, args.seconds, args.path, args.drip))
    print(json.dumps(counts))
    return 0


if __name__ == "__main__":
    sys.exit(main())
