"""An index's snapshot on disk: the Annoy or HNSW file, its ids, the metadata that commits them.

Files under an index's directory (normally ``<data_dir>/<extractor>/``):
``index.json`` (the commit point: names the live snapshot and carries its sizes and
CRC-32s, so a truncated or corrupt file is caught at start-up), ``snapshot-NNNNNN.ann``
(Annoy, angular metric) or ``snapshot-NNNNNN.usearch`` (HNSW, see ``hnsw``), ``snapshot-NNNNNN.ids.npy`` (the file id of each Annoy item:
Annoy items are numbered densely 0..n-1, because file ids are never reused and grow
sparse, and Annoy allocates a 2 KB node for every number up to the largest),
``index.lock``, and ``.build-*`` temporaries while building.

A build runs in a child process (``builder``: niced, so it does not compete with queries
for the GIL or the CPU, and it dies with the daemon) that reads the catalogue, writes the
index and the ids into temporary files and fsyncs them; the parent renames them to names
never used before, fsyncs the directory, loads the snapshot and only then writes
``index.json``. A live memory-mapped file is never overwritten.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import cast

import numpy as np
from annoy import AnnoyIndex

from ..paths import fsync_dir
from ..timestamps import iso_utc, parse_iso
from .builder import BUILDER_CODE, crc32
from .facts import BuilderArgs, GrowFrom, SnapshotMeta
from .hnsw import HnswBase, load_view
from .parts import AnnoyBase, Base, BaseKind
from .recall import Tuning

log = logging.getLogger("imgsearchd.search.index")

META_NAME = "index.json"
META_FORMAT = 1
LOCK_NAME = "index.lock"
BUILD_NICE = 10  # the builder process yields the CPU to queries and to the indexer
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


def _write_json_atomic(path: Path, data: SnapshotMeta) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=2, sort_keys=True)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)


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
        return self._load_files(cast(SnapshotMeta, meta), tuning, verify_checksums=True)

    def _load_files(self, meta: SnapshotMeta, tuning: Tuning | None, verify_checksums: bool) -> Snapshot:
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
            if verify_checksums and crc32(path) != crc:
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
        previous: GrowFrom | None = None
        if kind == BaseKind.HNSW and grow is not None:
            previous = {"file": str(grow.paths[0]), "seq": grow.seq,
                        "removed_since_full": int(grow.meta["removed_since_full"]),
                        "full_items": grow.meta.get("full_items")}  # fmt: skip
        args: BuilderArgs = {"parent": os.getpid(), "catalog": str(catalog_path), "extractor": self.extractor,
                "model_id": self.model_id, "dim": self.dim, "trees": trees, "jobs": jobs, "kind": kind.value,
                "previous": previous, "ann": str(tmp_ann), "ids": str(tmp_ids),
                "tuning": tuning.as_dict() if tuning else None}  # fmt: skip
        try:
            facts = self._run_builder(args)
            os.replace(tmp_ann, ann)
            os.replace(tmp_ids, ids)
            fsync_dir(self.directory)
        finally:
            tmp_ann.unlink(missing_ok=True)
            tmp_ids.unlink(missing_ok=True)
        meta: SnapshotMeta = {"format": META_FORMAT, "kind": kind.value, "extractor": self.extractor,
                              "model_id": self.model_id, "dim": self.dim}  # fmt: skip
        meta.update({"metric": "angular", "trees": trees} if kind == BaseKind.ANNOY else {"metric": "cos"})
        meta.update({"file": ann.name, "ids_file": ids.name, "built_at": iso_utc(started)})
        meta.update(facts)
        meta["build_seconds"] = round(time.time() - started, 3)
        return self._commit(meta, tuning)

    def _run_builder(self, args: BuilderArgs) -> SnapshotMeta:
        """Run the builder process (``builder``) and read the facts it answers with.

        IndexBuildError when it fails or the store is closing (``stop_building`` kills it).
        """
        code = BUILDER_CODE.format(nice=BUILD_NICE)
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
        finally:
            with self._lock:
                self._builder = None
        if builder.returncode != 0:
            tail = err.strip().splitlines()[-5:]
            raise IndexBuildError(
                f"builder process exited with status {builder.returncode}: " + (" | ".join(tail) or "no message")
            )
        return cast(SnapshotMeta, json.loads(out.strip().splitlines()[-1]))

    def _commit(self, meta: SnapshotMeta, tuning: Tuning | None) -> Snapshot:
        """Load the renamed files, then write ``index.json``: from then on they are the snapshot."""
        base = None
        try:
            base = self._load_files(meta, tuning, verify_checksums=False)
            _write_json_atomic(self.directory / META_NAME, meta)  # the commit point
        except BaseException:
            if base is not None:
                base.close()
            (self.directory / meta["file"]).unlink(missing_ok=True)
            (self.directory / meta["ids_file"]).unlink(missing_ok=True)
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
