"""Camera libraries (issue 31): phone HEICs and camera JPEGs against the same pictures at 0.5 MP.

The pictures are real photos (the Debian wallpapers under /usr/share/backgrounds when present,
scikit-image's samples always) at a camera's size with sensor-like grain
(``tests/camera_photos.grainy``: distinct bytes each), written as devices write them:

* **phone JPEG**: 4032x3024, quality 90, a 160x120 EXIF thumbnail as iPhones write (no usable
  preview); every third one held upright (EXIF orientation 6);
* **phone HEIC**: 4032x3024, a grid of 512-pixel tiles and a 320-pixel thumbnail item
  (``tests/heif_files.phone_heic``), quality 50 (``--heic-quality``: 2.1 MB, an iPhone's size with
  this grain; 80 gives 9.8 MB and a thumbnail closer to the primary); every third one turned (6);
* **camera JPEG**: 6000x4000, quality 92, an MPF large thumbnail of 1616x1080 as Sony writes
  (``tests/jpeg_files.camera_jpeg``) and a 160x120 EXIF thumbnail; every fourth one turned (8);
* and each picture shrunk to 0.5 MP (816x612, 864x576 for 3:2) in the same format (the small
  camera JPEG without MPF: no camera writes 0.5 MP, an export keeps no preview).

``--count`` files of each (64: two batches of 32), ``--unique`` of them distinct pictures, the
rest byte-distinct copies (``distinct``: a 12-MP HEIC takes 15-45 s to encode here).

Sections (``--sections``):

1. **stages**: CPU milliseconds per picture (``time.process_time``, median over repeats of the
   mean; libheif decodes a grid's tiles on threads of its own, which ``thread_time`` misses: 80
   against 445 ms for a 12-MP HEIC; torch on one intra-op thread meanwhile): read, hash,
   metadata, header, find preview (the finder's checks; both finders decode the preview they
   accept there), decode (of the primary; the preview's when a finder left it undecoded),
   colour conversion and fit, EXIF turn, preprocess (each model), thumbnail; in each ``[images]
   previews`` mode (faithful, fast, off). The decode stages replay ``images.decode``'s steps; the real ``decode`` is timed
   beside them as a check.
2. **e2e**: ``imgsearchd index`` (the real CLI, one process per run, a fresh data folder and a
   settings file naming the extractor; its ``--json`` rate, which leaves out start-up and model
   load), 12 MP (24 MP) against 0.5 MP, same model, same run, ratio per repeat; and the same in
   process (``Pipeline`` with thumbnails, as the CLI) in each ``[images] previews`` mode
   (``ImageLimits(previews=...)``; "fast" only where it decodes other pictures than "faithful").
   EfficientNet-Lite0 real weights and CLIP ViT-B-32 random weights (``pretrained = "none"``),
   both at ``precision = "auto"`` on torch (``engine = "torch"``).
3. **quality**: reduced against full decode, EfficientNet-Lite0 real weights fp32: the cosine of
   each original's two vectors, and copy-detection recall@1 with the originals indexed from
   each decode; queries are edited copies (``bench_retrieval.TRANSFORMS``, small JPEGs), among
   ``--distractors`` other real pictures (bench_retrieval's database tiles); "faithful" and "fast".
4. **real** (``--real FOLDER``, alone unless ``--sections`` names more): every JPEG and HEIC
   under the folder (real cameras' files, e.g. a metadata library's sample corpus) decoded in
   each mode: CPU ms, what was decoded, the cosine to the full decode (EfficientNet-Lite0 fp32),
   and a summary per mode and source.

Issue 31's targets: 12-MP JPEG >= 0.5 of 0.5 MP with EfficientNet, >= 0.9 with CLIP; 12-MP
HEIC >= 0.6 with CLIP; mean cosine >= 0.99; recall@1 within 1 point.

Run: ``.venv/bin/python bench/bench_camera.py --repeats 3`` (the first run writes the pictures
into ``--data-dir``, HEIC encoding being slow: minutes; later runs reuse them).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "bench"))

_omp = os.environ.get("OMP_WAIT_POLICY")
import bench_retrieval  # noqa: E402

if _omp is None:  # bench_retrieval sets it for its own runs; the daemon does not: keep it out of the timings
    os.environ.pop("OMP_WAIT_POLICY", None)

import camera_photos  # noqa: E402
import heif_files  # noqa: E402
import jpeg_files  # noqa: E402
from bench_indexing import cpu_model  # noqa: E402
from imgsearchd import extractors  # noqa: E402
from imgsearchd.extractors import precision  # noqa: E402
from imgsearchd.ingest.pipeline import Pipeline  # noqa: E402
from imgsearchd.media import files, formats, images, photo_metadata, previews  # noqa: E402
from imgsearchd.media.limits import FAITHFUL, FAST, PREVIEW_MODES, ImageLimits, check_header  # noqa: E402
from imgsearchd.media.rgb import orientation, to_rgb  # noqa: E402
from imgsearchd.media.thumbnails import ThumbnailStore  # noqa: E402
from imgsearchd.store.catalog import Catalog  # noqa: E402

DATA_VERSION = 1
# torch: what these tables measure (bench_engines.py compares OpenVINO); also in the CLI runs' settings files
MODELS = {"efficientnet": {"engine": "torch"}, "clip": {"pretrained": "none", "engine": "torch"}}
TARGETS = {("efficientnet", "phone-jpeg"): 0.5, ("clip", "phone-jpeg"): 0.9, ("clip", "phone-heic"): 0.6}
STAGES = (
    "read",
    "hash",
    "metadata",
    "header",
    "find preview",
    "decode",
    "colour + fit",
    "EXIF turn",
    "thumbnail",
)


# -- the pictures ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Kind:
    """One kind of camera file: its sizes and how a device writes it."""

    key: str
    label: str
    size: tuple[int, int]  # landscape; the primary's pixels
    small: tuple[int, int]  # the same picture at 0.5 MP
    ext: str
    every: int  # every n-th picture is turned (EXIF orientation / irot)
    turn: int  # that orientation


KINDS = {
    k.key: k
    for k in (
        Kind("phone-jpeg", "phone JPEG", camera_photos.PHONE_12MP, camera_photos.SMALL_05MP, "jpg", 3, 6),
        Kind("phone-heic", "phone HEIC", camera_photos.PHONE_12MP, camera_photos.SMALL_05MP, "heic", 3, 6),
        Kind("camera-jpeg", "camera JPEG", camera_photos.CAMERA_24MP, (864, 576), "jpg", 4, 8),
    )
}


def encode(kind: Kind, picture: Image.Image, small: bool, turn: int, scale: float, heic_quality: int) -> bytes:
    """``picture`` written as ``kind``'s device writes it (previews scaled with ``--scale``)."""
    if kind.key == "phone-heic":
        return heif_files.phone_heic(
            picture, tile=512, thumbnail=round(320 * scale), quality=heic_quality, orientation=turn
        )
    thumb = (160, 120)
    if kind.key == "phone-jpeg" or small:
        return jpeg_files.camera_jpeg(
            picture, quality=90 if kind.key == "phone-jpeg" else 92, exif_thumbnail=thumb, orientation=turn
        )
    preview = (round(1616 * scale), round(1080 * scale))
    return jpeg_files.camera_jpeg(picture, quality=92, mpf_preview=preview, exif_thumbnail=thumb, orientation=turn)


def distinct(data: bytes, kind: Kind, n: int) -> bytes:
    """The same file made byte-distinct (its own content hash, nothing reused), pixels unchanged:
    a ``free`` box after the HEIC's last box, bytes after the JPEG's last EOI (decoders stop there).
    A 12-MP HEIC takes 15-45 s to encode here: the sets repeat ``--unique`` pictures this way."""
    tag = f"imgsearchd bench_camera copy {n}".encode()
    if kind.ext == "heic":
        return data + struct.pack(">I", 8 + len(tag)) + b"free" + tag
    return data + tag


def photo_arrays(count: int) -> list[np.ndarray]:
    """Up to ``count`` real photos: the large Debian ones first (sharper at 12-24 MP), then scikit-image's."""
    sources = bench_retrieval.photo_sources()
    debian = [p for p in sources if not p.name.startswith("skimage:")]
    return [p.load() for p in (debian + [p for p in sources if p.name.startswith("skimage:")])[:count]]


def _scaled(size: tuple[int, int], scale: float) -> tuple[int, int]:
    return (max(16, round(size[0] * scale)), max(16, round(size[1] * scale)))


@dataclass(frozen=True)
class PictureSet:
    kind: Kind
    full: list[str]
    small: list[str]


def make_sets(
    folder: Path,
    kinds: list[Kind],
    count: int,
    unique: int,
    seed: int,
    scale: float,
    heic_quality: int = 50,
    remake: bool = False,
) -> dict[str, PictureSet]:
    """``count`` files of each kind, full size and 0.5 MP, made once and kept in ``folder``: ``unique``
    pictures, the rest byte-distinct copies of them (``distinct``)."""
    spec = {
        "version": DATA_VERSION,
        "count": count,
        "unique": unique,
        "seed": seed,
        "scale": scale,
        "heic_quality": heic_quality,
    }
    photos: list[np.ndarray] | None = None
    sets = {}
    for kind in kinds:
        where = folder / kind.key
        stamp = where / "made.json"
        full = [str(where / f"full{i:03d}.{kind.ext}") for i in range(count)]
        small = [str(where / f"small{i:03d}.{kind.ext}") for i in range(count)]
        made = stamp.exists() and json.loads(stamp.read_text()) == spec and all(map(os.path.exists, full + small))
        if remake or not made:
            where.mkdir(parents=True, exist_ok=True)
            photos = photos or photo_arrays(unique)
            started = time.monotonic()
            for i in range(unique):
                picture = camera_photos.grainy(photos[i % len(photos)], _scaled(kind.size, scale), seed + i)
                turn = kind.turn if i % kind.every == kind.every - 1 else 1
                Path(full[i]).write_bytes(encode(kind, picture, False, turn, scale, heic_quality))
                shrunk = picture.resize(_scaled(kind.small, scale), Image.Resampling.LANCZOS)
                Path(small[i]).write_bytes(encode(kind, shrunk, True, turn, scale, heic_quality))
            for i in range(unique, count):
                for paths in (full, small):
                    Path(paths[i]).write_bytes(distinct(Path(paths[i % unique]).read_bytes(), kind, i))
            stamp.write_text(json.dumps(spec))
            print(f"made {count} {kind.label} pictures in {time.monotonic() - started:.0f} s", file=sys.stderr)
        sets[kind.key] = PictureSet(kind, full, small)
    return sets


def describe(paths: list[str]) -> str:
    with Image.open(paths[0]) as im:
        size = im.size
    mb = statistics.mean(os.path.getsize(p) for p in paths) / 1e6
    return f"{len(paths)} x {size[0]}x{size[1]}, {mb:.2f} MB mean"


# -- stages ----------------------------------------------------------------------------------


def _find(data: bytes, kind: str | None, side: int, limits: ImageLimits) -> previews.Preview | None:
    """What ``images._from_preview`` asks (None where no finder answers or it raises)."""
    try:
        return images.find_preview(data, kind, side, limits)
    except Exception:
        return None


def staged_decode(data: bytes, side: int, mode: str, clock: Callable[[str], None]) -> tuple[Image.Image, str]:
    """``images.decode``'s steps one by one in a ``[images] previews`` mode (``clock(stage)`` after
    each); the picture and its source."""
    limits = ImageLimits(previews=mode)
    kind = formats.sniff(data[: formats.HEAD_BYTES])
    check_header(data, kind, limits)
    clock("header")
    found = _find(data, kind, side, limits) if limits.use_previews else None
    clock("find preview")
    if found is not None:  # previews.fitted, step by step
        found.image.load()
        clock("decode")
        factor = max(1, min(found.image.size) // side)
        picture = to_rgb(found.image)
        picture = picture.reduce(factor) if factor > 1 else picture
        clock("colour + fit")
        picture = picture.transpose(found.turn) if found.turn is not None else picture
        clock("EXIF turn")
        return picture, found.source
    opened = images._open(data, side, limits)
    clock("header")
    opened.load()
    clock("decode")
    turn = orientation(opened)
    picture = images._fit(opened, side, exif_turn=False)
    clock("colour + fit")
    picture = picture.transpose(turn) if turn is not None else picture
    clock("EXIF turn")
    return picture, "primary"


class Clock:
    """Adds the CPU time of the process since the last mark to a stage."""

    def __init__(self, times: dict[str, float]) -> None:
        self.times = times
        self.last = time.process_time()

    def __call__(self, stage: str) -> None:
        now = time.process_time()
        self.times[stage] = self.times.get(stage, 0.0) + now - self.last
        self.last = now


def stage_one(
    path: str,
    side: int,
    models: dict[str, extractors.Extractor],
    thumbs: ThumbnailStore,
    mode: str,
    times: dict[str, float],
) -> str:
    """One file through the loader's path stage by stage; returns what was decoded."""
    clock = Clock(times)
    file = files.read_file(path, ImageLimits())
    clock("read")
    digest = file.content_hash
    clock("hash")
    photo_metadata.read_metadata(file.data, file.mtime_ns)
    clock("metadata")
    picture, source = staged_decode(file.data, side, mode, clock)
    for name, extractor in models.items():
        extractor.preprocess(picture)
        clock(f"preprocess {name}")
    thumbs.add_picture(f"{digest}-{time.monotonic_ns()}", picture)
    clock("thumbnail")
    start = time.process_time()
    real = images.decode(file.data, side, ImageLimits(previews=mode))
    times["decode() as a whole"] = times.get("decode() as a whole", 0.0) + time.process_time() - start
    if real.size != picture.size:
        print(f"warning: staged decode of {path} gave {picture.size}, decode() {real.size}", file=sys.stderr)
    return source


def measure_stages(
    sets: dict[str, PictureSet], models: dict[str, extractors.Extractor], count: int, repeats: int, workdir: Path
) -> list[tuple[str, str, dict[str, float], dict[str, int]]]:
    """Rows (set label, ``[images] previews`` mode, median ms per stage, sources) for every set."""
    side = max(e.decode_side for e in models.values())
    rows = []
    threads = torch.get_num_threads()
    # One intra-op thread: preprocessing's work is then all on this thread, and OpenMP workers
    # spinning between kernels are not counted as its CPU (process time gave 30 ms, thread time 10).
    torch.set_num_threads(1)
    with contextlib.ExitStack() as stack, tempfile.TemporaryDirectory(dir=workdir) as tmp:
        stack.callback(torch.set_num_threads, threads)
        thumbs = ThumbnailStore(Path(tmp) / "thumbnails")
        for pset in sets.values():
            for size_label, paths in (("full", pset.full[:count]), ("0.5 MP", pset.small[:count])):
                runs: dict[str, list[dict[str, float]]] = {m: [] for m in PREVIEW_MODES}
                sources: dict[str, dict[str, int]] = {m: {} for m in PREVIEW_MODES}
                stage_one(paths[0], side, models, thumbs, FAST, {})  # warm-up
                for rep in range(repeats):
                    times: dict[str, dict[str, float]] = {m: {} for m in PREVIEW_MODES}
                    for i, path in enumerate(paths):
                        for mode in PREVIEW_MODES if (rep + i) % 2 == 0 else reversed(PREVIEW_MODES):
                            source = stage_one(path, side, models, thumbs, mode, times[mode])
                            if rep == 0:
                                sources[mode][source] = sources[mode].get(source, 0) + 1
                    for mode in PREVIEW_MODES:
                        runs[mode].append({k: v / len(paths) * 1e3 for k, v in times[mode].items()})
                label = f"{pset.kind.label} {size_label}"
                for mode in PREVIEW_MODES:
                    median = {k: statistics.median(r.get(k, 0.0) for r in runs[mode]) for k in runs[mode][0]}
                    rows.append((label, mode, median, sources[mode]))
        thumbs.close()
    return rows


def report_stages(rows: list[tuple[str, str, dict[str, float], dict[str, int]]], models: list[str]) -> None:
    columns = [*STAGES[:-1], *(f"preprocess {m}" for m in models), STAGES[-1]]
    print("\n| pictures | previews | decoded | " + " | ".join(columns) + " | **total** | decode() as a whole |")
    print("| --- | --- | --- | " + " | ".join("---:" for _ in columns) + " | ---: | ---: |")
    for label, mode, ms, sources in rows:
        decoded = ", ".join(f"{k} {v}" for k, v in sorted(sources.items()))
        cells = " | ".join(f"{ms.get(c, 0.0):.1f}" for c in columns)
        total = sum(ms.get(c, 0.0) for c in columns)
        print(
            f"| {label} | {mode} | {decoded} | {cells} | **{total:.1f}** | {ms.get('decode() as a whole', 0.0):.1f} |"
        )


# -- end to end --------------------------------------------------------------------------


def cli_rate(model: str, paths: list[str], workdir: Path) -> float:
    """``imgsearchd index --json`` over ``paths`` in a fresh data folder: the rate it reports."""
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        config = Path(tmp) / "imgsearchd.toml"
        settings = "".join(f'{k} = "{v}"\n' for k, v in MODELS[model].items())
        config.write_text(
            f'[index]\ndata_dir = "{tmp}/data"\nextractors = ["{model}"]\nfallback_extractor = ""\n'
            f"[extractors.{model}]\n{settings}"
        )
        script = Path(sys.executable).parent / "imgsearchd"
        command = [str(script)] if script.exists() else [sys.executable, "-m", "imgsearchd.cli"]
        done = subprocess.run(
            [*command, "index", "--json", "--no-progress", "--config", str(config), "--log-level", "warning", *paths],
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            raise SystemExit(f"imgsearchd index failed ({done.returncode}): {done.stderr[-2000:]}")
        summary = json.loads(done.stdout)
    if summary["embedded"] != len(paths) or summary["failed"]:
        raise SystemExit(f"imgsearchd index did not embed every picture: {summary}")
    return float(summary["images_per_second"])


def pipeline_rate(
    name: str, extractor: extractors.Extractor, paths: list[str], workdir: Path, mode: str = FAITHFUL
) -> float:
    """The real pipeline in this process, with a thumbnail store as the CLI has, in an ``[images]
    previews`` mode: its rate ("off": every primary decoded, as before issue 31)."""
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        catalog = Catalog(Path(tmp) / "catalog.sqlite3")
        thumbs = ThumbnailStore(Path(tmp) / "thumbnails")
        try:
            limits = ImageLimits(previews=mode)
            with Pipeline(catalog, {name: extractor}, limits, 0, thumbnails=thumbs) as pipeline:
                summary = pipeline.process(paths)
        finally:
            thumbs.close()
            catalog.close()
    if summary["embedded"] != len(paths) or summary["failed"]:
        raise SystemExit(f"pipeline did not embed every picture: {summary}")
    return float(summary["images_per_second"])  # type: ignore[arg-type]


@dataclass
class E2E:
    model: str
    kind: Kind
    label: str
    rates: dict[str, list[float]]  # variant -> one rate per repeat
    used: dict[str, dict[str, int]]  # mode -> what the full set decoded


def used_source() -> str:
    """What the last ``images.decode`` since ``previews.counts.clear()`` took: a preview's kind, or "primary"."""
    used = [k.removeprefix("used: ") for k in previews.counts.snapshot() if k.startswith("used: ")]
    return used[0] if used else "primary"


def sources(paths: list[str], side: int, mode: str) -> dict[str, int]:
    """What ``images.decode`` takes for each file in a mode: how many from each preview kind, or "primary"."""
    found: dict[str, int] = {}
    for path in paths:
        previews.counts.clear()
        images.decode(Path(path).read_bytes(), side, ImageLimits(previews=mode))
        source = used_source()
        found[source] = found.get(source, 0) + 1
    previews.counts.clear()
    return found


def measure_e2e(
    sets: dict[str, PictureSet], made: dict[str, extractors.Extractor], repeats: int, workdir: Path
) -> list[E2E]:
    """The CLI (its default mode, "faithful") and the pipeline in each ``[images] previews`` mode,
    full size and 0.5 MP; "fast" only where it decodes other pictures than "faithful"."""
    results = []
    for name, extractor in made.items():
        for pset in sets.values():
            with Image.open(pset.full[0]) as im:
                label = f"{len(pset.full)} {pset.kind.label} {im.width}x{im.height}"
            used = {m: sources(pset.full, extractor.decode_side, m) for m in PREVIEW_MODES}
            modes = [m for m in PREVIEW_MODES if m != FAST or used[FAST] != used[FAITHFUL]]
            variants = [f"{where} {size}" for where in ("cli", *modes) for size in ("full", "small")]
            result = E2E(name, pset.kind, label, {v: [] for v in variants}, used)
            pipeline_rate(name, extractor, pset.small[:4], workdir)  # warm-up
            for rep in range(repeats):
                for variant in variants if rep % 2 == 0 else reversed(variants):
                    where, size = variant.split()
                    paths = pset.full if size == "full" else pset.small
                    rate = (
                        cli_rate(name, paths, workdir)
                        if where == "cli"
                        else pipeline_rate(name, extractor, paths, workdir, where)
                    )
                    result.rates[variant].append(rate)
            results.append(result)
            print(f"e2e {name} {pset.kind.label} done", file=sys.stderr)
    return results


def med(values: list[float], digits: int = 1) -> str:
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return f"{statistics.median(values):.{digits}f} ({min(values):.{digits}f}-{max(values):.{digits}f})"


def ratios(result: E2E, big: str, small: str) -> list[float]:
    return [b / s for b, s in zip(result.rates[big], result.rates[small])]


def report_e2e(results: list[E2E]) -> None:
    print(
        "\n| model | pictures | previews | full img/s | 0.5 MP img/s | **ratio** | target | "
        "what the full set decoded |\n| --- | --- | --- | ---: | ---: | ---: | ---: | --- |"
    )
    for r in results:
        for where in dict.fromkeys(v.split()[0] for v in r.rates):
            ratio = ratios(r, f"{where} full", f"{where} small")
            target = TARGETS.get((r.model, r.kind.key))
            met = (
                "-" if target is None else f"{target} {'met' if statistics.median(ratio) >= target else '**not met**'}"
            )
            mode = f"{FAITHFUL} (the CLI)" if where == "cli" else where
            used = ", ".join(f"{k} {v}" for k, v in sorted(r.used[FAITHFUL if where == "cli" else where].items()))
            print(
                f"| {r.model} | {r.label} | {mode} | {med(r.rates[f'{where} full'])} | "
                f"{med(r.rates[f'{where} small'])} | **{med(ratio, 2)}** | {met} | {used} |"
            )
        if FAST not in {v.split()[0] for v in r.rates}:
            print(f"| {r.model} | {r.label} | {FAST} | as {FAITHFUL}: the same pictures decoded | | | | |")


# -- reduced against full decode ------------------------------------------------------------


def copies_of(path: str, rng: np.random.Generator, count: int, folder: Path, stem: str) -> list[tuple[str, str]]:
    """Edited copies of the picture in ``path`` (full decode, upright), as small JPEGs: (file, kind)."""
    picture = images.decode(Path(path).read_bytes(), 0, ImageLimits(previews="off"))
    picture.thumbnail((1024, 1024), Image.Resampling.LANCZOS)  # copies are shared at screen size
    out = []
    kinds = list(bench_retrieval.TRANSFORMS)
    for j in range(count):
        kind = kinds[(int(rng.integers(len(kinds))) + j) % len(kinds)]
        copy, quality = bench_retrieval.TRANSFORMS[kind](picture, rng)
        target = folder / f"{stem}_{j}.jpg"
        copy.save(target, "JPEG", quality=quality)
        out.append((str(target), kind))
    return out


def measure_quality(
    sets: dict[str, PictureSet], count: int, copies: int, distractors: int, workdir: Path, seed: int
) -> list[dict[str, object]]:
    """Per kind: cosine of reduced vs full vectors, recall@1 of copies against each index."""
    model = extractors.create("efficientnet", {"precision": "fp32", "device": "cpu", "engine": "torch"})
    side = model.decode_side
    others = np.zeros((0, model.dim), dtype=np.float32)
    if distractors:
        pool = bench_retrieval.make_copy_set(workdir / "distractors", distractors, 1, seed)
        others = model.embed_images([images.load_image(p, side) for p in pool.db_paths])
    rows: list[dict[str, object]] = []
    for key, pset in sets.items():
        originals = pset.full[:count]
        full = model.embed_images([images.decode(Path(p).read_bytes(), side, use_previews=False) for p in originals])
        folder = workdir / "copies" / key
        folder.mkdir(parents=True, exist_ok=True)
        rng = np.random.default_rng(seed)
        queries = [q for i, p in enumerate(originals) for q in copies_of(p, rng, copies, folder, f"{i:03d}")]
        owner = np.repeat(np.arange(len(originals)), copies)
        query_vectors = model.embed_images([images.load_image(q, side) for q, _ in queries])
        for mode in (FAITHFUL, FAST):
            previews.counts.clear()
            limits = ImageLimits(previews=mode)
            reduced = model.embed_images([images.decode(Path(p).read_bytes(), side, limits) for p in originals])
            used = previews.counts.snapshot()
            cosines = np.sum(reduced * full, axis=1)
            recall = {
                name: bench_retrieval.recall_at_1(np.vstack([vectors, others]), query_vectors, owner)
                for name, vectors in (("reduced", reduced), ("full", full))
            }
            rows.append(
                {
                    "label": pset.kind.label,
                    "mode": mode,
                    "originals": len(originals),
                    "queries": len(queries),
                    "used": ", ".join(f"{k} {v}" for k, v in sorted(used.items())) or "primary",
                    "min": float(cosines.min()),
                    "mean": float(cosines.mean()),
                    **recall,
                }
            )
    return rows


def report_quality(rows: list[dict[str, object]], distractors: int) -> None:
    print(
        "\n| originals | previews | decoded (reduced) | cosine min | **cosine mean** | copies | recall@1 reduced | "
        "recall@1 full | difference (points) |\n| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |"
    )
    for r in rows:
        reduced, full = float(r["reduced"]), float(r["full"])  # type: ignore[arg-type]
        print(
            f"| {r['originals']} {r['label']} | {r['mode']} | {r['used']} | {r['min']:.4f} | **{r['mean']:.4f}** | {r['queries']} | "
            f"{reduced:.1%} | {full:.1%} | {100 * (reduced - full):+.1f} |"
        )
    print(f"\n(recall@1 among the originals and {distractors} other real pictures; EfficientNet-Lite0 fp32)")


# -- real camera files ----------------------------------------------------------------------

REAL_SUFFIXES = (".jpg", ".jpeg", ".heic", ".heif")


@dataclass
class RealRow:
    name: str
    size: tuple[int, int]
    ms: dict[str, float]  # mode -> CPU ms of ``images.decode``
    source: dict[str, str]  # mode -> what it decoded
    cosine: dict[str, float]  # mode -> cosine of its vector to the full decode's ("off")


def measure_real(folder: Path, repeats: int) -> list[RealRow]:
    """Every JPEG and HEIC under ``folder`` decoded in each ``[images] previews`` mode: CPU ms
    (``time.process_time``, the least of ``repeats``: libheif decodes on threads of its own),
    the source, the cosine to the full decode (EfficientNet-Lite0 real weights, fp32)."""
    model = extractors.create("efficientnet", {"precision": "fp32", "device": "cpu", "engine": "torch"})
    side = model.decode_side
    rows = []
    for path in sorted(p for p in folder.rglob("*") if p.suffix.lower() in REAL_SUFFIXES and p.is_file()):
        data = path.read_bytes()
        ms: dict[str, float] = {}
        source: dict[str, str] = {}
        pictures = []
        try:
            for mode in PREVIEW_MODES:
                spent = []
                for _ in range(repeats):
                    previews.counts.clear()
                    start = time.process_time()
                    picture = images.decode(data, side, ImageLimits(previews=mode))
                    spent.append(time.process_time() - start)
                ms[mode], source[mode] = min(spent) * 1e3, used_source()
                pictures.append(picture)
            with Image.open(path) as im:
                size = im.size
        except Exception as exc:  # a sample the daemon cannot read either: named, not counted
            print(f"skipped {path.name}: {exc}", file=sys.stderr)
            continue
        vectors = model.embed_images(pictures)
        full = vectors[PREVIEW_MODES.index("off")]
        cosine = {m: float(v @ full / np.linalg.norm(v) / np.linalg.norm(full)) for m, v in zip(PREVIEW_MODES, vectors)}
        rows.append(RealRow(path.name, size, ms, source, cosine))
    previews.counts.clear()
    return rows


def report_real(rows: list[RealRow]) -> None:
    """Per file, then per mode and source: files, mean and min cosine, mean CPU ms."""
    print("\n| file | size | " + " | ".join(f"{m}: source, ms, cosine" for m in PREVIEW_MODES) + " |")
    print("| --- | --- | " + " | ".join("---" for _ in PREVIEW_MODES) + " |")
    for r in rows:
        cells = " | ".join(f"{r.source[m]}, {r.ms[m]:.1f}, {r.cosine[m]:.4f}" for m in PREVIEW_MODES)
        print(f"| {r.name} | {r.size[0]}x{r.size[1]} | {cells} |")
    print(
        "\n| previews | decoded | files | cosine mean | cosine min | CPU ms mean |\n| --- | --- | ---: | ---: | ---: | ---: |"
    )
    for mode in PREVIEW_MODES:
        for source in sorted({r.source[mode] for r in rows}):
            chosen = [r for r in rows if r.source[mode] == source]
            cosines = [r.cosine[mode] for r in chosen]
            print(
                f"| {mode} | {source} | {len(chosen)} | {statistics.mean(cosines):.4f} | {min(cosines):.4f} | "
                f"{statistics.mean(r.ms[mode] for r in chosen):.1f} |"
            )
        every = [r.cosine[mode] for r in rows]
        print(
            f"| {mode} | **all** | {len(rows)} | **{statistics.mean(every):.4f}** | {min(every):.4f} | "
            f"**{statistics.mean(r.ms[mode] for r in rows):.1f}** |"
        )


# -- main ------------------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--sections", help="which of stages, e2e, quality, real (default: the first three, or real with --real)"
    )
    parser.add_argument("--real", type=Path, help="a folder of real camera JPEGs and HEICs: the real section's files")
    parser.add_argument("--kinds", default=",".join(KINDS), help="which of " + ", ".join(KINDS))
    parser.add_argument("--models", default=",".join(MODELS), help="which of " + ", ".join(MODELS))
    parser.add_argument("--count", type=int, default=64, help="files of each kind end to end (two batches of 32)")
    parser.add_argument("--unique", type=int, default=24, help="distinct pictures among them (the rest: copies)")
    parser.add_argument("--stage-count", type=int, default=8, help="of those, how many the stage table times")
    parser.add_argument("--quality-count", type=int, default=24, help="originals of each kind for cosine and recall")
    parser.add_argument("--copies", type=int, default=8, help="edited copies of each original")
    parser.add_argument("--distractors", type=int, default=300, help="other real pictures in the recall index")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--scale", type=float, default=1.0, help="shrink every size (tests only: <1 means nothing)")
    parser.add_argument("--seed", type=int, default=3100)
    parser.add_argument(
        "--heic-quality",
        type=int,
        default=50,
        help="phone HEIC quality: 50 gives an iPhone's 2.1 MB for 12 MP with this grain (80: 9.8 MB)",
    )
    parser.add_argument(
        "--remake", action="store_true", help="write the pictures again (after a change to tests/heif_files.py, ...)"
    )
    parser.add_argument("--data-dir", default=os.path.join(tempfile.gettempdir(), "imgsearchd-bench-camera"))
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    sections = set((args.sections or ("real" if args.real else "stages,e2e,quality")).split(","))
    if "real" in sections and args.real is None:
        parser.error("the real section needs --real FOLDER")
    kinds = [KINDS[k] for k in args.kinds.split(",") if k]
    names = [m for m in args.models.split(",") if m]
    data_dir = Path(args.data_dir)
    unique = max(args.unique, args.stage_count, args.quality_count)
    count = max(args.count, unique)
    synthetic = bool(sections - {"real"})
    sets = (
        make_sets(data_dir / "pictures", kinds, count, unique, args.seed, args.scale, args.heic_quality, args.remake)
        if synthetic
        else {}
    )
    work = data_dir / "work"
    work.mkdir(parents=True, exist_ok=True)
    load_before = os.getloadavg()
    made = {n: extractors.create(n, {"device": "cpu", **MODELS[n]}) for n in names} if synthetic else {}
    print(f"### Result ({datetime.now(UTC):%Y-%m-%d %H:%M} UTC, bench/bench_camera.py)\n")
    print(
        f"Machine: {os.cpu_count()} CPUs ({cpu_model()}; native bf16: "
        f"{precision.native_bf16(precision.cpu_flags()) or 'no'}), Python {platform.python_version()}, "
        f"torch {torch.__version__}; precision in use: "
        + (", ".join(f"{n} {e.precision.used}" for n, e in made.items()) or "efficientnet fp32")
        + f"; repeats {args.repeats}; load average before: {load_before[0]:.2f} / {load_before[1]:.2f} (1 / 5 min)"
    )
    for pset in sets.values():
        print(f"- {pset.kind.label}: full {describe(pset.full)}; 0.5 MP {describe(pset.small)}")
    if synthetic:
        print(
            f"- {unique} distinct pictures of each kind, the rest byte-distinct copies; HEIC quality {args.heic_quality}"
        )
    if "stages" in sections:
        print(
            f"\n**Stages**: CPU ms per picture (process CPU time), median of {args.repeats}, decode side "
            f"{max(e.decode_side for e in made.values())}"
        )
        report_stages(measure_stages(sets, made, args.stage_count, args.repeats, work), names)
    if "e2e" in sections:
        print("\n**`imgsearchd index`**: full size against 0.5 MP, img/s (median (range) of repeats; ratio per repeat)")
        trimmed = {k: PictureSet(s.kind, s.full[: args.count], s.small[: args.count]) for k, s in sets.items()}
        report_e2e(measure_e2e(trimmed, made, args.repeats, work))
    if "quality" in sections:
        print("\n**Reduced against full decode** (EfficientNet-Lite0, real weights, fp32)")
        rows = measure_quality(sets, args.quality_count, args.copies, args.distractors, work, args.seed)
        report_quality(rows, args.distractors)
    if "real" in sections:
        print(
            f"\n**Real camera files** ({args.real.name}): each decoded per ``[images] previews`` mode at "
            f"EfficientNet's decode side; CPU ms of ``images.decode`` (process time, least of {args.repeats}); cosine to the full "
            "decode's vector (EfficientNet-Lite0, real weights, fp32)"
        )
        report_real(measure_real(args.real, args.repeats))
    after = os.getloadavg()
    print(f"\nLoad average after: {after[0]:.2f} / {after[1]:.2f} (1 / 5 min)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
