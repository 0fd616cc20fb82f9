"""A search request's query vector, and the API's answer from an index.

Shared by the daemon and by ``imgsearchd search --local``, which needs no server.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..extractors import Extractor
from ..media import files, images
from ..media.limits import ImageLimits
from ..media.photo_metadata import PhotoMetadata, metadata_json
from ..paths import json_fields
from ..store.catalog import Catalog
from ..store.rows import SearchScope
from .index import ExtractorIndex
from .match_levels import Background
from .matches import Grading
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


# A picture query's ``same`` results among its first SAME_FIRST (by cosine) come first: the
# picture itself and its copies before the second shots and look-alikes that may outscore an
# edited copy (bench/bench_match.py, 1,053 copies of 117 real scenes, EfficientNet fp32: the
# original is the first result in 81.9% by cosine, the first `same` one in 96.5%; BENCHMARKS.md
# "Match levels (issue 30)", which measured each query's top 20). Past SAME_FIRST the order is
# the cosine's, so the pages of one ranking still join up.
SAME_FIRST = 20


def _same_first(
    index: ExtractorIndex, grading: Grading, found: list[tuple[str, float, float]], offset: int, wanted: int
) -> tuple[list[int], dict[int, str], dict[str, tuple[str | None, PhotoMetadata | None]]]:
    """The ranking (positions in ``found``: the ``same`` results of the first SAME_FIRST first, then
    the others by cosine), the levels of the results that the window and the page hold, and their
    facts (content hash, metadata: one catalogue read serves the grading and the answer)."""
    head = list(range(min(len(found), SAME_FIRST)))
    rest = list(range(len(head), len(found)))
    shown = head + rest[max(0, offset - len(head)) : max(0, wanted - len(head))]
    facts = index.catalog.result_facts(found[n][0] for n in shown)
    graded = grading.levels([(found[n][0], facts.get(found[n][0], (None, None))[0], found[n][2]) for n in shown])
    levels = dict(zip(shown, graded))
    order = [n for n in head if levels[n] == "same"] + [n for n in head if levels[n] != "same"] + rest
    return order, levels, facts


def search_answer(
    index: ExtractorIndex,
    vector: np.ndarray,
    limit: int,
    max_distance: float | None,
    scope: SearchScope | None = None,
    offset: int = 0,
    grading: Grading | None = None,
) -> SearchAnswer:
    """The API's search answer: results best first (a picture query's ``same`` ones first:
    ``SAME_FIRST``), distances and scores rounded for JSON,
    each with its content hash, its match level (``grading``; without one, as a picture
    query's against the extractor's prior) and what the photo says about itself (``photo_metadata``).

    ``offset`` skips that many of the best: the search asks the index for ``offset + limit``
    (at least ``SAME_FIRST``) and keeps the last ``limit`` of the ranking, so the pages of one ranking join up (exactly so where the
    index searches exactly; an approximate index may rank the pages' edges a little apart).
    The grading's ``min_match`` leaves out the page's weaker results (``weaker`` counts them);
    ``next_offset`` is then None once no later result can be kept.

    With a ``scope`` (a folder, a capture-time range), only files in it (``scoped``);
    raises ``scoped.UnknownFolder`` when the catalogue has none in its folder.
    """
    grading = grading or Grading(vector, index.extractor, Background(extractor=index.extractor), None, False, 1.0)
    wanted = offset + limit
    window = max(wanted, SAME_FIRST)
    if scope is None or (scope.folder is None and not scope.by_date):
        found = [(r["image"], r["distance"], r["score"]) for r in index.search(vector, window, max_distance)]
    else:
        hits = search_scoped(index, vector, scope, window, max_distance).hits
        found = [(path, h.distance, h.score) for h, path in hits]
    order, levels, facts = _same_first(index, grading, found, offset, wanted)
    page = order[offset:wanted]  # within the window and the page: graded, their facts read
    results: list[dict[str, object]] = []
    for n in page:
        (path, d, s), level = found[n], levels[n]
        if not grading.keeps(level):
            continue
        content_hash, metadata = facts.get(path, (None, None))
        result: dict[str, object] = {**json_fields(path), "distance": round(float(d), 6), "score": round(float(s), 6)}
        result["hash"] = content_hash
        result["match"] = level
        results.append({**result, **metadata_json(metadata)})
    answer: SearchAnswer = {"results": results, "extractor": index.extractor, "offset": offset}
    more = len(found) >= wanted and len(page) == limit and grading.later_may_reach(float(found[wanted - 1][2]))
    answer["next_offset"] = wanted if more else None
    if grading.min_match is not None:
        answer["weaker"] = len(page) - len(results)
    if scope is not None and scope.folder is not None:
        answer["folder"] = scope.folder
    return answer
