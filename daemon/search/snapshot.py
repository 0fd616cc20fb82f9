"""An index's snapshot on disk: the Annoy or HNSW file, its ids, the metadata that commits them.

Files under an index's directory (normally ``<data_dir>/<extractor>/``):
``index.json`` (the commit point: names the live snapshot and carries its sizes and
CRC-32s, so a truncated or corrupt file is caught at start-up), ``snapshot-NNNNNN.ann``
(Annoy, angular metric) or ``snapshot-NNNNNN.usearch`` (HNSW, see ``hnsw``), ``snapshot-NNNNNN.ids.npy`` (the file id of each Annoy item:
Annoy items are numbered densely 0..n-1, because file ids are never reused and grow
sparse, and Annoy allocates a 2 KB node for every number up to the largest),
``index.lock``, and ``.build-*`` temporaries while building.

A build runs in a child process (niced, so it does not compete with queries for the GIL
or the CPU, and it dies with the daemon) that reads the catalogue, writes Annoy's on-disk
build and the ids into temporary files and fsyncs them; the parent renames them to names
never used before, fsyncs the directory, loads the snapshot and only then writes
``index.json``. A live memory-mapped file is never overwritten.
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
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
from annoy import AnnoyIndex

from ..store.catalog import Catalog
from ..timestamps import iso_utc, parse_iso
from .hnsw import HnswBase, load_view, write_hnsw_snapshot
from .parts import AnnoyBase, Base, BaseKind
from .recall import Tuning, tune

log = logging.getLogger("imgsearchd.search.index")

META_NAME = "index.json"
META_FORMAT = 1
LOCK_NAME = "index.lock"
BUILD_NICE = 10  # the builder process yields the CPU to queries and to the indexer
_CHUNK = 1 << 24  # bytes read at a time when checksumming
_META_TYPES: dict[str, type | tuple[type, ...]] = {
    "format": int, "model_id": str, "dim": int, "file": str, "ids_file": str, "items": int,
    "seq": int, "file_size": int, "file_crc32": int, "ids_size": int, "ids_crc32": int, "built_at": str,
    "build_seconds": (int, float), "kind": str,
}  # fmt: skip
_KIND_META_TYPES: dict[str, dict[str, type | tuple[type, ...]]] = {
    BaseKind.ANNOY: {"trees": int},
    BaseKind.HNSW: {"removed_since_full": int, "connectivity": int, "dtype": str},
}
SUFFIX = {BaseKind.ANNOY: ".ann", BaseKind.HNSW: ".usearch"}
Snapshot = AnnoyBase | HnswBase


class SnapshotError(Exception):
    """A snapshot on disk cannot be used; the message says why."""


class IndexBuildError(RuntimeError):
    """A rebuild failed; the previous snapshot stays in use."""


# -- files ---------------------------------------------------------------------------


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
    chunks: Iterable[tuple[int, np.ndarray, np.ndarray]],
    dim: int,
    trees: int,
    ann_path: Path,
    ids_path: Path,
    *,
    jobs: int = -1,
    tuning: Tuning | None = None,
) -> dict[str, Any]:
    """Build an Annoy file and its ids file from (seq, ids, vectors) chunks sorted by id; fsync both.

    Returns the facts for the metadata: items, seq, sizes and CRC-32s, and with ``tuning``
    the measured recall (``recall.tune``). Runs in the builder process, fed by
    ``Catalog.iter_vectors``.
    """
    started = time.monotonic()
    annoy = AnnoyIndex(dim, "angular")
    annoy.on_disk_build(str(ann_path))
    seq = 0  # the change number of the read (every chunk carries the same)
    parts: list[np.ndarray] = []
    kept: list[np.ndarray] = []  # the vectors, for the recall measurement
    n = 0
    for chunk_seq, ids, vectors in chunks:
        seq = chunk_seq
        for row in vectors:  # the angular metric normalises by itself
            annoy.add_item(n, row.tolist())
            n += 1
        parts.append(np.asarray(ids, dtype=np.int64))
        if tuning is not None:
            kept.append(vectors)
    all_ids = np.concatenate(parts) if parts else np.zeros(0, np.int64)
    if n and np.any(np.diff(all_ids) <= 0):
        raise ValueError("snapshot ids must be unique and sorted")
    annoy.build(trees, n_jobs=jobs)
    build_seconds = time.monotonic() - started
    recall = tune(annoy, kept, trees, tuning) if tuning is not None and n > 0 else None
    del kept
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
        "annoy_build_seconds": round(build_seconds, 3),
        **({"recall": recall} if recall is not None else {}),
    }


# -- the builder process ----------------------------------------------------------------


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
from imgsearchd.search.snapshot import builder_main
sys.exit(builder_main(sys.argv[1:]))
"""


def builder_main(argv: list[str]) -> int:
    """Entry point of the builder process: one JSON argument in, one JSON line out."""
    args = json.loads(argv[0])
    _die_with_parent(args["parent"])
    catalog = Catalog(args["catalog"])  # left open: closing would checkpoint the daemon's WAL
    tuning = Tuning(**args["tuning"]) if args.get("tuning") else None
    if args["kind"] == BaseKind.HNSW:
        facts, ids = write_hnsw_snapshot(
            catalog, args["extractor"], args["model_id"], args["dim"], Path(args["ann"]),
            previous=args["previous"], jobs=args["jobs"], tuning=tuning,
        )  # fmt: skip
        ids_path = Path(args["ids"])
        with open(ids_path, "wb") as f:
            np.save(f, ids, allow_pickle=False)
            f.flush()
            os.fsync(f.fileno())
        ann_path = Path(args["ann"])
        _fsync_file(ann_path)
        facts.update(file_size=ann_path.stat().st_size, file_crc32=_crc32(ann_path), ids_size=ids_path.stat().st_size,
                     ids_crc32=_crc32(ids_path))  # fmt: skip
        print(json.dumps(facts), flush=True)
        return 0
    seq_before = catalog.current_seq()  # what an empty read reflects
    result = _write_snapshot(
        catalog.iter_vectors(args["extractor"], args["model_id"]),
        args["dim"],
        args["trees"],
        Path(args["ann"]),
        Path(args["ids"]),
        jobs=args["jobs"],
        tuning=tuning,
    )
    if result["items"] == 0:
        result["seq"] = seq_before
    print(json.dumps(result), flush=True)
    return 0


# -- one index's directory -----------------------------------------------------------------


class SnapshotStore:
    """The snapshot files of one extractor and model in one directory, and building them."""

    def __init__(self, directory: Path, extractor: str, model_id: str, dim: int) -> None:
        self.directory = directory
        self.extractor = extractor
        self.model_id = model_id
        self.dim = dim
        self._generation = 0  # the highest snapshot number seen or made
        self._builder: subprocess.Popen[str] | None = None
        self._closing = False
        self._lock = threading.Lock()  # guards _builder and _closing
        self._lock_fd: int | None = None

    # -- the directory lock

    def lock(self) -> None:
        """Create the directory and take its lock; RuntimeError when another index holds it."""
        self.directory.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.directory / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise RuntimeError(f"{self.directory} is in use by another index (another imgsearchd running?)") from None
        self._lock_fd = fd

    def unlock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # releases the flock
            self._lock_fd = None

    # -- loading

    def load(self, catalog_seq: int, tuning: Tuning) -> Snapshot:
        """The committed snapshot, checked; FileNotFoundError if there is none, SnapshotError if unusable.

        ``catalog_seq`` is the catalogue's change number now: a snapshot ahead of it belongs
        to another catalogue. ``tuning`` carries a configured search effort (else the measured one is used).
        """
        meta_path = self.directory / META_NAME
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
            meta.setdefault("kind", BaseKind.ANNOY.value)  # written before there were kinds
            if meta["kind"] not in _KIND_META_TYPES:
                raise ValueError(f"unknown kind {meta['kind']!r}")
            for key, kind in {**_META_TYPES, **_KIND_META_TYPES[meta["kind"]]}.items():
                if not isinstance(meta.get(key), kind):
                    raise ValueError(f"{key!r} missing or of the wrong type")
            parse_iso(meta["built_at"])
        except ValueError as exc:
            raise SnapshotError(f"{meta_path.name} is unreadable ({exc})") from exc
        if meta["format"] != META_FORMAT:
            raise SnapshotError(f"{meta_path.name} has format {meta['format']}, expected {META_FORMAT}")
        if meta["model_id"] != self.model_id:
            raise SnapshotError(
                f"it was built for model {meta['model_id']!r}, the extractor now uses {self.model_id!r}"
            )
        if meta["dim"] != self.dim:
            raise SnapshotError(f"it was built for {meta['dim']} dimensions, the extractor has {self.dim}")
        if "recall" in meta and not isinstance(meta["recall"], dict):
            raise SnapshotError(f"{meta_path.name} is unreadable ('recall' is not an object)")
        if meta["seq"] > catalog_seq:
            raise SnapshotError(
                f"it reflects catalogue change {meta['seq']} but the catalogue is at {catalog_seq} "
                "(was the catalogue replaced?)"
            )
        return self._load_files(meta, tuning, verify_checksums=True)

    def _load_files(self, meta: dict[str, Any], tuning: Tuning | None, verify_checksums: bool) -> Snapshot:
        """Check sizes (and checksums) of the snapshot's files and map the Annoy or HNSW index.

        The search effort is ``tuning``'s when configured, else the one measured at build time.
        """
        ann, ids_path = self.directory / meta["file"], self.directory / meta["ids_file"]
        for path, size, crc in (
            (ann, meta["file_size"], meta["file_crc32"]),
            (ids_path, meta["ids_size"], meta["ids_crc32"]),
        ):
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
        if meta["kind"] == BaseKind.HNSW:
            try:
                graph = load_view(ann, self.dim)
            except (OSError, ValueError, RuntimeError) as exc:
                raise SnapshotError(f"file {ann.name} cannot be loaded: {exc}") from exc
            if len(graph) != len(ids):
                graph.reset()
                raise SnapshotError(f"file {ann.name} has {len(graph)} items, expected {len(ids)}")
            return HnswBase(graph, ids, [ann, ids_path], meta, tuning.ef if tuning else None)
        annoy = AnnoyIndex(self.dim, "angular")
        try:
            annoy.load(str(ann), prefault=False)
        except OSError as exc:
            raise SnapshotError(f"file {ann.name} cannot be loaded: {exc}") from exc
        if annoy.get_n_items() != len(ids):
            annoy.unload()
            raise SnapshotError(f"file {ann.name} has {annoy.get_n_items()} items, expected {len(ids)}")
        return AnnoyBase(annoy, ids, [ann, ids_path], meta, tuning.search_k if tuning else None)

    # -- building

    def build(
        self,
        catalog_path: Path,
        trees: int,
        jobs: int,
        tuning: Tuning | None,
        started: float,
        *,
        kind: BaseKind = BaseKind.ANNOY,
        grow: HnswBase | None = None,
    ) -> Snapshot:
        """Build a new snapshot in a child process, rename it into place, load it, commit the metadata.

        ``tuning``: measure recall and choose the search effort (``recall``), else search with
        the unmeasured default. ``started`` is the wall-clock time the build was asked for.
        ``kind`` HNSW with ``grow``: the new snapshot is ``grow`` plus the catalogue changes
        since it was built (``hnsw``); without, a full build.
        IndexBuildError when the builder fails or the store is closing.
        """
        self._generation += 1
        name = f"snapshot-{self._generation:06d}"
        tmp_ann = self.directory / f".build-{self._generation:06d}{SUFFIX[kind]}.tmp"
        tmp_ids = self.directory / f".build-{self._generation:06d}.ids.tmp"
        ann, ids = self.directory / f"{name}{SUFFIX[kind]}", self.directory / f"{name}.ids.npy"
        previous = None
        if kind == BaseKind.HNSW and grow is not None:
            previous = {"file": str(grow.paths[0]), "seq": grow.seq,
                        "removed_since_full": int(grow.meta["removed_since_full"]),
                        "full_items": grow.meta.get("full_items")}  # fmt: skip
        args = {"parent": os.getpid(), "catalog": str(catalog_path), "extractor": self.extractor,
                "model_id": self.model_id, "dim": self.dim, "trees": trees, "jobs": jobs, "kind": kind.value,
                "previous": previous, "ann": str(tmp_ann), "ids": str(tmp_ids),
                "tuning": tuning.as_dict() if tuning else None}  # fmt: skip
        code = _BUILDER_CODE.format(nice=BUILD_NICE)
        try:
            with self._lock:
                if self._closing:
                    raise IndexBuildError("index is closing")
                builder = self._builder = subprocess.Popen(
                    [sys.executable, "-c", code, json.dumps(args)],
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    text=True,
                )
            out, err = builder.communicate()
            if builder.returncode != 0:
                tail = err.strip().splitlines()[-5:]
                raise IndexBuildError(
                    f"builder process exited with status {builder.returncode}: " + (" | ".join(tail) or "no message")
                )
            facts = json.loads(out.strip().splitlines()[-1])
            os.replace(tmp_ann, ann)
            os.replace(tmp_ids, ids)
            _fsync_dir(self.directory)
        finally:
            with self._lock:
                self._builder = None
            tmp_ann.unlink(missing_ok=True)
            tmp_ids.unlink(missing_ok=True)
        shape = {"metric": "angular", "trees": trees} if kind == BaseKind.ANNOY else {"metric": "cos"}
        meta = {"format": META_FORMAT, "kind": kind.value, "extractor": self.extractor, "model_id": self.model_id,
                "dim": self.dim, **shape, "file": ann.name, "ids_file": ids.name,
                "built_at": iso_utc(started), **facts, "build_seconds": round(time.time() - started, 3)}  # fmt: skip
        base = None
        try:
            base = self._load_files(meta, tuning, verify_checksums=False)
            _write_json_atomic(self.directory / META_NAME, meta)  # the commit point
        except BaseException:
            if base is not None:
                base.close()
            ann.unlink(missing_ok=True)
            ids.unlink(missing_ok=True)
            raise
        return base

    def stop_building(self) -> None:
        """Kill a build in progress and refuse new ones (the index is closing)."""
        with self._lock:
            self._closing = True
            if self._builder is not None:
                self._builder.kill()

    # -- housekeeping

    def uncommit(self) -> None:
        """Drop the metadata: the index searches exactly and wants no snapshot at start-up."""
        (self.directory / META_NAME).unlink(missing_ok=True)

    def remove_strays(self, base: Base) -> None:
        """Delete temporaries and snapshots that ``base`` does not use (left by a crash)."""
        keep = {p.name for p in base.files()}
        for path in self.directory.iterdir():
            name = path.name
            if name.startswith("snapshot-"):
                try:
                    self._generation = max(self._generation, int(name[9:15]))
                except ValueError:
                    pass
            stray = (
                name.startswith(".build-")
                or name.endswith(".tmp")
                or (name.startswith("snapshot-") and name not in keep)
            )
            if stray and path.is_file():
                log.info("%s: removing leftover %s", self.extractor, name)
                path.unlink(missing_ok=True)
        if base.kind == BaseKind.EXACT:
            self.uncommit()
