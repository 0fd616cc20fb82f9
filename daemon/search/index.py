"""Per-extractor similarity index: a base (HNSW or Annoy snapshot, or exact matrix), fresh vectors, tombstones.

A snapshot is not changed once built, so each extractor's index searches three
parts (see ``parts``): the **base**, built from the catalogue at change number
``seq``; the **fresh** vectors added or changed after ``seq``, searched exactly; and
**tombstones**, base items removed or superseded since. A query over-fetches from the
base, drops tombstoned items, merges the rest with the best fresh vectors and returns the
best ``limit``. ``refresh`` pulls catalogue changes with ``Catalog.changes_since`` (one
cheap read when nothing changed), so a change is searchable as soon as it is committed.

Rebuilds run on a background thread per extractor (``rebuilds``): when the fresh vectors or
the tombstones reach ``rebuild_after_changes``, or the oldest change is older than
``rebuild_after_seconds``. Small collections get an exact base; larger ones a snapshot
(``kind``: an HNSW graph grown from the last one, see ``hnsw``, or an Annoy index built
from scratch) built and committed by ``snapshot.SnapshotStore``. Queries hold a reference to
the base they use (``holder``); a replaced base is unloaded (and its files deleted) only when
its last query has finished. The duplicates' bulk self-join is ``self_join.query_many``.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..store.catalog import Catalog
from ..timestamps import iso_utc
from .facts import Found, IndexStats, RecallFacts
from .hnsw import HnswBase
from .holder import StateHolder
from .parts import (
    UNMEASURED_SEARCH_K,
    AnnoyBase,
    Base,
    BaseKind,
    ExactBase,
    Hit,
    State,
    distance_of,
    exact_top,
    unit_rows,
)
from .rebuilds import Rebuilds
from .recall import DEFAULT_BUDGET_MS, DEFAULT_SAMPLE, DEFAULT_TARGET, MAX_AUTO_TREES, Tuning, miss_message, report
from .snapshot import SnapshotError, SnapshotStore

if TYPE_CHECKING:
    from ..config import Config
    from ..extractors import Extractor

__all__ = [
    "AUTO", "DEFAULT_KIND", "DEFAULT_SEARCH_K", "DEFAULT_TREES", "EXACT_BELOW", "ExtractorIndex", "index_for",
]  # fmt: skip

log = logging.getLogger("imgsearchd.search.index")

# Below this many vectors the index searches exactly with numpy instead of building Annoy.
# Measured with bench/bench_index.py on the 2-core VM (BENCHMARKS.md): the exact scan costs
# about 0.1 ms per 1000 vectors (1.0 ms p50 at 10k); Annoy 0.4-0.7 ms at 5k-10k, 1.5 ms at
# 1M. Up to 10k exact stays under 1 ms, at most 0.3 ms behind Annoy, with recall 1.0, no build.
EXACT_BELOW = 10_000
# Trees of the first snapshot with trees "auto" (then raised, see ``recall``): 10 built in 62-82 s
# at 1M 512-d vectors on this machine, recall@10 0.983 at search_k 5000 on photo-like data
# (BENCHMARKS.md, issue 3). search_k is measured after each build (``recall``).
DEFAULT_TREES = 10
DEFAULT_SEARCH_K = UNMEASURED_SEARCH_K
AUTO = "auto"
# HNSW by default: at 1M widely spread vectors usearch reaches recall@10 0.962 in 3.1 ms
# where Annoy, tuned, stays at 0.64 in 10 ms; at 100k through this class 0.991 in 0.8 ms
# against Annoy's 0.977 in 8.5 ms after a second build (bench_ann, bench_recall; BENCHMARKS.md
# "Measured recall"). Its costly full build happens once: later builds grow the graph
# (``hnsw``: 9-10 s at 100k against Annoy's 17-42 s from scratch).
DEFAULT_KIND = "hnsw"


class ExtractorIndex:
    """The always-current similarity index of one extractor and model.

    Thread-safe: any number of threads may ``query``/``search``/``refresh`` while the
    background thread rebuilds. Call ``open`` once before use and ``close`` at the end.
    """

    def __init__(
        self,
        catalog: Catalog,
        directory: str | os.PathLike[str],
        extractor: str,
        model_id: str,
        dim: int,
        *,
        kind: str = DEFAULT_KIND,
        trees: int | str = AUTO,
        search_k: int | str | None = None,
        ef: int | str = AUTO,
        target_recall: float = DEFAULT_TARGET,
        search_budget_ms: float = DEFAULT_BUDGET_MS,
        recall_sample: int = DEFAULT_SAMPLE,
        rebuild_after_changes: int = 1000,
        rebuild_after_seconds: float = 60.0,
        exact_below: int = EXACT_BELOW,
        build_jobs: int | None = None,
    ) -> None:
        """``directory`` holds this extractor's files (normally ``<data_dir>/<extractor>``).

        ``kind``: what a snapshot is, "hnsw" (``hnsw``, the default) or "annoy". ``ef``: HNSW's
        search effort, or "auto": measured after each build like ``search_k``.
        ``trees``: Annoy trees, or "auto": ``DEFAULT_TREES``, raised after a build that misses
        the recall target (see ``recall``). ``search_k``: Annoy candidates per query, or "auto"
        (also None): the least that reaches ``target_recall`` within ``search_budget_ms`` p50,
        measured after each build on ``recall_sample`` stored vectors; -1: Annoy's own
        default of trees x results. ``build_jobs``: Annoy build threads (None: all cores but one,
        so that a build never takes the core queries run on; -1: all cores).
        """
        if dim <= 0 or rebuild_after_changes <= 0 or rebuild_after_seconds <= 0:
            raise ValueError("dim and the rebuild thresholds must be positive")
        _check_search(kind, ef, target_recall, search_budget_ms, recall_sample)
        self.kind = BaseKind(kind)
        self.ef: int | None = None if ef == AUTO else int(ef)  # None: measured
        self.catalog = catalog
        self.directory = Path(directory)
        self.extractor = extractor
        self.model_id = model_id
        self.dim = dim
        self.trees = trees
        self.search_k: int | None = None if search_k in (None, AUTO) else int(search_k)  # None: measured
        self.target_recall = target_recall
        self.search_budget_ms = search_budget_ms
        self.recall_sample = recall_sample
        self._next_trees = DEFAULT_TREES  # for the next build with trees "auto"; raised by misses
        self.rebuild_after_changes = rebuild_after_changes
        self.rebuild_after_seconds = rebuild_after_seconds
        self.exact_below = exact_below
        self.build_jobs = build_jobs if build_jobs is not None else max(1, _cpus() - 1)
        self.store = SnapshotStore(self.directory, extractor, model_id, dim)
        self.holder = StateHolder()
        self._update_lock = threading.Lock()  # one state update (refresh or swap) at a time
        tick = min(1.0, rebuild_after_seconds / 4)
        self._rebuilds = Rebuilds(extractor, self._build, self._idle, tick, lambda: self.rebuild_after_seconds)

    @property
    def _state(self) -> State | None:
        """The state queries read now (tests and benches look inside it)."""
        return self.holder.state

    # -- life cycle --------------------------------------------------------------

    def open(self) -> None:
        """Load the snapshot if it matches the catalogue, else rebuild it; catch up on changes."""
        if self._rebuilds.used:
            raise RuntimeError("an index opens once; make a new one after close()")
        self.store.lock()
        try:
            self._open_locked()
        except BaseException:
            self.close()
            raise

    def _open_locked(self) -> None:
        base, rebuild_reason = self._first_base()
        self.store.remove_strays(base)
        with self._update_lock:
            state = State.of(base, self.dim)
            changes = self.catalog.changes_since(self.extractor, self.model_id, base.seq, self.dim)
            self.holder.swap(
                state.apply(changes.ids, changes.vectors, changes.removed_ids, changes.seq, time.monotonic())
            )
        self._rebuilds.start()
        if rebuild_reason:
            log.info("%s: rebuilding: %s", self.extractor, rebuild_reason)
            self.rebuild(wait=False)

    def _first_base(self) -> tuple[Base, str | None]:
        """The committed snapshot, else an exact base read from the catalogue; and why to rebuild, if so."""
        t0 = time.monotonic()
        try:
            snapshot = self.store.load(self.catalog.current_seq(), self.tuning())
        except FileNotFoundError:
            log.info("%s: no snapshot yet in %s", self.extractor, self.directory)
        except SnapshotError as exc:
            log.warning("%s: snapshot rejected: %s; rebuilding it", self.extractor, exc)
        else:
            log.info(
                "%s: loaded snapshot %s (%d vectors, seq %d) in %.1f s",
                self.extractor,
                snapshot.files()[0].name,
                len(snapshot),
                snapshot.seq,
                time.monotonic() - t0,
            )
            return snapshot, self._unwanted(snapshot)
        seq, ids, vectors = self.catalog.all_vectors(self.extractor, self.model_id, self.dim)
        base = ExactBase(ids, unit_rows(vectors), seq, time.time(), time.monotonic() - t0)
        if len(base) >= self.exact_below:
            return base, f"{len(base)} vectors and no usable snapshot; exact search until it is built"
        log.info("%s: %d vectors, below %d: exact search", self.extractor, len(base), self.exact_below)
        return base, None

    def _unwanted(self, snapshot: AnnoyBase | HnswBase) -> str | None:
        """Why a loaded snapshot should be rebuilt (kind, trees, an unmeasured effort), or None."""
        measured = snapshot.meta.get("recall")
        if snapshot.kind != self.kind:
            return f"it is an {snapshot.kind} snapshot, index.kind is {self.kind}"
        if isinstance(snapshot, HnswBase):
            if self.ef is None and (measured is None or measured.get("ef_source") != "auto"):
                return "its ef was not chosen by a recall measurement"
            return None
        if self.trees == AUTO and measured is not None:
            self._next_trees = int(measured.get("next_trees", snapshot.meta["trees"]))
        if int(snapshot.meta["trees"]) != self.build_trees():
            asks = "the recall measurement asks" if self.trees == AUTO else "the settings ask"
            return f"it has {snapshot.meta['trees']} trees, {asks} for {self.build_trees()}"
        if self.search_k is None and (measured is None or measured.get("search_k_source") != "auto"):
            return "its search_k was not chosen by a recall measurement"
        return None

    def close(self) -> None:
        """Stop the rebuild thread (killing a build in progress) and unload the snapshot."""
        self._rebuilds.stop()
        self.store.stop_building()
        self._rebuilds.join()
        self.holder.clear()
        self.store.unlock()

    def __enter__(self) -> ExtractorIndex:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- reading -----------------------------------------------------------------

    def refresh(self) -> None:
        """Pull catalogue changes made since the last refresh; one cheap read when none."""
        state = self.holder.state
        if state is None:
            raise RuntimeError("index is not open")
        if self.catalog.current_seq() == state.seq:
            return
        with self._update_lock:
            state = self.holder.state
            if state is None:
                return
            changes = self.catalog.changes_since(self.extractor, self.model_id, state.seq, self.dim)
            if changes.seq != state.seq:
                self.holder.swap(
                    state.apply(changes.ids, changes.vectors, changes.removed_ids, changes.seq, time.monotonic())
                )
        self.maybe_rebuild()

    def query(
        self,
        vector: np.ndarray,
        limit: int = 10,
        max_distance: float | None = None,
        exclude_ids: Iterable[int] = (),
        budget_scale: int = 1,
    ) -> list[Hit]:
        """The ``limit`` nearest vectors to ``vector``, best first, at most ``max_distance`` away.

        Distances are Euclidean between unit vectors (0..2); scores are cosine similarities.
        ``budget_scale`` multiplies the Annoy base's ``search_k`` (a deep over-fetch, see
        ``scoped``).
        """
        v = np.asarray(vector, dtype=np.float32).reshape(-1)
        if v.shape[0] != self.dim:
            raise ValueError(f"query vector has {v.shape[0]} dimensions, the {self.extractor} index has {self.dim}")
        norm = float(np.linalg.norm(v))
        if not np.isfinite(norm) or norm == 0.0:
            raise ValueError("query vector must be finite and non-zero")
        v = v / norm
        if limit <= 0:
            return []
        self.refresh()
        exclude = frozenset(int(i) for i in exclude_ids)
        with self.holder.using() as state:
            found = state.base.search(v, limit, state.dead, exclude, budget_scale)
            ids, scores = exact_top(state.fresh_vectors, state.fresh_ids, v, limit + len(exclude))
        found.extend((distance_of(s), i) for i, s in zip(ids.tolist(), scores.tolist()) if i not in exclude)
        found.sort()
        hits = []
        for d, i in found[:limit]:
            if max_distance is not None and d > max_distance:
                break
            hits.append(Hit(i, d, max(-1.0, min(1.0, 1.0 - d * d / 2.0))))
        return hits

    def search(self, vector: np.ndarray, limit: int = 10, max_distance: float | None = None) -> list[Found]:
        """Like ``query``, as ``[{"image": path, "distance": d, "score": s}]`` for the HTTP API."""
        hits = self.query(vector, limit, max_distance)
        paths = self.catalog.paths_for(h.id for h in hits)  # also drops files removed just now
        return [{"image": paths[h.id], "distance": h.distance, "score": h.score} for h in hits if h.id in paths]

    @property
    def trees(self) -> int | str:  # the setting: a number of trees, or "auto"
        return self._trees

    @trees.setter
    def trees(self, value: int | str) -> None:
        if value != AUTO and (isinstance(value, bool) or not isinstance(value, int) or value <= 0):
            raise ValueError(f'trees must be "auto" or a positive integer, not {value!r}')
        self._trees = value

    def build_trees(self) -> int:
        """The number of trees the next snapshot gets."""
        return self._next_trees if self._trees == AUTO else int(self._trees)

    def tuning(self) -> Tuning:
        """What the builder measures and aims for (``recall``)."""
        auto = self._trees == AUTO
        return Tuning(self.target_recall, self.search_budget_ms, self.recall_sample, self.search_k, self.ef,
                      max(MAX_AUTO_TREES, self.build_trees()) if auto else None)  # fmt: skip

    def stats(self) -> IndexStats:
        """Counts, build facts and the measured recall for ``/stats``."""
        state = self.holder.state
        if state is None:
            raise RuntimeError("index is not open")
        return {
            **report(state.base, self.tuning(), self.build_trees(), "auto" if self._trees == AUTO else "config"),
            "extractor": self.extractor,
            "model_id": self.model_id,
            "mode": state.base.kind,
            "indexed": len(state.base),
            "fresh": len(state.fresh_ids),
            "tombstones": len(state.dead),
            "seq": state.seq,
            "last_build": iso_utc(state.base.built_at),
            "last_build_seconds": round(state.base.build_seconds, 3),
            "building": self._rebuilds.building,
        }

    # -- rebuilding --------------------------------------------------------------

    def maybe_rebuild(self) -> bool:
        """Start a background rebuild if the thresholds say so; True if one was started."""
        return self._rebuilds.request_if(self._due)

    def rebuild(self, wait: bool = True, timeout: float | None = None) -> None:
        """Ask for a rebuild from the catalogue as it is now; with ``wait``, block until it is in use.

        Raises ``IndexBuildError`` if that build failed, ``TimeoutError`` on timeout.
        """
        self._rebuilds.request(wait, timeout)

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Block until no rebuild is running or asked for; False on timeout."""
        return self._rebuilds.wait_idle(timeout)

    def _due(self) -> bool:
        """Thresholds: enough changes, or old enough ones. Builds take at most half the time."""
        state = self.holder.state
        if state is None or state.first_change is None:
            return False
        if not self._rebuilds.may_start(state.base.build_seconds):
            return False
        pending = max(len(state.fresh_ids), len(state.dead))
        age = time.monotonic() - state.first_change
        return pending >= self.rebuild_after_changes or age >= self.rebuild_after_seconds

    def _idle(self) -> None:
        """The rebuild thread's tick while no build is asked for."""
        self.refresh()  # notices changes nobody told us about
        self.maybe_rebuild()  # and lets time trigger a build

    def _build(self) -> None:
        """Build a base from the catalogue as it is now, catch it up on the changes since, and swap it in."""
        started, t0 = time.time(), time.monotonic()
        state = self.holder.state
        assert state is not None
        live = len(state.base) - len(state.dead) + len(state.fresh_ids)
        if live < max(self.exact_below, 1):
            seq, ids, vectors = self.catalog.all_vectors(self.extractor, self.model_id, self.dim)
            base: Base = ExactBase(ids, unit_rows(vectors), seq, started, time.monotonic() - t0)
        else:
            grow = state.base if isinstance(state.base, HnswBase) else None
            base = self.store.build(self.catalog.path, self.build_trees(), self.build_jobs, self.tuning(), started,
                                    kind=self.kind, grow=grow)  # fmt: skip
            if grow is not None and base.meta.get("full_build"):
                log.info("%s: full HNSW build: %s", self.extractor, base.meta.get("full_build_reason"))
            self._measured(base.meta.get("recall"))
        with self._update_lock:
            changes = self.catalog.changes_since(self.extractor, self.model_id, base.seq, self.dim)
            state = State.of(base, self.dim).apply(changes.ids, changes.vectors, changes.removed_ids, changes.seq, t0)
            if base.kind == BaseKind.EXACT:
                self.store.uncommit()  # the old snapshot is not wanted at start-up
            self.holder.swap(state)
        log.info(
            "%s: rebuilt: %s search over %d vectors (seq %d) in %.1f s; %d fresh, %d tombstones since",
            self.extractor,
            base.kind,
            len(base),
            base.seq,
            time.monotonic() - t0,
            len(state.fresh_ids),
            len(state.dead),
        )

    def _measured(self, recall: RecallFacts | None) -> None:
        """Take the next build's trees from a new snapshot's measurement; warn when it missed."""
        if recall is not None and self._trees == AUTO and "next_trees" in recall:
            self._next_trees = int(recall["next_trees"])
        if recall is not None and (message := miss_message(recall)):
            log.warning("%s: %s", self.extractor, message)


def _check_search(kind: str, ef: int | str, target_recall: float, search_budget_ms: float, recall_sample: int) -> None:
    """ValueError for settings of the search and its measurement that cannot work."""
    if not 0 < target_recall <= 1 or search_budget_ms <= 0 or recall_sample <= 0:
        raise ValueError("target_recall must be in (0, 1], the budget and the sample positive")
    if kind not in (BaseKind.HNSW, BaseKind.ANNOY):
        raise ValueError(f'kind must be "hnsw" or "annoy", not {kind!r}')
    if ef != AUTO and (isinstance(ef, bool) or not isinstance(ef, int) or ef <= 0):
        raise ValueError(f'ef must be "auto" or a positive integer, not {ef!r}')


def _cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def index_for(catalog: Catalog, config: Config, extractor: Extractor) -> ExtractorIndex:
    """The (not yet opened) index of one extractor's model, as configured: in the folder the catalogue
    records for that model (a model change gives the next model a folder of its own), else ``<data_dir>/<name>``."""
    settings = config.index
    folder = catalog.model_folder(extractor.name, extractor.model_id) or extractor.name
    return ExtractorIndex(
        catalog,
        config.data_dir / folder,
        extractor.name,
        extractor.model_id,
        extractor.dim,
        trees=settings.trees,
        search_k=settings.search_k,
        kind=settings.kind,
        ef=settings.ef,
        target_recall=settings.target_recall,
        search_budget_ms=settings.search_budget_ms,
        rebuild_after_changes=settings.rebuild_after_changes,
        rebuild_after_seconds=settings.rebuild_after_seconds,
    )
