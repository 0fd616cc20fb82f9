"""The one search entry point: a ``SearchRequest`` and its query, answered from an index.

The daemon (``Service.search``) and ``imgsearchd search --local`` both call ``search``; each
hands it a ``Searcher``, what a search runs on: the catalogue, the running extractors, their
indexes, the image caps and the daemon's limit on slow work. The query vector comes from
what the query names (``request``); the answer is ``query.search_answer``'s. Errors are the
domain's (``errors``): an unknown extractor or a text without a text encoder is ``Invalid``,
an unusable image ``BadImage`` (with its path), a folder without indexed files ``NotFound``,
as is a content hash the catalogue has no vector for.

An upload search keeps its vector under the upload's content hash (``query_vectors``), and
its answer names that hash, so the same search can be asked again by hash (a page's URL).
Every result gets its match level (``matches``): a path, upload or hash query is a picture
that results can be ``same`` as; the request's ``min_match`` keeps the stronger ones.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field

import numpy as np

from ..errors import BadImage, Invalid, NotFound
from ..extractors import Extractor, TextNotSupportedError
from ..media.failures import ImageError
from ..media.files import content_hash
from ..media.limits import ImageLimits
from ..store.catalog import Catalog
from . import combined, match_levels, matches, query
from .background import Backgrounds
from .framing_prints import FramingChecker
from .index import ExtractorIndex
from .request import ByHash, ByPath, ByText, ByUpload, Combined, Query, QueryFacts, SearchAnswer, SearchRequest

log = logging.getLogger("imgsearchd.search")


@dataclass(frozen=True)
class Searcher:
    """What a search runs on.

    ``index`` gives an extractor's index by name (opened on first use by the CLI);
    ``check_path`` normalises a combined query's image path and refuses one outside the
    roots; ``slot`` wraps each model run (the daemon's limit on concurrent slow work).
    The match levels (``matches``) need ``backgrounds`` (the samples scores are corrected
    against), ``framing`` (the pixel check of copies; None: only the same content is
    ``same``) and ``copy_floor`` (an extractor's ``duplicate_threshold``; 1.0: no copies).
    """

    catalog: Catalog
    extractors: Mapping[str, Extractor]
    default: Extractor
    index: Callable[[str], ExtractorIndex]
    limits: ImageLimits
    roots: Sequence[str] | None
    check_path: Callable[[str], str]
    max_upload_bytes: int
    slot: Callable[[], AbstractContextManager[None]] = contextlib.nullcontext
    backgrounds: Backgrounds = field(default_factory=Backgrounds)
    framing: FramingChecker | None = None
    copy_floor: Callable[[str], float] = lambda _name: 1.0


def choose_extractor(extractors: Mapping[str, Extractor], default: Extractor, name: str | None) -> Extractor:
    """The extractor a request names (None: the default); ``Invalid`` when it is not running."""
    if name is None:
        return default
    if name not in extractors:
        raise Invalid(f"extractor {name!r} is not running; running: {', '.join(extractors)}")
    return extractors[name]


def search(searcher: Searcher, request: SearchRequest, what: Query) -> SearchAnswer:
    """The API's search answer for ``what`` (see ``query.search_answer``)."""
    if isinstance(what, ByText) and not what.text.strip():
        raise Invalid("parameter 'text' is empty")
    if request.min_match is not None:
        try:
            match_levels.check_level(request.min_match)
        except ValueError as exc:
            raise Invalid(str(exc)) from None
    chosen = choose_extractor(searcher.extractors, searcher.default, request.extractor)
    vector = query_vector(searcher, chosen, what)
    facts: QueryFacts = {"kind": what.kind}
    if isinstance(what, ByUpload):
        facts["hash"] = content_hash(what.data)
        _quietly(searcher.catalog.keep_query_vector, facts["hash"], chosen.name, chosen.model_id, vector)
    elif isinstance(what, ByHash):
        facts["hash"] = what.content_hash
    index = searcher.index(chosen.name)
    grading = _grading(searcher, chosen, index, request, what, vector, facts.get("hash"))
    answer = query.search_answer(
        index, vector, request.limit, request.max_distance, request.scope, request.offset, grading
    )
    answer["query"] = facts
    return answer


def _grading(
    searcher: Searcher,
    extractor: Extractor,
    index: ExtractorIndex,
    request: SearchRequest,
    what: Query,
    vector: np.ndarray,
    known_hash: str | None,
) -> matches.Grading:
    """How this search's results get their match levels (``matches``)."""
    counts = index.stats()
    count = int(counts["indexed"]) + int(counts["fresh"]) - int(counts["tombstones"])
    background = searcher.backgrounds.get(searcher.catalog, extractor.name, extractor.model_id, count)
    picture: matches.Picture | None = None
    if isinstance(what, ByPath):
        picture = matches.Picture(what.path, searcher.catalog.content_hashes([what.path]).get(what.path))
    elif isinstance(what, ByUpload):
        picture = matches.Picture("", known_hash, what.data)
    elif isinstance(what, ByHash):
        picture = matches.Picture("", known_hash)
    text = isinstance(what, ByText) or (
        isinstance(what, Combined)
        and isinstance(what.parts, list)
        and any(isinstance(part, dict) and "text" in part for part in what.parts)
    )
    return matches.Grading(
        vector,
        extractor.name,
        background,
        picture,
        text,
        searcher.copy_floor(extractor.name),
        searcher.framing,
        searcher.limits,
        searcher.roots,
        request.min_match,
    )


def vector_for_hash(catalog: Catalog, extractor: Extractor, wanted: str) -> np.ndarray:
    """The vector of the picture with content hash ``wanted``: a library file's stored one, else
    an upload's kept one (marked used); ``NotFound`` when neither is there for this model."""
    vector = catalog.vector_for_hash(wanted, extractor.name, extractor.model_id)
    if vector is not None:
        return vector
    vector = catalog.query_vector(wanted, extractor.name, extractor.model_id)
    if vector is None:
        raise NotFound(
            f"no picture with content hash {wanted} is indexed or was uploaded recently "
            f"(for the {extractor.name} extractor); upload it again",
            hash=wanted,
        )
    _quietly(catalog.touch_query_vector, wanted, extractor.name)
    return vector


def _quietly(write: Callable[..., None], *args: object) -> None:
    """A search's bookkeeping write: a catalogue that cannot be written now (a full or read-only
    disk) costs the search by hash later, not this search."""
    try:
        write(*args)
    except sqlite3.Error as exc:
        log.warning("cannot keep an uploaded picture's vector for searches by hash: %s", exc)


def query_vector(searcher: Searcher, extractor: Extractor, what: Query) -> np.ndarray:
    """The query's vector from ``extractor``: stored when it can be, else from the model."""
    if isinstance(what, ByPath):
        with _image_errors(what.path):
            vector = query.stored_vector_for_path(searcher.catalog, extractor, what.path)
            if vector is None:
                with searcher.slot():
                    vector = query.embed_path(extractor, what.path, searcher.limits, searcher.roots)
        return vector
    if isinstance(what, ByUpload):
        with searcher.slot(), _image_errors(None):
            return query.query_vector_for_bytes(extractor, what.data, searcher.limits)
    if isinstance(what, ByText):
        with searcher.slot():
            try:
                return extractor.encode_text([what.text])[0]
            except TextNotSupportedError as exc:
                raise Invalid(str(exc)) from None
    if isinstance(what, ByHash):
        return vector_for_hash(searcher.catalog, extractor, what.content_hash)
    assert isinstance(what, Combined)
    parts = combined.parse_parts(what.parts, searcher.max_upload_bytes, searcher.check_path)
    return combined.query_vector(parts, extractor, searcher.catalog, searcher.limits, searcher.roots, searcher.slot)


@contextlib.contextmanager
def _image_errors(path: str | None) -> Iterator[None]:
    """An ``ImageError`` inside becomes the domain's ``BadImage`` for ``path`` (None: an upload)."""
    try:
        yield
    except ImageError as exc:
        raise BadImage.of(exc, path) from None
