"""The builder process: reads the catalogue, writes a snapshot's files, answers with their facts.

``snapshot.SnapshotStore.build`` starts it with ``python -c BUILDER_CODE`` and one JSON
argument (``facts.BuilderArgs``); it builds an Annoy index from scratch
(``write_annoy_snapshot``) or grows an HNSW graph (``hnsw.write_hnsw_snapshot``), measures
its recall (``recall``), fsyncs the files and prints their facts (sizes, CRC-32s, the
change number they reflect) as one JSON line, which the parent commits to ``index.json``.
Niced, so it does not compete with queries for the GIL or the CPU, and it dies with the daemon.
"""

from __future__ import annotations

import ctypes
import json
import os
import signal
import time
import zlib
from collections.abc import Iterable
from pathlib import Path
from typing import cast

import numpy as np
from annoy import AnnoyIndex

from ..store.catalog import Catalog
from .facts import BuilderArgs, SnapshotMeta
from .hnsw import write_hnsw_snapshot
from .parts import BaseKind
from .recall import Tuning, tune

_CHUNK = 1 << 24  # bytes read at a time when checksumming


# -- files ---------------------------------------------------------------------------


def crc32(path: Path) -> int:
    crc = 0
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            crc = zlib.crc32(chunk, crc)
    return crc


def fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def save_ids(path: Path, ids: np.ndarray) -> None:
    """Write a snapshot's ids file (``.ids.npy``) and fsync it."""
    with open(path, "wb") as f:
        np.save(f, ids, allow_pickle=False)
        f.flush()
        os.fsync(f.fileno())


def write_annoy_snapshot(
    chunks: Iterable[tuple[int, np.ndarray, np.ndarray]],
    dim: int,
    trees: int,
    ann_path: Path,
    ids_path: Path,
    *,
    jobs: int = -1,
    tuning: Tuning | None = None,
) -> SnapshotMeta:
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
    save_ids(ids_path, all_ids)
    fsync_file(ann_path)
    facts: SnapshotMeta = {
        "items": int(n),
        "seq": int(seq),
        "file_size": ann_path.stat().st_size,
        "file_crc32": crc32(ann_path),
        "ids_size": ids_path.stat().st_size,
        "ids_crc32": crc32(ids_path),
        "build_seconds": round(time.monotonic() - started, 3),
        "annoy_build_seconds": round(build_seconds, 3),
    }
    if recall is not None:
        facts["recall"] = recall
    return facts


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
BUILDER_CODE = """\
import os
try:
    os.nice({nice})
except OSError:
    pass
import sys
from imgsearchd.search.builder import builder_main
sys.exit(builder_main(sys.argv[1:]))
"""


def builder_main(argv: list[str]) -> int:
    """Entry point of the builder process: one JSON argument in, one JSON line out."""
    args = cast(BuilderArgs, json.loads(argv[0]))
    _die_with_parent(args["parent"])
    catalog = Catalog(args["catalog"])  # left open: closing would checkpoint the daemon's WAL
    tuning = Tuning(**args["tuning"]) if args["tuning"] else None
    if args["kind"] == BaseKind.HNSW:
        facts, ids = write_hnsw_snapshot(
            catalog, args["extractor"], args["model_id"], args["dim"], Path(args["ann"]),
            previous=args["previous"], jobs=args["jobs"], tuning=tuning,
        )  # fmt: skip
        ids_path = Path(args["ids"])
        save_ids(ids_path, ids)
        ann_path = Path(args["ann"])
        fsync_file(ann_path)
        facts.update({"file_size": ann_path.stat().st_size, "file_crc32": crc32(ann_path),
                      "ids_size": ids_path.stat().st_size, "ids_crc32": crc32(ids_path)})  # fmt: skip
        print(json.dumps(facts), flush=True)
        return 0
    seq_before = catalog.current_seq()  # what an empty read reflects
    result = write_annoy_snapshot(
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
