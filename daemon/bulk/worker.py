"""What a backfill runs on the cluster: a batch of paths in, a batch of vectors out.

``FileEmbedder`` is the Ray Data actor class (``backfill`` hands it to ``map_batches``):
each actor loads the extractors once, with the settings of the machine that runs the
backfill (precision, batch size, device ``auto``: the GPU when Ray gave the actor one),
then for each batch reads, hashes and decodes the files on a small thread pool
(``ingest.prepare.load_file``, as the pipeline's loader threads do) and embeds them in
``batch_size`` chunks. Content the catalogue already holds (``known``: sorted content
hashes) is not decoded: the row says so and the driver takes the stored vector.

Ray is not imported here: the class is a plain callable on a dict of numpy columns, so
the same code runs in a test without a cluster. Columns in: ``row`` (position in the
plan), ``path`` (the catalogue's name, file system bytes), ``open`` (the name on this
node, only when it differs: ``backfill.plan_table``). Columns out: see ``OUTPUT_COLUMNS`` and ``vector_column``.
"""

from __future__ import annotations

import json
import os
import socket
import tempfile
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..media.limits import ImageLimits

if TYPE_CHECKING:
    from ..config import ExtractorSettings
    from ..extractors import Extractor
    from ..ingest.prepare import Loaded

OUTPUT_COLUMNS = (
    "row",
    "path",
    "size",
    "mtime_ns",
    "content_hash",
    "error_reason",
    "error_detail",
    "metadata",
    "worker",
)


def vector_column(name: str) -> str:
    """The column holding extractor ``name``'s vectors ((rows, dim) float32, zeros where none)."""
    return f"vector_{name}"


def embedded_column(name: str) -> str:
    """The column saying which rows ``vector_column(name)`` holds a vector for."""
    return f"embedded_{name}"


def for_workers(settings: ExtractorSettings, model_id: str, device: str) -> ExtractorSettings:
    """An extractor's settings on the workers: on ``device``, except a model whose index holds
    OpenVINO int8's vectors (its own model id), which runs that on the workers' CPUs: a GPU's
    fp32/fp16 vectors would not go in that index, and the driver would refuse them."""
    from ..extractors.precision import INT8_ID

    if model_id.endswith(INT8_ID):
        return replace(settings, device="cpu", engine="openvino", precision="int8")
    return replace(settings, device=device)


def model_column(name: str) -> str:
    """The model id that made extractor ``name``'s vectors on this worker (the driver checks it)."""
    return f"model_{name}"


class FileEmbedder:
    """A Ray Data actor: loads the models once, then embeds batches of files."""

    def __init__(
        self,
        settings: dict[str, ExtractorSettings],
        limits: ImageLimits,
        roots: Sequence[str] | None,
        known: np.ndarray,
        threads: int = 0,
        index_ids: dict[str, str] | None = None,
    ) -> None:
        # Imported here, on the worker: the driver imports this module for its column names only,
        # and torch with the models takes seconds (a refused backfill answers at once).
        import torch

        from ..extractors import create

        # OpenVINO's converted models: in the worker machine's own cache (the daemon's data folder is not there).
        home = os.environ.get("XDG_CACHE_HOME") or os.path.join(
            os.environ.get("HOME") or tempfile.gettempdir(), ".cache"
        )
        cache = Path(home) / "imgsearchd" / "models"
        # the driver's model ids: ``engine = "auto"`` keeps to the kind of index it has (engines.for_the_index)
        ids = index_ids or {}
        self.extractors: dict[str, Extractor] = {
            name: create(name, s, cache, ids.get(name)) for name, s in settings.items()
        }
        self.limits = limits
        self.roots = list(roots) if roots is not None else None
        self.known = known  # sorted array of content hashes (bytes, "S32")
        self.threads = threads or max(1, torch.get_num_threads())
        self._pool = ThreadPoolExecutor(self.threads, thread_name_prefix="imgsearchd-backfill")
        self.worker = f"{socket.gethostname()}:{os.getpid()}"

    def _known(self, content_hash: str, _name: str) -> tuple[str, np.ndarray] | None:
        """Known content gets an empty vector here; the driver takes the stored one."""
        key = content_hash.encode()
        at = int(np.searchsorted(self.known, key))
        if at < len(self.known) and self.known[at] == key:
            return ("", np.zeros(0, dtype=np.float32))
        return None

    def _load(self, pair: tuple[bytes, bytes]) -> Loaded:
        path, opened = (os.fsdecode(p) for p in pair)
        from ..ingest.prepare import load_file

        return load_file(path, self.extractors, self.limits, self.roots, self._known, open_path=opened)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        import torch

        loaded = list(self._pool.map(self._load, zip(batch["path"], batch.get("open", batch["path"]))))
        out: dict[str, np.ndarray] = {
            "row": np.asarray(batch["row"], dtype=np.int64),
            "path": np.asarray(batch["path"], dtype=object),
            "size": np.array([item.size for item in loaded], dtype=np.int64),
            "mtime_ns": np.array([item.mtime_ns for item in loaded], dtype=np.int64),
            "content_hash": np.array([item.content_hash or "" for item in loaded], dtype=object),
            "error_reason": np.array([item.error.reason if item.error else "" for item in loaded], dtype=object),
            "error_detail": np.array([item.error.detail if item.error else "" for item in loaded], dtype=object),
            "metadata": np.array(
                [json.dumps(asdict(item.metadata)) if item.metadata else "" for item in loaded], dtype=object
            ),
            "worker": np.array([self.worker] * len(loaded), dtype=object),
        }
        for name, extractor in self.extractors.items():
            vectors = np.zeros((len(loaded), extractor.dim), dtype=np.float32)
            done = np.zeros(len(loaded), dtype=bool)
            rows = [i for i, item in enumerate(loaded) if name in item.tensors]
            for start in range(0, len(rows), extractor.batch_size):
                chunk = rows[start : start + extractor.batch_size]
                vectors[chunk] = extractor.embed(torch.stack([loaded[i].tensors[name] for i in chunk]))
                done[chunk] = True
            out[vector_column(name)] = vectors
            out[embedded_column(name)] = done
            out[model_column(name)] = np.array([extractor.model_id] * len(loaded), dtype=object)
        return out
