"""Daemon memory on hostile pictures: peak resident memory of a real `imgsearchd serve`.

Starts the daemon (EfficientNet-Lite0, its packaged weights) as a subprocess, then posts
to POST /search (1) a 100000x1 and a 1x100000 one-colour PNG (375 bytes each), one after
the other, and (2) N copies of a one-colour SIDExSIDE PNG (0.5 MB, 676 MB decoded) all at
once. For each phase it reports the answers and the daemon's peak resident memory (VmHWM,
reset before the phase); after the last, the resident memory once the daemon is idle.

    .venv/bin/python bench/bench_memory.py [--side 13000] [--clients 4] [--strip 100000]
        [--address-space-gib 0] [--decode-budget-mp 0] [--json]

``--address-space-gib`` caps the daemon's address space (prlimit --as), so code that would
allocate tens of GB fails with MemoryError rather than meeting the OOM killer.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

import image_factory as make
from helpers import free_port, server_config
from served import Served, serve


def post_png(daemon: Served, path: Path) -> int:
    status, _ = daemon.request("POST", "/search", path.read_bytes(), "image/png", timeout=600)
    return status


def phase(daemon: Served, paths: list[Path]) -> dict[str, object]:
    """Post every file at once; the answers, the peak RSS and the time it took."""
    daemon.reset_peak()
    before = daemon.rss_mib()
    started = time.monotonic()
    with ThreadPoolExecutor(len(paths)) as pool:
        statuses = list(pool.map(lambda p: post_png(daemon, p), paths))
    return {
        "statuses": statuses,
        "rss_before_mib": round(before),
        "peak_mib": round(daemon.peak_mib()),
        "seconds": round(time.monotonic() - started, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--side", type=int, default=13000, help="side of the big square PNGs")
    parser.add_argument("--clients", type=int, default=4, help="big PNGs posted at once")
    parser.add_argument("--strip", type=int, default=100000, help="long side of the one-pixel strips")
    parser.add_argument("--address-space-gib", type=float, default=0, help="prlimit --as for the daemon (0: none)")
    parser.add_argument(
        "--decode-budget-mp", type=float, default=0, help="images.decode_budget_megapixels (0: the default)"
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        strips = [
            make.solid_png(root / "wide.png", args.strip, 1),
            make.solid_png(root / "tall.png", 1, args.strip),
        ]
        bigs = [
            make.solid_png(root / f"big{i}.png", args.side, args.side, (40 * i, 90, 160)) for i in range(args.clients)
        ]
        port = free_port()
        images = {"max_megapixels": 178} | (
            {"decode_budget_megapixels": args.decode_budget_mp} if args.decode_budget_mp else {}
        )
        config = server_config(root, server={"port": port, "max_upload_mb": 64}, images=images)
        with serve(config, port, args.address_space_gib) as daemon:
            result: dict[str, object] = {"machine": platform.processor() or platform.machine()}
            result["start_rss_mib"] = round(daemon.rss_mib())
            result["strips"] = phase(daemon, strips[:1]) | {"tall": phase(daemon, strips[1:])}
            result["big"] = phase(daemon, bigs)
            time.sleep(2)
            result["idle_rss_mib"] = round(daemon.rss_mib())
    if args.json:
        print(json.dumps(result, indent=2))
        return
    strip, big = result["strips"], result["big"]
    assert isinstance(strip, dict) and isinstance(big, dict)
    print(f"daemon RSS at start: {result['start_rss_mib']} MiB; idle after the big PNGs: {result['idle_rss_mib']} MiB")
    print("| phase | answers | RSS before (MiB) | peak RSS (MiB) | seconds |")
    print("|---|---|---|---|---|")
    tall = strip["tall"]
    assert isinstance(tall, dict)
    print(
        f"| {args.strip}x1 PNG | {strip['statuses']} | {strip['rss_before_mib']} | {strip['peak_mib']} | {strip['seconds']} |"
    )
    print(
        f"| 1x{args.strip} PNG | {tall['statuses']} | {tall['rss_before_mib']} | {tall['peak_mib']} | {tall['seconds']} |"
    )
    print(
        f"| {args.clients} x {args.side}x{args.side} PNG at once | {big['statuses']} | {big['rss_before_mib']} "
        f"| {big['peak_mib']} | {big['seconds']} |"
    )


if __name__ == "__main__":
    main()
