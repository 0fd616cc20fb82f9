"""What the CLI reads of a running daemon's JSON answers, as types.

An answer is decoded JSON (``Answer``) that the CLI mostly prints as it came (``--json``,
and the commands that print the whole answer), so it stays free-form; the parts the CLI
reads by key are typed below, with the keys it reads (the API's answer models in
``api.models`` have every field).
"""

from __future__ import annotations

from typing import Any, Required, TypedDict

Answer = dict[str, Any]  # a daemon's answer as decoded JSON: printed as it came, or read through the types below


class Dated(TypedDict, total=False):
    """A result or a duplicate group member's capture time (ISO 8601), and whether it is the file's mtime."""

    taken: str | float | None
    taken_from: str | None


class SearchResult(Dated, total=False):
    """One result of ``/search``."""

    image: Required[str]
    score: Required[float]
    size: int | None


class DuplicateMember(Dated, total=False):
    """One member of a ``/duplicates`` group."""

    image: Required[str]
    score: Required[float]
    size: Required[int]
    width: Required[int | None]
    height: Required[int | None]


class DuplicateGroup(TypedDict):
    """One group of a ``/duplicates`` page."""

    kind: str
    files: int
    similarity: float
    members: list[DuplicateMember]


class DuplicatesPage(TypedDict):
    """A finished ``/duplicates`` answer (200): a page of groups, as ``imgsearchd duplicates`` prints it."""

    groups: list[DuplicateGroup]
    total: int
    threshold: float
    extractor: str
    offset: int
    next_offset: int | None
    stale: bool


class Job(TypedDict, total=False):
    """A folder job of ``/jobs/ID``, as ``add --wait`` follows it."""

    state: str
    folder: str
    found: int | None
    done: int | None
    error: str | None
