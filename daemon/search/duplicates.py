"""Groups of identical files, edited copies and similar shots, found in the background over one extractor's index.

**Identical** groups are files with the same content hash; **copies** and **similar** groups
come from a k-NN self-join of the distinct contents, the pairs above the copy floor checked on
their pixels (the framing check, ``framing_prints``), grouped into stars per tier
(``duplicate_join`` holds the join, the tiers and the grouping, and why stars). The join and
the check do not depend on the similar cut, so they run once per catalogue change number
(``seq``), extractor and copy floor, in the background (``DuplicateFinder``), one at a time
(phases "reading", "joining", "checking"); grouping at a cut then takes milliseconds and is
cached too. The checker keeps its scores across joins: after one new file, only its pairs are
checked. A request while it runs gets the progress (or the previous answer, marked stale:
``duplicate_page``).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TypedDict

import numpy as np

from ..store.catalog import Catalog
from ..timestamps import iso_utc
from .duplicate_join import (
    NEIGHBOURS,
    Framing,
    Group,
    Pairs,
    Query,
    exact_join,
    identical_groups,
    index_join,
    ordered,
    representatives,
    tier_groups,
)
from .duplicate_join import star_groups as star_groups  # for the bench and tests, as before the tiers
from .framing import FRAMING_COPY

log = logging.getLogger("imgsearchd.search.duplicates")

# Below this many distinct contents, or while the index is an exact matrix, the join is one
# blocked matrix product (exact, and faster than a query per vector at that size).
EXACT_JOIN_BELOW = 20_000
# Annoy candidates per join query. A near-duplicate is far closer than an ordinary
# neighbour, and fewer candidates find it: measured in bench/bench_duplicates.py (BENCHMARKS.md).
JOIN_SEARCH_K = 500
KEEP_GROUPINGS = 8  # thresholds kept per join
# (pairs of file ids a < b, progress per pair checked (may raise to stop)) -> each pair's framing
# score, None when a picture cannot be read (``framing_prints.FramingChecker.scores``)
Checker = Callable[[Sequence[tuple[int, int]], Callable[[int], None]], Mapping[tuple[int, int], float | None]]


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
    identical: list[Group]
    copies: dict[int, list[int]]  # a content's representative -> its other files (the same bytes)
    finished: float
    seconds: float
    method: str
    copy_floor: float | None = None  # the pairs at or above it were checked (None: none were)
    framing: Framing = field(default_factory=dict)
    groupings: dict[tuple[float | None, float], Grouping] = field(default_factory=dict)


@dataclass
class Grouping:
    """The groups at one similar cut (and copy floor), with the files' paths, sizes and (read
    lazily) dimensions; ``files`` holds every file of the groups' contents, byte copies too."""

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
    copy_floor: float | None = None  # the extractor's duplicate_threshold; None: no pair is a copy


class DuplicateFinder:
    """Joins computed in the background, one at a time, cached until the catalogue changes."""

    def __init__(
        self,
        catalog: Catalog,
        neighbours: int = NEIGHBOURS,
        exact_below: int = EXACT_JOIN_BELOW,
        checker: Checker | None = None,
    ) -> None:
        self.catalog = catalog
        self.checker = checker  # None: no framing check, so no copies tier
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
            fresh = join is not None and (join.seq, join.model_id, join.copy_floor) == (
                seq,
                source.model_id,
                source.copy_floor,
            )
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
        framing = self._check(pairs, source.copy_floor, computing, progress)
        seconds = time.monotonic() - t0
        log.info(
            "duplicates: %s joined %d contents (%s) in %.1f s: %d pairs (%d checked), %d byte-identical groups",
            extractor,
            len(ids),
            method,
            seconds,
            len(pairs),
            len(framing),
            len(copies),
        )
        groups = identical_groups(copies)
        return Join(
            extractor,
            source.model_id,
            seq,
            len(ids),
            pairs,
            groups,
            copies,
            time.time(),
            seconds,
            method,
            copy_floor=source.copy_floor,
            framing=framing,
        )

    def _check(
        self, pairs: Pairs, floor: float | None, computing: Computing, progress: Callable[[int], None]
    ) -> Framing:
        """The framing scores of the pairs at or above the copy floor (phase "checking")."""
        if floor is None or self.checker is None:
            return {}
        keep = pairs.score >= floor
        wanted = list(zip(pairs.a[keep].tolist(), pairs.b[keep].tolist()))
        computing.phase, computing.done, computing.total = "checking", 0, len(wanted)
        return dict(self.checker(wanted, progress)) if wanted else {}

    def grouping(self, join: Join, threshold: float) -> Grouping:
        """The tiers' groups of a join at the similar cut ``threshold`` (cached with the join)."""
        key = (join.copy_floor, threshold)
        with self._lock:
            found = join.groupings.get(key)
        if found is not None:
            return found
        floor = join.copy_floor if join.copy_floor is not None else np.inf
        tiers, largest = tier_groups(join.pairs, join.framing, floor, threshold, FRAMING_COPY)
        groups = ordered([*join.identical, *tiers])
        contents = {m for g in groups for m in g.members}
        files = self.catalog.path_and_size([*contents, *(c for m in contents for c in join.copies.get(m, ()))])
        grouping = Grouping(threshold, groups, largest, files)
        with self._lock:
            if len(join.groupings) >= KEEP_GROUPINGS:
                join.groupings.pop(next(iter(join.groupings)))
            join.groupings[key] = grouping
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
