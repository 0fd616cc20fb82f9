"""Groups of identical and near-identical files, found in the background over one extractor's index.

**Exact** groups are files with the same content hash; **near** groups come from a k-NN
self-join of the distinct contents, grouped into stars above a cosine threshold
(``duplicate_join`` holds the join and the grouping, and why stars). The join does not
depend on the threshold, so it runs once per catalogue change number (``seq``) and
extractor, in the background (``DuplicateFinder``), one at a time; grouping at a threshold
then takes milliseconds and is cached too. A request while it runs gets the progress (or the
previous answer, marked stale: ``duplicate_page``).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypedDict

import numpy as np

from ..store.catalog import Catalog
from ..timestamps import iso_utc
from .duplicate_join import (
    NEIGHBOURS,
    Group,
    Pairs,
    Query,
    exact_groups,
    exact_join,
    index_join,
    near_groups,
    ordered,
    representatives,
    star_groups,
)

log = logging.getLogger("imgsearchd.search.duplicates")

# Below this many distinct contents, or while the index is an exact matrix, the join is one
# blocked matrix product (exact, and faster than a query per vector at that size).
EXACT_JOIN_BELOW = 20_000
# Annoy candidates per join query. A near-duplicate is far closer than an ordinary
# neighbour, and fewer candidates find it: measured in bench/bench_duplicates.py (BENCHMARKS.md).
JOIN_SEARCH_K = 500
KEEP_GROUPINGS = 8  # thresholds kept per join


class Progress(TypedDict):
    """A join in progress, as the API and ``/stats`` show it."""

    extractor: str
    phase: str
    done: int
    total: int
    progress: float
    seconds: float


class JoinFacts(TypedDict):
    """A finished join, as the API and ``/stats`` show it."""

    seq: int
    contents: int
    pairs: int
    method: str
    computed_at: str
    seconds: float


class CachedJoin(JoinFacts):
    current: bool


class FinderStatus(TypedDict):
    """``/stats``' ``duplicates``: the join running, the joins cached, the last errors."""

    computing: Progress | None
    cached: dict[str, CachedJoin]
    errors: dict[str, str]


@dataclass
class Join:
    """One extractor's k-NN self-join at a catalogue change number, and its groupings."""

    extractor: str
    model_id: str
    seq: int
    contents: int
    pairs: Pairs
    exact: list[Group]
    copies: dict[int, list[int]]
    finished: float
    seconds: float
    method: str
    groupings: dict[float, Grouping] = field(default_factory=dict)


@dataclass
class Grouping:
    """The groups at one threshold, with the files' paths, sizes and (read lazily) dimensions."""

    threshold: float
    groups: list[Group]
    largest_component: int
    files: dict[int, tuple[str, int]]
    dimensions: dict[int, tuple[int, int] | None] = field(default_factory=dict)


@dataclass
class Computing:
    """The join in progress, as the API and ``/stats`` show it."""

    extractor: str
    phase: str = "queued"
    done: int = 0
    total: int = 0
    started: float = field(default_factory=time.time)

    def as_dict(self) -> Progress:
        return {
            "extractor": self.extractor,
            "phase": self.phase,
            "done": self.done,
            "total": self.total,
            "progress": round(min(1.0, self.done / self.total), 4) if self.total else 0.0,
            "seconds": round(time.time() - self.started, 3),
        }


@dataclass(frozen=True)
class Source:
    """What a join reads: the catalogue, and the index of the extractor (model, dim, query)."""

    catalog: Catalog
    model_id: str
    dim: int
    mode: Callable[[], str]  # the index's base kind now: "exact", "annoy" or "hnsw"
    query: Query


class DuplicateFinder:
    """Joins computed in the background, one at a time, cached until the catalogue changes."""

    def __init__(self, catalog: Catalog, neighbours: int = NEIGHBOURS, exact_below: int = EXACT_JOIN_BELOW) -> None:
        self.catalog = catalog
        self.neighbours = neighbours
        self.exact_below = exact_below
        self._lock = threading.Lock()
        self._joins: dict[str, Join] = {}
        self._computing: Computing | None = None
        self._waiting: dict[str, Source] = {}  # extractors asked for while another join ran
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self.last_error: dict[str, str] = {}

    def lookup(self, extractor: str, source: Source) -> tuple[Join | None, bool, Computing | None]:
        """The latest join of ``extractor`` (or None), whether it is current, and the work
        running for it. A join that is missing or behind the catalogue is started (or queued)."""
        seq = self.catalog.current_seq()
        with self._lock:
            join = self._joins.get(extractor)
            fresh = join is not None and join.seq == seq and join.model_id == source.model_id
            if not fresh and not self._stop.is_set():
                self._start_locked(extractor, source)
            computing = self._computing if self._computing and self._computing.extractor == extractor else None
            if not fresh and computing is None:
                computing = Computing(extractor)  # queued behind another extractor's join
            return join, fresh, computing

    def _start_locked(self, extractor: str, source: Source) -> None:
        if self._computing is not None:
            if self._computing.extractor != extractor:
                self._waiting[extractor] = source
            return
        self._computing = Computing(extractor)
        self._thread = threading.Thread(
            target=self._run, args=(extractor, source), name=f"duplicates-{extractor}", daemon=True
        )
        self._thread.start()

    def _run(self, extractor: str, source: Source) -> None:
        while True:
            computing = self._computing
            assert computing is not None
            try:
                join = self._join(extractor, source, computing)
                with self._lock:
                    self._joins[extractor] = join
                    self.last_error.pop(extractor, None)
            except InterruptedError:
                pass
            except Exception as exc:  # a closed index, a catalogue error: the next request tries again
                log.exception("duplicates: the join over %s failed", extractor)
                with self._lock:
                    self.last_error[extractor] = str(exc)
            with self._lock:
                if self._stop.is_set() or not self._waiting:
                    self._computing = None
                    return
                extractor, source = self._waiting.popitem()
                self._computing = Computing(extractor)

    def _join(self, extractor: str, source: Source, computing: Computing) -> Join:
        t0 = time.monotonic()
        computing.phase = "reading"
        shared = source.catalog.shared_contents()
        rep_of, copies = representatives(shared)
        seq, ids, vectors = source.catalog.all_vectors(extractor, source.model_id, source.dim)
        distinct = np.fromiter((rep_of.get(i, i) == i for i in ids.tolist()), bool, len(ids))
        ids, vectors = ids[distinct], vectors[distinct]
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        vectors = vectors / np.where(norms > 0, norms, 1.0)
        computing.phase, computing.total = "joining", len(ids)

        def progress(n: int) -> None:
            if self._stop.is_set():
                raise InterruptedError("the daemon is stopping")
            computing.done += n

        if len(ids) < self.exact_below or source.mode() == "exact":
            method = "exact"
            pairs = exact_join(ids, vectors, self.neighbours, progress)
        else:
            method = "index"
            pairs = index_join(ids, vectors, source.query, self.neighbours, rep_of, progress)
        seconds = time.monotonic() - t0
        log.info(
            "duplicates: %s joined %d contents (%s) in %.1f s: %d pairs, %d byte-identical groups",
            extractor,
            len(ids),
            method,
            seconds,
            len(pairs),
            len(copies),
        )
        return Join(
            extractor, source.model_id, seq, len(ids), pairs, exact_groups(copies), copies, time.time(), seconds, method
        )

    def grouping(self, join: Join, threshold: float) -> Grouping:
        """The groups of a join at ``threshold`` (cached with the join)."""
        with self._lock:
            found = join.groupings.get(threshold)
        if found is not None:
            return found
        stars, largest = star_groups(join.pairs, threshold)
        groups = ordered([*join.exact, *near_groups(stars, join.copies)])
        files = self.catalog.path_and_size(m for g in groups for m in g.members)
        grouping = Grouping(threshold, groups, largest, files)
        with self._lock:
            if len(join.groupings) >= KEEP_GROUPINGS:
                join.groupings.pop(next(iter(join.groupings)))
            join.groupings[threshold] = grouping
        return grouping

    def status(self) -> FinderStatus:
        """For ``/stats``: the join running (if any) and the joins cached."""
        seq = self.catalog.current_seq()
        with self._lock:
            return {
                "computing": self._computing.as_dict() if self._computing else None,
                "cached": {
                    name: {**join_facts(join), "current": join.seq == seq} for name, join in self._joins.items()
                },
                "errors": dict(self.last_error),
            }

    def close(self) -> None:
        """Stop a join in progress (at its next step) and wait for it."""
        self._stop.set()
        thread = self._thread
        if thread is not None:
            thread.join(timeout=60)


def join_facts(join: Join) -> JoinFacts:
    return {
        "seq": join.seq,
        "contents": join.contents,
        "pairs": len(join.pairs),
        "method": join.method,
        "computed_at": iso_utc(join.finished),
        "seconds": round(join.seconds, 3),
    }
