"""Each row of an imported part judged here: written, already in the catalogue, or counted by its reason.

A row's hash, size, mtime and metadata are claims by whoever wrote the file, about files on
another machine; none of them is taken as it is (``parquet``'s docstring has the rules).
``results`` turns a batch of rows into the ``FileResult`` rows to write and counts the
others in the ``ImportSummary``; a row that names no usable file never stops the rest.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import NotRequired, TypedDict

import numpy as np

from ..media import files as media_files
from ..media import photo_metadata
from ..media.failures import ImageError, Reason
from ..media.limits import ImageLimits
from ..paths import is_inside, normalise_path, path_from_key
from ..store.catalog import Catalog
from ..store.rows import FileResult
from .sources import OURS, ImportBatch, Part

# Rows per import transaction: one commit each, so a crash loses at most this many.
IMPORT_BATCH = 500
# What odd values in a row can raise (a path too strange for the OS, a number out of range):
# counted against that row, never the end of the import.
ROW_ERRORS = (ValueError, TypeError, OverflowError, UnicodeError)

log = logging.getLogger("imgsearchd.bulk.parquet")


class ImportAnswer(TypedDict):
    """What ``imgsearchd vectors import`` prints (``ImportSummary.as_json``, and what the CLI adds)."""

    imported: int
    already: int
    missing: int
    changed: int
    failed: int
    failures: dict[str, int]  # reason -> rows
    first_missing: str | None
    seconds: float
    vectors_per_second: float
    extractors: NotRequired[dict[str, str]]  # name -> model id, added by the CLI
    files: NotRequired[int]  # part files read, added by the CLI


@dataclass(frozen=True)
class ImportOptions:
    """What an import needs besides the folder: where files live here and how they may be read."""

    maps: Sequence[tuple[bytes, bytes]] = ()  # (FROM, TO) path prefixes, first match wins
    limits: ImageLimits = field(default_factory=ImageLimits)
    roots: Sequence[str] | None = None  # allowed real paths (None: anywhere), as the pipeline
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

    def unusable(self, path: str, error: ImageError) -> None:
        """A file that is gone counts as missing; one that cannot be used, as failed by its reason."""
        if error.reason == Reason.MISSING:
            self.miss(path)
        else:
            self.fail(error.reason)

    def as_json(self) -> ImportAnswer:
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


def mapped(path: bytes, maps: Sequence[tuple[bytes, bytes]]) -> bytes:
    """``path`` with the first matching FROM prefix (a whole folder name) replaced by its TO."""
    for source, target in maps:
        if path == source or path.startswith(source.rstrip(b"/") + b"/"):
            return target.rstrip(b"/") + path[len(source.rstrip(b"/")) :] if source != b"/" else target + path
    return path


@dataclass(frozen=True)
class _Row:
    path: str  # here, normalised
    claimed: str | None  # the content hash the row claims; None where the layout has none
    vector: np.ndarray  # unit length
    usable: bool  # finite, not zero


def local_paths(batch: ImportBatch, options: ImportOptions, summary: ImportSummary) -> list[str | None]:
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


def results(
    catalog: Catalog, part: Part, batch: ImportBatch, options: ImportOptions, summary: ImportSummary
) -> Iterable[FileResult]:
    """The rows of a batch to write; the others counted in ``summary``."""
    local = local_paths(batch, options, summary)
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
        st = media_files.stat_file(row.path)
    except ImageError as exc:
        summary.unusable(row.path, exc)
        return None
    if options.roots and not is_inside(os.path.realpath(row.path), options.roots):
        # The read below checks this on the open file; a row the catalogue vouches for is never
        # opened, and must not bring in a file the daemon would refuse to index (allowed_roots).
        summary.fail(Reason.OUTSIDE_ROOTS)
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
        read = media_files.read_file(row.path, options.limits, options.roots)
    except ImageError as exc:
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
