"""Measured recall: how much of the true top 10 a snapshot finds, and the search effort that reaches a target.

Runs in the builder process right after the build, over the vectors it has just indexed
(kept in memory for this, freed when the builder exits: about 2 GB at 1M 512-d vectors for
Annoy; for HNSW a float16 copy, 1 GB, next to the 1.3 GB graph being grown).
A seeded sample of stored vectors serves as queries; their exact 10 nearest *other* items
come from numpy; Annoy answers each with 11 results, the query's own item dropped, so a
query never counts itself. In auto mode ``search_k`` doubles from trees x 10 (Annoy's own
default for 10 results) until the sample's recall@10 reaches the target, or its p50
passes the latency budget (then the largest ``search_k`` within the budget is kept), or
Annoy already inspects every item. A step over the budget is timed twice and the faster
pass counts: the builder runs at low priority, and on the shared 2-core machine one slow
pass stopped a sweep at 3 ms where the next step took 5 (bench_recall, 100k broad, 20 trees).
A configured ``search_k`` is only measured. An HNSW snapshot (``hnsw``) is measured the
same way, its ``ef`` doubling from ``HNSW_START_EF`` in place of ``search_k``.

Once the target is reached, ``search_k`` is doubled once more when that step stays within
the budget: stored vectors are easier queries than new pictures (a query's own item sits in
its neighbours' leaves), and held-out queries found less than the sample said: 0.936 where
the sample measured 0.951 (100k photo-like, search_k 400; bench_recall, BENCHMARKS.md).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from annoy import AnnoyIndex

from .facts import RecallFacts, RecallReport, TuningFields
from .parts import Base, BaseKind

K = 10
DEFAULT_TARGET = 0.95
# p50 budget of one search (the index part only). Searching by text or an uploaded image
# first runs the model, 20-100 ms on this CPU; 10 ms keeps the index a small part of that,
# and is the bound issue 12 states for the hard set at 1M.
DEFAULT_BUDGET_MS = 10.0
DEFAULT_SAMPLE = 300  # recall@10 over 300 queries: standard error about 0.005 near 0.95
# The first ef an HNSW sweep measures: hnswlib and usearch reach 0.88-0.89 at ef 16 on the broad set at
# 100k (bench_ann, BENCHMARKS.md), so smaller values are never the answer.
HNSW_START_EF = 16
MAX_AUTO_TREES = 50  # 50 trees at 1M: about 230 s to build on 2 cores, 2.7 GB (BENCHMARKS.md)


@dataclass(frozen=True)
class Tuning:
    """What the measurement aims for; travels to the builder process as a dict."""

    target: float = DEFAULT_TARGET
    budget_ms: float = DEFAULT_BUDGET_MS
    sample: int = DEFAULT_SAMPLE
    search_k: int | None = None  # None: chosen by the sweep; else the configured value (-1: Annoy's default)
    ef: int | None = None  # HNSW: None: chosen by the sweep; else the configured value
    max_trees: int | None = MAX_AUTO_TREES  # None: the number of trees is configured, never raised
    seed: int = 0

    def as_dict(self) -> TuningFields:
        return {"target": self.target, "budget_ms": self.budget_ms, "sample": self.sample,
                "search_k": self.search_k, "ef": self.ef, "max_trees": self.max_trees, "seed": self.seed}  # fmt: skip


def sample_positions(n: int, sample: int, seed: int) -> np.ndarray:
    """The item positions (0..n-1, sorted) whose vectors serve as queries."""
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(n, size=min(sample, n), replace=False))


@dataclass(frozen=True)
class Truth:
    """The exact answer for each sampled query: its ``k`` nearest other items and the k-th's
    score. A result at least as close as the k-th is as right as any of the k: with many
    identical copies the exact top 10 is one arbitrary pick among ties, and counting the
    others as misses once read "recall 0.016" and pushed ``ef`` to 32768 for right answers."""

    positions: np.ndarray  # (queries, k) item positions
    floors: np.ndarray  # (queries,) the k-th best cosine
    chunks: list[np.ndarray]
    offsets: np.ndarray

    @property
    def k(self) -> int:
        return int(self.positions.shape[1])

    def hits(self, j: int, query: np.ndarray, found: Sequence[int]) -> int:
        """How many of ``found`` (query j's results, itself dropped) are among its true k or tie with them."""
        want = set(self.positions[j].tolist())
        hits = sum(1 for p in found if p in want)
        others = [p for p in found if p not in want]
        if others:
            q = np.asarray(query, np.float32)
            q = q / max(float(np.linalg.norm(q)), 1e-30)
            for p in others:
                c = int(np.searchsorted(self.offsets, p, side="right")) - 1
                v = self.chunks[c][p - self.offsets[c]]
                score = float(q @ v) / max(float(np.linalg.norm(v)), 1e-30)
                hits += score >= self.floors[j] - TIE
        return hits


# Cosines this close count as a tie: float32 rounding of one dot product (stored vectors,
# identical pictures give bit-identical scores; 1e-5 leaves room for another summation order).
TIE = 1e-5


def true_neighbours(chunks: list[np.ndarray], positions: np.ndarray, k: int = K) -> Truth:
    """The ``k`` nearest other items (cosine) of each sampled item, over all ``chunks`` in order."""
    n = sum(len(c) for c in chunks)
    offsets = np.cumsum([0] + [len(c) for c in chunks])
    queries = np.empty((len(positions), chunks[0].shape[1]), np.float32)
    for j, p in enumerate(positions):
        c = int(np.searchsorted(offsets, p, side="right")) - 1
        queries[j] = chunks[c][p - offsets[c]]
    queries /= np.maximum(np.linalg.norm(queries, axis=1, keepdims=True), 1e-30)
    k = min(k, n - 1)
    best_s = np.full((len(positions), k), -np.inf, np.float32)
    best_p = np.zeros((len(positions), k), np.int64)
    for c, chunk in enumerate(chunks):
        norms = np.maximum(np.linalg.norm(chunk, axis=1), 1e-30)
        scores = (queries @ chunk.T) / norms
        inside = (positions >= offsets[c]) & (positions < offsets[c + 1])
        scores[np.flatnonzero(inside), positions[inside] - offsets[c]] = -np.inf  # not itself
        all_s = np.concatenate([best_s, scores], axis=1)
        all_p = np.concatenate([best_p, np.broadcast_to(np.arange(offsets[c], offsets[c + 1]), scores.shape)], axis=1)
        top = np.argpartition(-all_s, k - 1, axis=1)[:, :k]
        best_s, best_p = np.take_along_axis(all_s, top, axis=1), np.take_along_axis(all_p, top, axis=1)
    floors = best_s.min(axis=1) if k else np.zeros(len(positions), np.float32)
    return Truth(best_p, floors, chunks, offsets)


# One search of the measurement: (stored vector, results wanted, effort) -> item positions, best first.
Searcher = Callable[[Any, int, int], Sequence[int]]


def measure(
    search: Searcher,
    queries: Sequence[Any],
    positions: np.ndarray,
    truth: Truth,
    effort: int,
    max_seconds: float = float("inf"),
) -> tuple[float, float, float, int]:
    """(recall@10, p50 ms, p95 ms, queries used) of one search effort over the sampled queries.

    Stops after ``max_seconds`` (at least 10 queries): a configured effort far above
    the budget would otherwise hold the builder for minutes.
    """
    k = truth.k
    if k == 0:
        return 1.0, 0.0, 0.0, len(queries)
    hits, lat = 0, list[float]()
    stop = time.perf_counter() + max_seconds
    for j, (q, own) in enumerate(zip(queries, positions.tolist())):
        if len(lat) >= 10 and time.perf_counter() > stop:
            break
        t = time.perf_counter()
        got = search(q, k + 1, effort)
        lat.append(time.perf_counter() - t)
        hits += truth.hits(j, q, [p for p in got if p != own][:k])
    p50, p95 = float(np.percentile(lat, 50)) * 1e3, float(np.percentile(lat, 95)) * 1e3
    return hits / (k * len(lat)), p50, p95, len(lat)


def sweep_effort(
    search: Searcher,
    queries: Sequence[Any],
    positions: np.ndarray,
    truth: Truth,
    tuning: Tuning,
    configured: int | None,
    start: int,
    ceiling: int,
) -> tuple[tuple[int, float, float, float, int], list[list[float]]]:
    """Choose the effort (Annoy ``search_k``, HNSW ``ef``): the chosen (effort, recall, p50, p95, used) and the sweep.

    ``configured`` is only measured; otherwise the effort doubles from ``start`` as the
    module docstring says, never past ``ceiling`` (where the index already inspects everything).
    """
    sweep: list[list[float]] = []
    cap = max(2.0, 2 * len(queries) * tuning.budget_ms / 1e3)  # a step: at most 2 s or twice the budget per query
    if configured is not None:
        rec, p50, p95, used = measure(search, queries, positions, truth, configured, cap)
        sweep.append([configured, round(p50, 3), round(rec, 4)])
        return (configured, rec, p50, p95, used), sweep
    chosen: tuple[int, float, float, float, int] | None = None
    effort = start
    while True:
        rec, p50, p95, used = measure(search, queries, positions, truth, effort, cap)
        if p50 > tuning.budget_ms:  # once more: on a shared machine one slow pass is often load
            again = measure(search, queries, positions, truth, effort, cap)
            rec, p50, p95, used = min((rec, p50, p95, used), again, key=lambda m: m[1])
        sweep.append([effort, round(p50, 3), round(rec, 4)])
        if p50 > tuning.budget_ms and chosen is not None:
            break  # keep the best within the budget
        if chosen is not None and chosen[1] >= tuning.target:
            chosen = (effort, rec, p50, p95, used)
            break  # the margin step, taken
        chosen = (effort, rec, p50, p95, used)
        if p50 > tuning.budget_ms or effort >= ceiling:
            break
        effort *= 2  # towards the target, or once past it: the margin (see the docstring)
    return chosen, sweep


def _facts(chosen: tuple[int, float, float, float, int], sweep: list[list[float]], tuning: Tuning) -> RecallFacts:
    _, rec, p50, p95, used = chosen
    return {
        "recall_at_10": round(rec, 4),
        "p50_ms": round(p50, 3),
        "p95_ms": round(p95, 3),
        "sample": used,
        "target_recall": tuning.target,
        "search_budget_ms": tuning.budget_ms,
        "target_met": bool(rec >= tuning.target and p50 <= tuning.budget_ms),
        "sweep": sweep,
    }


def tune(annoy: AnnoyIndex, chunks: list[np.ndarray], trees: int, tuning: Tuning) -> RecallFacts:
    """Measure an Annoy snapshot and choose ``search_k``; the facts ``index.json`` keeps under ``recall``."""
    started = time.monotonic()
    n = sum(len(c) for c in chunks)
    positions = sample_positions(n, tuning.sample, tuning.seed)
    truth = true_neighbours(chunks, positions)
    queries = [annoy.get_item_vector(int(p)) for p in positions]
    configured = None
    if tuning.search_k is not None:
        configured = tuning.search_k if tuning.search_k > 0 else trees * K

    def search(q: Any, count: int, search_k: int) -> Sequence[int]:
        return annoy.get_nns_by_vector(q, count, search_k)

    chosen, sweep = sweep_effort(search, queries, positions, truth, tuning, configured, trees * K, n * trees)
    facts = _facts(chosen, sweep, tuning)
    met = facts["target_met"]
    next_trees = trees if met or tuning.max_trees is None else min(max(trees, tuning.max_trees), 2 * trees)
    facts["search_k"] = int(tuning.search_k if tuning.search_k is not None else chosen[0])
    facts["search_k_source"] = "auto" if tuning.search_k is None else "config"
    facts["trees"] = trees
    facts["next_trees"] = int(next_trees)
    facts["seconds"] = round(time.monotonic() - started, 3)
    return facts


def tune_hnsw(
    search: Searcher, chunks: list[np.ndarray], n: int, configured_ef: int | None, tuning: Tuning
) -> RecallFacts:
    """Measure an HNSW snapshot (``hnsw``) and choose ``ef``; ``search`` answers with item positions."""
    started = time.monotonic()
    positions = sample_positions(n, tuning.sample, tuning.seed)
    truth = true_neighbours(chunks, positions)
    offsets = np.cumsum([0] + [len(c) for c in chunks])
    queries = []
    for p in positions.tolist():
        c = int(np.searchsorted(offsets, p, side="right")) - 1
        queries.append(chunks[c][p - offsets[c]])
    chosen, sweep = sweep_effort(search, queries, positions, truth, tuning, configured_ef, HNSW_START_EF, max(n, 1))
    facts = _facts(chosen, sweep, tuning)
    facts["ef"] = int(chosen[0])
    facts["ef_source"] = "auto" if configured_ef is None else "config"
    facts["seconds"] = round(time.monotonic() - started, 3)
    return facts


def report(base: Base, tuning: Tuning, next_trees: int, trees_source: str) -> RecallReport:
    """The ``/stats`` fields of a base: its measured recall, the search effort it uses and why."""
    hnsw = base.kind == BaseKind.HNSW
    out: RecallReport = {
        "target_recall": tuning.target,
        "search_budget_ms": tuning.budget_ms,
        "trees_source": trees_source,
        "next_trees": None if hnsw else next_trees,
        "search_k": None, "search_k_source": None, "ef": None, "ef_source": None, "trees": None,
        "recall_at_10": None, "target_met": None, "p50_ms": None, "p95_ms": None, "recall_sample": None,
        "recall_note": None,
    }  # fmt: skip
    if base.kind == BaseKind.EXACT:  # exact search finds the true top 10
        out.update({"recall_at_10": 1.0, "target_met": True, "search_k_source": "exact"})
        return out
    if hnsw:
        out.update({"ef": base.effort, "ef_source": base.effort_source})
    else:
        out.update({"search_k": base.effort, "search_k_source": base.effort_source, "trees": int(base.meta["trees"])})
    measured = base.meta.get("recall")
    if not isinstance(measured, dict):
        out["recall_note"] = "not measured: the snapshot was built before recall was measured"
        return out
    effort, at = ("ef", measured["ef"]) if hnsw else ("search_k", measured["search_k"])
    if at != base.effort:  # index.search_k / index.ef changed since the build
        note = f"measured at {effort} {at}, searching with {base.effort} (index.{effort})"
    elif measured["target_met"]:
        note = None
    else:
        note = (
            f"target {tuning.target} not reached within {measured['search_budget_ms']} ms: recall@10 "
            f"{measured['recall_at_10']} at {effort} {at} (p50 {measured['p50_ms']} ms); "
            + _remedy(measured, hnsw, next_trees)
        )
    out.update({"recall_at_10": measured["recall_at_10"], "target_met": measured["target_met"],
                "p50_ms": measured["p50_ms"], "p95_ms": measured["p95_ms"], "recall_sample": measured["sample"],
                "recall_note": note})  # fmt: skip
    return out


def _effort(recall: RecallFacts) -> tuple[str, int | None]:
    """The search effort a measurement chose: ("ef", ef) for HNSW, ("search_k", search_k) for Annoy."""
    return ("ef", recall["ef"]) if "ef" in recall else ("search_k", recall.get("search_k"))


def _remedy(recall: RecallFacts, hnsw: bool, next_trees: int) -> str:
    if hnsw:  # a bigger ef would pass the budget; the graph's shape is fixed
        return "a larger index.search_budget_ms would let ef grow"
    trees = int(recall["trees"])
    return f"the next build uses {next_trees} trees" if next_trees > trees else f"{trees} trees is the most allowed"


def miss_message(recall: RecallFacts) -> str | None:
    """The log's warning for a measurement that missed the target, or None when it met it."""
    if recall["target_met"]:
        return None
    effort, at = _effort(recall)
    hnsw = effort == "ef"
    return (
        f"recall@10 {recall['recall_at_10']:.3f} at {effort} {at} (p50 {recall['p50_ms']:.2f} ms), "
        f"short of the target {recall['target_recall']:.2f} within the {recall['search_budget_ms']:g} ms budget; "
        + _remedy(recall, hnsw, 0 if hnsw else int(recall["next_trees"]))
    )
