"""Vectors in and out of the catalogue as Parquet (``imgsearchd export`` / ``import``).

Export writes every indexed file's vector of the named extractors, from one read
transaction of the catalogue, to ``DIR/<extractor>/part-NNNNN.parquet`` (at most
``ROWS_PER_FILE`` rows each, one model id per file), each written under a temporary
name, and all renamed once all are whole: a crash leaves no half file and no half export
under final names, and a failed ``--force`` export leaves the earlier one as it was.

Import reads such a folder, or clip-retrieval's output (``img_emb/img_emb_K.npy`` with
``metadata/metadata_K.parquet``; ``vectors_sources``). Every part's model id and dimension
is checked against the configured extractor before anything is written. A row's hash, size,
mtime and metadata are claims by whoever wrote the file, about files on another machine;
none of them is taken as it is. Per row: a claimed hash is taken without reading the file
only when the catalogue itself already knows this path as indexed with that hash and the
file's size and mtime are still the ones it recorded (the rule a scan uses, on the
catalogue's own knowledge); the row then adds this extractor's vector and the catalogue
keeps its metadata. Every other file is read and hashed as the indexer does (size cap,
allowed roots), a row whose hash is not the file's is skipped (``changed``), and the
metadata comes from the file's own bytes. A vector already stored for a content hash by
this model is never replaced (``record_batch(keep_vectors=True)``): a row that claims a
hash cannot change what another file finds. A row that names no usable file (a null, a
NUL byte, a value that is no name) is counted by its reason and never stops the rest. Rows
are written in batches through ``Catalog.record_batch``: a crash keeps what was committed,
and a rerun counts it ``already``. pyarrow is optional and imported only here, lazily.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..media import images, photo_metadata
from ..paths import is_inside, normalise_path, path_from_key, path_key
from ..store.catalog import Catalog
from ..store.rows import FileResult
from .sources import (
    METADATA_COLUMNS,
    OURS,
    ImportBatch,
    Part,
    VectorsError,
    batches,
    find_parts,
    format_metadata,
    pyarrow_modules,
)

__all__ = [
    "ImportOptions",
    "ImportSummary",
    "Part",
    "VectorsError",
    "existing_export",
    "export",
    "find_parts",
    "import_vectors",
]

# A part file holds at most this many rows (about 200 MB at 512 float32 dimensions), in row
# groups of ROW_GROUP rows, so a reader never needs a whole file in memory.
ROWS_PER_FILE = 100_000
ROW_GROUP = 10_000
# zstd, and no dictionary for the vectors: on 400 real EfficientNet-Lite0 vectors (half their
# values are 0) a vector took 2,953 bytes, against 5,126 uncompressed and 4,325 with the
# dictionary Parquet uses by default; writing 20k cost 2.6 s against 1.8 s uncompressed.
# The repeated strings (model id, extractor) keep theirs.
COMPRESSION = "zstd"
DICTIONARY = ["model_id", "extractor", "taken_from", "camera"]
# Rows per import transaction: one commit each, so a crash loses at most this many.
IMPORT_BATCH = 500
# What odd values in a row can raise (a path too strange for the OS, a number out of range):
# counted against that row, never the end of the import.
ROW_ERRORS = (ValueError, TypeError, OverflowError, UnicodeError)

log = logging.getLogger("imgsearchd.bulk.parquet")


# -- export -----------------------------------------------------------------------------------


def existing_export(folder: Path) -> list[Path]:
    """The part files of an earlier export in ``folder`` (empty when there is none)."""
    return sorted(folder.glob("*/part-*.parquet")) if folder.is_dir() else []


class _PartWriter:
    """Part files of one extractor and model id, each written to a temporary name and renamed."""

    def __init__(self, folder: Path, extractor: str, model_id: str, dim: int, numbers: Iterator[int]) -> None:
        self.pa, self.pq = pyarrow_modules()
        self.folder, self.extractor, self.model_id, self.dim = folder, extractor, model_id, dim
        self.numbers = numbers
        self.schema = self._schema()
        self.writer: Any = None
        self.rows_in_file = 0
        self.tmp = self.final = folder
        self.done: list[tuple[Path, Path]] = []  # (temporary, final) of the finished files
        self.written: list[Path] = []

    def _schema(self) -> Any:
        pa = self.pa
        fields = [
            pa.field("content_hash", pa.string(), nullable=False),
            pa.field("path", pa.binary(), nullable=False),  # file names are bytes on Linux
            pa.field("size", pa.int64(), nullable=False),
            pa.field("mtime_ns", pa.int64(), nullable=False),
            pa.field("model_id", pa.string(), nullable=False),
            pa.field("extractor", pa.string(), nullable=False),
            pa.field("dim", pa.int32(), nullable=False),
            pa.field("vector", pa.list_(pa.float32(), self.dim), nullable=False),
            pa.field("taken_at", pa.float64()),
            pa.field("taken", pa.string()),
            pa.field("taken_from", pa.string()),
            pa.field("width", pa.int32()),
            pa.field("height", pa.int32()),
            pa.field("camera", pa.string()),
            pa.field("orientation", pa.int32()),
            pa.field("has_gps", pa.bool_()),
        ]
        return pa.schema(fields, metadata=format_metadata())

    def write(self, rows: Sequence[tuple[Any, ...]]) -> None:
        """Append catalogue rows (content_hash, path, size, mtime_ns, dim, vector blob, *metadata)."""
        start = 0
        while start < len(rows):
            if self.writer is None:
                self._open()
            take = min(len(rows) - start, ROWS_PER_FILE - self.rows_in_file, ROW_GROUP)
            self.writer.write_table(self._table(rows[start : start + take]), row_group_size=ROW_GROUP)
            self.rows_in_file += take
            start += take
            if self.rows_in_file >= ROWS_PER_FILE:
                self._finish()

    def _open(self) -> None:
        name = f"part-{next(self.numbers):05d}.parquet"
        self.final = self.folder / name
        self.tmp = self.folder / f".{name}.tmp"
        self.writer = self.pq.ParquetWriter(self.tmp, self.schema, compression=COMPRESSION, use_dictionary=DICTIONARY)
        self.rows_in_file = 0

    def _table(self, rows: Sequence[tuple[Any, ...]]) -> Any:
        pa = self.pa
        n = len(rows)
        flat = pa.py_buffer(b"".join(r[5] for r in rows))  # the catalogue's little-endian float32, as they are
        columns = {
            "content_hash": pa.array([r[0] for r in rows], pa.string()),
            "path": pa.array([bytes(r[1]) for r in rows], pa.binary()),
            "size": pa.array([r[2] for r in rows], pa.int64()),
            "mtime_ns": pa.array([r[3] for r in rows], pa.int64()),
            "model_id": pa.array([self.model_id] * n, pa.string()),
            "extractor": pa.array([self.extractor] * n, pa.string()),
            "dim": pa.array([self.dim] * n, pa.int32()),
            "vector": pa.FixedSizeListArray.from_arrays(
                pa.Array.from_buffers(pa.float32(), n * self.dim, [None, flat]), self.dim
            ),
        }
        for offset, name in enumerate(METADATA_COLUMNS):
            values = [r[6 + offset] for r in rows]
            if name == "has_gps":
                values = [None if v is None else bool(v) for v in values]
            columns[name] = pa.array(values, self.schema.field(name).type)
        return pa.table(columns, schema=self.schema)

    def _finish(self) -> None:
        if self.writer is None:
            return
        self.writer.close()
        self.writer = None
        self.done.append((self.tmp, self.final))
        with open(self.tmp, "rb") as fh:
            os.fsync(fh.fileno())  # the data on disk before the name says the file is whole

    def close(self) -> None:
        self._finish()

    def commit(self) -> None:
        """Give the finished files their final names (once every writer has finished)."""
        for tmp, final in self.done:
            os.replace(tmp, final)
            self.written.append(final)
        self.done = []

    def abandon(self) -> None:
        """After a failure: close and delete this writer's files (no final name ever appears)."""
        try:
            if self.writer is not None:
                self.writer.close()
        finally:
            self.writer = None
            for tmp in [self.tmp, *(t for t, _ in self.done)]:
                if tmp.name.endswith(".tmp"):
                    tmp.unlink(missing_ok=True)


def export(
    catalog: Catalog,
    folder: Path,
    extractors: Sequence[str],
    force: bool = False,
    on_rows: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    """Write the vectors of ``extractors`` to ``folder``; a summary (rows per extractor, files, seconds).

    Raises VectorsError when ``folder`` already holds an export and not ``force`` (then the
    old parts of these extractors are replaced), ParquetMissing without pyarrow.
    """
    pyarrow_modules()
    started = time.monotonic()
    for extractor in extractors:
        _check_own_folder(folder / extractor)
    old = existing_export(folder)
    if old and not force:
        raise VectorsError(f"{folder} already holds an export ({old[0]}); use --force to replace it")
    writers: dict[tuple[str, str], _PartWriter] = {}
    numbers: dict[str, Iterator[int]] = {}
    rows_by: dict[str, int] = dict.fromkeys(extractors, 0)
    try:
        for extractor in extractors:
            sub = folder / extractor
            sub.mkdir(parents=True, exist_ok=True)
            for leftover in sub.glob(".part-*.parquet.tmp"):  # of an export killed before
                leftover.unlink()
            numbers[extractor] = iter(range(1 << 30))
        for extractor, model_id, rows in catalog.iter_export(extractors, ROW_GROUP):
            key = (extractor, model_id)
            if key not in writers:
                dim = int(rows[0][4])
                writers[key] = _PartWriter(folder / extractor, extractor, model_id, dim, numbers[extractor])
            writers[key].write(rows)
            rows_by[extractor] += len(rows)
            if on_rows is not None:
                on_rows(len(rows))
        for writer in writers.values():
            writer.close()
        # Only now, every new part whole on disk, do the old ones go: an export that fails
        # (disk full, interrupted) leaves the earlier export as it was, and no part of its own.
        for extractor in extractors:
            for stale in (folder / extractor).glob("part-*.parquet"):
                stale.unlink()
        for writer in writers.values():
            writer.commit()
    except BaseException:
        for writer in writers.values():
            writer.abandon()
        raise
    elapsed = time.monotonic() - started
    models: dict[str, list[str]] = {}
    for extractor, model_id in writers:  # one each, but for a model change still re-embedding
        models.setdefault(extractor, []).append(model_id)
    return {
        "folder": str(folder),
        "rows": rows_by,
        "models": models,
        "files": sum(len(w.written) for w in writers.values()),
        "seconds": round(elapsed, 3),
        "vectors_per_second": round(sum(rows_by.values()) / elapsed, 1) if elapsed > 0 else 0.0,
    }


def _check_own_folder(sub: Path) -> None:
    """Refuse ``DIR/<extractor>`` when it is a link or not a folder: ``--force`` deletes the
    part files in it, and through a link those would be some other folder's files."""
    if sub.is_symlink():
        raise VectorsError(
            f"{sub} is a link (to {os.readlink(sub)}): export writes and replaces part files only in a "
            "folder of its own; remove the link or export to another folder"
        )
    if sub.exists() and not sub.is_dir():
        raise VectorsError(f"{sub} is not a folder: export writes its part files there; move it or export elsewhere")


# -- import -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ImportOptions:
    """What an import needs besides the folder: where files live here and how they may be read."""

    maps: Sequence[tuple[bytes, bytes]] = ()  # (FROM, TO) path prefixes, first match wins
    limits: images.ImageLimits = field(default_factory=images.ImageLimits)
    roots: Sequence[str] | None = None  # allowed real paths (None: anywhere), as the indexer
    batch: int = IMPORT_BATCH


@dataclass
class ImportSummary:
    """What an import did, row by row."""

    imported: int = 0
    already: int = 0
    missing: int = 0
    changed: int = 0
    failed: int = 0
    failures: dict[str, int] = field(default_factory=dict)  # reason -> rows
    first_missing: str | None = None  # an example, for the --map hint
    started: float = field(default_factory=time.monotonic)

    def fail(self, reason: str) -> None:
        self.failed += 1
        self.failures[reason] = self.failures.get(reason, 0) + 1

    def miss(self, path: str) -> None:
        self.missing += 1
        if self.first_missing is None:
            self.first_missing = path

    def unusable(self, path: str, error: images.ImageError) -> None:
        """A file that is gone counts as missing; one that cannot be used, as failed by its reason."""
        if error.reason == images.Reason.MISSING:
            self.miss(path)
        else:
            self.fail(error.reason)

    def as_json(self) -> dict[str, Any]:
        elapsed = time.monotonic() - self.started
        return {
            "imported": self.imported,
            "already": self.already,
            "missing": self.missing,
            "changed": self.changed,
            "failed": self.failed,
            "failures": self.failures,
            "first_missing": self.first_missing,
            "seconds": round(elapsed, 3),
            "vectors_per_second": round(self.imported / elapsed, 1) if elapsed > 0 else 0.0,
        }


def parse_map(text: str) -> tuple[bytes, bytes]:
    """``FROM=TO`` as a pair of path prefixes (bytes); ValueError when it is not one."""
    source, sep, target = text.partition("=")
    if not sep or not source or not target:
        raise ValueError(f"--map {text!r}: expected FROM=TO (two path prefixes)")
    return path_key(source.rstrip("/") or "/"), path_key(target.rstrip("/") or "/")


def mapped(path: bytes, maps: Sequence[tuple[bytes, bytes]]) -> bytes:
    """``path`` with the first matching FROM prefix (a whole folder name) replaced by its TO."""
    for source, target in maps:
        if path == source or path.startswith(source.rstrip(b"/") + b"/"):
            return target.rstrip(b"/") + path[len(source.rstrip(b"/")) :] if source != b"/" else target + path
    return path


def check_parts(parts: Sequence[Part], expected: dict[str, tuple[str, int]]) -> None:
    """Refuse parts whose extractor is not configured, or whose model id or dim differs from it."""
    for part in parts:
        if part.extractor not in expected:
            raise VectorsError(
                f"{part.file}: extractor {part.extractor!r} is not configured "
                f"(configured: {', '.join(expected) or 'none'})"
            )
        model_id, dim = expected[part.extractor]
        if part.model_id != model_id or part.dim != dim:
            raise VectorsError(
                f"{part.file}: its vectors are from model {part.model_id!r} ({part.dim} dimensions), but the "
                f"{part.extractor} extractor runs {model_id!r} ({dim} dimensions); nothing was imported. "
                "Configure the same model (and framing: preprocess) or import into another extractor"
            )


def import_vectors(
    catalog: Catalog,
    parts: Sequence[Part],
    expected: dict[str, tuple[str, int]],
    options: ImportOptions = ImportOptions(),
    on_rows: Callable[[int], None] | None = None,
) -> ImportSummary:
    """Bring the rows of ``parts`` (checked first: ``check_parts``) into the catalogue."""
    check_parts(parts, expected)
    summary = ImportSummary()
    for part in parts:
        for batch in batches(part, options.batch):
            results = list(_results(catalog, part, batch, options, summary))
            catalog.record_batch(results, keep_vectors=True)
            summary.imported += len(results)
            if on_rows is not None:
                on_rows(len(batch.paths))
    return summary


@dataclass(frozen=True)
class _Row:
    path: str  # here, normalised
    claimed: str | None  # the content hash the row claims; None where the layout has none
    vector: np.ndarray  # unit length
    usable: bool  # finite, not zero


def _local_paths(batch: ImportBatch, options: ImportOptions, summary: ImportSummary) -> list[str | None]:
    """Each row's path here (after ``--map``, normalised); None, counted ``bad_path``, for a row
    whose path names no file: a null, a value that is no name, a NUL byte (no file name holds one)."""
    local: list[str | None] = []
    for raw in batch.paths:
        path = None
        try:
            here = None if raw is None else mapped(raw, options.maps)
            if here and b"\0" not in here:  # b"" would be the current folder
                path = normalise_path(path_from_key(here))
        except ROW_ERRORS as exc:
            log.warning("import: a path that names no file here: %s: %s", type(exc).__name__, exc)
        if path is None:
            summary.fail("bad_path")
        local.append(path)
    return local


def _results(
    catalog: Catalog, part: Part, batch: ImportBatch, options: ImportOptions, summary: ImportSummary
) -> Iterable[FileResult]:
    """The rows of a batch to write; the others counted in ``summary``."""
    local = _local_paths(batch, options, summary)
    known = catalog.import_facts([p for p in local if p is not None], part.extractor, part.model_id)
    units, usable = _units(batch.vectors)
    for i, path in enumerate(local):
        if path is None:
            continue
        row = _Row(path, batch.hashes[i] if batch.hashes is not None else None, units[i], bool(usable[i]))
        try:
            result = _result(row, known.get(path), part, options, summary)
        except ROW_ERRORS as exc:  # an odd value this code did not foresee: that row alone
            log.warning("import: row %d of %s skipped: %s: %s", i, part.file, type(exc).__name__, exc)
            summary.fail("bad_row")
            continue
        if result is not None:
            yield result


def _result(
    row: _Row,
    facts: tuple[int, int, str, bool] | None,
    part: Part,
    options: ImportOptions,
    summary: ImportSummary,
) -> FileResult | None:
    """What to write for one row, or None with the reason counted in ``summary``.

    ``facts``: what the catalogue knows of the path (``Catalog.import_facts``), or None.
    """
    try:
        st = images.stat_file(row.path)
    except images.ImageError as exc:
        summary.unusable(row.path, exc)
        return None
    if options.roots and not is_inside(os.path.realpath(row.path), options.roots):
        # The read below checks this on the open file; a row the catalogue vouches for is never
        # opened, and must not bring in a file the daemon would refuse to index (allowed_roots).
        summary.fail(images.Reason.OUTSIDE_ROOTS)
        return None
    unchanged = facts is not None and facts[:2] == (st.st_size, st.st_mtime_ns)  # a scan's own rule
    if unchanged and facts is not None and facts[3]:
        summary.already += 1
        return None
    if not row.usable:
        summary.fail("bad_vector")
        return None
    if part.layout == OURS and row.claimed is None:
        summary.fail("no_hash")  # an export always writes one: the content the vector was made of
        return None
    vectors = {part.extractor: (part.model_id, row.vector)}
    if unchanged and facts is not None and row.claimed == facts[2]:
        # The catalogue's own knowledge, not the row's: this path holds this content. No read;
        # only this extractor's vector is added, and the catalogue keeps its metadata.
        return FileResult(row.path, st.st_size, st.st_mtime_ns, facts[2], vectors, metadata=None)
    try:
        read = images.read_file(row.path, options.limits, options.roots)
    except images.ImageError as exc:
        summary.unusable(row.path, exc)
        return None
    content_hash = read.content_hash  # computed on each access: once
    if row.claimed is not None and row.claimed != content_hash:
        summary.changed += 1  # not the content the vector was made of: a scan embeds it
        return None
    if facts is not None and facts[2] == content_hash and facts[3]:
        summary.already += 1
        return None
    metadata = photo_metadata.read_metadata(read.data, read.mtime_ns)  # the file's, never the row's
    return FileResult(row.path, read.size, read.mtime_ns, content_hash, vectors, metadata=metadata)


def _units(vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The rows as float32 of length 1 (clip-retrieval stores float16), and which rows are usable
    (finite, not zero); one pass over the batch."""
    v = np.asarray(vectors, dtype=np.float32)
    with np.errstate(invalid="ignore", over="ignore"):
        norms = np.linalg.norm(v, axis=1)
        ok = np.isfinite(v).all(axis=1) & np.isfinite(norms) & (norms > 0)
        return (v / np.where(ok, norms, 1.0)[:, None]).astype(np.float32, copy=False), ok
