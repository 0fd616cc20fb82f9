"""One page of ``/duplicates``' answer: the groups of a join at a threshold, filtered and sorted.

``answer`` says what a request gets: the progress while the first join of an extractor runs
(``state`` "computing"; the API answers 202), else a page of groups (``state`` "ready"), marked
``stale`` while a newer join runs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TypedDict

from ..media import files as media_files
from ..media.photo_metadata import PhotoMetadata, metadata_json
from ..paths import is_under, json_fields
from .duplicate_join import Group
from .duplicates import DuplicateFinder, Grouping, Join, Progress, Source, join_facts


class GroupAnswer(TypedDict):
    """One group as the API shows it: its members, the centre first (or the oldest, by "taken")."""

    kind: str
    files: int
    similarity: float
    members: list[dict[str, object]]  # a file's path fields, size, score, hash and photo metadata


class DuplicatesAnswer(TypedDict, total=False):
    """``/duplicates``' answer: ``state`` "computing" (the progress) or "ready" (a page of groups
    and the join's facts, ``JoinFacts``)."""

    state: str
    extractor: str
    threshold: float
    kind: str
    folder: str | None
    sort: str
    total: int
    offset: int
    limit: int
    next_offset: int | None
    groups: list[GroupAnswer]
    largest_component: int
    seq: int
    contents: int
    pairs: int
    method: str
    computed_at: str
    seconds: float
    stale: bool
    computing: Progress | None
    last_error: str | None


def page(
    join: Join,
    grouping: Grouping,
    *,
    kind: str,
    folder: str | None,
    offset: int,
    limit: int,
    roots: Sequence[str] | None,
    content_hashes: Callable[[Iterable[str]], dict[str, str]] | None = None,
    metadata: Callable[[Iterable[int]], dict[int, PhotoMetadata]] | None = None,
    sort: str = "similarity",
) -> DuplicatesAnswer:
    """The API's answer: groups ``offset`` to ``offset + limit`` of the kind (and folder) asked for.

    A ``folder`` keeps the groups with at least one member in it, shown whole. ``sort``:
    "similarity" keeps the join's order (biggest groups first, the centre first in each);
    "taken" puts each group's members oldest first and the groups by their oldest photo
    (files without a date last), which shows the original before its copies. ``metadata``
    (the catalogue's) gives each member its capture time, size and camera; dimensions of a
    file without metadata are read from its header the first time a page shows it;
    ``content_hashes`` gives each member its current hash, for the page's thumbnail URLs.
    """
    files = grouping.files
    chosen = [g for g in grouping.groups if _wanted(g, files, kind, folder)]
    facts: dict[int, PhotoMetadata] = {}
    if sort == "taken" and metadata is not None:
        facts = metadata(m for g in chosen for m in g.members)
        chosen = sorted(chosen, key=lambda g: _oldest(g.members, facts))
    shown = chosen[offset : offset + limit]
    if metadata is not None and sort != "taken":
        facts = metadata(m for g in shown for m in g.members)
    paths_shown = (files[m][0] for g in shown for m in g.members if m in files)
    hashes = content_hashes(paths_shown) if content_hashes is not None else {}
    end = offset + len(shown)
    return {
        "state": "ready",
        "extractor": join.extractor,
        "threshold": grouping.threshold,
        "kind": kind,
        "folder": folder,
        "sort": sort,
        "total": len(chosen),
        "offset": offset,
        "limit": limit,
        "next_offset": end if end < len(chosen) else None,
        "groups": [_group_answer(group, grouping, facts, hashes, roots, sort) for group in shown],
        "largest_component": grouping.largest_component,
        **join_facts(join),
    }


def _wanted(group: Group, files: Mapping[int, tuple[str, int]], kind: str, folder: str | None) -> bool:
    """Whether a page of ``kind`` in ``folder`` shows the group."""
    if kind != "all" and group.kind != kind:
        return False
    present = [m for m in group.members if m in files]
    if len(present) < 2:
        return False  # removed between the join and now
    return folder is None or any(is_under(files[m][0], folder) for m in present)


def _group_answer(
    group: Group,
    grouping: Grouping,
    facts: Mapping[int, PhotoMetadata],
    hashes: Mapping[str, str],
    roots: Sequence[str] | None,
    sort: str,
) -> GroupAnswer:
    """One group's members (those still catalogued) with what is known of each."""
    files = grouping.files
    members: list[dict[str, object]] = []
    pairs = list(zip(group.members, group.scores))
    if sort == "taken":
        pairs.sort(key=lambda pair: _oldest((pair[0],), facts))
    for file_id, score in pairs:
        if file_id not in files:
            continue
        path, size = files[file_id]
        found = facts.get(file_id)
        if found is None and file_id not in grouping.dimensions:
            grouping.dimensions[file_id] = media_files.header_size(path, roots)
        about = metadata_json(found) if found is not None else {**metadata_json(None), **_dims(grouping, file_id)}
        members.append({**json_fields(path), "size": size, "score": score, "hash": hashes.get(path), **about})
    return {"kind": group.kind, "files": len(members), "similarity": group.similarity, "members": members}


def _oldest(members: Iterable[int], facts: Mapping[int, PhotoMetadata]) -> tuple[bool, float]:
    """A sort key: the earliest capture time among ``members``, those without one after all others."""
    times = [facts[m].taken_at for m in members if m in facts]
    return (not times, min(times) if times else 0.0)


def _dims(grouping: Grouping, file_id: int) -> dict[str, int | None]:
    dims = grouping.dimensions.get(file_id)
    return {"width": dims[0] if dims else None, "height": dims[1] if dims else None}


def answer(
    finder: DuplicateFinder,
    extractor: str,
    source: Source,
    threshold: float,
    kind: str,
    folder: str | None,
    offset: int,
    limit: int,
    roots: Sequence[str],
    sort: str = "similarity",
) -> DuplicatesAnswer:
    """``/duplicates``: a page of groups, or (``state`` "computing") the progress while the first join runs."""
    join, fresh, computing = finder.lookup(extractor, source)
    progress = computing.as_dict() if computing is not None else None
    if join is None:
        error = finder.last_error.get(extractor)
        return {
            "state": "computing",
            "extractor": extractor,
            "threshold": threshold,
            "computing": progress,
            "last_error": error,
        }
    grouping = finder.grouping(join, threshold)
    shown = page(
        join,
        grouping,
        kind=kind,
        folder=folder,
        offset=offset,
        limit=limit,
        roots=roots or None,
        content_hashes=finder.catalog.content_hashes,
        metadata=finder.catalog.metadata_for,
        sort=sort,
    )
    return {**shown, "stale": not fresh, "computing": progress}
