"""Vectors in and out of the catalogue as Parquet (``imgsearchd export`` / ``import``).

Export writes every indexed file's vector of the named extractors, from one read
transaction of the catalogue, to ``DIR/<extractor>/part-NNNNN.parquet`` (at most
``ROWS_PER_FILE`` rows each, one model id per file), each written under a temporary
name, and all renamed once all are whole: a crash leaves no half file and no half export
under final names, and a failed ``--force`` export leaves the earlier one as it was.

Import reads such a folder, or clip-retrieval's output (``img_emb/img_emb_K.npy`` with
``metadata/metadata_K.parquet``; ``sources``). Every part's model id and dimension
is checked against the configured extractor before anything is written. A row's hash, size,
mtime and metadata are claims by whoever wrote the file, about files on another machine;
none of them is taken as it is. Per row: a claimed hash is taken without reading the file
only when the catalogue itself already knows this path as indexed with that hash and the
file's size and mtime are still the ones it recorded (the rule a scan uses, on the
catalogue's own knowledge); the row then adds this extractor's vector and the catalogue
keeps its metadata. Every other file is read and hashed as the pipeline does (size cap,
allowed roots), a row whose hash is not the file's is skipped (``changed``), and the
metadata comes from the file's own bytes. A vector already stored for a content hash by
this model is never replaced (``record_batch(keep_vectors=True)``): a row that claims a
hash cannot change what another file finds. A row that names no usable file (a null, a
NUL byte, a value that is no name) is counted by its reason and never stops the rest. Rows
are written in batches through ``Catalog.record_batch``: a crash keeps what was committed,
and a rerun counts it ``already`` (each row is judged in ``import_rows``). pyarrow is optional
and imported only here, lazily.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypedDict

from ..paths import path_key
from ..store.catalog import Catalog
from .import_rows import ImportOptions, ImportSummary, results
from .sources import (
    METADATA_COLUMNS,
    Part,
    VectorsError,
    batches,
    format_metadata,
    pyarrow_modules,
)

__all__ = ["check_parts", "existing_export", "export", "import_vectors", "parse_map"]

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
log = logging.getLogger("imgsearchd.bulk.parquet")


# -- export -----------------------------------------------------------------------------------


def existing_export(folder: Path) -> list[Path]:
    """The part files of an earlier export in ``folder`` (empty when there is none)."""
    return sorted(folder.glob("*/part-*.parquet")) if folder.is_dir() else []


class ExportAnswer(TypedDict):
    """What ``imgsearchd vectors export`` prints."""

    folder: str
    rows: dict[str, int]  # extractor -> rows written
    models: dict[str, list[str]]  # extractor -> the model ids written
    files: int
    seconds: float
    vectors_per_second: float


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
) -> ExportAnswer:
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
    rows_by: dict[str, int] = dict.fromkeys(extractors, 0)
    try:
        _write_parts(catalog, folder, extractors, writers, rows_by, on_rows)
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


def _write_parts(
    catalog: Catalog,
    folder: Path,
    extractors: Sequence[str],
    writers: dict[tuple[str, str], _PartWriter],
    rows_by: dict[str, int],
    on_rows: Callable[[int], None] | None,
) -> None:
    """Write every vector under temporary names, one writer per (extractor, model id), added to
    ``writers`` as they start (so that a failure abandons them all); ``rows_by`` counts the rows."""
    numbers: dict[str, Iterator[int]] = {}
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


def parse_map(text: str) -> tuple[bytes, bytes]:
    """``FROM=TO`` as a pair of path prefixes (bytes); ValueError when it is not one."""
    source, sep, target = text.partition("=")
    if not sep or not source or not target:
        raise ValueError(f"--map {text!r}: expected FROM=TO (two path prefixes)")
    return path_key(source.rstrip("/") or "/"), path_key(target.rstrip("/") or "/")


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
            written = list(results(catalog, part, batch, options, summary))
            catalog.record_batch(written, keep_vectors=True)
            summary.imported += len(written)
            if on_rows is not None:
                on_rows(len(batch.paths))
    return summary
