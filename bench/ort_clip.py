"""An ONNX Runtime fp32 pipeline of our CLIP image tower, for side-by-side benchmarks (issue 11).

Immich's machine-learning service runs CLIP through ONNX Runtime; this gives the same
engine our model, so indexing can be compared with "the same model on ORT":

* ``export_image_tower``: open_clip's ``encode_image`` to ONNX with a dynamic batch axis
  (torch's default exporter, ``dynamo=True``, which needs ``onnxscript``), once per model
  id, into a cache folder (``DEFAULT_CACHE``).
* ``OrtClipExtractor``: an ``Extractor`` that keeps the torch extractor's preprocessing,
  dim, model id, decode side and batch size, and runs the forward pass in ORT with
  Immich's CPU session settings (``session_options``).

Run ``python bench/ort_clip.py`` (needs the ``bench`` extra: ``pip install -e '.[bench]'``):
it exports (random weights, ``pretrained = "none"``), checks the cosine to torch on
scikit-image's photos, and prints forward img/s at batch 32, torch fp32 eager vs ORT fp32.
Importing this file runs nothing.
"""

from __future__ import annotations

import argparse
import os
import re
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import torch
from PIL import Image

from imgsearchd import extractors
from imgsearchd.extractors.base import Extractor
from imgsearchd.extractors.clip import ClipExtractor
from imgsearchd.extractors.registry import extractor_settings

DEFAULT_CACHE = Path(tempfile.gettempdir()) / "imgsearchd-bench-data" / "onnx"
EXPORT_VERSION = 1  # bump when the way the file is exported changes: old cached files are then ignored
INPUT, OUTPUT = "image", "embedding"
MIN_COSINE = 0.9999
TORCH_SETTINGS = {"device": "cpu", "engine": "torch", "pretrained": "none", "batch_size": 32, "precision": "fp32"}


class _ImageTower(torch.nn.Module):
    def __init__(self, clip: Any) -> None:
        super().__init__()
        self.clip = clip

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.clip.encode_image(image)


def export_image_tower(extractor: ClipExtractor, cache_dir: Path = DEFAULT_CACHE) -> Path:
    """The ONNX file of a CLIP extractor's image tower (fp32, dynamic batch), exported once per model id."""
    precision = getattr(getattr(extractor, "precision", None), "used", "fp32")
    if precision != "fp32":
        raise ValueError(f"export needs the fp32 model; this extractor runs {precision} (set precision = fp32)")
    path = cache_dir / f"{re.sub(r'[^A-Za-z0-9._-]+', '_', extractor.model_id)}.v{EXPORT_VERSION}.onnx"
    if path.is_file():
        return path
    cache_dir.mkdir(parents=True, exist_ok=True)
    side = extractor.decode_side
    example = torch.zeros(2, 3, side, side, device=extractor.device)  # a batch of 1 would be baked in
    partial = path.with_name(f"{path.name}.{os.getpid()}.partial")
    fastpath = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)  # as Immich's exporter does: plain ops, no fused MHA kernel
    try:
        torch.onnx.export(
            _ImageTower(extractor.model).eval(),
            (example,),
            partial,
            dynamo=True,
            external_data=False,  # one file (ViT-B-32's tower: 350 MB, far under protobuf's 2 GB)
            input_names=[INPUT],
            output_names=[OUTPUT],
            dynamic_shapes=({0: torch.export.Dim("batch")},),
            verbose=False,
        )
        os.replace(partial, path)  # a crash mid-export leaves no half file under the cached name
    finally:
        torch.backends.mha.set_fastpath_enabled(fastpath)
        partial.unlink(missing_ok=True)
    return path


def session_options(threads: int | None = None) -> ort.SessionOptions:
    """Immich's CPU session (immich_ml/sessions/ort.py), except intra-op threads: all cores, like torch here."""
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL  # ORT's default; Immich keeps it
    options.enable_cpu_mem_arena = True  # Immich: MACHINE_LEARNING_MODEL_ARENA, true by default
    options.inter_op_num_threads = 1  # Immich on CPU alone: 1, so execution stays sequential
    options.intra_op_num_threads = threads or os.cpu_count() or 1  # Immich: 2 unless MODEL_INTRA_OP_THREADS
    return options


class OrtClipExtractor(Extractor):
    """A CLIP image tower in ONNX Runtime (CPU, fp32) behind the torch extractor's preprocessing."""

    name = "clip-ort"

    def __init__(self, torch_extractor: Extractor, onnx_path: Path, threads: int | None = None) -> None:
        super().__init__(extractor_settings("clip", {"device": "cpu", "batch_size": torch_extractor.batch_size}))
        self.dim = torch_extractor.dim
        self.model_id = torch_extractor.model_id
        self.decode_side = torch_extractor.decode_side
        self._preprocess: Callable[[Image.Image], torch.Tensor] = torch_extractor.preprocess
        self.session = ort.InferenceSession(
            str(onnx_path),
            sess_options=session_options(threads),
            providers=["CPUExecutionProvider"],
            provider_options=[{"arena_extend_strategy": "kSameAsRequested"}],  # Immich's CPU provider option
        )

    def preprocess(self, image: Image.Image) -> torch.Tensor:
        return self._preprocess(image)

    def _forward(self, batch: torch.Tensor) -> torch.Tensor:
        pixels = np.ascontiguousarray(batch.cpu().numpy(), dtype=np.float32)
        return torch.from_numpy(self.session.run([OUTPUT], {INPUT: pixels})[0])


def sample_batch(extractor: Extractor, size: int) -> torch.Tensor:
    """scikit-image's chelsea, coffee, astronaut and rocket, preprocessed, repeated to ``size`` rows."""
    from skimage import data

    photos = [
        Image.fromarray(getattr(data, name)()).convert("RGB") for name in ("chelsea", "coffee", "astronaut", "rocket")
    ]
    four = torch.stack([extractor.preprocess(photo) for photo in photos])
    return four.repeat((size + 3) // 4, 1, 1, 1)[:size]


def min_cosine(torch_extractor: Extractor, ort_extractor: Extractor) -> float:
    """The smallest cosine between torch's and ORT's vectors for the four sample photos."""
    batch = sample_batch(torch_extractor, 4)
    return float((torch_extractor.embed(batch) * ort_extractor.embed(batch)).sum(axis=1).min())


def time_forward(extractors_by_name: dict[str, Extractor], batch: torch.Tensor, repeats: int) -> dict[str, Any]:
    """Best-of-``repeats`` wall time of ``embed`` per extractor (interleaved), and CPU time in that best run."""
    best: dict[str, tuple[float, float]] = {}
    for ext in extractors_by_name.values():
        ext.embed(batch)  # warm-up: first-call allocations, ORT's arena
    for _ in range(repeats):
        for name, ext in extractors_by_name.items():
            wall, cpu = time.perf_counter(), time.process_time()
            ext.embed(batch)
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            if name not in best or wall < best[name][0]:
                best[name] = (wall, cpu)
    return best


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE, help="where the ONNX file is kept")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)

    torch_ext = extractors.create("clip", {**TORCH_SETTINGS, "batch_size": args.batch_size})
    assert isinstance(torch_ext, ClipExtractor)
    started = time.perf_counter()
    path = export_image_tower(torch_ext, args.cache_dir)
    print(f"ONNX file: {path} ({path.stat().st_size / 1e6:.0f} MB, ready in {time.perf_counter() - started:.1f} s)")
    ort_ext = OrtClipExtractor(torch_ext, path)

    cosine = min_cosine(torch_ext, ort_ext)
    print(f"min cosine ORT vs torch fp32 on 4 photos: {cosine:.7f} ({'ok' if cosine >= MIN_COSINE else 'FAILED'})")
    if cosine < MIN_COSINE:
        return 1

    threads = ort_ext.session.get_session_options().intra_op_num_threads
    print(f"torch {torch.__version__} ({torch.get_num_threads()} threads), onnxruntime {ort.__version__} ({threads})")
    print(f"{os.cpu_count()} CPUs; load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    best = time_forward(
        {"torch fp32": torch_ext, "ORT fp32": ort_ext}, sample_batch(torch_ext, args.batch_size), args.repeats
    )
    print(f"forward, batch {args.batch_size}, best of {args.repeats}: img/s  CPU ms/img  cores used")
    for name, (wall, cpu) in best.items():
        print(f"  {name:<10} {args.batch_size / wall:8.2f}  {1000 * cpu / args.batch_size:10.1f}  {cpu / wall:10.2f}")
    if min(cpu / wall for wall, cpu in best.values()) < 0.9 * threads:
        print(f"  CONTENDED: a side got under 90% of its {threads} threads' cores (another process?); the img/s ratio")
        print("  then says who got more CPU, not which is faster: compare CPU ms/img, or rerun on an idle machine")
    ratio = best["torch fp32"][0] / best["ORT fp32"][0]
    print(f"ORT / torch img/s: {ratio:.2f}; load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
