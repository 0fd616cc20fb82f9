"""Where a forward pass spends its time (issue 32): the products that int8 and bf16 speed up, and the rest.

Issue 32 asks OpenVINO's int8 for >= 1.7x our torch bf16. On a CPU with AMX (Intel Xeon since
Sapphire Rapids) torch's bf16 runs its matrix products on AMX too, so what int8 can still gain
is bounded by two things this script measures side by side on one batch: how much faster the
int8 products are than the bf16 ones on this CPU, and how much time the other operations
(attention's softmax, layer norms, GELU, transposes, quantise and dequantise) take in each.

Per option (torch fp32, torch bf16 where the CPU has it, OpenVINO bf16 and int8; each built by
``engines.build`` on the fp32 torch extractor, as ``bench_engines.py`` builds them): the wall time
of the batch (best of ``--rounds``, options interleaved), then one profiled call split into
**products** (linear layers and convolutions: torch's ``addmm``, ``mm``, ``linear``, convolutions;
OpenVINO's ``FullyConnected*``, ``MatMul``, ``Convolution``, ``GroupConvolution``) and **the rest**
(attention's fused kernels count as the rest in both: torch's ``bmm`` and softmax, OpenVINO's
``Subgraph``). torch's self times come from ``torch.profiler``, OpenVINO's from its own per-node
counters (``PERF_COUNT``, on for every compile of this process). The last column: the forward
ratio to torch bf16 int8 would reach if its rest took no time at all (its products alone). On a CPU without native bf16 the bf16 rows are left out and
torch fp32 is the baseline (issue 32's bar there).

Run: ``.venv/bin/python bench/bench_forward_split.py --models clip`` (OpenVINO's converted
models are kept in ``--models-dir``, default DATA_DIR/models, as ``bench_engines.py`` keeps them).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

import bench_engines  # its models, builders and machine line: the same runners as its forward section
from imgsearchd.extractors import calibration, engines, precision

TORCH_PRODUCTS = ("aten::addmm", "aten::mm", "aten::linear", "aten::mkldnn_linear", "aten::_mkldnn_convolution",
                  "aten::mkldnn_convolution", "aten::convolution", "aten::_convolution")  # fmt: skip
OPENVINO_PRODUCTS = ("FullyConnected", "MatMul", "Convolution", "GroupConvolution")
OPTIONS = (("torch", "fp32"), ("torch", "bf16"), ("openvino", "bf16"), ("openvino", "int8"))


def torch_split(run: Callable[[], object]) -> tuple[float, float]:
    """(products ms, rest ms) of one call, from torch's profiler (self times of the operators)."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        run()
    products = rest = 0.0
    for event in prof.key_averages():
        ms = event.self_cpu_time_total / 1000
        if event.key in TORCH_PRODUCTS:
            products += ms
        else:
            rest += ms
    return products, rest


def openvino_split(runner: engines.Runner) -> tuple[float, float]:
    """(products ms, rest ms) of the last call, from OpenVINO's per-node counters of each image part."""
    products = rest = 0.0
    for part in runner.model.image_parts:  # type: ignore[attr-defined]
        for node in part._request.get_profiling_info():
            ms = node.real_time.total_seconds() * 1000
            if node.node_type.startswith(OPENVINO_PRODUCTS):
                products += ms
            else:
                rest += ms
    return products, rest


def measure(model: str, args: argparse.Namespace, models_dir: Path) -> list[dict[str, Any]]:
    """Wall ms (best of ``--rounds``) and the profiled split of each option on one batch."""
    extractor = bench_engines.reference(model, args.batch_size)
    batch = torch.stack(
        [extractor.preprocess(p) for p in calibration.crops(args.batch_size, bench_engines.FORWARD_SEED)]
    )
    native = precision.native_bf16(precision.cpu_flags())
    wanted = [precision.Option(e, p, "bench") for e, p in OPTIONS if p != "bf16" or native]
    built, failed = bench_engines.build_all(extractor, wanted, models_dir)
    best = {label: float("inf") for label in built}
    rows = []
    with torch.inference_mode():
        for runner in built.values():
            runner.image(batch)  # warm-up: first calls allocate and pick kernels
        for turn in range(args.rounds):
            for label in bench_engines.rotate(list(built), turn):
                started = time.perf_counter()
                built[label].image(batch)
                best[label] = min(best[label], time.perf_counter() - started)
        for label, runner in built.items():
            if isinstance(runner, engines.TorchRunner):
                products, rest = torch_split(lambda r=runner: r.image(batch))  # type: ignore[misc]
            else:
                runner.image(batch)
                products, rest = openvino_split(runner)
            rows.append({"model": model, "option": label, "wall_ms": best[label] * 1000, "products_ms": products,
                         "rest_ms": rest})  # fmt: skip
    rows += [{"model": model, "option": label, "error": why} for label, why in failed.items()]
    return rows


def report(rows: list[dict[str, Any]], batch_size: int, baseline: str) -> None:
    """The table; ``baseline``: what issue 32 compares with here (torch bf16, or torch fp32 without native bf16)."""
    print(f"\n**Forward pass split**, batch {batch_size}, ms per batch (profiled call; wall: best of the rounds):\n")
    print(f"| model | option | wall ms | img/s | products ms | rest ms | rest share | products vs {baseline} | "
          f"ratio to {baseline} with no rest |")  # fmt: skip
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for row in rows:
        if "error" in row:
            print(f"| {row['model']} | {row['option']} | cannot run: {row['error'][:80]} | | | | | | |")
            continue
        base = next(
            (r for r in rows if r["model"] == row["model"] and r["option"] == baseline and "error" not in r), None
        )
        products, rest = row["products_ms"], row["rest_ms"]
        versus = f"{base['products_ms'] / products:.2f}x" if base and products else "-"
        ceiling = (
            f"{base['wall_ms'] / (row['wall_ms'] * products / (products + rest)):.2f}x" if base and products else "-"
        )
        print(f"| {row['model']} | {row['option']} | {row['wall_ms']:.1f} | {batch_size / row['wall_ms'] * 1000:.1f} | "
              f"{products:.1f} | {rest:.1f} | {rest / (products + rest):.0%} | {versus} | {ceiling} |")  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", default="clip", help="of " + ", ".join(bench_engines.MODELS))
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds, best of")
    parser.add_argument("--data-dir", default=os.path.join(tempfile.gettempdir(), "imgsearchd-bench-engines"))
    parser.add_argument("--models-dir", help="OpenVINO's converted models, kept between runs (default DATA_DIR/models)")
    args = parser.parse_args(argv)
    models = [m for m in args.models.split(",") if m]
    if any(m not in bench_engines.MODELS for m in models):
        raise SystemExit(f"--models: of {', '.join(bench_engines.MODELS)}")
    from imgsearchd.extractors.openvino_ir import core

    core().set_property("CPU", {"PERF_COUNT": True})  # per-node counters for every model compiled from here on
    models_dir = Path(args.models_dir) if args.models_dir else Path(args.data_dir) / "models"
    print(bench_engines.machine())
    baseline = "torch bf16" if precision.native_bf16(precision.cpu_flags()) else "torch fp32"
    report([row for model in models for row in measure(model, args, models_dir)], args.batch_size, baseline)
    return 0


if __name__ == "__main__":
    sys.exit(main())
