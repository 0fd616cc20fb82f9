"""A model change's background work: embed every content with the new model, then switch at once.

One thread (``Switcher``) takes the changes ``model_change`` found one after the other. It
embeds, in the new model's batches, each indexed content that lacks the new model's vector,
reading one of its files as the pipeline does (``prepare.load_file`` with the new model alone)
and writing vectors only; it waits while the indexer has work, so new files are never held up.
A file that cannot be read, or whose bytes changed, goes to the indexer's queue (which records
it as it would any file) and is not asked for again. When none lacks a vector: the pipeline and
the watcher move to the new model, the few contents the old one embedded meanwhile are
embedded, the new index is opened in its own folder, and the index and the extractor are
swapped together; then the old index, its folder and the old model's vectors go, and the
catalogue records the new model as serving (the promotion and the prune in one transaction). A
failure before the swap puts the pipeline and the watcher back on the old model, which goes on
serving. Without an old model to serve (a gap) the new one serves already: its vectors are
written visibly, and the end only prunes and records.
"""

from __future__ import annotations

import gc
import logging
import shutil
import threading
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Protocol

import numpy as np
import torch

from ..config import Config
from ..extractors import Extractor, LoadedExtractors
from ..ingest.pipeline import Pipeline
from ..ingest.prepare import load_file
from ..ingest.watcher import Watcher
from ..ingest.workqueue import Intent, WorkQueue
from ..media.limits import ImageLimits
from ..search.index import ExtractorIndex, index_for
from ..store.catalog import Catalog
from .model_change import Change

log = logging.getLogger("imgsearchd.service.model_switch")

# Contents asked of the catalogue at a time: a few batches, so one read serves several of them.
CHUNK_BATCHES = 4
# How often the progress is read from the catalogue while embedding; in between it is counted here.
RECOUNT_S = 60.0
# How long a swapped-out index stays open, so that searches that picked it up just before finish
# (one that embeds an upload on the CPU takes well under a second).
DRAIN_S = 5.0


class Host(Protocol):
    """The parts of the running service a model change reads and swaps."""

    config: Config
    catalog: Catalog | None
    loaded: LoadedExtractors | None
    indexes: dict[str, ExtractorIndex]
    pipeline: Pipeline | None
    watcher: Watcher | None
    queue: WorkQueue
    limits: ImageLimits
    swap_lock: threading.Lock

    def allowed_roots(self) -> list[str]: ...


class Switcher:
    """Runs the model changes on a thread of its own; ``pace`` (tests) sleeps between batches."""

    def __init__(self, host: Host, changes: dict[str, Change], pace: float = 0.0) -> None:
        self.host = host
        self.changes = changes
        self.pace = pace
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._counted_at = 0.0  # when the stored counts were last read (``_count``)
        self._indexer_done = 0  # the indexer's files done then

    def start(self) -> None:
        if not any(c.state != "failed" for c in self.changes.values()):
            return
        self._thread = threading.Thread(target=self._run, name="imgsearchd-model-change", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop after the batch in hand (a restart resumes: what is stored counts)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=60)

    def _run(self) -> None:
        threads = max(1, self.host.config.index.loader_threads or 2)
        with ThreadPoolExecutor(threads, thread_name_prefix="imgsearchd-change-loader") as self._pool:
            for change in list(self.changes.values()):
                if change.state == "failed" or self._stop.is_set():
                    continue
                try:
                    self._embed_all(change, visible=change.old is None)
                    if not self._stop.is_set():
                        self._switch(change)
                except Exception as exc:  # the old model goes on serving; a restart tries again
                    log.exception("%s: the model change failed", change.name)
                    change.state, change.error = "failed", f"{type(exc).__name__}: {exc}"

    # -- embedding

    def _catalog(self) -> Catalog:
        assert self.host.catalog is not None
        return self.host.catalog

    def _embed_all(self, change: Change, visible: bool) -> None:
        """Embed every content lacking the new model's vector: one pass in content-hash order (one the
        old model embeds meanwhile, behind the pass, is the switch's second pass's)."""
        assert change.new is not None and change.to_id is not None
        new, catalog = change.new, self._catalog()
        after = ""
        while not self._stop.is_set():
            rows = catalog.lacking_contents(change.name, change.to_id, after, CHUNK_BATCHES * new.batch_size)
            if not rows:
                break
            after = rows[-1][0]
            rows = [row for row in rows if row[0] not in change.handed]
            for start in range(0, len(rows), new.batch_size):
                self._wait_for_indexer()
                if self._stop.is_set():
                    return
                written = self._embed_batch(change, new, rows[start : start + new.batch_size], visible)
                self._count(change, written)
                if self.pace:
                    self._stop.wait(self.pace)
        change.counted(*catalog.count_contents(change.name, change.to_id))

    def _count(self, change: Change, written: int) -> None:
        """Progress for ``/stats``: what this batch wrote, and the stored counts every ``RECOUNT_S``
        (a read of every file row and a vector lookup each: 1 s at 50k files on the 2-core machine,
        too long to pay once per batch), and at once when the indexer recorded files since the last
        read (the library grew or shrank: ``total`` follows it)."""
        assert change.to_id is not None
        now = time.monotonic()
        progress = self.host.pipeline.progress.snapshot() if self.host.pipeline is not None else None
        indexer_done = progress["done"] if progress else 0
        if now - self._counted_at < RECOUNT_S and indexer_done == self._indexer_done:
            change.counted(change.total, change.done + written)
            return
        self._counted_at, self._indexer_done = now, indexer_done
        change.counted(*self._catalog().count_contents(change.name, change.to_id))

    def _wait_for_indexer(self) -> None:
        """Wait while the indexer's queue has work: new files first (the change is lower priority)."""
        pipeline, queue = self.host.pipeline, self.host.queue
        while not self._stop.is_set():
            progress = pipeline.progress.snapshot() if pipeline is not None else None
            busy = len(queue) + (max(0, progress["queued"] - progress["done"]) if progress else 0)
            if not busy:
                return
            self._stop.wait(0.2)

    def _embed_batch(self, change: Change, new: Extractor, rows: Sequence[tuple[str, str]], visible: bool) -> int:
        """Read, embed and store one batch; a file that cannot be read goes to the indexer. Returns how
        many vectors it stored."""
        assert self._pool is not None
        extractors: Mapping[str, Extractor] = {change.name: new}
        limits, roots = self.host.limits, self.host.allowed_roots() or None
        items = list(self._pool.map(lambda row: load_file(row[1], extractors, limits, roots, _no_reuse), rows))
        hashes, tensors = [], []
        for (content_hash, path), item in zip(rows, items):
            if item.error is None and item.content_hash == content_hash and change.name in item.tensors:
                hashes.append(content_hash)
                tensors.append(item.tensors[change.name])
                continue
            why = item.error or "its bytes changed"
            log.info("%s: %s cannot be embedded now (%s): the indexer takes it", change.name, path, why)
            change.handed.add(content_hash)
            self.host.queue.put(path, Intent.RECHECK)
        if tensors:
            vectors: np.ndarray = new.embed(torch.stack(tensors))
            self._catalog().put_vectors(change.name, new.model_id, dict(zip(hashes, vectors)), visible)
            if visible:  # the new model serves already (a gap): its index reads them now
                self.host.indexes[change.name].refresh()
        return len(tensors)

    # -- the switch

    def _switch(self, change: Change) -> None:
        """Every content has the new model's vector (or went to the indexer): serve the new model."""
        host, catalog, name = self.host, self._catalog(), change.name
        assert change.new is not None and host.loaded is not None and host.pipeline is not None
        change.state = "switching"
        log.info(
            "%s: %d of %d contents embedded by %s; switching (contents that came behind the pass are embedded next)",
            name, change.done, change.total, change.to_id,
        )  # fmt: skip
        if change.handed:
            log.warning(
                "%s: %d contents could not be embedded now; the indexer retries their files", name, len(change.handed)
            )
        if change.old is not None:
            self._move_ingest(name, change.new)
            try:
                if not self._swap(change):
                    return  # stopping: the catalogue still names the old model serving; a restart resumes
            except BaseException:  # before the swap: the old model goes on serving, and embedding
                self._move_ingest(name, change.old, requeue=change.to_id)
                raise
        pruned = catalog.promote_next_model(name)  # with the prune: one transaction
        self._remove_folder(change)
        log.info("%s: model change to %s done: %d vectors of %s pruned", name, change.to_id, pruned, change.from_id)
        change.old = None
        self.changes.pop(name, None)
        gc.collect()  # the old model's weights go back now, not at some later collection

    def _swap(self, change: Change) -> bool:
        """Embed what came meanwhile, open the new index and swap it and the extractor in at once;
        False when stopping first."""
        host, catalog, name = self.host, self._catalog(), change.name
        assert change.new is not None and host.loaded is not None
        log.info("%s: new files are embedded by %s; embedding those that came meanwhile", name, change.to_id)
        self._embed_all(change, visible=False)
        if self._stop.is_set():
            return False
        new_index = index_for(catalog, host.config, change.new)
        new_index.open()
        old_index = host.indexes[name]
        with host.swap_lock:  # a search takes both at once
            host.indexes[name], host.loaded.extractors[name] = new_index, change.new
        new_index.refresh()
        log.info("%s: searches use %s now", name, change.to_id)
        self._stop.wait(DRAIN_S)
        old_index.close()
        return True

    def _move_ingest(self, name: str, extractor: Extractor, requeue: str | None = None) -> None:
        """The pipeline and the watcher embed with ``extractor`` from now on. ``requeue``: the model
        they used meanwhile (a switch that failed): the files it alone embedded go to the indexer again,
        so the serving model embeds them too."""
        assert self.host.pipeline is not None
        self.host.pipeline.use_extractor(name, extractor)
        if self.host.watcher is not None:
            self.host.watcher.use_model(name, extractor.model_id)
        if requeue is None:
            return
        after = ""
        while rows := self._catalog().lacking_contents(name, extractor.model_id, after, 256):
            after = rows[-1][0]
            for _content_hash, path in rows:
                self.host.queue.put(path, Intent.RECHECK)
        log.warning("%s: the pipeline and the watcher use %s again", name, extractor.model_id)

    def _remove_folder(self, change: Change) -> None:
        """The old index's folder (inside the data folder; never the new one's)."""
        data_dir = Path(self.host.config.data_dir)
        folder = data_dir / change.old_folder
        if change.old_folder and change.old_folder != change.new_folder and folder.parent == data_dir:
            shutil.rmtree(folder, ignore_errors=True)
            log.info("%s: removed the old index folder %s", change.name, folder)


def _no_reuse(_content_hash: str, _name: str) -> None:
    return None  # the new model's vector is what is missing: nothing to reuse
