"""Idle memory of a real `imgsearchd serve`: resident, proportional and unique set, per model setup.

For each case (EfficientNet only; CLIP configured but fallen back to EfficientNet, offline, as
the default settings; CLIP with random weights) and each side (this tree; an older commit; this
tree on another interpreter, e.g. one with a CPU-only torch), it starts the daemon on a fresh data
folder, indexes N generated pictures (scikit-image's photos, cropped, turned and tinted), waits
until the daemon is idle (no queued work, no CPU used for a few seconds), then reads its memory:

- RSS (VmRSS), its anonymous part (RssAnon: steadier, as file-backed pages come and go with the
  machine's load), and the peak since start (VmHWM);
- PSS and USS (private clean + dirty) from /proc/PID/smaps_rollup: what the process costs the
  machine, its shared libraries counted by share;
- CUDA: the RSS of the mappings of CUDA's libraries (libcu*, libnv*, libtorch_cuda, nccl, triton),
  which a CUDA build of torch maps at import even where there is no GPU.

    .venv/bin/python bench/bench_idle_memory.py [--pictures 120] [--cases efficientnet clip-fallback clip-random]
        [--old c6f2d70] [--python-cpu PATH] [--repeats 1] [--idle-seconds 3] [--json]

``--old COMMIT`` runs that commit's daemon (``git archive`` of its daemon/, first on PYTHONPATH)
with this environment's packages; "" leaves it out. ``--python-cpu`` names an interpreter whose
torch is a CPU-only build and which sees the other packages (a venv with a path line to this
one's site-packages): this tree runs on it too.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from helpers import free_port, server_config, skimage_photos

REPO = Path(__file__).resolve().parent.parent
MIB = 1024 * 1024
# Settings per case; "clip-fallback" is the default settings offline (CLIP's weights cannot be fetched).
CASES: dict[str, dict[str, dict[str, object]]] = {
    "efficientnet": {"index": {"extractors": ["efficientnet"], "fallback_extractor": ""}},
    "clip-fallback": {"index": {"extractors": ["clip"], "fallback_extractor": "efficientnet"}},
    "clip-random": {
        "index": {"extractors": ["clip"], "fallback_extractor": ""},
        "extractors.clip": {"pretrained": "none", "device": "cpu", "engine": "torch"},
    },
}
CUDA_LIBRARY = re.compile(
    r"/(libcu\w*|libnv\w*|libtorch_cuda\w*|libnccl\w*|libc10_cuda\w*|libtriton\w*)[^/]*$|/nvidia/"
)


@dataclass(frozen=True)
class Side:
    """What runs the daemon: a label, an interpreter, and a folder put first on PYTHONPATH (or None)."""

    label: str
    python: str
    path: str | None = None


def make_pictures(folder: Path, count: int) -> None:
    """``count`` different JPEGs from scikit-image's photos: each cropped, turned and tinted its own way."""
    folder.mkdir(parents=True)
    photos = [p.convert("RGB") for p in skimage_photos().values()]
    for n in range(count):
        photo = photos[n % len(photos)]
        w, h = photo.size
        k = n // len(photos)
        box = (k * 7 % (w // 4), k * 5 % (h // 4), w - k * 3 % (w // 4), h - k * 11 % (h // 4))
        picture = photo.crop(box).rotate(k * 13 % 360, expand=True)
        tint = (1 + k % 3 * 0.1, 1, 1 - k % 2 * 0.1)
        picture = picture.point([min(255, int(v * tint[band])) for band in range(3) for v in range(256)])
        picture.save(folder / f"p{n:04d}.jpg", quality=88)


def old_tree(commit: str, into: Path) -> Path:
    """That commit's daemon/ as a package ``imgsearchd`` under ``into`` (git archive: the checkout is untouched)."""
    archive = subprocess.run(["git", "archive", commit, "daemon"], cwd=REPO, capture_output=True, check=True).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(into, filter="data")
    (into / "daemon").rename(into / "imgsearchd")
    return into


def linked_tree(into: Path) -> Path:
    """This tree's daemon/ as a package ``imgsearchd`` under ``into`` (for an interpreter without the editable install)."""
    into.mkdir(parents=True)
    (into / "imgsearchd").symlink_to(REPO / "daemon")
    return into


def get(port: int, path: str) -> dict[str, object]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=30) as answer:
        body: dict[str, object] = json.loads(answer.read())
        return body


def wait(check: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if callable(check) and check():
                return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"waited {timeout:.0f} s for {what}")
        time.sleep(0.5)


def cpu_ticks(pid: int) -> int:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime


def wait_idle(pid: int, port: int, quiet: float, timeout: float = 600) -> None:
    """No queued work, then no CPU used (under 2 ticks) for ``quiet`` seconds in a row."""
    wait(lambda: get(port, "/stats").get("pending") == 0, timeout, "the queue to empty")
    deadline = time.monotonic() + timeout
    ticks, since = cpu_ticks(pid), time.monotonic()
    while time.monotonic() - since < quiet:
        time.sleep(0.5)
        now = cpu_ticks(pid)
        if now - ticks > 2:
            ticks, since = now, time.monotonic()
        if time.monotonic() > deadline:
            raise TimeoutError("the daemon never went idle")


def memory(pid: int) -> dict[str, float]:
    """MiB: rss, its anonymous part (anon), peak, pss, uss, and cuda (the RSS of CUDA's library mappings)."""
    status = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    rollup = {
        k: int(v.split()[0])
        for k, v in (line.split(":", 1) for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:])
    }
    cuda_kib, mapping = 0, ""
    for line in Path(f"/proc/{pid}/smaps").read_text().splitlines():
        if re.match(r"^[0-9a-f]+-[0-9a-f]+ ", line):
            mapping = line.split()[-1] if len(line.split()) >= 6 else ""
        elif line.startswith("Rss:") and CUDA_LIBRARY.search(mapping):
            cuda_kib += int(line.split()[1])
    return {
        "rss": int(status["VmRSS"].split()[0]) / 1024,
        "anon": int(status["RssAnon"].split()[0]) / 1024,
        "peak": int(status["VmHWM"].split()[0]) / 1024,
        "pss": rollup["Pss"] / 1024,
        "uss": (rollup["Private_Clean"] + rollup["Private_Dirty"]) / 1024,
        "cuda": cuda_kib / 1024,
    }


def measure(side: Side, case: str, pictures: Path, root: Path, quiet: float) -> dict[str, object]:
    """One daemon: started, the pictures indexed, idle, measured, stopped."""
    port = free_port()
    root.mkdir(parents=True)
    config = server_config(root, server={"port": port}, **CASES[case])
    env = {k: v for k, v in os.environ.items() if k not in ("IMGSEARCHD_CONFIG", "PYTHONPATH")}
    env["HF_HUB_OFFLINE"] = "1"  # offline as the machine: CLIP's weights are not fetched
    if side.path:
        env["PYTHONPATH"] = side.path
    command = [side.python, "-m", "imgsearchd.cli", "serve", "--config", str(config), "--port", str(port)]
    log = root / "daemon.log"
    started = time.monotonic()
    with open(log, "w") as stderr:
        proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=stderr, env=env)
    try:
        wait(lambda: proc.poll() is None and get(port, "/health").get("status") in ("ok", "degraded"), 300, "/health")
        ready = time.monotonic() - started
        job = get(port, f"/add?image={pictures}")
        wait(lambda: get(port, f"/jobs/{job['job']}").get("state") in ("done", "failed"), 900, "the pictures")
        stats = get(port, "/stats")
        wait_idle(proc.pid, port, quiet)
        result: dict[str, object] = {"side": side.label, "case": case, **memory(proc.pid)}
        result.update(
            images=stats.get("images"),
            extractor=stats.get("active_extractor"),
            ready_s=round(ready, 1),
        )
        return result
    except (TimeoutError, OSError, KeyError) as exc:
        raise RuntimeError(f"{side.label} / {case}: {exc}\n{log.read_text()[-3000:]}") from exc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def machine() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return f"{line.split(':', 1)[1].strip()}, {os.cpu_count()} cores"
    return platform.machine()


def commit_of(rev: str) -> str:
    done = subprocess.run(["git", "rev-parse", "--short", rev], cwd=REPO, capture_output=True, text=True)
    return done.stdout.strip() or rev


def torch_of(python: str, path: str | None) -> str:
    env = {**os.environ, **({"PYTHONPATH": path} if path else {})}
    code = "import torch; print(torch.__version__)"
    return subprocess.run([python, "-c", code], capture_output=True, text=True, env=env).stdout.strip()


def cell(runs: list[dict[str, object]], key: str) -> str:
    """The median of the runs (and their range when there are several), in whole MiB or seconds."""
    values = sorted(float(str(r[key])) for r in runs)
    middle = statistics.median(values)
    text = f"{middle:.0f}" if key != "ready_s" else f"{middle:.1f}"
    return text if len(values) == 1 else f"{text} ({values[0]:.0f}-{values[-1]:.0f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pictures", type=int, default=120, help="pictures indexed before measuring")
    parser.add_argument("--cases", nargs="+", default=list(CASES), choices=list(CASES))
    parser.add_argument("--old", default="c6f2d70", help='an older commit to run beside this tree ("": none)')
    parser.add_argument("--python-cpu", default="", help="an interpreter with a CPU-only torch (see the docstring)")
    parser.add_argument("--repeats", type=int, default=1, help="runs of each case and side, in turn")
    parser.add_argument("--idle-seconds", type=float, default=3, help="seconds without CPU use that count as idle")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args()
    results: list[dict[str, object]] = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        pictures = root / "pictures"
        make_pictures(pictures, args.pictures)
        sides = [Side(f"this tree ({commit_of('HEAD')} + changes)", sys.executable)]
        if args.old:
            sides.insert(0, Side(f"old ({commit_of(args.old)})", sys.executable, str(old_tree(args.old, root / "old"))))
        if args.python_cpu:
            sides.append(Side("this tree, CPU-only torch", args.python_cpu, str(linked_tree(root / "cpu"))))
        torch_versions = {s.label: torch_of(s.python, s.path) for s in sides}
        for repeat in range(args.repeats):
            for case in args.cases:
                for n, side in enumerate(sides):  # in turn: a drift in the machine's load touches every side
                    results.append(measure(side, case, pictures, root / f"{case}-{n}-{repeat}", args.idle_seconds))
    if args.json:
        print(json.dumps({"machine": machine(), "torch": torch_versions, "results": results}, indent=2))
        return
    print(f"machine: {machine()}; {args.pictures} pictures indexed; torch: {torch_versions}")
    if args.repeats > 1:
        print(f"{args.repeats} runs each: median (range)")
    print(
        "| case | side | answers with | RSS MiB | anon MiB | PSS MiB | USS MiB | CUDA libs RSS MiB | peak RSS MiB | ready s |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for case in args.cases:
        for side in sides:
            runs = [r for r in results if r["case"] == case and r["side"] == side.label]
            keys = ("rss", "anon", "pss", "uss", "cuda", "peak", "ready_s")
            first = runs[0]
            print(
                f"| {case} | {side.label} | {first['extractor']} ({first['images']} pictures) | "
                + " | ".join(cell(runs, k) for k in keys)
                + " |"
            )


if __name__ == "__main__":
    main()
