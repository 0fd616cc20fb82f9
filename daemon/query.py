"""Turning a search request into a query vector."""

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
