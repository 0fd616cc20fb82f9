"""The searchable parts of an index: a base searched as one unit, and the state queries read.

A base is an ``ExactBase`` (a numpy matrix searched by brute force: small collections,
or while the first snapshot builds), an ``AnnoyBase`` (a memory-mapped Annoy snapshot,
loaded by ``snapshot``) or an ``HnswBase`` (``hnsw``: a memory-mapped HNSW graph). A ``State`` is a base plus the fresh vectors
committed after it and the tombstones that hide its removed or superseded items; it is
replaced as a whole, never changed in place, so a query reads one consistent picture.
"""

from __future__ import annotations

from collections.abc import Set
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Literal

import numpy as np
from annoy import AnnoyIndex

from ..timestamps import parse_iso
from .facts import SnapshotMeta


@dataclass(frozen=True, slots=True)
class Hit:
    """One search result: catalogue file id, Euclidean distance between unit vectors, cosine."""

    id: int
    distance: float
    score: float


def exact_top(vectors: np.ndarray, ids: np.ndarray, v: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` best (ids, cosine scores) of a matrix of unit vectors, best first."""
    n = len(ids)
    if n == 0 or k <= 0:
        return ids[:0], np.zeros(0, dtype=np.float32)
    # einsum, not BLAS: multi-threaded OpenBLAS gemv gave 10 ms p99 spikes on 2 cores (BENCHMARKS.md)
    scores = np.einsum("ij,j->i", vectors, v)
    part = np.argpartition(-scores, k - 1)[:k] if k < n else np.arange(n)
    order = part[np.argsort(-scores[part], kind="stable")]
    return ids[order], scores[order]


def distance_of(score: float) -> float:
    return float(np.sqrt(max(0.0, 2.0 - 2.0 * score)))


# search_k of a snapshot without a recall measurement (built by an older version): the
# fixed default before measured recall (issue 3: recall@10 0.983 at 1M on photo-like data).
UNMEASURED_SEARCH_K = 5_000


class BaseKind(StrEnum):
    """How a base is searched, as ``/stats`` shows it (``mode``)."""

    EXACT = "exact"
    ANNOY = "annoy"
    HNSW = "hnsw"


class Base:
    """The bulk of an index, searched as one unit. ``ids`` is sorted; contents never change."""

    kind = BaseKind.EXACT

    def __init__(self, ids: np.ndarray, seq: int, built_at: float, build_seconds: float) -> None:
        self.ids = ids
        self.seq = seq
        self.built_at = built_at
        self.build_seconds = build_seconds
        self.users = 0  # queries using it right now; guarded by the index's lock
        self.retired = False  # replaced: unload once users drops to zero
        self.delete_files = False  # and delete its files then
        self.meta: SnapshotMeta = {}  # a snapshot's index.json (with the measured recall)

    @property
    def effort(self) -> int | None:
        """Search effort in use (Annoy ``search_k``, HNSW ``ef``); None for exact search."""
        return None

    @property
    def effort_source(self) -> str:
        """Where ``effort`` came from: "auto" (measured), "config", "unmeasured" or "exact"."""
        return "exact"

    def __len__(self) -> int:
        return len(self.ids)

    def contains(self, ids: np.ndarray) -> np.ndarray:
        """Boolean mask: which of ``ids`` are in this base."""
        if len(self.ids) == 0:
            return np.zeros(len(ids), dtype=bool)
        pos = np.minimum(np.searchsorted(self.ids, ids), len(self.ids) - 1)
        return self.ids[pos] == ids

    def search(
        self, v: np.ndarray, limit: int, dead: Set[int], exclude: Set[int], budget_scale: int = 1
    ) -> list[tuple[float, int]]:
        """The ``limit`` best (distance, id) pairs for unit vector ``v``, skipping ``dead`` and ``exclude``.

        ``budget_scale`` multiplies an approximate base's search effort (a deep over-fetch
        asks for many results and needs the effort tuned for 10 results times as many).
        """
        raise NotImplementedError

    def close(self) -> None:
        """Release memory and mappings; no query may use the base afterwards."""

    def files(self) -> list[Path]:
        return []


class ExactBase(Base):
    """A numpy matrix searched by brute force: small collections, or while the first build runs."""

    def __init__(self, ids: np.ndarray, vectors: np.ndarray, seq: int, built_at: float, build_seconds: float) -> None:
        super().__init__(ids, seq, built_at, build_seconds)
        self.vectors = vectors

    def search(
        self, v: np.ndarray, limit: int, dead: Set[int], exclude: Set[int], budget_scale: int = 1
    ) -> list[tuple[float, int]]:
        ids, scores = exact_top(self.vectors, self.ids, v, limit + len(dead) + len(exclude))
        out = []
        for i, s in zip(ids.tolist(), scores.tolist()):
            if i not in dead and i not in exclude:
                out.append((distance_of(s), i))
                if len(out) == limit:
                    break
        return out

    def close(self) -> None:
        self.vectors = self.vectors[:0]


class AnnoyBase(Base):
    """A memory-mapped Annoy snapshot plus the file id of each of its items.

    ``search_k`` None: the one the build measured (``meta["recall"]``, see ``recall``), or
    ``UNMEASURED_SEARCH_K`` for a snapshot built before measuring; ``search_k_source`` says which.
    """

    kind = BaseKind.ANNOY

    def __init__(
        self, annoy: AnnoyIndex, ids: np.ndarray, paths: list[Path], meta: SnapshotMeta, search_k: int | None
    ) -> None:
        super().__init__(ids, int(meta["seq"]), parse_iso(meta["built_at"]), float(meta["build_seconds"]))
        self.annoy = annoy
        self.paths = paths
        self.meta = meta
        self.search_k, self.search_k_source = chosen_effort(search_k, meta, "search_k", UNMEASURED_SEARCH_K)

    @property
    def effort(self) -> int | None:
        return self.search_k

    @property
    def effort_source(self) -> str:
        return self.search_k_source

    def search(
        self, v: np.ndarray, limit: int, dead: Set[int], exclude: Set[int], budget_scale: int = 1
    ) -> list[tuple[float, int]]:
        vector = v.tolist()  # Annoy reads a list far faster than a numpy array
        k = limit if not (dead or exclude) else 2 * limit + 10
        while True:
            search_k = max(self.search_k * max(1, budget_scale), k) if self.search_k > 0 else -1
            positions, distances = self.annoy.get_nns_by_vector(vector, k, search_k, True)
            out = []
            for file_id, d in zip(self.ids[positions].tolist(), distances):
                if file_id not in dead and file_id not in exclude:
                    out.append((d, file_id))
            if len(out) >= limit or len(positions) < k or k >= len(self.ids):
                return out[:limit]
            k *= 4  # too many tombstones among the best: fetch deeper

    def close(self) -> None:
        self.annoy.unload()

    def files(self) -> list[Path]:
        return list(self.paths)


def chosen_effort(
    configured: int | None, meta: SnapshotMeta, key: Literal["search_k", "ef"], unmeasured: int
) -> tuple[int, str]:
    """A snapshot's search effort and its source: the configured one, else the one its build
    measured (``meta["recall"][key]``), else ``unmeasured`` (a snapshot built before measuring)."""
    measured = meta.get("recall")
    if configured is not None:
        return int(configured), "config"
    if isinstance(measured, dict) and isinstance(effort := measured.get(key), int):
        return int(effort), "auto"
    return unmeasured, "unmeasured"


@dataclass(frozen=True)
class State:
    """What queries read: replaced as a whole, never changed in place."""

    base: Base
    seq: int  # catalogue change number this state reflects
    fresh_ids: np.ndarray  # int64, unique, not tombstoned
    fresh_vectors: np.ndarray  # float32 (len(fresh_ids), dim), unit rows
    dead: frozenset[int]  # base ids hidden: removed, or superseded by a fresh vector
    first_change: float | None  # time.monotonic() of the oldest change not in the base

    @classmethod
    def of(cls, base: Base, dim: int) -> State:
        return cls(base, base.seq, np.zeros(0, np.int64), np.zeros((0, dim), np.float32), frozenset(), None)

    def apply(self, ids: np.ndarray, vectors: np.ndarray, removed: np.ndarray, seq: int, now: float) -> State:
        """This state with catalogue changes applied (``ids``/``vectors`` upserted, ``removed`` gone)."""
        touched = np.union1d(ids, removed)
        if len(touched) == 0:
            return State(self.base, seq, self.fresh_ids, self.fresh_vectors, self.dead, self.first_change)
        keep = ~np.isin(self.fresh_ids, touched)
        live = ~np.isin(ids, removed)
        new = unit_rows(vectors[live])
        fresh_ids = np.concatenate([self.fresh_ids[keep], ids[live]])
        fresh_vectors = np.concatenate([self.fresh_vectors[keep], new]) if len(new) else self.fresh_vectors[keep]
        dead = self.dead | frozenset(touched[self.base.contains(touched)].tolist())
        first: float | None = self.first_change if self.first_change is not None else now
        if not len(fresh_ids) and not dead:
            first = None
        return State(self.base, seq, fresh_ids, fresh_vectors, dead, first)


def unit_rows(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length, in place when the array is ours to change."""
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    if not vectors.flags.writeable:
        vectors = vectors.copy()
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    np.divide(vectors, norms, out=vectors, where=norms > 0)
    return vectors
