"""HTTP front under hostile load: which server keeps ``/health`` answering.

Starts the real app (Service loaded with efficientnet, offline) behind each candidate server
in its own process, then runs ``tests/http_load.py``: N busy clients (a new connection per
``GET /stats``, as fast as they can) plus M slow-header clients (one header byte a second),
while this process asks for ``/health`` every 0.1 s on a fresh connection (5 s timeout).

Candidates: ``cheroot-16`` (what the daemon had: 16 threads, cheroot's listen backlog of 5),
``cheroot-64`` (64 threads, backlog 1024), ``waitress`` (``api.listener.make_http_server``).

    .venv/bin/python bench/bench_http_front.py [--clients 200] [--slow 16] [--seconds 10]
"""

from __future__ import annotations

import argparse
import os
import platform
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from helpers import free_port, server_config, wait_healthy
from http_load import run_load

KINDS = ("cheroot-16", "cheroot-64", "waitress")


def serve(kind: str, config_path: str) -> None:
    """Child process: the loaded app behind one candidate server until SIGTERM."""
    from imgsearchd.api.app import create_app
    from imgsearchd.config import load_config
    from imgsearchd.service import Service

    config = load_config(config_path)
    service = Service(config)
    app = create_app(service)
    host, port = config.server.host, config.server.port
    if kind == "waitress":
        from imgsearchd.api.listener import make_http_server

        server = make_http_server(config, app)
        start, stop = server.serve, lambda: server.stop()
    else:
        from cheroot import wsgi

        tuned = kind == "cheroot-64"
        cheroot = wsgi.Server(
            (host, port), app, numthreads=64 if tuned else 16, request_queue_size=1024 if tuned else 5
        )
        cheroot.prepare()
        start, stop = cheroot.serve, cheroot.stop
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    thread = threading.Thread(target=start, daemon=True)
    thread.start()
    service.load()
    done.wait()
    stop()
    service.close()


def measure(kind: str, clients: int, slow: int, seconds: float) -> dict[str, object]:
    with tempfile.TemporaryDirectory() as tmp:
        port = free_port()
        config = server_config(Path(tmp), server={"port": port})
        proc = subprocess.Popen(
            [sys.executable, __file__, "--serve", kind, str(config)], stderr=subprocess.PIPE, text=True
        )
        try:
            wait_healthy(port, proc)
            counts, probe = run_load("127.0.0.1", port, clients, slow, seconds)
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.communicate(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.communicate()
    answered = sum(v for k, v in counts.items() if k.isdigit())
    return {
        "kind": kind,
        "probes": len(probe.latencies),
        "unanswered": sum(1 for x in probe.latencies if x is None),
        "p50": probe.percentile(0.5),
        "p99": probe.percentile(0.99),
        "worst": probe.worst,
        "busy_per_s": answered / seconds,
        "busy_failed": sum(v for k, v in counts.items() if not k.isdigit() and not k.startswith("slow")),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--slow", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--kinds", default=",".join(KINDS))
    parser.add_argument("--serve", nargs=2, metavar=("KIND", "CONFIG"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(*args.serve)
        return 0
    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}")
    print(f"{args.clients} busy clients + {args.slow} slow-header clients, {args.seconds:g} s; /health every 0.1 s\n")
    print("| server | /health p50 | p99 | worst | unanswered (5 s) | busy answers/s | busy failures |")
    print("|---|---|---|---|---|---|---|")
    for kind in args.kinds.split(","):
        r = measure(kind, args.clients, args.slow, args.seconds)
        worst = "∞" if r["worst"] == float("inf") else f"{r['worst']:.3f} s"
        p99 = "∞" if r["p99"] == float("inf") else f"{r['p99']:.3f} s"
        print(
            f"| {kind} | {r['p50']:.3f} s | {p99} | {worst} | {r['unanswered']}/{r['probes']} "
            f"| {r['busy_per_s']:.0f} | {r['busy_failed']} |",
            flush=True,
        )
        time.sleep(1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
