"""A search, typed: what to answer with (``SearchRequest``) and what to search by (the query).

The HTTP routes and the CLI build these; ``search.run.search`` (through ``Service.search``
in the daemon) answers them. The query is one of:

- ``ByPath``: a file's path (its stored vector when it is indexed and unchanged, else embedded now);
- ``ByUpload``: an uploaded image's bytes;
- ``ByText``: a text (extractors with a text encoder);
- ``Combined``: weighted image and text parts (``combined``), as the JSON list a client sends;
- ``ByHash``: a picture's content hash (a library file's stored vector, or an upload's kept one).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, NotRequired, TypedDict

from ..store.rows import SearchScope


@dataclass(frozen=True)
class SearchRequest:
    """How to answer: which extractor (None: the default), how many results, how far, where.

    ``scope`` filters the results (a folder, a capture-time range); None searches everything.
    ``offset`` skips the first results of the same ranking (a page: results offset..offset+limit).
    ``min_match`` keeps the results of that match level or stronger (``match_levels.LEVELS``);
    None keeps all.
    """

    extractor: str | None
    limit: int
    max_distance: float | None
    scope: SearchScope | None = None
    offset: int = 0
    min_match: str | None = None


@dataclass(frozen=True)
class ByPath:
    """Search by a file: a checked, normalised path."""

    path: str
    kind: ClassVar[str] = "path"


@dataclass(frozen=True)
class ByUpload:
    """Search by an uploaded image's bytes."""

    data: bytes
    kind: ClassVar[str] = "upload"


@dataclass(frozen=True)
class ByText:
    """Search by a text (CLIP's text encoder)."""

    text: str
    kind: ClassVar[str] = "text"


@dataclass(frozen=True)
class Combined:
    """Search by weighted parts: the JSON ``query`` list, checked by ``combined.parse_parts``."""

    parts: object
    kind: ClassVar[str] = "combined"


@dataclass(frozen=True)
class ByHash:
    """Search by a picture's content hash (lower-case hex): a library file's, or an upload's."""

    content_hash: str
    kind: ClassVar[str] = "hash"


Query = ByPath | ByUpload | ByText | Combined | ByHash


class QueryFacts(TypedDict):
    """What the answer says of its query: the kind, and the picture's content hash (uploads, hashes)."""

    kind: str
    hash: NotRequired[str]


class SearchAnswer(TypedDict):
    """A search's answer: results best first, and which extractor (and folder filter) answered.

    ``next_offset``: the offset of the next page, None when this page is the last (with
    ``min_match``: when no later result can reach it).
    """

    results: list[dict[str, object]]  # a file's path fields, distance, score, hash, match and photo metadata
    extractor: str
    folder: NotRequired[str]
    query: NotRequired[QueryFacts]
    offset: NotRequired[int]
    next_offset: NotRequired[int | None]
    weaker: NotRequired[int]  # results of the page left out by min_match (only with it)
