"""Engines (issue 32): torch and OpenVINO at each precision, side by side in one run, on this CPU.

Every option is built with ``engines.build`` on an fp32 torch extractor, so each is measured whether
or not the load-time check would keep it: torch fp32, bf16, int8 (dynamic, CLIP only: its work is in
Linear layers) and OpenVINO fp32, bf16, int8 (NNCF, calibrated on the shipped photos). bf16 rows are
left out on a CPU without native bf16 (emulated there: several times slower) unless ``--all``.
EfficientNet-Lite0 with its packaged real weights, CLIP ViT-B-32 with random weights (``pretrained =
"none"``: its numbers check the mechanics, not a real CLIP's answers).

Sections (``--sections``, default all):

1. **forward**: img/s at batch ``--batch-size`` on the same preprocessed crops, options interleaved
   (rotated each round), one warm-up call each, best of ``--rounds``; ratios to torch fp32 and bf16.
2. **retrieval**: a copy set of real photos (``bench_retrieval.make_copy_set``: ``--db`` pictures and
   ``--copies`` copies each); per option the min / mean cosine of its vectors to torch fp32's, the
   top-10 neighbour overlap with torch fp32's index, copy recall@1 with its own index and with its
   queries on torch fp32's database vectors (the mixed index a library has when ``auto`` changes its
   mind), the check at load's cosines and whether it keeps it (``engines.agreement(...).passes()``), and
   what ``engine = "auto"`` picks here for a new index. Issue 32's bars for every option ``auto`` may
   pick: recall@1 (own index, and mixed for the options that share fp32's: not OpenVINO int8, whose
   vectors are indexed apart) at most 1 point under fp32's and overlap >= 0.95.
3. **latency**: one picture (preprocess + embed, mean of ``--latency-runs`` after a warm-up) and, for
   CLIP, one prompt: today's default (``engine = "torch"``, ``precision = "auto"``) against ``engine =
   "auto"``; the two alternate call by call.
4. **e2e**: ``imgsearchd index`` (the CLI, a process per run, a fresh data folder each) on ``--e2e-count``
   640x480 JPEGs (scikit-image photos, cropped and grainy: each distinct) with ``--e2e-model``,
   ``engine = "torch"`` against ``"auto"`` (``precision = "auto"`` both), interleaved, ``--repeats``
   each. A first untimed ``auto`` run on one batch of the pictures fills a ``models`` folder (the cold
   load: conversion and quantisation); every timed run gets a copy of it, so no conversion is timed.
   The CLI's own rate leaves out start-up and model load; wall seconds include them.

Run (on a quiet machine): ``.venv/bin/python bench/bench_engines.py --json engines.json``; the converted
models are kept in ``--models-dir`` (default DATA_DIR/models) so a rerun converts nothing.
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch  # before bench_retrieval, which sets OMP_WAIT_POLICY for its own runs: not for these timings

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "bench"))

_omp = os.environ.get("OMP_WAIT_POLICY")
import bench_retrieval  # noqa: E402

if _omp is None:  # keep it out of the CLI runs too (the daemon does not set it)
    os.environ.pop("OMP_WAIT_POLICY", None)

import camera_photos  # noqa: E402
from bench_indexing import cpu_model, spread  # noqa: E402
from imgsearchd import extractors  # noqa: E402
from imgsearchd.extractors import calibration, engines, precision  # noqa: E402
from imgsearchd.extractors.base import Extractor  # noqa: E402
from imgsearchd.media.images import load_image  # noqa: E402

MODELS: dict[str, dict[str, str]] = {"efficientnet": {}, "clip": {"model": "ViT-B-32", "pretrained": "none"}}
OPTIONS = (("torch", "fp32"), ("torch", "bf16"), ("torch", "int8"), ("openvino", "fp32"), ("openvino", "bf16"),
           ("openvino", "int8"))  # fmt: skip
SECTIONS = ("forward", "retrieval", "latency", "e2e")
FLAGS = ("avx512_bf16", "avx512_vnni", "amx_bf16", "amx_int8", "amx_tile")
FORWARD_SEED = 32  # the forward batch: crops of the shipped photos (int8 calibrates on seed 9's)
E2E_SIZE = (640, 480)
E2E_VERSION = 1  # bump when the way the e2e pictures are made changes
PROMPT = "a photo of a red bicycle leaning on a wall"
BAR_POINTS = 1.0  # issue 32: recall@1 within 1 point of fp32
BAR_OVERLAP = 0.95  # and top-10 neighbour overlap at least this
FP32 = "torch fp32"


def settings(model: str, batch_size: int, engine: str, asked: str) -> dict[str, Any]:
    return {"device": "cpu", "batch_size": batch_size, "engine": engine, "precision": asked, **MODELS[model]}


_AUTO: dict[str, Extractor] = {}


def auto_extractor(model: str, batch_size: int, models_dir: Path) -> Extractor:
    """engine and precision "auto", made once per model (its load checks and times every option)."""
    if model not in _AUTO:
        _AUTO[model] = extractors.create(model, settings(model, batch_size, "auto", "auto"), models_dir)
    return _AUTO[model]


def reference(model: str, batch_size: int) -> Extractor:
    """The fp32 torch extractor every option is built from and compared with."""
    return extractors.create(model, settings(model, batch_size, "torch", "fp32"))


def options_for(extractor: Extractor, all_rows: bool) -> list[precision.Option]:
    """The options measured for a model: bf16 only where the CPU has it (or ``--all``), torch int8 for CLIP."""
    native = precision.native_bf16(precision.cpu_flags())
    found = []
    for engine, asked in OPTIONS:
        if asked == "bf16" and not (native or all_rows):
            continue
        if (engine, asked) == ("torch", "int8") and not extractor.quantisable:
            continue
        found.append(precision.Option(engine, asked, "bench"))
    return found


def build_all(
    extractor: Extractor, options: Sequence[precision.Option], models_dir: Path
) -> tuple[dict[str, engines.Runner], dict[str, str]]:
    """Each option's runner (label -> runner), and why any could not be built."""
    built: dict[str, engines.Runner] = {}
    failed: dict[str, str] = {}
    for option in options:
        try:
            with torch.no_grad():  # the conversions trace the model: not under inference_mode
                built[option.label] = engines.build(extractor, option, models_dir)
        except Exception as exc:  # any library's failure: reported as a row, the others still run
            failed[option.label] = f"{type(exc).__name__}: {exc}"
            print(f"{extractor.name} {option.label} cannot run: {failed[option.label]}", file=sys.stderr)
    return built, failed


def may_pick(extractor: Extractor) -> set[str]:
    """The options ``engine = "auto"``, ``precision = "auto"`` tries for a new index on this CPU (torch fp32
    when none passes; an index of fp32/bf16 vectors leaves OpenVINO int8 out: engines.for_the_index)."""
    plan = precision.plan("auto", extractor.device, extractor.quantisable)
    offered = engines.openvino_options("auto", precision.cpu_flags())
    return {FP32, f"torch {plan.candidate}", *(o.label for o in offered)}


def rotate(items: list[str], turn: int) -> list[str]:
    k = turn % len(items) if items else 0
    return items[k:] + items[:k]


# -- forward ---------------------------------------------------------------------------------


def measure_forward(model: str, args: argparse.Namespace, models_dir: Path) -> list[dict[str, Any]]:
    """img/s of each option on one batch, interleaved rounds, best of ``--rounds``."""
    extractor = reference(model, args.batch_size)
    batch = torch.stack([extractor.preprocess(p) for p in calibration.crops(args.batch_size, FORWARD_SEED)])
    built, failed = build_all(extractor, options_for(extractor, args.all), models_dir)
    best = {label: float("inf") for label in built}
    with torch.inference_mode():
        for runner in built.values():
            runner.image(batch)  # warm-up: first calls allocate and pick kernels
        for turn in range(args.rounds):
            for label in rotate(list(built), turn):
                started = time.perf_counter()
                built[label].image(batch)
                best[label] = min(best[label], time.perf_counter() - started)
    rows: list[dict[str, Any]] = [
        {"model": model, "option": label, "img_s": len(batch) / s} for label, s in best.items()
    ]
    rows += [{"model": model, "option": label, "error": why} for label, why in failed.items()]
    del built
    gc.collect()
    return rows


def report_forward(rows: list[dict[str, Any]], args: argparse.Namespace) -> None:
    print(f"\n**Forward pass**, batch {args.batch_size}, img/s (best of {args.rounds} interleaved rounds)\n")
    print("| model | option | img/s | vs torch fp32 | vs torch bf16 |\n| --- | --- | ---: | ---: | ---: |")
    for r in rows:
        if "error" in r:
            print(f"| {r['model']} | {r['option']} | cannot run: {r['error'][:120]} | | |")
            continue
        base = {x["option"]: x.get("img_s") for x in rows if x["model"] == r["model"]}
        ratios = [f"{r['img_s'] / base[b]:.2f}" if base.get(b) else "-" for b in (FP32, "torch bf16")]
        print(f"| {r['model']} | {r['option']} | {r['img_s']:.1f} | {ratios[0]} | {ratios[1]} |")


# -- retrieval -------------------------------------------------------------------------------


def batches(extractor: Extractor, paths: Sequence[str], size: int) -> list[torch.Tensor]:
    """The pictures decoded as the daemon decodes them and preprocessed, ``size`` a batch."""
    return [
        torch.stack([extractor.preprocess(load_image(p, extractor.decode_side)) for p in paths[i : i + size]])
        for i in range(0, len(paths), size)
    ]


def unit_vectors(runner: engines.Runner, parts: Sequence[torch.Tensor]) -> np.ndarray:
    with torch.inference_mode():
        found = [torch.nn.functional.normalize(runner.image(b).float(), dim=-1).numpy() for b in parts]
    return np.concatenate(found).astype(np.float32)


def measure_retrieval(
    model: str, copy_set: bench_retrieval.CopySet, args: argparse.Namespace, models_dir: Path
) -> list[dict[str, Any]]:
    """Per option: cosines to torch fp32, overlap, recall@1 (own and mixed index), the check's verdict."""
    extractor = reference(model, args.batch_size)
    db, queries = (batches(extractor, paths, args.batch_size) for paths in (copy_set.db_paths, copy_set.query_paths))
    check = engines.check_set(extractor)
    built, failed = build_all(extractor, options_for(extractor, args.all), models_dir)
    with torch.no_grad():
        wanted = engines.vectors(built[FP32], check)
    found: dict[str, tuple[np.ndarray, np.ndarray, engines.Agreement]] = {}
    for label, runner in built.items():
        with torch.no_grad():
            agreed = engines.agreement(wanted, engines.vectors(runner, check))
        found[label] = (unit_vectors(runner, db), unit_vectors(runner, queries), agreed)
        print(f"retrieval {model} {label} embedded", file=sys.stderr)
    offered = may_pick(extractor)
    del built, extractor
    gc.collect()
    picked = auto_extractor(model, args.batch_size, models_dir).precision
    auto = f"{picked.engine} {picked.used}"
    base_db, base_q, _ = found[FP32]
    owner = copy_set.query_owner
    base_recall = bench_retrieval.recall_at_1(base_db, base_q, owner)
    rows: list[dict[str, Any]] = [{"model": model, "option": label, "error": why} for label, why in failed.items()]
    for label, (vec_db, vec_q, agreed) in found.items():
        cosines = np.concatenate(
            [bench_retrieval.pair_cosines(base_db, vec_db), bench_retrieval.pair_cosines(base_q, vec_q)]
        )
        row = {
            "model": model, "option": label, "min_cosine": float(cosines.min()), "mean_cosine": float(cosines.mean()),
            "overlap": bench_retrieval.neighbour_overlap(base_db, base_db, vec_db, vec_db),
            "recall": bench_retrieval.recall_at_1(vec_db, vec_q, owner),
            "recall_mixed": bench_retrieval.recall_at_1(base_db, vec_q, owner),
            "fp32_recall": base_recall, "check_keeps": agreed.passes(), "check": agreed.describe(),
            "auto_offers": label in offered, "auto_picks": label == auto,
        }  # fmt: skip
        row["bar"] = bar(row)
        rows.append(row)
    return rows


def bar(row: dict[str, Any]) -> str:
    """Issue 32's bar for a row ``auto`` may pick (offered and kept by the check); "-" for the others."""
    if not (row["auto_offers"] and row["check_keeps"]):
        return "-"
    floor = row["fp32_recall"] - BAR_POINTS / 100
    # int8's vectors go in an index of their own (engines.own_index): never queried against fp32's
    shares = row["option"] != "openvino int8"
    missed = [what for what, ok in (("recall@1", row["recall"] >= floor - 1e-9),
                                    ("recall@1 mixed", not shares or row["recall_mixed"] >= floor - 1e-9),
                                    ("overlap", row["overlap"] >= BAR_OVERLAP)) if not ok]  # fmt: skip
    return "PASS" if not missed else "FAIL (" + ", ".join(missed) + ")"


def report_retrieval(rows: list[dict[str, Any]], copy_set: bench_retrieval.CopySet) -> None:
    print(f"\n**Retrieval** against torch fp32: {copy_set.describe()}")
    print(
        f"(bar, for every option auto may pick: recall@1 own and mixed at most {BAR_POINTS:g} point under fp32's, "
        f"top-10 overlap >= {BAR_OVERLAP}; the check at load keeps an option at probes min >= "
        f"{engines.PROBES_MIN_COSINE}, photos mean >= {engines.PHOTOS_MEAN_COSINE}, texts min >= "
        f"{engines.TEXTS_MIN_COSINE})\n"
    )
    print(
        "| model | option | min cos | mean cos | top-10 overlap | recall@1 | recall@1, fp32 index | check at load | "
        "auto offers | auto picks | bar |\n| --- | --- | ---: | ---: | ---: | ---: | ---: | --- | --- | --- | --- |"
    )
    for r in rows:
        if "error" in r:
            print(f"| {r['model']} | {r['option']} | cannot run: {r['error'][:120]} | | | | | | | | |")
            continue
        print(
            f"| {r['model']} | {r['option']} | {r['min_cosine']:.4f} | {r['mean_cosine']:.4f} | {r['overlap']:.3f} | "
            f"{100 * r['recall']:.1f} | {100 * r['recall_mixed']:.1f} | {'keeps' if r['check_keeps'] else 'refuses'}: "
            f"{r['check']} | {'yes' if r['auto_offers'] else 'no'} | {'**yes**' if r['auto_picks'] else 'no'} | {r['bar']} |"
        )


# -- latency ---------------------------------------------------------------------------------


def measure_latency(model: str, args: argparse.Namespace, models_dir: Path) -> list[dict[str, Any]]:
    """One picture (preprocess + embed) and one prompt: today's default against engine auto, alternating."""
    made = {
        "today (torch, auto)": extractors.create(model, settings(model, args.batch_size, "torch", "auto")),
        "engine auto": auto_extractor(model, args.batch_size, models_dir),
    }
    picture = calibration.photos()[0]
    times: dict[str, dict[str, list[float]]] = {label: {"image": [], "text": []} for label in made}

    def once(extractor: Extractor, record: dict[str, list[float]] | None) -> None:
        started = time.perf_counter()
        extractor.embed(extractor.preprocess(picture).unsqueeze(0))
        middle = time.perf_counter()
        if extractor.supports_text:
            extractor.encode_text([PROMPT])
        if record is not None:
            record["image"].append(middle - started)
            if extractor.supports_text:
                record["text"].append(time.perf_counter() - middle)

    for extractor in made.values():
        once(extractor, None)  # warm-up
    for turn in range(args.latency_runs):
        for label in rotate(list(made), turn):
            once(made[label], times[label])
    return [
        {
            "model": model,
            "variant": label,
            "runs": f"{e.precision.engine} {e.precision.used}",
            "image_ms": 1e3 * statistics.mean(times[label]["image"]),
            "text_ms": 1e3 * statistics.mean(times[label]["text"]) if times[label]["text"] else None,
        }
        for label, e in made.items()
    ]


def report_latency(rows: list[dict[str, Any]], runs: int) -> None:
    print(f"\n**Query latency**, ms (mean of {runs} after a warm-up; one picture: preprocess + embed)\n")
    print("| model | variant | runs | picture ms | prompt ms |\n| --- | --- | --- | ---: | ---: |")
    for r in rows:
        text = "-" if r["text_ms"] is None else f"{r['text_ms']:.1f}"
        print(f"| {r['model']} | {r['variant']} | {r['runs']} | {r['image_ms']:.1f} | {text} |")


# -- end to end ------------------------------------------------------------------------------


def e2e_pictures(folder: Path, count: int) -> list[str]:
    """``count`` distinct 640x480 JPEGs (crops of scikit-image's photos with grain), made once."""
    stamp, spec = folder / "made.json", {"version": E2E_VERSION, "count": count, "size": list(E2E_SIZE)}
    paths = [str(folder / f"{i:04d}.jpg") for i in range(count)]
    if stamp.exists() and json.loads(stamp.read_text()) == spec and all(map(os.path.exists, paths)):
        return paths
    folder.mkdir(parents=True, exist_ok=True)
    photos = camera_photos.sample_photos()
    for i, path in enumerate(paths):
        camera_photos.grainy(photos[i % len(photos)], E2E_SIZE, seed=i).save(path, "JPEG", quality=90)
    stamp.write_text(json.dumps(spec))
    return paths


# The e2e runs: today's default, what auto picks, and OpenVINO int8 asked for by name (its own model id: engines.py).
E2E_RUNS = {"torch": ("torch", "auto"), "auto": ("auto", "auto"), "int8": ("openvino", "int8")}


def cli_run(
    model: str, run: str, paths: list[str], workdir: Path, models: Path | None, keep: bool = False
) -> dict[str, Any]:
    """``imgsearchd index --json`` in a fresh data folder (``models`` copied in): wall s, its rate, what ran."""
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        config = Path(tmp) / "imgsearchd.toml"
        engine, asked = E2E_RUNS[run]
        section = "".join(f'{k} = "{v}"\n' for k, v in {**MODELS[model], "engine": engine, "precision": asked}.items())
        config.write_text(f'[index]\ndata_dir = "{tmp}/data"\nextractors = ["{model}"]\nfallback_extractor = ""\n'
                          f"[extractors.{model}]\n{section}")  # fmt: skip
        if models is not None:
            shutil.copytree(models, Path(tmp) / "data" / "models")
        script = Path(sys.executable).parent / "imgsearchd"
        command = [str(script)] if script.exists() else [sys.executable, "-m", "imgsearchd.cli"]
        started = time.perf_counter()
        done = subprocess.run(
            [*command, "index", "--json", "--no-progress", "--config", str(config), "--log-level", "info", *paths],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        wall = time.perf_counter() - started
        if done.returncode != 0:
            raise SystemExit(f"imgsearchd index failed ({done.returncode}): {done.stderr[-2000:]}")
        summary = json.loads(done.stdout)
        if (models is None or keep) and (Path(tmp) / "data" / "models").is_dir():
            shutil.rmtree(workdir / "models", ignore_errors=True)
            shutil.copytree(Path(tmp) / "data" / "models", workdir / "models")
    if summary["embedded"] != len(paths) or summary["failed"]:
        raise SystemExit(f"imgsearchd index did not embed every picture: {summary}")
    ran = re.findall(rf"{model}: (torch|openvino) (fp32|bf16|int8|fp16) \(", done.stderr)
    seconds = float(summary["seconds"])
    rate = float(summary["images_per_second"])
    return {"wall": wall, "seconds": seconds, "pictures": len(paths), "rate": rate, "load": wall - seconds,
            "runs": " ".join(ran[-1]) if ran else "?"}  # fmt: skip


def measure_e2e(args: argparse.Namespace, data_dir: Path, models_dir: Path) -> dict[str, Any]:
    """torch against auto through the CLI, interleaved; the cold run (it fills the models folder) untimed.

    ``--tiny`` skips the cold run (a CLI process: the tiny test's time) and copies ``models_dir`` instead:
    the same conversions (same model id and versions: the same folders)."""
    paths = e2e_pictures(data_dir / f"e2e-{E2E_SIZE[0]}x{E2E_SIZE[1]}", args.e2e_count)
    work = data_dir / "work"
    work.mkdir(parents=True, exist_ok=True)
    model = args.e2e_model
    first = paths[: min(len(paths), args.batch_size)]
    cold = None if args.tiny else cli_run(model, "auto", first, work, None)
    if not args.tiny:  # int8's quantisation too, untimed: kept in the same models folder
        cli_run(model, "int8", first, work, work / "models", keep=True)
    models = models_dir if args.tiny else work / "models"
    runs: dict[str, list[dict[str, Any]]] = {run: [] for run in E2E_RUNS}
    for rep in range(args.repeats):
        for engine in rotate(list(runs), rep):
            runs[engine].append(cli_run(model, engine, paths, work, models if models.is_dir() else None))
            print(f"e2e {model} {engine} repeat {rep + 1}: {runs[engine][-1]['wall']:.1f} s", file=sys.stderr)
    return {"model": model, "pictures": len(paths), "cold": cold, "runs": runs}


def report_e2e(result: dict[str, Any]) -> None:
    runs = result["runs"]
    print(
        f"\n**`imgsearchd index`**, {result['pictures']} JPEGs {E2E_SIZE[0]}x{E2E_SIZE[1]}, {result['model']}, "
        f"precision auto; median (range) of {len(runs['torch'])} interleaved runs; OpenVINO's models converted "
        "before (a copy of the cold run's models folder in each fresh data folder): no conversion is timed\n"
    )
    print("| settings (engine, precision) | runs | wall s | CLI img/s | pictures / wall s | start-up + load s |\n| --- | --- | ---: | ---: | ---: | ---: |")  # fmt: skip
    for engine, done in runs.items():
        print(
            f"| {', '.join(E2E_RUNS[engine])} | {done[0]['runs']} | {spread([d['wall'] for d in done])} | {spread([d['rate'] for d in done])} | "
            f"{spread([result['pictures'] / d['wall'] for d in done])} | {spread([d['load'] for d in done], 2)} |"
        )  # fmt: skip
    for run in ("auto", "int8"):
        rate = [a["rate"] / t["rate"] for a, t in zip(runs[run], runs["torch"])]
        wall = [t["wall"] / a["wall"] for a, t in zip(runs[run], runs["torch"])]
        print(
            f"\n{run} / torch: CLI rate **{spread(rate, 2)}**, by wall (torch s / {run} s) {spread(wall, 2)} (per repeat)"
        )
    cold, warm = result["cold"], [d["load"] for d in runs["auto"]]
    cold_text = "not run (--tiny)" if cold is None else f"{cold['load']:.1f} s (one run of {cold['pictures']} pictures)"
    print(
        f"Load (wall minus the CLI's own seconds: start-up, model, check): engine auto with an empty models folder "
        f"(converted and quantised there, untimed above) {cold_text}, with the folder filled {spread(warm, 2)} s; "
        f"engine torch {spread([d['load'] for d in runs['torch']], 2)} s"
    )


# -- main ------------------------------------------------------------------------------------


def machine() -> str:
    flags = precision.cpu_flags()
    have = ", ".join(f for f in FLAGS if f in flags) or "none of " + ", ".join(FLAGS)
    try:
        from imgsearchd.extractors.openvino_ir import openvino

        ov = openvino().__version__
    except ImportError:
        ov = "not installed"
    load = os.getloadavg()
    return (
        f"Machine: {os.cpu_count()} CPUs ({cpu_model()}; flags: {have}), Python {platform.python_version()}, "
        f"torch {torch.__version__}, OpenVINO {ov}; load average {load[0]:.2f} / {load[1]:.2f} (1 / 5 min)"
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sections", default=",".join(SECTIONS), help="which of " + ", ".join(SECTIONS))
    parser.add_argument("--models", default=",".join(MODELS), help="which of " + ", ".join(MODELS))
    parser.add_argument("--all", action="store_true", help="bf16 rows too on a CPU without native bf16 (emulated)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3, help="forward: interleaved rounds, best of")
    parser.add_argument("--db", type=int, default=300, help="retrieval: database pictures")
    parser.add_argument("--copies", type=int, default=1, help="retrieval: copies of each")
    parser.add_argument("--latency-runs", type=int, default=20)
    parser.add_argument("--e2e-model", default="clip", choices=list(MODELS))
    parser.add_argument("--e2e-count", type=int, default=256, help="e2e: pictures")
    parser.add_argument("--repeats", type=int, default=2, help="e2e: runs of each engine")
    parser.add_argument("--tiny", action="store_true", help="tiny sizes (tests): batch 4, 8 pictures, 1 round")
    parser.add_argument("--seed", type=int, default=1234)
    parser.add_argument("--data-dir", default=os.path.join(tempfile.gettempdir(), "imgsearchd-bench-engines"))
    parser.add_argument("--models-dir", help="OpenVINO's converted models, kept between runs (default DATA_DIR/models)")
    parser.add_argument("--json", help="also write the raw numbers to this file")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.tiny:
        args.batch_size, args.rounds, args.db, args.copies = 4, 1, 8, 1
        args.latency_runs, args.e2e_count, args.repeats = 2, 4, 1
    sections = [s for s in args.sections.split(",") if s]
    models = [m for m in args.models.split(",") if m]
    if any(s not in SECTIONS for s in sections) or any(m not in MODELS for m in models):
        raise SystemExit(f"--sections: of {', '.join(SECTIONS)}; --models: of {', '.join(MODELS)}")
    logging.basicConfig(level=logging.WARNING)
    data_dir = Path(args.data_dir)
    models_dir = Path(args.models_dir) if args.models_dir else data_dir / "models"
    print(f"### Result ({datetime.now(UTC):%Y-%m-%d %H:%M} UTC, bench/bench_engines.py)\n\n{machine()}")
    if not precision.native_bf16(precision.cpu_flags()):
        print(
            f"No native bf16 on this CPU: bf16 rows {'measured (--all)' if args.all else 'left out (--all adds them)'}"
        )
    results: dict[str, Any] = {"cpu": cpu_model(), "flags": sorted(set(FLAGS) & precision.cpu_flags())}
    if "forward" in sections:
        results["forward"] = [r for m in models for r in measure_forward(m, args, models_dir)]
        report_forward(results["forward"], args)
    if "retrieval" in sections:
        copy_set = bench_retrieval.make_copy_set(data_dir / "retrieval", args.db, args.copies, args.seed)
        results["retrieval"] = [r for m in models for r in measure_retrieval(m, copy_set, args, models_dir)]
        report_retrieval(results["retrieval"], copy_set)
    if "latency" in sections:
        results["latency"] = [r for m in models for r in measure_latency(m, args, models_dir)]
        report_latency(results["latency"], args.latency_runs)
    if "e2e" in sections:
        results["e2e"] = measure_e2e(args, data_dir, models_dir)
        report_e2e(results["e2e"])
    after = os.getloadavg()
    print(f"\nLoad average after: {after[0]:.2f} / {after[1]:.2f} (1 / 5 min)")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
