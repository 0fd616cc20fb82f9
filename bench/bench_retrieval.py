"""Retrieval quality on real photos: copy detection per preprocessing, and whether reduced precision changes it.

The data set is made from real photographs that install without a download: scikit-image's
sample photos, and, when the Debian packages are installed, the photographs in
``lomiri-wallpapers-16.04`` (CC-BY-4.0 / CC-BY-SA-4.0 / CC0-1.0) and ``mate-backgrounds``
(nature/, GPL-2+)::

    apt-get install lomiri-wallpapers-16.04 mate-backgrounds   # optional: 26 more photos

Each photo is cut into non-overlapping tiles of various sizes (a random recursive grid
split); the database is a few hundred of those tiles, saved as JPEG quality 92. Each
database picture gets query copies made from its file: a random crop keeping 70-90% of
each side, a 0.5x rescale, brightness +-30%, a JPEG quality 55 re-encode, two
combinations, and a band across the whole picture keeping 40-55% of the other side
(panorama-like or portrait-like: the aspect ratio changes about 2x). Everything is seeded,
made once and kept in ``--data-dir`` with the vectors of each model, preprocessing and
precision, so a rerun only does the (cheap) search.

Preprocessing (issue 12): each ``--models`` extractor embeds the set with each
``--preprocess`` framing (extractors/framing.py: crop, squash, letterbox; letterbox-black is
letterbox padded with black instead of the model's mean colour, to measure the fill), in
fp32; the table gives copy recall@1/5/10 against the crop. EfficientNet-Lite0 has real
weights offline; ResNet-50 and CLIP run with seeded random weights unless ``--resnet-weights``
/ ``--clip-pretrained`` name real ones, and random weights decide nothing about a real model.

Precision: the first model at its default preprocessing, fp32 against ``--precision``
(the daemon's own ``precision`` setting, checked at load as the daemon does; ``none`` skips).
Metrics, exact cosine search in numpy: copy recall@1 (the nearest database picture to a
copy is its original), top-10 neighbour overlap between two indexes (every database
picture as the query, itself left out), the cosine between the vectors that two precisions
give one picture, and how retrieval degrades when vectors drift to a given cosine.

Run: ``.venv/bin/python bench/bench_retrieval.py`` (the first run embeds 1,200 pictures in each
preprocessing and precision: 40 img/s in fp32 for EfficientNet-Lite0; bf16 has no native support on an AVX2-only CPU and is emulated: 1.9 img/s against
40 img/s for fp32 on the shared 2-core VM, 11 minutes in all; a rerun with the vectors cached
takes seconds). ``--diagnose`` adds where the bf16 drift comes from, per model part, with
bf16 emulated in fp32 (about 2 minutes).
"""

from __future__ import annotations

import os

# Before torch loads OpenMP: on a shared 2-core machine, spinning OpenMP workers stall the
# many small bf16 kernels badly (a batch of 32 took 80-110 s instead of about 10 s while
# another process ran). Speed is not what this benchmark measures; set it to override.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import glob
import hashlib
import importlib.metadata
import io
import json
import logging
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageEnhance

from bench_indexing import cpu_model
from imgsearchd import extractors
from imgsearchd.extractors import framing
from imgsearchd.extractors.framing import LetterboxTensor
from imgsearchd.media.images import load_image

DATA_VERSION = 2  # bump when the way the pictures are made changes
ADAPTER_VERSION = 2  # bump when make_extractor changes what a precision computes
DB_QUALITY = 92
COPY_QUALITY = 95  # copies whose transform is not a JPEG re-encode are stored at this quality
MAX_SOURCE_SIDE = 2048  # wallpapers (up to 5312 px) are shrunk to this first
MIN_TILE_SIDE = 192
DRIFT_COSINES = (0.999, 0.995, 0.99, 0.98, 0.97, 0.95, 0.9)
TARGET_RECALL_POINTS = 1.0
TARGET_OVERLAP = 0.95
K = 10


# -- the photos -----------------------------------------------------------------------


@dataclass(frozen=True)
class Photo:
    """One real photograph the database is cut from, and where it comes from."""

    name: str
    origin: str  # the collection, as printed in the sources table
    licence: str
    load: Callable[[], np.ndarray]  # (H, W, 3) uint8


# scikit-image's sample photographs that ship in its wheel (no download). The stereo pair's
# right picture, the horse silhouette and the synthetic samples are left out.
SKIMAGE_PHOTOS = (
    "astronaut",
    "chelsea",
    "coffee",
    "rocket",
    "stereo_motorcycle",
    "immunohistochemistry",
    "hubble_deep_field",
    "retina",
    "camera",
    "coins",
    "moon",
    "page",
    "text",
    "grass",
    "gravel",
    "brick",
    "clock",
    "cell",
    "microaneurysms",
)
# (Debian package, file glob, licence). umang_by_Abhishek_Mudgal.jpg is a colour gradient,
# not a photograph, and is left out.
DEBIAN_PHOTOS = (
    (
        "lomiri-wallpapers-16.04",
        "/usr/share/backgrounds/*_by_*.jpg",
        "CC-BY-4.0, CC-BY-SA-4.0 or CC0-1.0 per photo (/usr/share/doc/lomiri-wallpapers-16.04/copyright)",
    ),
    (
        "mate-backgrounds",
        "/usr/share/backgrounds/mate/nature/*.jpg",
        "GPL-2+ (/usr/share/doc/mate-backgrounds/copyright)",
    ),
)
NOT_PHOTOS = {"umang_by_Abhishek_Mudgal.jpg"}


def _rgb(picture: np.ndarray) -> np.ndarray:
    if picture.dtype != np.uint8:
        picture = (255 * (picture - picture.min()) / max(float(np.ptp(picture)), 1e-9)).astype(np.uint8)
    if picture.ndim == 2:
        picture = np.stack([picture] * 3, axis=-1)
    return np.ascontiguousarray(picture[..., :3])


def _skimage_loader(name: str) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        import skimage.data

        picture = getattr(skimage.data, name)()
        return _rgb(picture[0] if isinstance(picture, tuple) else picture)

    return load


def _file_loader(path: str) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        with Image.open(path) as im:
            im.draft("RGB", (MAX_SOURCE_SIDE, MAX_SOURCE_SIDE))
            return _rgb(np.asarray(im.convert("RGB")))

    return load


def photo_sources() -> list[Photo]:
    """Every real photograph available here, in a fixed order."""
    photos = []
    try:
        import skimage
        import skimage.data

        origin = f"scikit-image {importlib.metadata.version('scikit-image')} sample data"
        for name in SKIMAGE_PHOTOS:
            if hasattr(skimage.data, name):
                photos.append(Photo(f"skimage:{name}", origin, "see skimage/data/README.txt", _skimage_loader(name)))
    except ImportError:
        pass
    for package, pattern, licence in DEBIAN_PHOTOS:
        for path in sorted(glob.glob(pattern)):
            if os.path.basename(path) not in NOT_PHOTOS:
                photos.append(
                    Photo(f"{package}:{os.path.basename(path)}", f"Debian {package}", licence, _file_loader(path))
                )
    if not photos:
        raise SystemExit("no real photos available: install scikit-image (and optionally the Debian packages above)")
    return photos


# -- database tiles -----------------------------------------------------------------------

Box = tuple[int, int, int, int]  # left, top, right, bottom


def split_tiles(box: Box, rng: np.random.Generator, min_side: int = MIN_TILE_SIDE, depth: int = 0) -> list[Box]:
    """Non-overlapping tiles covering ``box``: a random a x b grid, each cell split again or kept.

    The first level always splits when it can; deeper cells stop with growing probability,
    so one photo gives tiles of several sizes and shapes, none smaller than ``min_side``.
    """
    left, top, right, bottom = box
    w, h = right - left, bottom - top
    grids = [
        (a, b) for a in (1, 2, 3) for b in (1, 2, 3) if (a, b) != (1, 1) and w // a >= min_side and h // b >= min_side
    ]
    if not grids or (depth > 0 and rng.random() < 0.3 * depth):
        return [box]
    a, b = grids[int(rng.integers(len(grids)))]
    xs = [left + (w * i) // a for i in range(a + 1)]
    ys = [top + (h * j) // b for j in range(b + 1)]
    tiles = []
    for i in range(a):
        for j in range(b):
            tiles += split_tiles((xs[i], ys[j], xs[i + 1], ys[j + 1]), rng, min_side, depth + 1)
    return tiles


def _flat(tile: np.ndarray) -> bool:
    """Almost one colour (clear sky, blank paper): no picture anyone would search for."""
    grey = tile[::4, ::4].astype(np.float32).mean(axis=2)
    return float(grey.std()) < 10.0


def _jpeg(picture: Image.Image, quality: int) -> bytes:
    buf = io.BytesIO()
    picture.save(buf, "JPEG", quality=quality)
    return buf.getvalue()


# Copy transforms: each takes the original (decoded from its file) and a generator, and
# returns the copy and the JPEG quality it is stored at.
Transform = Callable[[Image.Image, np.random.Generator], tuple[Image.Image, int]]


def _crop(picture: Image.Image, rng: np.random.Generator) -> Image.Image:
    """A random crop keeping 70-90% of each side."""
    w, h = picture.size
    cw, ch = int(w * rng.uniform(0.7, 0.9)), int(h * rng.uniform(0.7, 0.9))
    x, y = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
    return picture.crop((x, y, x + cw, y + ch))


def _band(picture: Image.Image, rng: np.random.Generator, wide: bool) -> Image.Image:
    """A band across the whole picture keeping 40-55% of the other side: a panorama-like strip
    (``wide``) or a portrait one, the aspect ratio changed about 2x as a phone's crop does."""
    w, h = picture.size
    if wide:
        ch = max(1, int(h * rng.uniform(0.4, 0.55)))
        y = int(rng.integers(0, h - ch + 1))
        return picture.crop((0, y, w, y + ch))
    cw = max(1, int(w * rng.uniform(0.4, 0.55)))
    x = int(rng.integers(0, w - cw + 1))
    return picture.crop((x, 0, x + cw, h))


def _half(picture: Image.Image, rng: np.random.Generator) -> Image.Image:
    return picture.resize((max(1, picture.width // 2), max(1, picture.height // 2)), Image.Resampling.BILINEAR)


def _brightness(picture: Image.Image, rng: np.random.Generator) -> Image.Image:
    return ImageEnhance.Brightness(picture).enhance(0.7 if rng.random() < 0.5 else 1.3)


TRANSFORMS: dict[str, Transform] = {
    "crop 70-90%": lambda p, r: (_crop(p, r), COPY_QUALITY),
    "rescale 0.5x": lambda p, r: (_half(p, r), COPY_QUALITY),
    "brightness +-30%": lambda p, r: (_brightness(p, r), COPY_QUALITY),
    "JPEG q55": lambda p, r: (p, 55),
    "crop+0.5x+q55": lambda p, r: (_half(_crop(p, r), r), 55),
    "crop+bright+q55": lambda p, r: (_brightness(_crop(p, r), r), 55),
    "wide band (panorama-like)": lambda p, r: (_band(p, r, True), COPY_QUALITY),
    "tall band (portrait-like)": lambda p, r: (_band(p, r, False), COPY_QUALITY),
}


@dataclass
class CopySet:
    """A copy-detection set on disk: database pictures, and copies that each name their original."""

    folder: Path
    db_paths: list[str]
    db_source: list[str]  # the photo each database picture was cut from
    query_paths: list[str]
    query_owner: np.ndarray  # index into db_paths
    query_kind: list[str]
    sources: list[dict[str, Any]]  # the photos used: name, origin, licence, tiles
    stamp: str  # changes whenever the pictures would

    def describe(self) -> str:
        sides = []
        for path in self.db_paths:
            with Image.open(path) as im:
                sides.append(min(im.size))
        return (
            f"{len(self.db_paths)} database pictures (shorter side {min(sides)}-{max(sides)} px, median "
            f"{statistics.median(sides):.0f}) cut from {len(self.sources)} photos; {len(self.query_paths)} copies"
        )


def make_copy_set(folder: Path, db_count: int, copies_per_image: int, seed: int) -> CopySet:
    """The copy-detection set in ``folder``, made once and reused while its spec is the same."""
    spec = {
        "version": DATA_VERSION,
        "db": db_count,
        "copies": copies_per_image,
        "seed": seed,
        "photos": [p.name for p in photo_sources()],
    }
    stamp = hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]
    manifest_path = folder / "manifest.json"
    if manifest_path.exists():
        manifest = json.loads(manifest_path.read_text())
        if manifest.get("stamp") == stamp and all(
            os.path.exists(folder / e["file"]) for e in manifest["db"] + manifest["queries"]
        ):
            return _copy_set(folder, manifest)
    folder.mkdir(parents=True, exist_ok=True)
    photos = photo_sources()
    rng = np.random.default_rng(seed)
    # Every photo's usable tiles, shuffled; then round-robin over the photos so each gives
    # about the same number and the big ones fill up what the small ones cannot.
    pools: list[list[tuple[Photo, np.ndarray, Box]]] = []
    for photo in photos:
        pixels = photo.load()
        scale = MAX_SOURCE_SIDE / max(pixels.shape[:2])
        if scale < 1:
            pil = Image.fromarray(pixels)
            pixels = np.asarray(
                pil.resize((round(pil.width * scale), round(pil.height * scale)), Image.Resampling.LANCZOS)
            )
        boxes = split_tiles((0, 0, pixels.shape[1], pixels.shape[0]), rng)
        usable = [b for b in boxes if not _flat(pixels[b[1] : b[3], b[0] : b[2]])]
        order = rng.permutation(len(usable))
        pools.append([(photo, pixels, usable[i]) for i in order])
    chosen: list[tuple[Photo, np.ndarray, Box]] = []
    while len(chosen) < db_count and any(pools):
        for pool in pools:
            if pool and len(chosen) < db_count:
                chosen.append(pool.pop())
    if len(chosen) < db_count:
        raise SystemExit(f"only {len(chosen)} distinct tiles in the available photos; ask for fewer with --db")
    kinds = list(TRANSFORMS)
    db_entries, query_entries = [], []
    for i, (photo, pixels, box) in enumerate(chosen):
        picture_rng = np.random.default_rng([seed, i])
        tile = Image.fromarray(pixels[box[1] : box[3], box[0] : box[2]])
        short = min(tile.size)
        target = min(picture_rng.uniform(256, 640), 1.5 * short)
        size = (max(1, round(tile.width * target / short)), max(1, round(tile.height * target / short)))
        name = f"db/{i:04d}.jpg"
        (folder / "db").mkdir(exist_ok=True)
        (folder / name).write_bytes(_jpeg(tile.resize(size, Image.Resampling.LANCZOS), DB_QUALITY))
        db_entries.append({"file": name, "photo": photo.name, "box": box, "size": size})
        with Image.open(folder / name) as im:
            original = im.convert("RGB")  # copies are made from the file, as anyone would
        for j in range(copies_per_image):
            kind = kinds[(i * copies_per_image + j) % len(kinds)]
            copy, quality = TRANSFORMS[kind](original, picture_rng)
            qname = f"queries/{i:04d}_{j}.jpg"
            (folder / "queries").mkdir(exist_ok=True)
            (folder / qname).write_bytes(_jpeg(copy, quality))
            query_entries.append({"file": qname, "owner": i, "kind": kind})
    used = {photo.name for photo, _, _ in chosen}
    manifest = {
        "stamp": stamp,
        "spec": spec,
        "sources": [
            {
                "name": p.name,
                "origin": p.origin,
                "licence": p.licence,
                "tiles": sum(e["photo"] == p.name for e in db_entries),
            }
            for p in photos
            if p.name in used
        ],
        "db": db_entries,
        "queries": query_entries,
    }
    manifest_path.write_text(json.dumps(manifest, indent=1))
    return _copy_set(folder, manifest)


def _copy_set(folder: Path, manifest: dict[str, Any]) -> CopySet:
    return CopySet(
        folder=folder,
        db_paths=[str(folder / e["file"]) for e in manifest["db"]],
        db_source=[e["photo"] for e in manifest["db"]],
        query_paths=[str(folder / e["file"]) for e in manifest["queries"]],
        query_owner=np.array([e["owner"] for e in manifest["queries"]], dtype=np.int64),
        query_kind=[e["kind"] for e in manifest["queries"]],
        sources=manifest["sources"],
        stamp=manifest["stamp"],
    )


# -- extractors and vectors -----------------------------------------------------------------

VARIANTS = ("crop", "squash", "letterbox", "letterbox-black")
MODELS = ("efficientnet", "resnet", "clip")


@dataclass(frozen=True)
class Spec:
    """What made a set of vectors: the extractor, its preprocessing variant and its precision."""

    model: str
    variant: str  # a framing.MODES entry, or letterbox-black
    precision: str
    settings: tuple[tuple[str, str], ...] = ()  # weights settings (resnet weights, clip pretrained)

    @property
    def label(self) -> str:
        return f"{self.model}-{self.variant}-{self.precision}"


def make_extractor(spec: Spec, batch_size: int) -> extractors.Extractor:
    """The daemon's own extractor for ``spec``: ``preprocess`` and ``precision`` as the config sets them
    (the precision checked against fp32 at load, as the daemon does)."""
    mode = "letterbox" if spec.variant == "letterbox-black" else spec.variant
    # torch: a precision here is torch's (OpenVINO's are in bench_engines.py), and emulated_vectors
    # and diagnose read the torch model
    settings = {"device": "cpu", "engine": "torch", "batch_size": batch_size, "precision": spec.precision}
    settings["preprocess"] = mode
    ext = extractors.create(spec.model, {**settings, **dict(spec.settings)})
    if spec.variant == "letterbox-black":
        box = ext._transform  # type: ignore[attr-defined]
        assert isinstance(box, LetterboxTensor)
        norm = box.normalized
        ext._transform = LetterboxTensor(box.box.side, box.resample, norm.mean, norm.std, fill=(0, 0, 0))  # type: ignore[attr-defined]
    if ext.precision.used != spec.precision:
        print(f"{spec.label}: runs {ext.precision.used}: {ext.precision.reason}", file=sys.stderr)
    return ext


def embed_paths(ext: extractors.Extractor, paths: Sequence[str], progress: str = "") -> np.ndarray:
    """Unit vectors for image files, decoded the way the daemon decodes them."""
    parts = []
    for start in range(0, len(paths), ext.batch_size):
        chunk = paths[start : start + ext.batch_size]
        batch = torch.stack([ext.preprocess(load_image(p, ext.decode_side)) for p in chunk])
        parts.append(ext.embed(batch))
        if progress:
            print(f"\r{progress}: {start + len(chunk)}/{len(paths)}", end="", file=sys.stderr, flush=True)
    if progress:
        print(file=sys.stderr)
    return np.concatenate(parts) if parts else np.zeros((0, ext.dim), np.float32)


@dataclass
class Vectors:
    db: np.ndarray
    queries: np.ndarray
    img_s: float  # embedding rate when made (nan when read from the cache)
    model_id: str = ""
    precision: str = ""  # the precision that really ran


def vectors_for(copy_set: CopySet, spec: Spec, batch_size: int) -> Vectors:
    """One spec's vectors for the whole set, cached next to the pictures."""
    key = f"{copy_set.stamp}-{spec}-a{ADAPTER_VERSION}-torch{torch.__version__}"
    path = copy_set.folder / f"vectors-{spec.label}.npz"
    if path.exists():
        with np.load(path) as saved:
            if str(saved["key"]) == key:
                return Vectors(
                    saved["db"], saved["queries"], float("nan"), str(saved["model_id"]), str(saved["precision"])
                )
    ext = make_extractor(spec, batch_size)
    start = time.perf_counter()
    db = embed_paths(ext, copy_set.db_paths, f"{spec.label} database")
    queries = embed_paths(ext, copy_set.query_paths, f"{spec.label} copies")
    rate = (len(db) + len(queries)) / (time.perf_counter() - start)
    used = ext.precision.used
    model_id = ext.model_id + (" with black padding (bench only)" if spec.variant == "letterbox-black" else "")
    np.savez(path, key=np.array(key), db=db, queries=queries, model_id=np.array(model_id), precision=np.array(used))
    return Vectors(db, queries, rate, model_id, used)


# -- metrics (exact cosine search; every vector is unit length) -------------------------------


def top_k(index: np.ndarray, queries: np.ndarray, k: int, exclude: np.ndarray | None = None) -> np.ndarray:
    """(Q, k) index rows nearest each query, best first; ``exclude[q]`` (a row) is never returned."""
    scores = queries @ index.T
    if exclude is not None:
        scores[np.arange(len(queries)), exclude] = -np.inf
    k = min(k, index.shape[0] - (exclude is not None))
    part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    order = np.take_along_axis(scores, part, axis=1).argsort(axis=1)[:, ::-1]
    return np.take_along_axis(part, order, axis=1)


def copy_hits(index: np.ndarray, queries: np.ndarray, owner: np.ndarray) -> np.ndarray:
    """Per copy: is its original the nearest database picture?"""
    return np.asarray((queries @ index.T).argmax(axis=1) == owner)


def recall_at_1(index: np.ndarray, queries: np.ndarray, owner: np.ndarray) -> float:
    return float(copy_hits(index, queries, owner).mean())


def neighbour_overlap(
    index_a: np.ndarray, queries_a: np.ndarray, index_b: np.ndarray, queries_b: np.ndarray, k: int = K
) -> float:
    """Mean |top-k_A ∩ top-k_B| / k, row i of each query set asking its own index, row i left out.

    With the database as the queries (row i is picture i), this is how much of each
    picture's neighbourhood survives a change of index.
    """
    self_rows = np.arange(len(queries_a))
    a = top_k(index_a, queries_a, k, self_rows)
    b = top_k(index_b, queries_b, k, self_rows)
    return float(np.mean([len(set(x) & set(y)) / a.shape[1] for x, y in zip(a, b)]))


def pair_cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.asarray((a * b).sum(axis=1))


def copy_margins(index: np.ndarray, queries: np.ndarray, owner: np.ndarray) -> np.ndarray:
    """Per copy: its original's score minus the best other picture's (< 0: a miss)."""
    scores = queries @ index.T
    rows = np.arange(len(queries))
    true = scores[rows, owner].copy()
    scores[rows, owner] = -np.inf
    return np.asarray(true - scores.max(axis=1))


DRIFT_MODELS = ("isotropic", "feature-shaped", "measured error scaled")


def drift(
    vectors: np.ndarray,
    cosine: float,
    rng: np.random.Generator,
    model: str,
    features: np.ndarray | None = None,
    errors: np.ndarray | None = None,
) -> np.ndarray:
    """Unit vectors whose cosine to each row of ``vectors`` is exactly ``cosine``.

    The drift direction, taken orthogonal to each vector: ``isotropic``, uniform over the
    sphere (in 1280 dimensions mostly orthogonal to every other picture, so the mildest);
    ``feature-shaped``, a random mix of the centred ``features`` (noise along the directions
    pictures really differ in: moves neighbour scores most); ``measured error scaled``, the
    measured error of the reduced precision, ``errors`` = reduced - fp32, scaled up or down
    (what a worse precision would do if it erred the same way).
    """
    if model == "isotropic":
        noise = rng.standard_normal(vectors.shape)
    elif model == "feature-shaped":
        assert features is not None
        centred = features - features.mean(axis=0)
        noise = rng.standard_normal((len(vectors), len(centred))) @ centred
    elif model == "measured error scaled":
        assert errors is not None
        noise = errors.astype(np.float64).copy()
        tiny = np.linalg.norm(noise, axis=1) < 1e-9
        noise[tiny] = rng.standard_normal((int(tiny.sum()), vectors.shape[1]))
    else:
        raise ValueError(model)
    v = vectors.astype(np.float64)
    noise -= (noise * v).sum(axis=1, keepdims=True) * v
    noise /= np.linalg.norm(noise, axis=1, keepdims=True)
    out = cosine * v + np.sqrt(1.0 - cosine**2) * noise
    return (out / np.linalg.norm(out, axis=1, keepdims=True)).astype(np.float32)


# -- the comparisons ---------------------------------------------------------------------------


def percent(x: float) -> str:
    return f"{100 * x:.2f}%"


def points(a: float, b: float) -> float:
    """a - b in percentage points, rounded so that 1.00 compares as 1.00."""
    return round(100 * (a - b), 6)


def cos_stats(values: np.ndarray) -> str:
    return f"{values.min():.6f} | {np.percentile(values, 1):.6f} | {values.mean():.6f}"


def compare(copy_set: CopySet, full: Vectors, low: Vectors, low_name: str, seed: int) -> dict[str, Any]:
    """Every table of the precision comparison; prints them, returns the raw numbers."""
    owner = copy_set.query_owner
    n_db = len(full.db)
    rng = np.random.default_rng(seed)
    half = np.zeros(n_db, dtype=bool)
    half[rng.permutation(n_db)[: n_db // 2]] = True  # these database pictures hold reduced vectors
    mixed = np.where(half[:, None], low.db, full.db)
    results: dict[str, Any] = {}

    base_hits = copy_hits(full.db, full.queries, owner)
    base = float(base_hits.mean())
    cases = [
        ("fp32", "fp32", full.db, full.queries),
        (low_name, low_name, low.db, low.queries),
        ("fp32", low_name, full.db, low.queries),
        (low_name, "fp32", low.db, full.queries),
        (f"half {low_name} / half fp32", "fp32", mixed, full.queries),
        (f"half {low_name} / half fp32", low_name, mixed, low.queries),
    ]
    print(
        f"\nCopy detection: recall@1 of {len(owner)} copies against {n_db} database pictures (exact cosine). "
        f"Against the fp32 index + fp32 copies: 'gained / lost' = copies found / missed only here, "
        f"'top-1 changed' = copies whose nearest picture differs.\n"
    )
    print(
        "| index vectors | copy vectors | recall@1 | vs fp32 (points) | gained / lost | top-1 changed | within 1 point |"
    )
    print("| --- | --- | ---: | ---: | ---: | ---: | --- |")
    base_top = (full.queries @ full.db.T).argmax(axis=1)
    results["recall"] = []
    for index_name, query_name, index, queries in cases:
        hits = copy_hits(index, queries, owner)
        top = (queries @ index.T).argmax(axis=1)
        delta = points(float(hits.mean()), base)
        gained, lost = int((hits & ~base_hits).sum()), int((~hits & base_hits).sum())
        changed = int((top != base_top).sum())
        print(
            f"| {index_name} | {query_name} | {percent(float(hits.mean()))} | {delta:+.2f} | +{gained} / -{lost} | "
            f"{changed} | {'yes' if abs(delta) <= TARGET_RECALL_POINTS else 'NO'} |"
        )
        results["recall"].append(
            {
                "index": index_name,
                "queries": query_name,
                "recall": float(hits.mean()),
                "gained": gained,
                "lost": lost,
                "top1_changed": changed,
            }
        )

    print(f"\nRecall@1 by copy kind (fp32 index + fp32 copies, {low_name} index + {low_name} copies):\n")
    print(f"| copy kind | copies | fp32 | {low_name} |")
    print("| --- | ---: | ---: | ---: |")
    low_hits = copy_hits(low.db, low.queries, owner)
    kinds = np.array(copy_set.query_kind)
    for kind in TRANSFORMS:
        sel = kinds == kind
        if sel.any():
            print(
                f"| {kind} | {int(sel.sum())} | {percent(float(base_hits[sel].mean()))} | "
                f"{percent(float(low_hits[sel].mean()))} |"
            )

    print(f"\nNeighbours: top-{K} overlap, every database picture as the query (itself left out).\n")
    print("| index A (+ its queries) | index B (+ its queries) | top-10 overlap | target |")
    print("| --- | --- | ---: | --- |")
    overlaps = [
        ("fp32", f"{low_name}", full.db, full.db, low.db, low.db),
        ("fp32", f"half {low_name} / half fp32, fp32 queries", full.db, full.db, mixed, full.db),
        ("fp32", f"half {low_name} / half fp32, {low_name} queries", full.db, full.db, mixed, low.db),
    ]
    results["overlap"] = []
    for a_name, b_name, ia, qa, ib, qb in overlaps:
        value = neighbour_overlap(ia, qa, ib, qb)
        verdict = "met" if value >= TARGET_OVERLAP else "MISSED"
        print(f"| {a_name} | {b_name} | {value:.4f} | {verdict} (>= {TARGET_OVERLAP}) |")
        results["overlap"].append({"a": a_name, "b": b_name, "overlap": value})

    # Does a mixed index favour vectors of the query's own precision? Without a bias, the
    # reduced half's share of every top-10 is the same whatever the query's precision.
    self_rows = np.arange(n_db)
    share = {}
    for name, queries in (("fp32", full.db), (low_name, low.db)):
        share[name] = float(half[top_k(mixed, queries, K, self_rows)].mean())
    expected = float(half[top_k(full.db, full.db, K, self_rows)].mean())
    print(
        f"\nMixed index bias: share of the {low_name} half in the top-{K} (database pictures as queries): "
        f"fp32 queries {percent(share['fp32'])}, {low_name} queries {percent(share[low_name])}; "
        f"the same pictures in the all-fp32 index: {percent(expected)}."
    )
    results["mixed_share"] = {**share, "all_fp32": expected}

    cos_db = pair_cosines(full.db, low.db)
    cos_q = pair_cosines(full.queries, low.queries)
    both = np.concatenate([cos_db, cos_q])
    print(f"\nCosine between the fp32 and the {low_name} vector of the same picture:\n")
    print("| pictures | count | min | 1st percentile | mean |")
    print("| --- | ---: | ---: | ---: | ---: |")
    print(f"| database | {len(cos_db)} | {cos_stats(cos_db)} |")
    print(f"| copies | {len(cos_q)} | {cos_stats(cos_q)} |")
    print(f"| all | {len(both)} | {cos_stats(both)} |")
    cuts = (0.999, 0.995, 0.99, 0.985, 0.98, 0.97)
    print(
        "\nShare of pictures whose cosine is below c (a start-up check that takes the minimum over n "
        "pictures fails a sound precision with probability 1 - (1 - share)^n):\n"
    )
    print("| c | " + " | ".join(str(c) for c in cuts) + " |")
    print("| --- |" + " ---: |" * len(cuts))
    print(f"| {low_name} below c | " + " | ".join(percent(float((both < c).mean())) for c in cuts) + " |")
    results["cosine"] = {
        "min": float(both.min()),
        "p1": float(np.percentile(both, 1)),
        "mean": float(both.mean()),
        "below": {str(c): float((both < c).mean()) for c in cuts},
    }

    # Scale: how close the wrong pictures come, against how much the reduced precision moves scores.
    err = np.concatenate([low.db - full.db, low.queries - full.queries])
    systematic = float(np.linalg.norm(err.mean(axis=0)) ** 2 / np.mean(np.sum(err**2, axis=1)))
    copy_cos = pair_cosines(full.queries, full.db[owner])
    margins = copy_margins(full.db, full.queries, owner)
    hit_margins = margins[margins > 0]
    score_full = full.queries @ full.db.T
    print("\nScale: the margins search works with (fp32), against how much the reduced precision moves scores:\n")
    print("| quantity | value |")
    print("| --- | --- |")
    print(
        f"| cosine copy -> its original: min / 1st pct / median | {copy_cos.min():.4f} / "
        f"{np.percentile(copy_cos, 1):.4f} / {np.median(copy_cos):.4f} |"
    )
    print(
        f"| margin of a hit (original's score - best other picture's): 1st pct / 5th pct / median | "
        f"{np.percentile(hit_margins, 1):.4f} / {np.percentile(hit_margins, 5):.4f} / {np.median(hit_margins):.4f} |"
    )
    for label, d in (
        (f"{low_name} index + {low_name} copies", np.abs(low.queries @ low.db.T - score_full)),
        (f"fp32 index + {low_name} copies", np.abs(low.queries @ full.db.T - score_full)),
    ):
        p99 = float(np.percentile(d, 99))
        print(
            f"| score change, {label}, over all copy x picture pairs: median / p99 / max | "
            f"{np.median(d):.5f} / {p99:.5f} / {d.max():.5f} |"
        )
        print(
            f"| copies whose fp32 margin is smaller than that p99 | {int((np.abs(margins) < p99).sum())} of {len(margins)} |"
        )
    print(
        f"| systematic share of the {low_name} error: mean error's squared norm / mean squared error "
        f"(1/N = {1 / len(err):.4f} if unrelated) | {systematic:.3f} |"
    )
    results["systematic_share"] = systematic
    return results


def drift_study(copy_set: CopySet, full: Vectors, low: Vectors | None, seed: int, repeats: int) -> list[dict[str, Any]]:
    """Recall@1 and top-10 overlap when every vector drifts to cosine c from its fp32 vector."""
    owner = copy_set.query_owner
    base = recall_at_1(full.db, full.queries, owner)
    models = [m for m in DRIFT_MODELS if m != "measured error scaled" or low is not None]
    print(
        f"\nDrift: every vector moved to cosine c from its fp32 vector (fp32 recall@1 {percent(base)}; random "
        f"models: mean of {repeats} seeds). 'drifted' = drifted index + drifted copies; 'fp32 index' = fp32 "
        f"index + drifted copies (a catalogue mixing the two); overlap = top-{K} of the drifted index vs the "
        f"fp32 one.\n"
    )
    print(
        "| drift model | c | recall@1 drifted | vs fp32 (points) | recall@1 fp32 index | vs fp32 (points) "
        "| top-10 overlap |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    rows = []
    errors_db = errors_q = None
    if low is not None:
        errors_db, errors_q = low.db - full.db, low.queries - full.queries
    for model in models:
        for c in DRIFT_COSINES:
            r_pure, r_mixed, overlap = [], [], []
            for rep in range(repeats if model != "measured error scaled" else 1):
                rng = np.random.default_rng([seed, rep, int(c * 1e6)])
                db = drift(full.db, c, rng, model, full.db, errors_db)
                queries = drift(full.queries, c, rng, model, full.db, errors_q)
                r_pure.append(recall_at_1(db, queries, owner))
                r_mixed.append(recall_at_1(full.db, queries, owner))
                overlap.append(neighbour_overlap(full.db, full.db, db, db))
            row: dict[str, Any] = {
                "model": model,
                "cosine": c,
                "recall_drifted": statistics.mean(r_pure),
                "recall_fp32_index": statistics.mean(r_mixed),
                "overlap": statistics.mean(overlap),
            }
            rows.append(row)
            print(
                f"| {model} | {c} | {percent(row['recall_drifted'])} | {points(row['recall_drifted'], base):+.2f} | "
                f"{percent(row['recall_fp32_index'])} | {points(row['recall_fp32_index'], base):+.2f} | "
                f"{row['overlap']:.4f} |"
            )

    def lowest(ok: Callable[[dict[str, Any]], bool]) -> str:
        """The lowest c such that every row at that c and above passes ``ok``."""
        found = None
        for c in sorted(DRIFT_COSINES, reverse=True):
            if not all(ok(r) for r in rows if r["cosine"] == c):
                break
            found = c
        return "none" if found is None else str(found)

    def no_drop(r: dict[str, Any]) -> bool:
        return min(points(r["recall_drifted"], base), points(r["recall_fp32_index"], base)) >= -TARGET_RECALL_POINTS

    print(
        f"\nLowest c down to which every drift model keeps recall@1 (both columns) no more than "
        f"{TARGET_RECALL_POINTS:g} point below fp32: {lowest(no_drop)}; keeps the top-{K} overlap >= "
        f"{TARGET_OVERLAP}: {lowest(lambda r: r['overlap'] >= TARGET_OVERLAP)}"
    )
    return rows


# -- preprocessing: crop against the full frame (issue 12) ---------------------------------------

RECALL_AT = (1, 5, 10)
ELONGATED = 1.5  # a copy whose long side is at least this times its short side counts as elongated


def hits_at(index: np.ndarray, queries: np.ndarray, owner: np.ndarray, k: int) -> np.ndarray:
    """Per copy: is its original among the ``k`` nearest database pictures?"""
    return np.asarray((top_k(index, queries, k) == owner[:, None]).any(axis=1))


def weights_label(model: str, settings: dict[str, str]) -> str:
    if model == "efficientnet":
        return "real (packaged ImageNet)" if not settings.get("weights") else f"file {settings['weights']}"
    value = settings.get("weights" if model == "resnet" else "pretrained", "none")
    return "RANDOM (seed 0)" if value in ("none", "random") else value


def copy_aspects(copy_set: CopySet) -> np.ndarray:
    """Long side / short side of every copy (read from the file headers)."""
    aspects = []
    for path in copy_set.query_paths:
        with Image.open(path) as im:
            aspects.append(max(im.size) / min(im.size))
    return np.array(aspects)


def preprocess_study(
    copy_set: CopySet, runs: dict[str, dict[str, Vectors]], weights: dict[str, str]
) -> list[dict[str, Any]]:
    """Copy recall per model and preprocessing variant, against that model's crop; prints the tables."""
    owner = copy_set.query_owner
    kinds = np.array(copy_set.query_kind)
    elongated = copy_aspects(copy_set) >= ELONGATED
    print(
        f"\nPreprocessing: copy recall of {len(owner)} copies against {len(copy_set.db_paths)} database pictures "
        f"(exact cosine, fp32). 'gained / lost' = copies found at rank 1 only with this variant / only with crop. "
        f"Elongated: copies whose long side is >= {ELONGATED}x the short one ({int(elongated.sum())} of "
        f"{len(owner)}).\n"
    )
    print(
        "| model | weights | preprocess | recall@1 | vs crop (points) | gained / lost | recall@5 | recall@10 "
        "| recall@1 square-ish | recall@1 elongated | model id |"
    )
    print("| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |")
    rows: list[dict[str, Any]] = []
    hits: dict[tuple[str, str], np.ndarray] = {}
    for model, variants in runs.items():
        base = variants.get("crop")
        base_hits = copy_hits(base.db, base.queries, owner) if base is not None else None
        for variant, v in variants.items():
            at = {k: hits_at(v.db, v.queries, owner, k) for k in RECALL_AT}
            hits[(model, variant)] = at[1]
            row: dict[str, Any] = {
                "model": model,
                "weights": weights[model],
                "preprocess": variant,
                "model_id": v.model_id,
                **{f"recall@{k}": float(h.mean()) for k, h in at.items()},
                "recall@1_squareish": float(at[1][~elongated].mean()) if (~elongated).any() else float("nan"),
                "recall@1_elongated": float(at[1][elongated].mean()) if elongated.any() else float("nan"),
            }
            delta, change = "", ""
            if base_hits is not None:
                row["vs_crop_points"] = points(row["recall@1"], float(base_hits.mean()))
                row["gained"] = int((at[1] & ~base_hits).sum())
                row["lost"] = int((~at[1] & base_hits).sum())
                delta, change = f"{row['vs_crop_points']:+.2f}", f"+{row['gained']} / -{row['lost']}"
            rows.append(row)
            print(
                f"| {model} | {weights[model]} | {variant} | {percent(row['recall@1'])} | {delta} | {change} | "
                f"{percent(row['recall@5'])} | {percent(row['recall@10'])} | {percent(row['recall@1_squareish'])} | "
                f"{percent(row['recall@1_elongated'])} | `{v.model_id}` |"
            )
    for model, variants in runs.items():
        names = list(variants)
        print(f"\nRecall@1 by copy kind, {model} ({weights[model]}):\n")
        print("| copy kind | copies | " + " | ".join(names) + " |")
        print("| --- | ---: |" + " ---: |" * len(names))
        for kind in TRANSFORMS:
            sel = kinds == kind
            if sel.any():
                cells = " | ".join(percent(float(hits[(model, n)][sel].mean())) for n in names)
                print(f"| {kind} | {int(sel.sum())} | {cells} |")
    return rows


# -- where the reduced precision's error comes from (--diagnose) ----------------------------------
# bf16 emulated in fp32: a part's parameters rounded to bf16 and, optionally, the outputs of its
# convolutions and activations too. Runs at fp32 speed, and the whole model emulated this way
# matches the real cast closely (the table prints the cosine between the two).


def model_parts(model: torch.nn.Module) -> list[str]:
    """The model's stages in forward order: for timm's EfficientNet conv_stem, blocks.0..6, conv_head."""
    names = []
    for name, child in model.named_children():
        if name == "blocks":
            names += [f"blocks.{i}" for i in range(len(list(child.children())))]
        elif any(True for _ in child.parameters()):
            names.append(name)
    return names


def _in_parts(name: str, parts: Sequence[str]) -> bool:
    return any(name == part or name.startswith(part + ".") for part in parts)


def emulated_vectors(
    spec: Spec, paths: Sequence[str], batch_size: int, params: Sequence[str], outputs: Sequence[str]
) -> np.ndarray:
    """fp32 vectors with the ``params`` parts' parameters and the ``outputs`` parts' outputs rounded to bf16."""
    ext = make_extractor(spec, batch_size)
    model = ext.model

    def round_output(module: torch.nn.Module, args: Any, output: torch.Tensor) -> torch.Tensor:
        return output.to(torch.bfloat16).float()

    with torch.no_grad():
        for name, param in model.named_parameters():
            if _in_parts(name, params):
                param.copy_(param.to(torch.bfloat16).float())
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.Conv2d | torch.nn.ReLU6) and _in_parts(name, outputs):
            module.register_forward_hook(round_output)
    if outputs and _in_parts(model_parts(model)[0], outputs):
        model.register_forward_pre_hook(lambda module, args: (args[0].to(torch.bfloat16).float(),))
    return embed_paths(ext, paths)


def diagnose(
    copy_set: CopySet, spec: Spec, full: Vectors, low: Vectors, batch_size: int, seed: int
) -> list[dict[str, Any]]:
    """Which parts of the model the bf16 drift comes from, and what keeping the first ones in fp32 buys.

    ``spec``: the fp32 spec ``full`` was made with."""
    parts = model_parts(make_extractor(spec, batch_size).model)
    sample = np.arange(0, len(copy_set.db_paths), 4)
    paths = [copy_set.db_paths[i] for i in sample]
    ref = full.db[sample]
    print(
        f"\nWhere the bf16 drift comes from: bf16 emulated in fp32 on {len(sample)} database pictures "
        f"(every 4th); cosine to the fp32 vector.\n"
    )
    print("| rounded to bf16 | min | mean |")
    print("| --- | ---: | ---: |")
    variants: list[tuple[str, Sequence[str], Sequence[str]]] = [
        ("everything (emulated bf16)", parts, parts),
        ("all parameters, fp32 activations", parts, []),
        ("activations only, fp32 parameters", [], parts),
    ]
    variants += [(f"parameters of {part} only", [part], []) for part in parts]
    rows: list[dict[str, Any]] = []
    for label, params, outputs in variants:
        vectors = emulated_vectors(spec, paths, batch_size, params, outputs)
        cos = pair_cosines(ref, vectors)
        extra = ""
        if label.startswith("everything"):
            real = pair_cosines(low.db[sample], vectors)
            extra = f" (vs the real bf16 cast: cosine min {real.min():.5f}, mean {real.mean():.6f})"
        print(f"| {label}{extra} | {cos.min():.5f} | {cos.mean():.5f} |")
        rows.append({"rounded": label, "min": float(cos.min()), "mean": float(cos.mean())})

    n_db = len(full.db)
    half = np.zeros(n_db, dtype=bool)
    half[np.random.default_rng(seed).permutation(n_db)[: n_db // 2]] = True  # as in compare()
    print(f"\nEmulated bf16 with the first parts kept in fp32, all {n_db} database pictures:\n")
    print("| kept in fp32 | cosine min | 1st pct | mean | top-10 overlap vs fp32 | half/half index, own queries |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for n in range(5):
        rounded = parts[n:]
        vectors = emulated_vectors(spec, copy_set.db_paths, batch_size, rounded, rounded)
        cos = pair_cosines(full.db, vectors)
        mixed = np.where(half[:, None], vectors, full.db)
        overlap = neighbour_overlap(full.db, full.db, vectors, vectors)
        overlap_mixed = neighbour_overlap(full.db, full.db, mixed, vectors)
        kept = ", ".join(parts[:n]) or "nothing"
        print(
            f"| {kept} | {cos.min():.4f} | {np.percentile(cos, 1):.4f} | {cos.mean():.5f} | {overlap:.4f} | "
            f"{overlap_mixed:.4f} |"
        )
        rows.append({"kept_fp32": parts[:n], "min": float(cos.min()), "mean": float(cos.mean()), "overlap": overlap})
    return rows


# -- reporting ---------------------------------------------------------------------------------


def print_sources(copy_set: CopySet) -> None:
    print("\nWhere the photos come from (database pictures cut from each collection):\n")
    print("| collection | photos | database pictures | licence |")
    print("| --- | ---: | ---: | --- |")
    by_origin: dict[str, list[dict[str, Any]]] = {}
    for source in copy_set.sources:
        by_origin.setdefault(source["origin"], []).append(source)
    for origin, sources in by_origin.items():
        licences = sorted({s["licence"] for s in sources})
        print(f"| {origin} | {len(sources)} | {sum(s['tiles'] for s in sources)} | {'; '.join(licences)} |")
    if not any(s["origin"].startswith("Debian") for s in copy_set.sources):
        print("\n(no Debian photos here: `apt-get install lomiri-wallpapers-16.04 mate-backgrounds` adds 26)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", type=int, default=400, help="database pictures")
    parser.add_argument("--copies", type=int, default=2, help="query copies per database picture")
    parser.add_argument("--models", default="efficientnet", help=f"comma-separated, of {', '.join(MODELS)}")
    parser.add_argument(
        "--preprocess", default=",".join(VARIANTS), help=f"comma-separated variants, of {', '.join(VARIANTS)}"
    )
    parser.add_argument("--resnet-weights", default="none", help="[extractors.resnet] weights (none: random)")
    parser.add_argument("--clip-pretrained", default="none", help="[extractors.clip] pretrained (none: random)")
    parser.add_argument("--clip-model", default="ViT-B-32")
    parser.add_argument(
        "--precision", default="bf16", help="the precision compared with fp32 (the daemon's setting); none skips"
    )
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3, help="seeds per random drift model")
    parser.add_argument(
        "--data-dir",
        default=os.path.join(tempfile.gettempdir(), "imgsearchd-bench-data", "retrieval"),
        help="where the pictures and their vectors are made and kept between runs",
    )
    parser.add_argument(
        "--diagnose",
        action="store_true",
        help="also find where the bf16 drift comes from (bf16 emulated in fp32, per model part; about 2 minutes)",
    )
    parser.add_argument("--seed", type=int, default=1234)
    parser.add_argument("--json", help="also write the raw numbers to this file")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.ERROR)
    models = [m for m in args.models.split(",") if m]
    variants = [v for v in args.preprocess.split(",") if v]
    for name, wanted, known in (("model", models, MODELS), ("preprocess", variants, VARIANTS)):
        if not wanted or any(w not in known for w in wanted):
            raise SystemExit(f"--{name}: choose from {', '.join(known)}")
    model_settings = {
        "efficientnet": (),
        "resnet": (("weights", args.resnet_weights),),
        "clip": (("model", args.clip_model), ("pretrained", args.clip_pretrained)),
    }
    weights = {m: weights_label(m, dict(model_settings[m])) for m in models}

    started = time.perf_counter()
    load_before = os.getloadavg()
    copy_set = make_copy_set(Path(args.data_dir), args.db, args.copies, args.seed)
    made = time.perf_counter() - started
    print(f"pictures ready in {made:.1f} s under {args.data_dir}", file=sys.stderr)
    runs: dict[str, dict[str, Vectors]] = {}
    for model in models:
        runs[model] = {
            v: vectors_for(copy_set, Spec(model, v, "fp32", model_settings[model]), args.batch_size) for v in variants
        }
    study_spec = Spec(models[0], framing.mode_from("auto", models[0]), "fp32", model_settings[models[0]])
    full = low = None
    if args.precision != "none":
        full = vectors_for(copy_set, study_spec, args.batch_size)
        low = vectors_for(copy_set, Spec(**{**study_spec.__dict__, "precision": args.precision}), args.batch_size)
    embedded = time.perf_counter() - started - made
    load_after = os.getloadavg()

    print(
        f"Machine: {os.cpu_count()} CPUs ({cpu_model()}), Python {platform.python_version()}, "
        f"torch {torch.__version__}, {torch.get_num_threads()} torch threads, batch size {args.batch_size}, "
        f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY')}; load average (1 min) "
        f"{load_before[0]:.2f} before / {load_after[0]:.2f} after the embedding"
    )
    for model, by_variant in runs.items():
        rates = ", ".join(
            f"{v} {'cached' if np.isnan(vec.img_s) else f'{vec.img_s:.1f} img/s'}" for v, vec in by_variant.items()
        )
        print(f"Model: {model} ({weights[model]} weights); fp32 embedding: {rates}")
    print(f"(all embedding: {embedded:.0f} s)")
    print(f"Data: {copy_set.describe()}; copy kinds: {', '.join(TRANSFORMS)}")
    print_sources(copy_set)
    results: dict[str, Any] = {"preprocess": preprocess_study(copy_set, runs, weights)}
    if full is not None and low is not None:
        print(
            f"\nPrecision: {study_spec.model}, preprocess {study_spec.variant}; {args.precision} asked, "
            f"{low.precision or 'cached'} ran ({'cached' if np.isnan(low.img_s) else f'{low.img_s:.1f} img/s'})"
        )
        results.update(compare(copy_set, full, low, args.precision, args.seed))
        results["drift"] = drift_study(copy_set, full, low, args.seed, args.repeats)
        if args.diagnose:
            if args.precision != "bf16":
                raise SystemExit("--diagnose emulates bf16 only")
            results["diagnose"] = diagnose(copy_set, study_spec, full, low, args.batch_size, args.seed)
    print(f"\n(total {time.perf_counter() - started:.0f} s)", file=sys.stderr)
    if args.json:
        Path(args.json).write_text(
            json.dumps(
                {
                    "cpu": cpu_model(),
                    "load_before": load_before,
                    "load_after": load_after,
                    "db": len(copy_set.db_paths),
                    "copies": len(copy_set.query_paths),
                    **results,
                },
                indent=2,
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
