"""HNSW snapshots (usearch): the index kind that reaches the recall target where Annoy cannot.

Annoy cannot reach recall@10 0.95 within 10 ms at 1M widely spread vectors, even with 50
trees (0.64 at 9.7 ms); usearch's HNSW reaches 0.962 at ef 128 in 3.1 ms (bench_ann,
BENCHMARKS.md "Measured recall"). Its price is the build: 6-9x Annoy's from scratch. But
an HNSW graph takes insertions and removals, so a rebuild here **grows the last snapshot**
by the catalogue changes since it was built instead of building it again; a full build
happens only for the first snapshot, when the file cannot be read back, and after removals
pile up (``COMPACT_FRACTION``), because removed nodes stay in the graph as detours.

The index is usearch's (keys are the catalogue's file ids, so no position map), saved to
``snapshot-NNNNNN.usearch`` next to the same ``.ids.npy`` and ``index.json`` commit an
Annoy snapshot has (``snapshot``), and served memory-mapped (``Index.restore(view=True)``):
no copy in the daemon's memory (1.3 GB at 1M 512-d vectors, bench_ann).
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Sequence, Set
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from usearch.index import Index

from ..store.catalog import Catalog
from ..timestamps import parse_iso
from .facts import GrowFrom, RecallFacts, SnapshotMeta
from .parts import Base, BaseKind, chosen_effort
from .recall import Tuning, tune_hnsw

# Graph shape, the values bench_ann measured (M 16, ef_construction 100-128): recall@10
# 0.982 at ef 32 on the broad set at 100k, 0.94 at ef 128 at 1M (hnswlib, same algorithm).
CONNECTIVITY = 16
EXPANSION_ADD = 128
# Vectors stored as float16: half of float32's memory (145 vs 209 MiB at 100k) at the same
# recall (usearch f16 0.982 vs hnswlib f32 0.974 at ef 32, bench_ann); a score moves by
# about 1e-3, far below any threshold the daemon uses.
DTYPE = "f16"
METRIC = "cos"
# ef of a snapshot without a measurement (never the daemon's own: it measures every build).
UNMEASURED_EF = 64
# A full build once removed or replaced items reach this share of the graph: each stays
# in the graph as a deleted node that searches still walk through.
COMPACT_FRACTION = 0.25
_ADD_CHUNK = 50_000  # vectors handed to usearch at a time when building from scratch


def new_index(dim: int) -> Index:
    return Index(ndim=dim, metric=METRIC, dtype=DTYPE, connectivity=CONNECTIVITY, expansion_add=EXPANSION_ADD)


class HnswBase(Base):
    """A memory-mapped usearch HNSW snapshot; its keys are file ids.

    ``ef`` None: the one the build measured (``meta["recall"]``), or ``UNMEASURED_EF``;
    ``ef_source`` says which.
    """

    kind = BaseKind.HNSW

    def __init__(self, index: Index, ids: np.ndarray, paths: list[Path], meta: SnapshotMeta, ef: int | None) -> None:
        super().__init__(ids, int(meta["seq"]), parse_iso(meta["built_at"]), float(meta["build_seconds"]))
        self.index = index
        self.paths = paths
        self.meta = meta
        self.ef, self.ef_source = chosen_effort(ef, meta, "ef", UNMEASURED_EF)
        settable: Any = index  # expansion_search is settable (usearch 2.26), not in its stubs
        settable.expansion_search = self.ef
        self._search_lock = threading.Lock()

    @property
    def effort(self) -> int | None:
        return self.ef

    @property
    def effort_source(self) -> str:
        return self.ef_source

    def search(
        self, v: np.ndarray, limit: int, dead: Set[int], exclude: Set[int], budget_scale: int = 1
    ) -> list[tuple[float, int]]:
        # One search at a time per graph: usearch 2.26 releases the GIL during a search, and
        # every caller asks for its thread context 0 (threads=1); its own locking of that
        # context is not documented. 12,000 searches from 4 threads matched one thread's
        # answers without the lock, but a search takes 0.5-3 ms, so taking turns costs little.
        # ``budget_scale`` needs nothing here: HNSW searches with max(ef, results wanted), so
        # a deep over-fetch (``scoped``) widens the search by itself.
        k = limit if not (dead or exclude) else 2 * limit + 10
        n = len(self.ids)
        if n == 0:  # usearch refuses a count of 0; the catalogue emptied during the build
            return []
        while True:
            with self._search_lock:
                found = self.index.search(v, min(k, n), threads=1)
            out = []
            for file_id, d in zip(np.asarray(found.keys).tolist(), np.asarray(found.distances).tolist()):
                if file_id not in dead and file_id not in exclude:
                    out.append((math.sqrt(max(0.0, 2.0 * d)), file_id))  # cosine distance 1 - cos -> Euclidean
            if len(out) >= limit or k >= n:
                return out[:limit]
            k *= 4  # too many tombstones among the best: fetch deeper

    def close(self) -> None:
        self.index.reset()  # unmaps the file

    def files(self) -> list[Path]:
        return list(self.paths)


def load_view(path: Path, dim: int) -> Index:
    """Map a saved snapshot read-only; ValueError when it is not a usearch index of ``dim`` dimensions."""
    index = Index.restore(str(path), view=True)
    if index is None:
        raise ValueError("not a usearch index")
    if index.ndim != dim:
        dims = index.ndim
        index.reset()
        raise ValueError(f"it has {dims} dimensions, expected {dim}")
    return index


# -- the builder process -----------------------------------------------------------------


def _stored_vectors(index: Index, keys: np.ndarray, dim: int) -> list[np.ndarray]:
    """The index's own vectors of ``keys``, in float16 chunks (as stored: 1 GB at 1M 512-d,
    half of a float32 copy), for the exact top 10 of the measurement."""
    chunks = []
    for lo in range(0, len(keys), _ADD_CHUNK):
        got: Any = index.get(keys[lo : lo + _ADD_CHUNK].astype(np.uint64), dtype="f32")  # a tuple of rows
        chunks.append(np.stack(got).reshape(-1, dim).astype(np.float16))
    return chunks


def _restore(path: Path, dim: int) -> Index | None:
    """The graph at ``path`` loaded to be changed, or None when it is missing or unreadable."""
    if not path.is_file():
        return None
    try:
        index = Index.restore(str(path), view=False)
    except (RuntimeError, ValueError, OSError):
        return None
    if index is not None and index.ndim != dim:
        index.reset()
        return None
    return index


def _unchanged(index: Index, ids: np.ndarray, vectors: np.ndarray) -> np.ndarray:
    """Mask of the changed ids whose vector the graph already holds (a touched or re-recorded
    file, a content hash re-stamped): re-inserting them would only leave a deleted node behind."""
    same = np.zeros(len(ids), dtype=bool)
    keys = ids.astype(np.uint64)
    held = np.flatnonzero(np.asarray(index.contains(keys), dtype=bool)) if len(ids) else np.zeros(0, np.int64)
    if len(held) == 0:
        return same
    got: Any = index.get(keys[held], dtype="f32")  # one call for all: a tuple of rows
    stored = np.stack(got).reshape(len(held), -1).astype(np.float32)
    new = vectors[held].astype(np.float16).astype(np.float32)
    norms = np.linalg.norm(stored, axis=1) * np.linalg.norm(new, axis=1)
    dots = np.einsum("ij,ij->i", stored, new)
    same[held] = (norms > 0) & (dots > (1 - 1e-6) * norms)
    return same


@dataclass
class _Graph:
    """The graph of a new snapshot, the change number it reflects, and the history its metadata keeps."""

    index: Index
    seq: int
    full: bool  # built from scratch, not grown
    full_reason: str | None
    full_items: int  # items at the last full build
    removed_since_full: int  # items deleted from the graph since then


def _grown(catalog: Catalog, extractor: str, model_id: str, dim: int, previous: GrowFrom, jobs: int) -> _Graph | str:
    """``previous``'s graph with the catalogue changes since applied; or why a full build is due instead."""
    index = _restore(Path(previous["file"]), dim)
    if index is None:
        return f"the snapshot in use ({Path(previous['file']).name}) cannot be read back"
    changes = catalog.changes_since(extractor, model_id, int(previous["seq"]), dim)
    same = _unchanged(index, changes.ids, changes.vectors)
    touched = np.union1d(changes.ids[~same], changes.removed_ids).astype(np.uint64)
    present = touched[np.asarray(index.contains(touched), dtype=bool)] if len(touched) else touched
    removed_since_full = int(previous["removed_since_full"]) + len(present)
    full_items = int(previous.get("full_items") or len(index))
    if removed_since_full >= COMPACT_FRACTION * max(1, full_items):
        index.reset()  # too many deleted nodes: build from scratch
        return "removed and replaced items reached a quarter of the graph"
    if len(present):
        index.remove(present)
    new = ~same & ~np.isin(changes.ids, changes.removed_ids)
    if np.any(new):
        index.add(changes.ids[new].astype(np.uint64), changes.vectors[new], threads=jobs)
    return _Graph(index, changes.seq, False, None, full_items, removed_since_full)


def _built(catalog: Catalog, extractor: str, model_id: str, dim: int, jobs: int, reason: str) -> _Graph:
    """A graph of every indexed vector, from one consistent read of the catalogue."""
    index = new_index(dim)
    seq = catalog.current_seq()  # what an empty read reflects
    for chunk_seq, ids, vectors in catalog.iter_vectors(extractor, model_id):
        seq = chunk_seq
        index.add(np.asarray(ids, np.uint64), np.asarray(vectors, np.float32), threads=jobs)
    return _Graph(index, seq, True, reason, len(index), 0)


def _measured(index: Index, ids: np.ndarray, dim: int, tuning: Tuning | None) -> RecallFacts | None:
    """The recall measurement of a graph and the ef it chooses (``recall.tune_hnsw``); None without ``tuning``."""
    if tuning is None or len(ids) <= 1:
        return None
    settable: Any = index

    def search(q: Any, count: int, ef: int) -> Sequence[int]:
        settable.expansion_search = ef
        found = np.asarray(index.search(q, count, threads=1).keys, dtype=np.int64)
        positions: list[int] = np.searchsorted(ids, found).tolist()
        return positions

    return tune_hnsw(search, _stored_vectors(index, ids, dim), len(ids), tuning.ef, tuning)


def write_hnsw_snapshot(
    catalog: Catalog,
    extractor: str,
    model_id: str,
    dim: int,
    out_path: Path,
    *,
    previous: GrowFrom | None,
    jobs: int,
    tuning: Tuning | None,
) -> tuple[SnapshotMeta, np.ndarray]:
    """Build (``previous`` None) or grow an HNSW index and save it; (facts for the metadata, sorted ids).

    ``previous``: the snapshot in use: it is loaded, the catalogue changes after its ``seq``
    are applied (removed and replaced items deleted, new vectors added; an unchanged vector
    left alone), and the result saved as a new file. A full build instead when the items
    deleted since the last full build reach ``COMPACT_FRACTION`` of that build's size, or
    when the file cannot be read back (missing, corrupt: the snapshot files are derived,
    the catalogue is the truth).
    """
    started = time.monotonic()
    grown = "no snapshot to grow" if previous is None else _grown(catalog, extractor, model_id, dim, previous, jobs)
    graph = grown if isinstance(grown, _Graph) else _built(catalog, extractor, model_id, dim, jobs, grown)
    index = graph.index
    build_seconds = time.monotonic() - started
    ids = np.sort(np.asarray(index.keys, dtype=np.int64)) if len(index) else np.zeros(0, np.int64)
    recall = _measured(index, ids, dim, tuning)
    index.save(str(out_path))
    facts: SnapshotMeta = {
        "items": len(ids),
        "seq": int(graph.seq),
        "full_build": graph.full,
        "full_build_reason": graph.full_reason,
        "full_items": graph.full_items,
        "removed_since_full": graph.removed_since_full,
        "connectivity": CONNECTIVITY,
        "dtype": DTYPE,
        "graph_seconds": round(build_seconds, 3),
    }
    if recall is not None:
        facts["recall"] = recall
    index.reset()
    return facts, ids
