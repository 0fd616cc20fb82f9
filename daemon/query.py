"""Turning a search request into a query vector, and the exact search used for small sets."""

from __future__ import annotations

import numpy as np

from . import images
from .catalog import Catalog
from .extractors import Extractor


def query_vector_for_path(
    catalog: Catalog, extractor: Extractor, path: str, limits: images.ImageLimits
) -> np.ndarray:
    """The stored vector when the file is indexed and unchanged, else a fresh embedding.

    Raises ``images.ImageError`` when the file cannot be used.
    """
    stored = catalog.vector_for_path(path, extractor.name, extractor.model_id)
    if stored is not None:
        record, vector = stored
        st = images.stat_file(path)
        if (st.st_size, st.st_mtime_ns) == (record.size, record.mtime_ns):
            return vector
    picture = images.load_image(path, extractor.decode_side, limits)
    return extractor.embed_images([picture])[0]


def query_vector_for_bytes(extractor: Extractor, data: bytes, limits: images.ImageLimits) -> np.ndarray:
    """Embed an uploaded image."""
    picture = images.decode(data, extractor.decode_side, limits)
    return extractor.embed_images([picture])[0]


def distances_from_scores(scores: np.ndarray) -> np.ndarray:
    """Euclidean distance between unit vectors from their cosine similarity."""
    return np.sqrt(np.clip(2.0 - 2.0 * scores, 0.0, 4.0))


def exact_top(vectors: np.ndarray, query: np.ndarray, limit: int) -> tuple[np.ndarray, np.ndarray]:
    """Row numbers and cosine scores of the ``limit`` rows closest to ``query``, best first."""
    if len(vectors) == 0 or limit <= 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
    scores = vectors @ query.astype(np.float32)
    k = min(limit, len(scores))
    top = np.argpartition(-scores, k - 1)[:k]
    order = top[np.argsort(-scores[top], kind="stable")]
    return order, scores[order]
