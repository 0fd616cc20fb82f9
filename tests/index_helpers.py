"""Shared by tests/search/test_index.py and bench/bench_index.py: synthetic vectors and catalogue filling."""

from __future__ import annotations

import os
from collections.abc import Iterable

import numpy as np

from imgsearchd.search.index import ExtractorIndex
from imgsearchd.search.recall import sample_positions
from imgsearchd.store.catalog import Catalog
from imgsearchd.store.rows import FileResult

EXTRACTOR = "clip"
MODEL = "model-x"


def photo_like(
    n: int,
    dim: int = 512,
    *,
    seed: int = 0,
    topic_size: int = 5000,
    event_mean: float = 20.0,
    event_spread: float = 1.0,
    photo_noise: float = 0.5,
) -> np.ndarray:
    """``n`` clustered unit vectors shaped like a photo library's embeddings.

    Topics (one per ``topic_size`` photos) hold events (bursts of a geometric number of
    photos, mean ``event_mean``); every level is an isotropic Gaussian around its parent,
    then normalised. With the defaults the nearest neighbour of a new photo of an existing
    event has a cosine of about 0.82, a random pair about 0.
    """
    rng = np.random.default_rng(seed)
    n_topics = max(1, n // topic_size)
    topics = rng.standard_normal((n_topics, dim)).astype(np.float32)
    topics /= np.linalg.norm(topics, axis=1, keepdims=True)
    sizes = rng.geometric(1.0 / event_mean, size=n + 1)
    sizes = sizes[: np.searchsorted(np.cumsum(sizes), n) + 1]
    events = topics[rng.integers(0, n_topics, len(sizes))]
    events = events + event_spread * rng.standard_normal(events.shape).astype(np.float32) / np.sqrt(dim)
    events /= np.linalg.norm(events, axis=1, keepdims=True)
    which = np.repeat(np.arange(len(sizes)), sizes)[:n]
    rng.shuffle(which)
    out = np.empty((n, dim), dtype=np.float32)
    for start in range(0, n, 100_000):
        w = which[start : start + 100_000]
        noise = rng.standard_normal((len(w), dim)).astype(np.float32) / np.sqrt(dim)
        out[start : start + len(w)] = events[w] + photo_noise * noise
    out /= np.linalg.norm(out, axis=1, keepdims=True)
    return out


def random_unit(n: int, dim: int, seed: int = 0) -> np.ndarray:
    """Uniform random unit vectors (fine where only identity matters)."""
    v = np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def path_of(i: int) -> str:
    return f"/photos/{i // 1000:04d}/img{i:08d}.jpg"


def add_files(
    catalog: Catalog, vectors: np.ndarray, start: int = 0, *, model: str = MODEL, batch: int = 5000, tag: str = ""
) -> np.ndarray:
    """Record one fake file per vector (paths ``path_of(start + k)``); return their file ids."""
    for lo in range(0, len(vectors), batch):
        catalog.record_batch(
            FileResult(
                path=path_of(start + k),
                size=1000 + k,
                mtime_ns=k,
                content_hash=f"hash{tag}-{start + k}",
                vectors={EXTRACTOR: (model, vectors[k])},
            )
            for k in range(lo, min(lo + batch, len(vectors)))
        )
    return ids_of(catalog, range(start, start + len(vectors)))


def ids_of(catalog: Catalog, numbers: Iterable[int]) -> np.ndarray:
    """File ids of ``path_of(k)`` for each k."""
    out = []
    for k in numbers:
        record = catalog.get(path_of(k))
        assert record is not None, path_of(k)
        out.append(record.id)
    return np.array(out, dtype=np.int64)


def exact_top(vectors: np.ndarray, ids: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    """Ground truth: the ids of the ``k`` best cosine matches of each query."""
    scores = queries @ vectors.T
    part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    order = np.take_along_axis(scores, part, axis=1).argsort(axis=1)[:, ::-1]
    return ids[np.take_along_axis(part, order, axis=1)]


def index_files(directory: str | os.PathLike[str]) -> list[str]:
    return sorted(p for p in os.listdir(directory) if p.startswith("snapshot-"))


def open_fds_under(directory: str | os.PathLike[str]) -> list[str]:
    """Targets of this process's file descriptors that lie in ``directory``."""
    prefix = os.fspath(directory)
    out = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith(prefix):
            out.append(target)
    return out


def mappings_under(directory: str | os.PathLike[str]) -> list[str]:
    """Lines of /proc/self/maps for files in ``directory`` (deleted ones included)."""
    prefix = os.fspath(directory)
    with open("/proc/self/maps") as f:
        return [line.strip() for line in f if prefix in line]


def broad_clusters(
    n: int,
    dim: int = 512,
    *,
    seed: int = 0,
    cluster_size: int = 500,
    rank: int = 16,
    spread: float = 0.6,
    noise: float = 0.3,
) -> np.ndarray:
    """A harder set: each cluster lies near its own random ``rank``-dimensional subspace.

    Neighbours are far apart (nearest-neighbour cosine about 0.73 at 100k), the hard case
    for any tree index. Used by the benchmark to show how recall depends on the data.
    """
    rng = np.random.default_rng(seed)
    k = max(1, n // cluster_size)
    labels = rng.integers(0, k, size=n)
    centers = rng.standard_normal((k, dim)).astype(np.float32)
    centers /= np.linalg.norm(centers, axis=1, keepdims=True)
    out = np.empty((n, dim), dtype=np.float32)
    for c in range(k):
        idx = np.flatnonzero(labels == c)
        basis = rng.standard_normal((rank, dim)).astype(np.float32) / np.sqrt(dim)
        z = rng.standard_normal((len(idx), rank)).astype(np.float32)
        g = rng.standard_normal((len(idx), dim)).astype(np.float32) / np.sqrt(dim)
        out[idx] = centers[c] + spread * (z @ basis) + noise * g
    out /= np.linalg.norm(out, axis=1, keepdims=True)
    return out


def brute_force_recall(index: ExtractorIndex, catalog: Catalog, sample: int, dim: int = 64) -> float:
    """Recall@10 of the index's answers for the builder's sampled stored vectors, computed here."""
    _, ids, vectors = catalog.all_vectors(EXTRACTOR, MODEL, dim)
    positions = sample_positions(len(ids), sample, 0)
    scores = vectors[positions] @ vectors.T
    scores[np.arange(len(positions)), positions] = -np.inf  # its own file is no neighbour
    truth = np.argsort(-scores, axis=1)[:, :10]
    hits = 0
    for p, want in zip(positions, truth):
        found = index.query(vectors[p], 10, exclude_ids=[int(ids[p])])
        hits += len({h.id for h in found} & set(ids[want].tolist()))
    return hits / (10 * len(positions))
