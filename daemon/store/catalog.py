"""The SQLite catalogue: the single source of truth for files and their vectors.

One row per file (absolute normalised path, size, mtime_ns, content hash, state,
last error) and one vector per (content hash, extractor) with the model id that
made it, so a moved or copied file reuses its vector. Every change bumps a
monotonic change number (``seq``) so that derived indexes can catch up with
``changes_since`` instead of re-reading everything.

Every SQL statement of the daemon lives in this room, so the schema's users (pipeline,
index, folder search, duplicates) never write SQL of their own. ``Catalog`` is their one
door: it owns the connections and transactions (``database``) and hands them to the
statements, grouped by what they touch (``file_writes``, ``file_reads``, ``vector_reads``).
They are functions of a connection rather than mixins so that each names the one thing
it needs, and a transaction's extent is visible here, in the method that opens it.

Paths are stored as the file system's bytes (``paths.path_key``): a name that is not
valid UTF-8 is still one row, and reads give it back unchanged.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import numpy as np

from ..media.photo_metadata import PhotoMetadata
from ..paths import normalise_path, path_key
from . import file_reads, file_writes, models, query_vectors, vector_reads, watched_folders
from .database import Database
from .models import ModelRow
from .rows import Changes, Counts, FailedFile, FileRecord, FileResult, FileState, SearchScope
from .sql import SUBTREE, subtree
from .watched_folders import WatchedFolder

__all__ = ["Catalog"]


class Catalog(Database):
    """The catalogue in one SQLite file (WAL mode)."""

    # -- writes ------------------------------------------------------------

    def record_batch(self, results: Iterable[FileResult], keep_vectors: bool = False) -> int:
        """Write a batch of pipeline results in one transaction; return its change number.

        ``keep_vectors`` (an import's): a vector already stored for a (content hash,
        extractor) by the same model stays; only one of another model, which a scan would
        replace too (``missing_vectors``), is replaced. Without it (the indexer's, which
        embedded the bytes itself) the new vector replaces any stored one.
        """
        results = list(results)
        if not results:
            return self.current_seq()
        now = time.time()
        insert = file_writes.KEEP_VECTOR if keep_vectors else file_writes.PUT_VECTOR
        with self._change() as (conn, seq):
            for result in results:
                file_writes.record_one(conn, result, seq, now, insert)
        return seq

    def remove_paths(self, paths: Iterable[str]) -> int:
        """Forget these files (and everything under them when a path is a folder).

        Their vectors stay until ``prune_orphan_vectors``.
        """
        with self._change() as (conn, seq):
            return file_writes.remove_paths(conn, seq, paths)

    def move(self, old: str, new: str) -> int:
        """Rename a file or a folder's files in place: ids and vectors are kept."""
        with self._change() as (conn, seq):
            return file_writes.move(conn, seq, old, new)

    def set_offline(self, root: str) -> int:
        """Mark the indexed files at or below ``root`` offline: kept with their vectors, not searchable.

        For a watched folder that vanished as a whole (an unmounted disk); returns how many.
        """
        return self._set_state(f"state='indexed' AND {SUBTREE}", [subtree(root)], FileState.OFFLINE)

    def set_online(self, paths: Iterable[str]) -> int:
        """Make offline files searchable again (they came back unchanged); returns how many."""
        return self._set_state(
            "state='offline' AND path=?", [(path_key(normalise_path(p)),) for p in paths], FileState.INDEXED
        )

    def _set_state(self, where: str, params: list[tuple[bytes, ...]], state: str) -> int:
        if not params:
            return 0
        now = time.time()
        with self._change() as (conn, seq):
            return file_writes.set_state(conn, seq, now, where, params, state)

    def fill_metadata(self, rows: Iterable[tuple[int, PhotoMetadata]]) -> None:
        """Store metadata read for (id, metadata) files catalogued without it.

        No change number: the indexes hold vectors, and the date filters read these columns
        at search time. A row the pipeline filled meanwhile (the file was touched or
        re-indexed) keeps what the pipeline read.
        """
        with self._write() as conn:
            file_writes.fill_metadata(conn, rows)

    def prune_orphan_vectors(self) -> int:
        """Drop vectors no file has any more.

        Removing a file keeps its vector until this runs, so a file that reappears
        elsewhere (a move seen as delete + create) reuses it instead of re-embedding.
        """
        with self._write_lock:
            return file_writes.prune_orphan_vectors(self._writer)

    # -- a model change (``models``; ``service.model_change``) -------------

    def put_vectors(self, extractor: str, model_id: str, vectors: dict[str, np.ndarray], visible: bool) -> None:
        """Store content hash -> vector of one model in one transaction.

        Not ``visible`` (the next model's, which no index reads yet): no change number, no file
        row touched. ``visible`` (the serving model's): the contents' files get a new change
        number, so the serving index reads the vectors at its next refresh.
        """
        if not vectors:
            return
        if not visible:
            with self._write() as conn:
                file_writes.put_vectors(conn, extractor, model_id, vectors)
            return
        with self._change() as (conn, seq):
            file_writes.put_vectors(conn, extractor, model_id, vectors)
            file_writes.touch_contents(conn, seq, vectors)

    def prune_other_models(self, extractor: str, keep: Sequence[str]) -> int:
        """Drop this extractor's vectors of every model but those in ``keep`` (after a switch); returns how many."""
        with self._write() as conn:
            return file_writes.prune_other_models(conn, extractor, keep)

    def count_contents(self, extractor: str, model_id: str) -> tuple[int, int]:
        """(indexed contents, those with a vector of this model)."""
        return vector_reads.count_contents(self._reader(), extractor, model_id)

    def lacking_contents(
        self, extractor: str, model_id: str, after: str = "", limit: int = 256
    ) -> list[tuple[str, str]]:
        """(content hash, one path) of up to ``limit`` indexed contents after ``after`` lacking this model's vector."""
        return vector_reads.lacking_contents(self._reader(), extractor, model_id, after, limit)

    def lacks_vectors(self, content_hash: str, wanted: dict[str, str]) -> bool:
        """True when this content has no vector of one of the extractor -> model id pairs."""
        return vector_reads.lacks_vectors(self._reader(), content_hash, wanted)

    def models(self, extractor: str) -> dict[str, ModelRow]:
        """state ("serving", "next") -> the model recorded for this extractor."""
        return models.read(self._reader(), extractor)

    def vector_models(self, extractor: str) -> dict[str, int]:
        """model id -> how many vectors of this extractor it made."""
        return models.vector_models(self._reader(), extractor)

    def model_folder(self, extractor: str, model_id: str) -> str | None:
        """The index folder recorded for this model (relative to the data folder), or None."""
        return models.folder_of(self._reader(), extractor, model_id)

    def record_model(self, row: ModelRow) -> None:
        """Record a model serving an extractor or coming next (replacing the row of that state)."""
        with self._write() as conn:
            models.put(conn, row)

    def forget_next_model(self, extractor: str) -> None:
        with self._write() as conn:
            models.drop_next(conn, extractor)

    def promote_next_model(self, extractor: str) -> int:
        """The next model of this extractor serves from now on (its row replaces the serving one) and
        the other models' vectors go, in one transaction (never a serving model without vectors);
        returns how many vectors went."""
        with self._write() as conn:
            models.promote_next(conn, extractor, time.time())
            serving = models.read(conn, extractor).get(models.SERVING)
            return file_writes.prune_other_models(conn, extractor, (serving.model_id,)) if serving else 0

    def rename_model(self, extractor: str, old: str, new: str, settings: str) -> int:
        """Rename a model's id in place (vectors and rows); returns how many vectors (``models.rename``)."""
        with self._write() as conn:
            return models.rename(conn, extractor, old, new, settings)

    # -- file rows ---------------------------------------------------------

    def get(self, path: str) -> FileRecord | None:
        return file_reads.get(self._reader(), path)

    def files_under(self, root: str) -> dict[str, tuple[int, int, str]]:
        """path -> (size, mtime_ns, state) for every file at or below ``root``."""
        return file_reads.files_under(self._reader(), root)

    def count_under(self, root: str, states: Iterable[str] = (FileState.INDEXED, FileState.OFFLINE)) -> int:
        """How many files at or below ``root`` are in one of ``states``."""
        return file_reads.count_under(self._reader(), root, states)

    def count_in(self, scope: SearchScope) -> int:
        """How many indexed (or offline) files a search scope holds."""
        return file_reads.count_in(self._reader(), scope)

    def paths_for(self, ids: Iterable[int], scope: SearchScope | None = None) -> dict[int, str]:
        """id -> path for the ids that still exist, are indexed and lie in ``scope`` (when given)."""
        return file_reads.paths_for(self._reader(), ids, scope)

    def content_hashes(self, paths: Iterable[str]) -> dict[str, str]:
        """path -> content hash for the catalogued paths (normalised) that have one."""
        return file_reads.content_hashes(self._reader(), paths)

    def result_facts(self, paths: Iterable[str]) -> dict[str, tuple[str | None, PhotoMetadata | None]]:
        """path -> (content hash, metadata) for the catalogued paths (normalised): what a result shows."""
        return file_reads.result_facts(self._reader(), paths)

    def metadata_for(self, ids: Iterable[int]) -> dict[int, PhotoMetadata]:
        """id -> metadata for the ids whose metadata is filled in."""
        return file_reads.metadata_for(self._reader(), ids)

    def without_metadata(self, limit: int) -> list[tuple[int, str, int]]:
        """(id, path, mtime_ns) of up to ``limit`` indexed files whose metadata is not filled in
        (catalogued before schema version 3)."""
        return file_reads.without_metadata(self._reader(), limit)

    def count_without_metadata(self) -> int:
        return file_reads.count_without_metadata(self._reader())

    def failed_everywhere(self) -> list[FailedFile]:
        """Every failed file, for the retry timer."""
        return file_reads.failed_everywhere(self._reader())

    def unused_hashes(self, hashes: Iterable[str]) -> set[str]:
        """Those of ``hashes`` that no file has any more (their thumbnails can go)."""
        return file_reads.unused_hashes(self._reader(), hashes)

    def counts(self) -> Counts:
        """Files by state, failures by reason, and vectors by extractor."""
        return file_reads.counts(self._reader())

    def recent_failures(self, limit: int = 10) -> list[dict[str, str]]:
        return file_reads.recent_failures(self._reader(), limit)

    def shared_contents(self) -> list[tuple[str, int, str, int]]:
        """(content hash, id, path, size) of every indexed file whose bytes another indexed file shares."""
        return file_reads.shared_contents(self._reader())

    def path_and_size(self, ids: Iterable[int]) -> dict[int, tuple[str, int]]:
        """id -> (path, size) for the ids that still exist and are indexed."""
        return file_reads.path_and_size(self._reader(), ids)

    # -- vectors -----------------------------------------------------------

    def vectors_under(self, root: str, extractor: str, model_id: str, dim: int) -> tuple[np.ndarray, np.ndarray]:
        """(ids, vectors) of the indexed files at or below ``root`` with a vector from this model."""
        return self.vectors_in(SearchScope(folder=root), extractor, model_id, dim)

    def vectors_in(self, scope: SearchScope, extractor: str, model_id: str, dim: int) -> tuple[np.ndarray, np.ndarray]:
        """(ids, vectors) of the indexed files in a search scope with a vector from this model.

        One read, so one change number; what the indexes still hold as fresh is in it too.
        """
        return vector_reads.vectors_in(self._reader(), scope, extractor, model_id, dim)

    def models_present(self, content_hash: str) -> dict[str, str]:
        """extractor -> model_id of the vectors stored for this content."""
        return vector_reads.models_present(self._reader(), content_hash)

    def vector_for_hash(self, content_hash: str, extractor: str, model_id: str) -> np.ndarray | None:
        return vector_reads.vector_for_hash(self._reader(), content_hash, extractor, model_id)

    def vector_for_path(self, path: str, extractor: str, model_id: str) -> tuple[FileRecord, np.ndarray] | None:
        """The stored vector of an indexed file, or None."""
        record = self.get(path)
        if record is None or record.state != FileState.INDEXED or record.content_hash is None:
            return None
        vector = self.vector_for_hash(record.content_hash, extractor, model_id)
        return (record, vector) if vector is not None else None

    # -- query vectors: pictures uploaded to search by (``query_vectors``) ---

    def keep_query_vector(
        self, content_hash: str, extractor: str, model_id: str, vector: np.ndarray, kept: int = query_vectors.KEPT
    ) -> None:
        """Keep an upload search's vector for ``/search?hash=``; beyond ``kept`` rows the least
        recently used go. One small write transaction, no change number (no index holds these)."""
        with self._write() as conn:
            query_vectors.put(conn, content_hash, extractor, model_id, vector, time.time(), kept)

    def query_vector(self, content_hash: str, extractor: str, model_id: str) -> np.ndarray | None:
        """A kept upload's vector from this extractor and model, or None (see ``touch_query_vector``)."""
        return query_vectors.get(self._reader(), content_hash, extractor, model_id)

    def touch_query_vector(self, content_hash: str, extractor: str) -> None:
        """Mark a kept upload's vector used now, so the bound drops it last."""
        with self._write() as conn:
            query_vectors.touch(conn, content_hash, extractor, time.time())

    def count_query_vectors(self) -> int:
        return query_vectors.count(self._reader())

    def sample_vectors(self, extractor: str, model_id: str, n: int, seed: int | None = None) -> np.ndarray:
        """Up to ``n`` vectors of this model from distinct indexed contents, drawn at random ((k, dim);
        (0, 0) when there are none): a background to compare a query's scores with."""
        return vector_reads.sample_vectors(self._reader(), extractor, model_id, n, seed)

    def missing_vectors(self, extractor: str, model_id: str) -> list[str]:
        """Paths of indexed files that have no vector from this extractor and model."""
        return vector_reads.missing_vectors(self._reader(), extractor, model_id)

    def hashes_with_vectors(self, models: dict[str, str]) -> list[str]:
        """Content hashes that have a vector from every one of these extractor -> model id pairs."""
        return vector_reads.hashes_with_vectors(self._reader(), models)

    def iter_vectors(
        self, extractor: str, model_id: str, chunk: int = 10000
    ) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
        """Yield (seq, ids, vectors) chunks of every indexed vector, from one consistent read.

        ``seq`` is the catalogue change number the whole read reflects.
        """
        with self._own_connection() as conn:
            yield from vector_reads.iter_vectors(conn, extractor, model_id, chunk)

    def all_vectors(self, extractor: str, model_id: str, dim: int) -> tuple[int, np.ndarray, np.ndarray]:
        """(seq, ids, vectors) of every indexed vector for this extractor and model."""
        seq = self.current_seq()  # what an empty read reflects
        ids_parts, vec_parts = [], []
        for chunk_seq, ids, vectors in self.iter_vectors(extractor, model_id):
            seq = chunk_seq
            ids_parts.append(ids)
            vec_parts.append(vectors)
        if not ids_parts:
            return seq, np.zeros(0, dtype=np.int64), np.zeros((0, dim), dtype=np.float32)
        return seq, np.concatenate(ids_parts), np.concatenate(vec_parts).astype(np.float32, copy=False)

    def changes_since(self, extractor: str, model_id: str, seq: int, dim: int) -> Changes:
        """Vectors added or changed, and files removed, after change number ``seq``."""
        return vector_reads.changes_since(self._reader(), extractor, model_id, seq, dim)

    # -- folders watched at run time (``watched_folders``) -----------------

    def watched_folders(self) -> list[WatchedFolder]:
        """The folders added at run time (not the config's), oldest first."""
        return watched_folders.read_all(self._reader())

    def add_watched_folder(self, path: str, replaces: Iterable[str] = ()) -> float:
        """Keep ``path`` as a watched folder, dropping ``replaces`` (added folders inside it), at once;
        returns the time it is kept with."""
        added_at = time.time()
        with self._write() as conn:
            watched_folders.add(conn, path, added_at, replaces)
        return added_at

    def indexed_and_failed_under(self, root: str) -> tuple[int, int]:
        """How many files at or below ``root`` are indexed, and how many failed (one read)."""
        return watched_folders.states_under(self._reader(), root)

    def remove_watched_folder(self, path: str) -> bool:
        """Forget a folder added at run time; False when it was not one."""
        with self._write() as conn:
            return watched_folders.remove(conn, path)

    # -- export and import (bulk.parquet) ----------------------------------

    def iter_export(self, extractors: Sequence[str], chunk: int = 10000) -> Iterator[tuple[str, str, list[Any]]]:
        """Yield (extractor, model_id, rows) chunks of every indexed file's vectors, from one read.

        A row is (content_hash, path bytes, size, mtime_ns, dim, vector blob, *metadata
        columns). One read transaction on a connection of its own: the daemon may write
        meanwhile, and the whole export reflects one change number.
        """
        with self._own_connection() as conn:
            yield from vector_reads.iter_export(conn, extractors, chunk)

    def import_facts(
        self, paths: Sequence[str], extractor: str, model_id: str
    ) -> dict[str, tuple[int, int, str, bool]]:
        """path -> (size, mtime_ns, content_hash, has a vector of this extractor and model) for
        the indexed paths (normalised) among ``paths``."""
        return vector_reads.import_facts(self._reader(), paths, extractor, model_id)
