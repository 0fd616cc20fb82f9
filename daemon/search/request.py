"""A search, typed: what to answer with (``SearchRequest``) and what to search by (the query).

The HTTP routes and the CLI build these; ``search.run.search`` (through ``Service.search``
in the daemon) answers them. The query is one of:

- ``ByPath``: a file's path (its stored vector when it is indexed and unchanged, else embedded now);
- ``ByUpload``: an uploaded image's bytes;
- ``ByText``: a text (extractors with a text encoder);
- ``Combined``: weighted image and text parts (``combined``), as the JSON list a client sends.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, NotRequired, TypedDict

from ..store.rows import SearchScope


@dataclass(frozen=True)
class SearchRequest:
    """How to answer: which extractor (None: the default), how many results, how far, where.

    ``scope`` filters the results (a folder, a capture-time range); None searches everything.
    """

    extractor: str | None
    limit: int
    max_distance: float | None
    scope: SearchScope | None = None


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


Query = ByPath | ByUpload | ByText | Combined


class SearchAnswer(TypedDict):
    """A search's answer: results best first, and which extractor (and folder filter) answered."""

    results: list[dict[str, object]]  # a file's path fields, distance, score, hash and photo metadata
    extractor: str
    folder: NotRequired[str]
