"""Per-extractor similarity index: an Annoy snapshot, the fresh vectors since, and tombstones.

An Annoy index cannot take items once built, so each extractor's index has three parts:

* the **base**: an Annoy snapshot (angular metric on unit vectors), memory-mapped, built
  from the catalogue at change number ``seq``; for small collections an in-memory numpy
  matrix searched exactly instead (see ``EXACT_BELOW``);
* the **fresh** vectors added or changed after ``seq``, searched exactly;
* **tombstones**: base items removed or superseded after ``seq``.

A query over-fetches from the base, drops tombstoned items, merges the rest with the
best fresh vectors and returns the best ``limit``. ``refresh`` pulls catalogue changes
with ``Catalog.changes_since`` (one cheap read when nothing changed), so a change is
searchable as soon as it is committed.

Rebuilds run on a background thread per extractor: when the fresh vectors or the
tombstones reach ``rebuild_after_changes``, or the oldest change is older than
``rebuild_after_seconds``. The Annoy file is built by a child process (niced, so it
does not compete with queries for the GIL or the CPU, and it dies with the daemon)
with Annoy's on-disk build into a temporary file, fsynced, renamed to a new name
that was never used, loaded, and swapped in. The metadata file ``index.json`` is the
commit point: it names the live snapshot and carries its size and CRC-32 so that a
truncated or corrupt file is caught at start-up. Queries hold a reference to the base
they use; a replaced base is unloaded (and its files deleted) only when its last
query has finished, so no thread ever touches an unloaded AnnoyIndex.

Files under ``directory`` (normally ``<data_dir>/<extractor>/``):
``index.json``, ``snapshot-NNNNNN.ann`` (Annoy), ``snapshot-NNNNNN.ids.npy`` (the file
id of each Annoy item: Annoy items are numbered densely 0..n-1, because file ids are
never reused and grow sparse, and Annoy allocates a 2 KB node for every number up to
the largest), ``index.lock``, and ``.build-*`` temporaries while building.
"""

from __future__ import annotations

import ctypes
import fcntl
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
import zlib
from collections.abc import Iterable, Set
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
from annoy import AnnoyIndex

from imgsearchd.catalog import Catalog

log = logging.getLogger("imgsearchd.index")

# Below this many vectors the index searches exactly with numpy instead of building Annoy.
# Measured with bench/bench_index.py on the 2-core VM (BENCHMARKS.md): the exact scan costs
# about 0.1 ms per 1000 vectors (1.0 ms p50 at 10k, 2.0 ms at 20k); Annoy at the defaults
# costs 0.4-0.7 ms at 5k-10k but 1.5 ms at 1M. So up to 10k the exact scan stays under 1 ms,
# under what a query costs at scale, at most 0.3 ms behind Annoy at the same size, with recall
# 1.0 instead of about 0.99, no build and no files. Above that it grows linearly past the
# Annoy latency.
EXACT_BELOW = 10_000
# Trees per snapshot and candidates Annoy inspects per query, chosen with bench/bench_index.py
# at one million 512-d vectors (BENCHMARKS.md). The build is memory-bound, 4-7 s per tree
# there on one core: 10 trees built in 62-82 s, 20 in 121 s, 50 in about 230 s (two cores),
# while recall@10 at search_k 5000 was 0.983, 0.992 and 0.990. search_k 5000 gives p50 about
# 1.5 ms; 2000 was the least that reached 0.95 (0.961); the margin is for data harder than
# the synthetic set.
DEFAULT_TREES = 10
DEFAULT_SEARCH_K = 5_000

META_NAME = "index.json"
META_FORMAT = 1
LOCK_NAME = "index.lock"
BUILD_NICE = 10  # the builder process yields the CPU to queries and to the indexer
_CHUNK = 1 << 24  # bytes read at a time when checksumming


@dataclass(frozen=True, slots=True)
class Hit:
    """One search result: catalogue file id, Euclidean distance between unit vectors, cosine."""

    id: int
    distance: float
    score: float


class SnapshotError(Exception):
    """A snapshot on disk cannot be used; the message says why."""


class IndexBuildError(RuntimeError):
    """A rebuild failed; the previous snapshot stays in use."""


# -- the searchable parts -----------------------------------------------------------


def exact_top(vectors: np.ndarray, ids: np.ndarray, v: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` best (ids, cosine scores) of a matrix of unit vectors, best first."""
    n = len(ids)
    if n == 0 or k <= 0:
        return ids[:0], np.zeros(0, dtype=np.float32)
    # einsum, not BLAS: multi-threaded OpenBLAS gemv gave 10 ms p99 spikes on 2 cores (BENCHMARKS.md)
    scores = np.einsum("ij,j->i", vectors, v)
    if k < n:
        part = np.argpartition(-scores, k - 1)[:k]
    else:
        part = np.arange(n)
    order = part[np.argsort(-scores[part], kind="stable")]
    return ids[order], scores[order]


def _distance(score: float) -> float:
    return float(np.sqrt(max(0.0, 2.0 - 2.0 * score)))


class _Base:
    """The bulk of an index, searched as one unit. ``ids`` is sorted; contents never change."""

    kind = "exact"

    def __init__(self, ids: np.ndarray, seq: int, built_at: float, build_seconds: float) -> None:
        self.ids = ids
        self.seq = seq
        self.built_at = built_at
        self.build_seconds = build_seconds
        self.users = 0  # queries using it right now; guarded by the index's lock
        self.retired = False  # replaced: unload once users drops to zero
        self.delete_files = False  # and delete its files then

    def __len__(self) -> int:
        return len(self.ids)

    def contains(self, ids: np.ndarray) -> np.ndarray:
        """Boolean mask: which of ``ids`` are in this base."""
        if len(self.ids) == 0:
            return np.zeros(len(ids), dtype=bool)
        pos = np.minimum(np.searchsorted(self.ids, ids), len(self.ids) - 1)
        return self.ids[pos] == ids

    def search(self, v: np.ndarray, limit: int, dead: Set[int], exclude: Set[int]) -> list[tuple[float, int]]:
        """The ``limit`` best (distance, id) pairs for unit vector ``v``, skipping ``dead`` and ``exclude``."""
        raise NotImplementedError

    def close(self) -> None:
        """Release memory and mappings; no query may use the base afterwards."""

    def files(self) -> list[Path]:
        return []


class _ExactBase(_Base):
    """A numpy matrix searched by brute force: small collections, or while the first build runs."""

    def __init__(self, ids: np.ndarray, vectors: np.ndarray, seq: int, built_at: float, build_seconds: float) -> None:
        super().__init__(ids, seq, built_at, build_seconds)
        self.vectors = vectors

    def search(self, v: np.ndarray, limit: int, dead: Set[int], exclude: Set[int]) -> list[tuple[float, int]]:
        ids, scores = exact_top(self.vectors, self.ids, v, limit + len(dead) + len(exclude))
        out = []
        for i, s in zip(ids.tolist(), scores.tolist()):
            if i not in dead and i not in exclude:
                out.append((_distance(s), i))
                if len(out) == limit:
                    break
        return out

    def close(self) -> None:
        self.vectors = self.vectors[:0]


class _AnnoyBase(_Base):
    """A memory-mapped Annoy snapshot plus the file id of each of its items."""

    kind = "annoy"

    def __init__(self, annoy: AnnoyIndex, ids: np.ndarray, paths: list[Path], meta: dict[str, Any], search_k: int) -> None:
        super().__init__(ids, int(meta["seq"]), _parse_time(meta["built_at"]), float(meta["build_seconds"]))
        self.annoy = annoy
        self.paths = paths
        self.meta = meta
        self.search_k = search_k

    def search(self, v: np.ndarray, limit: int, dead: Set[int], exclude: Set[int]) -> list[tuple[float, int]]:
        vector = v.tolist()  # Annoy reads a list far faster than a numpy array
        k = limit if not (dead or exclude) else 2 * limit + 10
        while True:
            search_k = max(self.search_k, k) if self.search_k > 0 else -1
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


@dataclass(frozen=True)
class _State:
    """What queries read: replaced as a whole, never changed in place."""

    base: _Base
    seq: int  # catalogue change number this state reflects
    fresh_ids: np.ndarray  # int64, unique, not tombstoned
    fresh_vectors: np.ndarray  # float32 (len(fresh_ids), dim), unit rows
    dead: frozenset[int]  # base ids hidden: removed, or superseded by a fresh vector
    first_change: float | None  # time.monotonic() of the oldest change not in the base

    @classmethod
    def of(cls, base: _Base, dim: int) -> _State:
        return cls(base, base.seq, np.zeros(0, np.int64), np.zeros((0, dim), np.float32), frozenset(), None)

    def apply(self, ids: np.ndarray, vectors: np.ndarray, removed: np.ndarray, seq: int, now: float) -> _State:
        """This state with catalogue changes applied (``ids``/``vectors`` upserted, ``removed`` gone)."""
        touched = np.union1d(ids, removed)
        if len(touched) == 0:
            return _State(self.base, seq, self.fresh_ids, self.fresh_vectors, self.dead, self.first_change)
        keep = ~np.isin(self.fresh_ids, touched)
        live = ~np.isin(ids, removed)
        new = _unit_rows(vectors[live])
        fresh_ids = np.concatenate([self.fresh_ids[keep], ids[live]])
        fresh_vectors = np.concatenate([self.fresh_vectors[keep], new]) if len(new) else self.fresh_vectors[keep]
        dead = self.dead | frozenset(touched[self.base.contains(touched)].tolist())
        first = self.first_change if self.first_change is not None else now
        if not len(fresh_ids) and not dead:
            first = None
        return _State(self.base, seq, fresh_ids, fresh_vectors, dead, first)


def _unit_rows(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length, in place when the array is ours to change."""
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    if not vectors.flags.writeable:
        vectors = vectors.copy()
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    np.divide(vectors, norms, out=vectors, where=norms > 0)
    return vectors


# -- files ---------------------------------------------------------------------------


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).isoformat(timespec="seconds")


def _parse_time(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


def _crc32(path: Path) -> int:
    crc = 0
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            crc = zlib.crc32(chunk, crc)
    return crc


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=2, sort_keys=True)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def _write_snapshot(
    chunks: Iterable[tuple[int, np.ndarray, np.ndarray]], dim: int, trees: int, ann_path: Path, ids_path: Path, *, jobs: int = -1
) -> dict[str, Any]:
    """Build an Annoy file and its ids file from (seq, ids, vectors) chunks sorted by id; fsync both.

    Returns the facts for the metadata: items, seq, sizes and CRC-32s. Runs in the builder
    process, fed by ``Catalog.iter_vectors``.
    """
    started = time.monotonic()
    annoy = AnnoyIndex(dim, "angular")
    annoy.on_disk_build(str(ann_path))
    seq = 0
    parts: list[np.ndarray] = []
    n = 0
    for seq, ids, vectors in chunks:
        for row in vectors:  # the angular metric normalises by itself
            annoy.add_item(n, row.tolist())
            n += 1
        parts.append(np.asarray(ids, dtype=np.int64))
    all_ids = np.concatenate(parts) if parts else np.zeros(0, np.int64)
    if n and np.any(np.diff(all_ids) <= 0):
        raise ValueError("snapshot ids must be unique and sorted")
    annoy.build(trees, n_jobs=jobs)
    annoy.unload()
    with open(ids_path, "wb") as f:
        np.save(f, all_ids, allow_pickle=False)
        f.flush()
        os.fsync(f.fileno())
    _fsync_file(ann_path)
    return {
        "items": int(n),
        "seq": int(seq),
        "file_size": ann_path.stat().st_size,
        "file_crc32": _crc32(ann_path),
        "ids_size": ids_path.stat().st_size,
        "ids_crc32": _crc32(ids_path),
        "build_seconds": round(time.monotonic() - started, 3),
    }


def _die_with_parent(parent: int) -> None:
    """Linux: get SIGKILL when the daemon dies, so an orphaned build never lingers.

    (The signal follows the thread that started us: the rebuild thread, which outlives its
    builder because ``close`` kills the builder before joining it.)
    """
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
    if os.getppid() != parent:
        os._exit(1)


# Run with ``python -c``: lower the priority first (best effort: systemd's @resources filter
# refuses it), then import and build.
_BUILDER_CODE = """\
import os
try:
    os.nice({nice})
except OSError:
    pass
import sys
from imgsearchd.index import _builder_main
sys.exit(_builder_main(sys.argv[1:]))
"""


def _builder_main(argv: list[str]) -> int:
    """Entry point of the builder process: one JSON argument in, one JSON line out."""
    args = json.loads(argv[0])
    _die_with_parent(args["parent"])
    catalog = Catalog(args["catalog"])  # left open: closing would checkpoint the daemon's WAL
    seq_before = catalog.current_seq()  # what an empty read reflects
    result = _write_snapshot(
        catalog.iter_vectors(args["extractor"], args["model_id"]),
        args["dim"], args["trees"], Path(args["ann"]), Path(args["ids"]), jobs=args["jobs"],
    )
    if result["items"] == 0:
        result["seq"] = seq_before
    print(json.dumps(result), flush=True)
    return 0


def _cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


# -- the index -----------------------------------------------------------------------


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
        trees: int = DEFAULT_TREES,
        search_k: int | None = None,
        rebuild_after_changes: int = 1000,
        rebuild_after_seconds: float = 60.0,
        exact_below: int = EXACT_BELOW,
        build_jobs: int | None = None,
    ) -> None:
        """``directory`` holds this extractor's files (normally ``<data_dir>/<extractor>``).

        ``search_k``: Annoy candidates per query (None: ``DEFAULT_SEARCH_K``; -1: Annoy's own
        default of trees x results). ``build_jobs``: Annoy build threads (None: all cores but one,
        so that a build never takes the core queries run on; -1: all cores).
        """
        if dim <= 0 or trees <= 0 or rebuild_after_changes <= 0 or rebuild_after_seconds <= 0:
            raise ValueError("dim, trees and the rebuild thresholds must be positive")
        self.catalog = catalog
        self.directory = Path(directory)
        self.extractor = extractor
        self.model_id = model_id
        self.dim = dim
        self.trees = trees
        self.search_k = DEFAULT_SEARCH_K if search_k is None else int(search_k)
        self.rebuild_after_changes = rebuild_after_changes
        self.rebuild_after_seconds = rebuild_after_seconds
        self.exact_below = exact_below
        self.build_jobs = build_jobs if build_jobs is not None else max(1, _cpus() - 1)

        self._state: _State | None = None
        self._lock = threading.Lock()  # guards _state and every base's users/retired
        self._update_lock = threading.Lock()  # one state update (refresh or swap) at a time
        self._cond = threading.Condition()  # guards the build bookkeeping below
        self._requested = 0  # rebuild requests made ...
        self._done = 0  # ... and answered
        self._failed: tuple[int, BaseException] | None = None
        self._building = False
        self._stopping = False
        self._builder: subprocess.Popen[str] | None = None
        self._last_build_end = 0.0
        self._retry_at = 0.0
        self._generation = 0
        self._lock_file: int | None = None
        self._thread: threading.Thread | None = None
        self._tick = min(1.0, rebuild_after_seconds / 4)

    # -- life cycle --------------------------------------------------------------

    def open(self) -> None:
        """Load the snapshot if it matches the catalogue, else rebuild it; catch up on changes."""
        if self._thread is not None or self._stopping:
            raise RuntimeError("an index opens once; make a new one after close()")
        self.directory.mkdir(parents=True, exist_ok=True)
        self._lock_directory()
        try:
            self._open_locked()
        except BaseException:
            self.close()
            raise

    def _open_locked(self) -> None:
        t0 = time.monotonic()
        base: _Base | None = None
        rebuild_reason = None
        meta_path = self.directory / META_NAME
        try:
            base = self._load_snapshot(meta_path)
            if int(base.meta["trees"]) != self.trees:
                rebuild_reason = f"it has {base.meta['trees']} trees, the settings ask for {self.trees}"
        except FileNotFoundError:
            log.info("%s: no snapshot yet in %s", self.extractor, self.directory)
        except SnapshotError as exc:
            log.warning("%s: snapshot rejected: %s; rebuilding it", self.extractor, exc)
        if base is None:
            seq, ids, vectors = self.catalog.all_vectors(self.extractor, self.model_id, self.dim)
            base = _ExactBase(ids, _unit_rows(vectors), seq, time.time(), time.monotonic() - t0)
            if len(base) >= self.exact_below:
                rebuild_reason = f"{len(base)} vectors and no usable snapshot; exact search until it is built"
            else:
                log.info("%s: %d vectors, below %d: exact search", self.extractor, len(base), self.exact_below)
        else:
            log.info("%s: loaded snapshot %s (%d vectors, seq %d) in %.1f s", self.extractor,
                     base.paths[0].name, len(base), base.seq, time.monotonic() - t0)
        self._remove_strays(base)
        with self._update_lock:
            state = _State.of(base, self.dim)
            changes = self.catalog.changes_since(self.extractor, self.model_id, base.seq, self.dim)
            self._swap(state.apply(changes.ids, changes.vectors, changes.removed_ids, changes.seq, time.monotonic()))
        self._thread = threading.Thread(target=self._run, name=f"index-rebuild-{self.extractor}", daemon=True)
        self._thread.start()
        if rebuild_reason:
            log.info("%s: rebuilding: %s", self.extractor, rebuild_reason)
            self.rebuild(wait=False)

    def close(self) -> None:
        """Stop the rebuild thread (killing a build in progress) and unload the snapshot."""
        with self._cond:
            self._stopping = True
            if self._builder is not None:
                self._builder.kill()
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        with self._lock:
            state, self._state = self._state, None
            drop = None
            if state is not None:
                state.base.retired = True
                if state.base.users == 0:
                    drop = state.base
        if drop is not None:
            drop.close()
        if self._lock_file is not None:
            os.close(self._lock_file)  # releases the flock
            self._lock_file = None

    def __enter__(self) -> ExtractorIndex:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- reading -----------------------------------------------------------------

    def refresh(self) -> None:
        """Pull catalogue changes made since the last refresh; one cheap read when none."""
        state = self._state
        if state is None:
            raise RuntimeError("index is not open")
        if self.catalog.current_seq() == state.seq:
            return
        with self._update_lock:
            state = self._state
            if state is None:
                return
            changes = self.catalog.changes_since(self.extractor, self.model_id, state.seq, self.dim)
            if changes.seq != state.seq:
                self._swap(state.apply(changes.ids, changes.vectors, changes.removed_ids, changes.seq, time.monotonic()))
        self.maybe_rebuild()

    def query(self, vector: np.ndarray, limit: int = 10, max_distance: float | None = None,
              exclude_ids: Iterable[int] = ()) -> list[Hit]:
        """The ``limit`` nearest vectors to ``vector``, best first, at most ``max_distance`` away.

        Distances are Euclidean between unit vectors (0..2); scores are cosine similarities.
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
        state = self._acquire()
        try:
            found = state.base.search(v, limit, state.dead, exclude)
            ids, scores = exact_top(state.fresh_vectors, state.fresh_ids, v, limit + len(exclude))
        finally:
            self._release(state)
        found.extend((_distance(s), i) for i, s in zip(ids.tolist(), scores.tolist()) if i not in exclude)
        found.sort()
        hits = []
        for d, i in found[:limit]:
            if max_distance is not None and d > max_distance:
                break
            hits.append(Hit(i, d, max(-1.0, min(1.0, 1.0 - d * d / 2.0))))
        return hits

    def search(self, vector: np.ndarray, limit: int = 10, max_distance: float | None = None) -> list[dict[str, Any]]:
        """Like ``query``, as ``[{"image": path, "distance": d, "score": s}]`` for the HTTP API."""
        hits = self.query(vector, limit, max_distance)
        paths = self.catalog.paths_for(h.id for h in hits)  # also drops files removed just now
        return [{"image": paths[h.id], "distance": h.distance, "score": h.score} for h in hits if h.id in paths]

    def stats(self) -> dict[str, Any]:
        """Counts and build facts for ``/stats``."""
        state = self._state
        if state is None:
            raise RuntimeError("index is not open")
        return {
            "extractor": self.extractor,
            "model_id": self.model_id,
            "mode": state.base.kind,
            "indexed": len(state.base),
            "fresh": len(state.fresh_ids),
            "tombstones": len(state.dead),
            "seq": state.seq,
            "last_build": _iso(state.base.built_at),
            "last_build_seconds": round(state.base.build_seconds, 3),
            "building": self._building,
            "trees": self.trees,
            "search_k": self.search_k,
        }

    # -- rebuilding --------------------------------------------------------------

    def maybe_rebuild(self) -> bool:
        """Start a background rebuild if the thresholds say so; True if one was started."""
        with self._cond:
            if self._stopping or self._building or self._requested > self._done or not self._due():
                return False
            self._requested += 1
            self._cond.notify_all()
            return True

    def rebuild(self, wait: bool = True, timeout: float | None = None) -> None:
        """Ask for a rebuild from the catalogue as it is now; with ``wait``, block until it is in use.

        Raises ``IndexBuildError`` if that build failed, ``TimeoutError`` on timeout.
        """
        with self._cond:
            if self._thread is None or self._stopping:
                raise RuntimeError("index is not open")
            self._requested += 1
            target = self._requested
            self._cond.notify_all()
            if not wait:
                return
            if not self._cond.wait_for(lambda: self._done >= target or self._stopping, timeout):
                raise TimeoutError(f"{self.extractor}: rebuild still running after {timeout} s")
            if self._failed is not None and self._failed[0] >= target:
                raise IndexBuildError(f"{self.extractor}: rebuild failed: {self._failed[1]}") from self._failed[1]

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Block until no rebuild is running or asked for; False on timeout."""
        with self._cond:
            return self._cond.wait_for(lambda: (not self._building and self._requested <= self._done) or self._stopping,
                                       timeout)

    def _due(self) -> bool:
        """Thresholds: enough changes, or old enough ones. Builds take at most half the time."""
        state = self._state
        if state is None or state.first_change is None:
            return False
        now = time.monotonic()
        if now < self._retry_at or now - self._last_build_end < state.base.build_seconds:
            return False
        pending = max(len(state.fresh_ids), len(state.dead))
        return pending >= self.rebuild_after_changes or now - state.first_change >= self.rebuild_after_seconds

    def _run(self) -> None:
        while True:
            with self._cond:
                if not self._stopping and self._requested <= self._done:
                    self._cond.wait(self._tick)
                if self._stopping:
                    return
                wanted = self._requested > self._done
            if not wanted:
                try:
                    self.refresh()  # notices changes nobody told us about
                    self.maybe_rebuild()  # and lets time trigger a build
                except Exception:
                    log.exception("%s: refresh failed", self.extractor)
                continue
            self._build_once()

    def _build_once(self) -> None:
        with self._cond:
            target = self._requested
            self._building = True
        started, t0 = time.time(), time.monotonic()
        error: BaseException | None = None
        try:
            state = self._state
            assert state is not None
            live = len(state.base) - len(state.dead) + len(state.fresh_ids)
            if live < max(self.exact_below, 1):
                seq, ids, vectors = self.catalog.all_vectors(self.extractor, self.model_id, self.dim)
                base: _Base = _ExactBase(ids, _unit_rows(vectors), seq, started, time.monotonic() - t0)
            else:
                base = self._build_snapshot(started)
            with self._update_lock:
                changes = self.catalog.changes_since(self.extractor, self.model_id, base.seq, self.dim)
                state = _State.of(base, self.dim).apply(changes.ids, changes.vectors, changes.removed_ids, changes.seq, t0)
                if base.kind == "exact":
                    (self.directory / META_NAME).unlink(missing_ok=True)  # the old snapshot is not wanted at start-up
                self._swap(state)
            log.info("%s: rebuilt: %s search over %d vectors (seq %d) in %.1f s; %d fresh, %d tombstones since",
                     self.extractor, base.kind, len(base), base.seq, time.monotonic() - t0,
                     len(state.fresh_ids), len(state.dead))
        except Exception as exc:
            error = exc
            if not self._stopping:
                log.error("%s: rebuild failed, keeping the previous index: %s", self.extractor, exc,
                          exc_info=not isinstance(exc, IndexBuildError))
        finally:
            with self._cond:
                self._building = False
                self._done = max(self._done, target)
                self._last_build_end = time.monotonic()
                if error is not None:
                    self._failed = (target, error)
                    self._retry_at = time.monotonic() + self.rebuild_after_seconds
                self._cond.notify_all()

    def _build_snapshot(self, started: float) -> _AnnoyBase:
        """Build a new snapshot in a child process, rename it into place, load it, commit the metadata."""
        self._generation += 1
        name = f"snapshot-{self._generation:06d}"
        tmp_ann = self.directory / f".build-{self._generation:06d}.ann.tmp"
        tmp_ids = self.directory / f".build-{self._generation:06d}.ids.tmp"
        ann, ids = self.directory / f"{name}.ann", self.directory / f"{name}.ids.npy"
        args = {"parent": os.getpid(), "catalog": str(self.catalog.path), "extractor": self.extractor,
                "model_id": self.model_id, "dim": self.dim, "trees": self.trees, "jobs": self.build_jobs,
                "ann": str(tmp_ann), "ids": str(tmp_ids)}
        code = _BUILDER_CODE.format(nice=BUILD_NICE)
        try:
            with self._cond:
                if self._stopping:
                    raise IndexBuildError("index is closing")
                self._builder = subprocess.Popen([sys.executable, "-c", code, json.dumps(args)],
                                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            out, err = self._builder.communicate()
            if self._builder.returncode != 0:
                tail = err.strip().splitlines()[-5:]
                raise IndexBuildError(f"builder process exited with status {self._builder.returncode}: "
                                      + (" | ".join(tail) or "no message"))
            facts = json.loads(out.strip().splitlines()[-1])
            os.replace(tmp_ann, ann)
            os.replace(tmp_ids, ids)
            _fsync_dir(self.directory)
        finally:
            with self._cond:
                self._builder = None
            tmp_ann.unlink(missing_ok=True)
            tmp_ids.unlink(missing_ok=True)
        meta = {"format": META_FORMAT, "extractor": self.extractor, "model_id": self.model_id, "dim": self.dim,
                "metric": "angular", "trees": self.trees, "file": ann.name, "ids_file": ids.name,
                "built_at": _iso(started), **facts, "build_seconds": round(time.time() - started, 3)}
        base = None
        try:
            base = self._load_files(meta, verify_checksums=False)
            _write_json_atomic(self.directory / META_NAME, meta)  # the commit point
        except BaseException:
            if base is not None:
                base.close()
            ann.unlink(missing_ok=True)
            ids.unlink(missing_ok=True)
            raise
        return base

    # -- snapshot files ----------------------------------------------------------

    def _load_snapshot(self, meta_path: Path) -> _AnnoyBase:
        """The snapshot named by the metadata, checked; FileNotFoundError if there is none."""
        try:
            text = meta_path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise
        except OSError as exc:
            raise SnapshotError(f"cannot read {meta_path.name}: {exc}") from exc
        try:
            meta = json.loads(text)
            if not isinstance(meta, dict):
                raise ValueError("not a JSON object")
            expect = {"format": int, "model_id": str, "dim": int, "trees": int, "file": str, "ids_file": str,
                      "items": int, "seq": int, "file_size": int, "file_crc32": int, "ids_size": int,
                      "ids_crc32": int, "built_at": str, "build_seconds": (int, float)}
            for key, kind in expect.items():
                if not isinstance(meta.get(key), kind):
                    raise ValueError(f"{key!r} missing or of the wrong type")
            _parse_time(meta["built_at"])
        except ValueError as exc:
            raise SnapshotError(f"{meta_path.name} is unreadable ({exc})") from exc
        if meta["format"] != META_FORMAT:
            raise SnapshotError(f"{meta_path.name} has format {meta['format']}, expected {META_FORMAT}")
        if meta["model_id"] != self.model_id:
            raise SnapshotError(f"it was built for model {meta['model_id']!r}, the extractor now uses {self.model_id!r}")
        if meta["dim"] != self.dim:
            raise SnapshotError(f"it was built for {meta['dim']} dimensions, the extractor has {self.dim}")
        now = self.catalog.current_seq()
        if meta["seq"] > now:
            raise SnapshotError(f"it reflects catalogue change {meta['seq']} but the catalogue is at {now} "
                                "(was the catalogue replaced?)")
        return self._load_files(meta, verify_checksums=True)

    def _load_files(self, meta: dict[str, Any], verify_checksums: bool) -> _AnnoyBase:
        """Check sizes (and checksums) of the snapshot's files and map the Annoy index."""
        ann, ids_path = self.directory / meta["file"], self.directory / meta["ids_file"]
        for path, size, crc in ((ann, meta["file_size"], meta["file_crc32"]), (ids_path, meta["ids_size"], meta["ids_crc32"])):
            if path.parent != self.directory:
                raise SnapshotError(f"file name {path.name!r} is not plain")
            try:
                actual = path.stat().st_size
            except FileNotFoundError:
                raise SnapshotError(f"file {path.name} is missing") from None
            if actual < size:
                raise SnapshotError(f"file {path.name} is truncated ({actual} of {size} bytes)")
            if actual != size:
                raise SnapshotError(f"file {path.name} has {actual} bytes, expected {size}")
            if verify_checksums and _crc32(path) != crc:
                raise SnapshotError(f"file {path.name} is corrupt (CRC-32 mismatch)")
        try:
            ids = np.load(ids_path, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise SnapshotError(f"file {ids_path.name} is unreadable: {exc}") from exc
        if ids.dtype != np.int64 or ids.ndim != 1 or len(ids) != meta["items"]:
            raise SnapshotError(f"file {ids_path.name} does not hold {meta['items']} ids")
        annoy = AnnoyIndex(self.dim, "angular")
        try:
            annoy.load(str(ann), prefault=False)
        except OSError as exc:
            raise SnapshotError(f"file {ann.name} cannot be loaded: {exc}") from exc
        if annoy.get_n_items() != len(ids):
            annoy.unload()
            raise SnapshotError(f"file {ann.name} has {annoy.get_n_items()} items, expected {len(ids)}")
        return _AnnoyBase(annoy, ids, [ann, ids_path], meta, self.search_k)

    def _lock_directory(self) -> None:
        fd = os.open(self.directory / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise RuntimeError(f"{self.directory} is in use by another index (another imgsearchd running?)") from None
        self._lock_file = fd

    def _remove_strays(self, base: _Base) -> None:
        """Delete temporaries and snapshots that the metadata does not name (left by a crash)."""
        keep = {p.name for p in base.files()}
        for path in self.directory.iterdir():
            name = path.name
            if name.startswith("snapshot-"):
                try:
                    self._generation = max(self._generation, int(name[9:15]))
                except ValueError:
                    pass
            stray = name.startswith(".build-") or name.endswith(".tmp") or (name.startswith("snapshot-") and name not in keep)
            if stray and path.is_file():
                log.info("%s: removing leftover %s", self.extractor, name)
                path.unlink(missing_ok=True)
        if base.kind == "exact":
            (self.directory / META_NAME).unlink(missing_ok=True)

    # -- state and references ----------------------------------------------------

    def _acquire(self) -> _State:
        with self._lock:
            state = self._state
            if state is None:
                raise RuntimeError("index is not open")
            state.base.users += 1
            return state

    def _release(self, state: _State) -> None:
        with self._lock:
            base = state.base
            base.users -= 1
            drop = base.retired and base.users == 0
        if drop:
            self._drop(base)

    def _swap(self, state: _State) -> None:
        """Make ``state`` current (caller holds ``_update_lock``); retire the base it replaces."""
        drop = None
        with self._lock:
            old, self._state = self._state, state
            if old is not None and old.base is not state.base:
                old.base.retired = True
                old.base.delete_files = True
                if old.base.users == 0:
                    drop = old.base
        if drop is not None:
            self._drop(drop)

    def _drop(self, base: _Base) -> None:
        base.close()
        if base.delete_files:
            for path in base.files():
                path.unlink(missing_ok=True)


if __name__ == "__main__":
    sys.exit(_builder_main(sys.argv[1:]))
