"""A search request's query vector, and the API's answer from an index.

Shared by the daemon and by ``imgsearchd search --local``, which needs no server.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..extractors import Extractor
from ..media import files, images
from ..media.limits import ImageLimits
from ..media.photo_metadata import metadata_json
from ..paths import json_fields
from ..store.catalog import Catalog
from ..store.rows import SearchScope
from .index import ExtractorIndex
from .request import SearchAnswer
from .scoped import search_scoped


def stored_vector_for_path(catalog: Catalog, extractor: Extractor, path: str) -> np.ndarray | None:
    """The stored vector of an indexed file whose size and mtime are unchanged, else None.

    Raises ``failures.ImageError`` when the file is gone or not a regular file.
    """
    stored = catalog.vector_for_path(path, extractor.name, extractor.model_id)
    if stored is None:
        return None
    record, vector = stored
    st = files.stat_file(path)
    return vector if (st.st_size, st.st_mtime_ns) == (record.size, record.mtime_ns) else None


def embed_path(extractor: Extractor, path: str, limits: ImageLimits, roots: Sequence[str] | None = None) -> np.ndarray:
    """A fresh embedding of a file (with ``roots``, the opened file must lie inside them)."""
    picture = images.decode(files.read_file(path, limits, roots).data, extractor.decode_side, limits)
    return extractor.embed_images([picture])[0]


def query_vector_for_bytes(extractor: Extractor, data: bytes, limits: ImageLimits) -> np.ndarray:
    """Embed an uploaded image."""
    picture = images.decode(data, extractor.decode_side, limits)
    return extractor.embed_images([picture])[0]


def search_answer(
    index: ExtractorIndex,
    vector: np.ndarray,
    limit: int,
    max_distance: float | None,
    scope: SearchScope | None = None,
    offset: int = 0,
) -> SearchAnswer:
    """The API's search answer: results best first, distances and scores rounded for JSON,
    each with its content hash and what the photo says about itself (``photo_metadata``).

    ``offset`` skips that many of the best: the search asks the index for ``offset + limit``
    and keeps the last ``limit``, so the pages of one ranking join up (exactly so where the
    index searches exactly; an approximate index may rank the pages' edges a little apart).

    With a ``scope`` (a folder, a capture-time range), only files in it (``scoped``);
    raises ``scoped.UnknownFolder`` when the catalogue has none in its folder.
    """
    wanted = offset + limit
    if scope is None or (scope.folder is None and not scope.by_date):
        found = [(r["image"], r["distance"], r["score"]) for r in index.search(vector, wanted, max_distance)]
    else:
        hits = search_scoped(index, vector, scope, wanted, max_distance).hits
        found = [(path, h.distance, h.score) for h, path in hits]
    found = found[offset:wanted]
    facts = index.catalog.result_facts(path for path, _, _ in found)
    results: list[dict[str, object]] = []
    for path, d, s in found:
        content_hash, metadata = facts.get(path, (None, None))
        result: dict[str, object] = {**json_fields(path), "distance": round(float(d), 6), "score": round(float(s), 6)}
        result["hash"] = content_hash
        results.append({**result, **metadata_json(metadata)})
    answer: SearchAnswer = {"results": results, "extractor": index.extractor, "offset": offset}
    answer["next_offset"] = wanted if len(results) == limit else None
    if scope is not None and scope.folder is not None:
        answer["folder"] = scope.folder
    return answer
