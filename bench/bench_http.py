"""HTTP search latency at scale: search by an indexed path against a real `imgsearchd serve`.

Fills a catalogue with N vectors (default 100k, CLIP's 512 dimensions, clustered synthetic
unit vectors; a few hundred of them belong to real files on disk so that "indexed and
unchanged" holds and no model runs), starts the daemon as a subprocess, waits for its index
snapshot (HNSW by default, or Annoy), then measures GET /search?image=PATH&limit=10 from one
client and from 16 parallel keep-alive clients. The client runs in this process, the server in another, both
on the same machine.

    .venv/bin/python bench/bench_http.py [--vectors 100000] [--clients 16] [--seconds 10]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from imgsearchd.media.files import read_file
from imgsearchd.store.catalog import Catalog
from imgsearchd.store.rows import FileResult

from helpers import free_port

MODEL_ID = (
    "clip:ViT-B-32:random-seed0:squash"  # what [extractors.clip] pretrained = "none" reports (default preprocess)
)
DIM = 512


def clustered_unit_vectors(n: int, dim: int, rng: np.random.Generator) -> np.ndarray:
    centres = rng.normal(size=(max(1, n // 200), dim)).astype(np.float32)
    vectors = centres[rng.integers(0, len(centres), n)] + 0.35 * rng.normal(size=(n, dim)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def fill_catalogue(db: Path, photos: Path, n: int, real: int) -> list[str]:
    rng = np.random.default_rng(0)
    vectors = clustered_unit_vectors(n, DIM, rng)
    photos.mkdir(parents=True)
    queries = []
    with Catalog(db) as catalog:
        batch: list[FileResult] = []
        for i in range(n):
            if i < real:
                path = photos / f"q{i:04d}.jpg"
                Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(path)
                file = read_file(str(path))
                batch.append(
                    FileResult(str(path), file.size, file.mtime_ns, file.content_hash, {"clip": (MODEL_ID, vectors[i])})
                )
                queries.append(str(path))
            else:
                batch.append(
                    FileResult(
                        f"/bench/fake/{i // 1000:03d}/img{i:07d}.jpg",
                        1000 + i,
                        i,
                        f"fake{i:016x}",
                        {"clip": (MODEL_ID, vectors[i])},
                    )
                )
            if len(batch) == 10_000:
                catalog.record_batch(batch)
                batch = []
        catalog.record_batch(batch)
    return queries


def get_json(port: int, path: str, method: str = "GET") -> tuple[int, dict]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request(method, path)
        response = conn.getresponse()
        return response.status, json.loads(response.read() or b"{}")
    finally:
        conn.close()


def client_loop(port: int, queries: list[str], deadline: float, out: list[float], errors: list, offset: int) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    i = offset
    while time.perf_counter() < deadline:
        path = "/search?" + urllib.parse.urlencode({"image": queries[i % len(queries)], "limit": 10})
        started = time.perf_counter()
        conn.request("GET", path)
        response = conn.getresponse()
        body = response.read()
        out.append(time.perf_counter() - started)
        if response.status != 200 or len(json.loads(body)["results"]) != 10:
            errors.append((response.status, body[:200]))
        i += 1
    conn.close()


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.array(values), q)) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--vectors", type=int, default=100_000)
    parser.add_argument("--real", type=int, default=300, help="how many are real files (the queries)")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="imgsearchd-bench-http-") as tmp:
        root = Path(tmp)
        t0 = time.perf_counter()
        queries = fill_catalogue(root / "data" / "catalog.sqlite3", root / "photos", args.vectors, args.real)
        fill_s = time.perf_counter() - t0
        port = free_port()
        (root / "c.toml").write_text(
            f"[server]\nport = {port}\n"
            f'[index]\ndata_dir = "{root / "data"}"\nextractors = ["clip"]\nfallback_extractor = ""\n'
            f'[extractors.clip]\npretrained = "none"\ndevice = "cpu"\nengine = "torch"\n'
        )
        log = open(root / "daemon.log", "w")  # noqa: SIM115 (closed once the daemon stopped); a pipe nobody reads stops it once full
        proc = subprocess.Popen(
            [sys.executable, "-m", "imgsearchd.cli", "serve", "--config", str(root / "c.toml")],
            stdout=subprocess.DEVNULL,
            stderr=log,
        )
        try:
            t0 = time.perf_counter()
            while True:
                try:
                    status, _ = get_json(port, "/health")
                    if status == 200:
                        break
                except OSError:
                    pass
                if proc.poll() is not None:
                    raise SystemExit((root / "daemon.log").read_text())
                time.sleep(0.2)
            start_s = time.perf_counter() - t0
            while True:  # the first start builds the graph (or Annoy) snapshot in the background
                _, stats = get_json(port, "/stats")
                index_stats = stats["extractors"]["clip"]
                if index_stats["mode"] in ("annoy", "hnsw") or args.vectors < 10_000:
                    break
                time.sleep(0.5)
            snapshot_s = time.perf_counter() - t0
            assert index_stats["indexed"] + index_stats["fresh"] == args.vectors, index_stats

            single: list[float] = []
            errors: list = []
            client_loop(port, queries, time.perf_counter() + 1.0, [], errors, 0)  # warm-up
            client_loop(port, queries, time.perf_counter() + args.seconds / 2, single, errors, 7)
            parallel: list[float] = []
            threads = []
            deadline = time.perf_counter() + args.seconds
            for n in range(args.clients):
                part: list[float] = []
                thread = threading.Thread(target=client_loop, args=(port, queries, deadline, part, errors, n * 13))
                threads.append((thread, part))
                thread.start()
            for thread, part in threads:
                thread.join()
                parallel.extend(part)
            rps = len(parallel) / args.seconds
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(60)
            log.close()

    with open("/proc/cpuinfo") as cpuinfo:
        names = [line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name")]
    cpu = names[0] if names else platform.processor()
    print(f"\nmachine: {os.cpu_count()} cores, {cpu}; server and client on the same machine")
    print(
        f"catalogue: {args.vectors} vectors ({DIM}-d) filled in {fill_s:.1f} s; daemon ready in {start_s:.1f} s, {index_stats['mode']} snapshot in use after {snapshot_s:.1f} s"
    )
    print(
        f"index: {index_stats['mode']} snapshot of {index_stats['indexed']}, fresh {index_stats['fresh']}, "
        f"trees {index_stats['trees']}, search_k {index_stats['search_k']}\n"
    )
    print("| clients | requests | p50 ms | p99 ms | requests/s | errors |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: |")
    print(
        f"| 1 | {len(single)} | {percentile(single, 50):.2f} | {percentile(single, 99):.2f} | "
        f"{len(single) / (args.seconds / 2):.0f} | 0 |"
    )
    print(
        f"| {args.clients} | {len(parallel)} | {percentile(parallel, 50):.2f} | {percentile(parallel, 99):.2f} | "
        f"{rps:.0f} | {len(errors)} |"
    )
    if errors:
        print("first error:", errors[0])


if __name__ == "__main__":
    main()
