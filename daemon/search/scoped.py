"""Search limited to a scope (``folder=PATH``, ``taken_after``/``taken_before``): exact when
the scope is small, over-fetch when large.

A folder is a path prefix with a separator, as the catalogue's subtree reads take it
(``/p/2019`` holds ``/p/2019/a.jpg`` and ``/p/2019/x/b.jpg``, not ``/p/2019b/c.jpg``).
A capture-time range is read from the catalogue's metadata columns (indexed), so the
catalogue decides both what a scope holds and which over-fetched hits lie in it.
(Below, "folder" stands for any scope.)

- **Small folder**: its vectors are read from the catalogue and ranked exactly with numpy.
  The catalogue is the truth, so files added a moment ago (the index's fresh vectors)
  count and removed ones never appear.
- **Large folder**: the index is asked for more than ``limit`` results, as many as the
  folder's share of the library suggests (with a margin), and the hits outside the folder
  are dropped; the ask grows fourfold until ``limit`` hits lie inside or the index has no
  more. The index spends on each ask the effort it spends on ``limit`` unfiltered results
  times ``ask / limit`` (``budget_scale``), so the hits kept are as good as an unfiltered
  search's.

Which one is the cost: reading and ranking a folder's file costs as much as the index
inspecting ``EXACT_COST`` candidates, so the exact search answers when ``files x EXACT_COST``
is at most the candidates an ask would inspect, and an over-fetch that grows past that
falls back to it. At the default ``search_k`` (5000) and limit 10 this makes a folder
"small" up to about sqrt(40 x library) files: 2,000 in a library of 100k (measured), about
6,300 in 1M (derived from the same costs).

Either way the answer is what a search of the whole library restricted to the folder
gives: exactly so for the exact search, at the index's own recall for the over-fetch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum

import numpy as np

from ..errors import NotFound
from ..store.rows import SearchScope
from .facts import IndexStats
from .hnsw import CONNECTIVITY
from .index import ExtractorIndex
from .parts import BaseKind, Hit, distance_of, exact_top, unit_rows

# One folder file read from the catalogue and ranked costs as much as the index inspecting
# this many candidates. Measured with bench/bench_filters.py at 100k 512-d vectors
# (BENCHMARKS.md "Folder filter"): the two cross at a folder of about 2,000 files there (73 vs
# 72 ms), where the exact search costs about 36 us per file (SQLite reads each 2 KiB vector
# through its B-tree) and the over-fetch about 0.14 us per candidate (search_k x budget_scale
# = 500k): 36 / 0.14 = about 250.
EXACT_COST = 250.0
# The first ask is the folder's expected share of the best results, times this margin.
OVERFETCH_MARGIN = 2.0


class UnknownFolder(NotFound):
    """The catalogue holds no indexed file at or below the folder."""

    def __init__(self, folder: str) -> None:
        super().__init__(f"{folder}: no indexed image at or below this folder", folder=folder)
        self.folder = folder


class Method(StrEnum):
    """How a folder search was answered."""

    EXACT = "exact"
    OVERFETCH = "overfetch"


@dataclass(frozen=True)
class FolderHits:
    """A folder search's hits (best first) with their paths, and how they were found."""

    hits: list[tuple[Hit, str]]
    method: Method
    asked: int  # the largest number of results asked of the index (0 for the exact search)


def _unit(vector: np.ndarray, dim: int) -> np.ndarray:
    v = np.asarray(vector, dtype=np.float32).reshape(-1)
    if v.shape[0] != dim:
        raise ValueError(f"query vector has {v.shape[0]} dimensions, the index has {dim}")
    norm = float(np.linalg.norm(v))
    if not np.isfinite(norm) or norm == 0.0:
        raise ValueError("query vector must be finite and non-zero")
    return v / norm


def search_folder(
    index: ExtractorIndex,
    vector: np.ndarray,
    folder: str,
    limit: int,
    max_distance: float | None = None,
    exact_cost: float = EXACT_COST,
) -> FolderHits:
    """The ``limit`` nearest indexed files at or below ``folder`` (a normalised path)."""
    return search_scoped(index, vector, SearchScope(folder=folder), limit, max_distance, exact_cost)


def search_scoped(
    index: ExtractorIndex,
    vector: np.ndarray,
    scope: SearchScope,
    limit: int,
    max_distance: float | None = None,
    exact_cost: float = EXACT_COST,
) -> FolderHits:
    """The ``limit`` nearest indexed files in ``scope`` (its folder a normalised path).

    ``exact_cost``: see ``EXACT_COST`` (0 always searches exactly, ``inf`` never does
    unless the index has no more). Raises ``UnknownFolder`` when the catalogue has no
    indexed (or offline) file in the scope's folder; a date range that holds nothing
    answers with no hits.
    """
    v = _unit(vector, index.dim)
    if scope.folder is not None and index.catalog.count_under(scope.folder) == 0:
        raise UnknownFolder(scope.folder)
    files = index.catalog.count_in(scope)
    if files == 0:
        return FolderHits([], Method.EXACT, 0)
    stats = index.stats()
    total = max(1, int(stats["indexed"]) - int(stats["tombstones"]) + int(stats["fresh"]))
    ask = min(total, max(2 * limit, math.ceil(limit * total / files * OVERFETCH_MARGIN)))
    while True:
        scale = math.ceil(ask / limit)
        if files * exact_cost <= _effort(stats, total, ask, scale):
            return _exact(index, v, scope, limit, max_distance)
        hits = index.query(v, ask, max_distance, budget_scale=scale)
        paths = index.catalog.paths_for((h.id for h in hits), scope)  # also drops files removed just now
        inside = [(h, paths[h.id]) for h in hits if h.id in paths]
        if len(inside) >= limit or len(hits) < ask or ask >= total:
            return FolderHits(inside[:limit], Method.OVERFETCH, ask)
        ask = min(total, ask * 4)


def _effort(stats: IndexStats, total: int, ask: int, scale: int) -> float:
    """Candidates the index inspects for an ask: all of them for an exact base, else search_k x scale.

    HNSW searches with max(ef, ask) and compares each node it expands with its layer-0 links
    (2 x ``CONNECTIVITY``): that many candidates, counted as Annoy's (not measured apart).
    """
    if stats["mode"] == BaseKind.HNSW:  # an HNSW or Annoy base always has its effort (and Annoy its trees)
        return float(min(total, max(stats["ef"] or 0, ask) * 2 * CONNECTIVITY))
    if stats["mode"] != BaseKind.ANNOY:
        return float(total)
    search_k = stats["search_k"] or 0
    return float(search_k * scale if search_k > 0 else (stats["trees"] or 0) * ask)


def _exact(
    index: ExtractorIndex, v: np.ndarray, scope: SearchScope, limit: int, max_distance: float | None
) -> FolderHits:
    """Rank the scope's vectors from the catalogue by brute force."""
    ids, vectors = index.catalog.vectors_in(scope, index.extractor, index.model_id, index.dim)
    top_ids, scores = exact_top(unit_rows(vectors), ids, v, limit)
    found = []
    for i, s in zip(top_ids.tolist(), scores.tolist()):
        d = distance_of(s)
        if max_distance is not None and d > max_distance:
            break
        found.append(Hit(i, d, max(-1.0, min(1.0, s))))
    paths = index.catalog.paths_for(h.id for h in found)
    return FolderHits([(h, paths[h.id]) for h in found if h.id in paths], Method.EXACT, 0)
