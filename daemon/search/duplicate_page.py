"""One page of ``/duplicates``' answer: the tiers' groups of a join, filtered, sorted, a keeper each.

``answer`` says what a request gets: the progress while the first join of an extractor runs
(``state`` "computing"; the API answers 202), else a page of groups (``state`` "ready"), marked
``stale`` while a newer join runs. Each group names the file to keep and why (``keeper``, by the
``[duplicates]`` rules and a request's ``keep_in``); in a copies or similar group each content
is shown by one file (the one its identical group keeps), with how many others share its bytes.
Names of one file (a symbolic link to a member, a hard link of one) are shown once, by the name
the keeper's rules pick, so that no client acts on the file through its other name; a group
left with one file is not shown. The shown members are looked up in the catalogue again: a
file acted on (or removed) since the join leaves the page at once, before the next join.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TypedDict

from ..config import KEEP_RULES
from ..media import files as media_files
from ..media.photo_metadata import PhotoMetadata, metadata_json
from ..paths import is_under, json_fields
from . import keeper
from .duplicate_join import TIERS, Group
from .duplicates import DuplicateFinder, Grouping, Join, Progress, Source, join_facts
from .framing import FRAMING_COPY


class GroupAnswer(TypedDict):
    """One group as the API shows it: its members, the keeper first, then the centre and the
    others by their cosine to it (or oldest first, by "taken")."""

    kind: str
    files: int
    similarity: float
    keep: str
    keep_reason: str
    members: list[dict[str, object]]  # a file's path fields, size, score, framing, hash, keep, same_bytes, metadata


class Thresholds(TypedDict):
    """The cuts a page was grouped at."""

    copies: float | None  # the copy floor (cosine); None: no pair was checked
    similar: float
    framing: float


class DuplicatesAnswer(TypedDict, total=False):
    """``/duplicates``' answer: ``state`` "computing" (the progress) or "ready" (a page of groups
    and the join's facts, ``JoinFacts``)."""

    state: str
    extractor: str
    threshold: float
    thresholds: Thresholds
    tiers: dict[str, int]
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


@dataclass(frozen=True)
class Keeping:
    """How each group's keeper is chosen: ``[duplicates]`` keep_rules and prefer (absolute
    folders), and a request's ``keep_in`` folder (None: none)."""

    rules: tuple[str, ...] = KEEP_RULES
    prefer: tuple[str, ...] = ()
    keep_in: str | None = None


@dataclass(frozen=True)
class _Context:
    """What building a page's groups reads: the grouping, the join's byte copies, the facts, and
    ``files``: the shown files still catalogued (path, size), looked up for this page."""

    grouping: Grouping
    copies: Mapping[int, list[int]]
    facts: Mapping[int, PhotoMetadata]
    hashes: Mapping[str, str]
    roots: Sequence[str] | None
    keeping: Keeping
    files: Mapping[int, tuple[str, int]]
    disk: dict[int, tuple[object, bool]] = field(default_factory=dict)  # file -> (which file, a symlink)

    def files_of(self, group: Group, member: int) -> list[int]:
        """The catalogued files a member stands for: itself in an identical group, else its content's
        (each file once, whatever its names)."""
        own = (member,) if group.kind == "identical" else (member, *self.copies.get(member, ()))
        return self.one_name_each([f for f in own if f in self.files])

    def on_disk(self, file_id: int) -> tuple[object, bool]:
        """Which file a path names (device and inode, through a symlink) and whether it is a symlink;
        a path that cannot be read is a file of its own."""
        if file_id not in self.disk:
            path = self.files[file_id][0]
            try:
                found = os.stat(path)
                self.disk[file_id] = ((found.st_dev, found.st_ino), os.path.islink(path))
            except OSError:
                self.disk[file_id] = (("unread", file_id), os.path.islink(path))
        return self.disk[file_id]

    def one_name_each(self, file_ids: list[int]) -> list[int]:
        """``file_ids`` less the other names of one file (a hard link, a symlink to it): the name the
        keeper's rules pick stays, in its place."""
        names: dict[object, list[int]] = {}
        for file_id in file_ids:
            names.setdefault(self.on_disk(file_id)[0], []).append(file_id)
        if all(len(same) == 1 for same in names.values()):
            return file_ids
        chosen = {same[_keep(same, self)[0]] if len(same) > 1 else same[0] for same in names.values()}
        return [f for f in file_ids if f in chosen]


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
    keeping: Keeping = Keeping(),
    catalogued: Callable[[Iterable[int]], dict[int, tuple[str, int]]] | None = None,
) -> DuplicatesAnswer:
    """The API's answer: groups ``offset`` to ``offset + limit`` of the kind (and folder) asked for.

    A ``folder`` keeps the groups with at least one file in it, shown whole; ``tiers`` counts
    each tier's groups after that filter. ``sort``: "similarity" keeps the join's order
    (biggest groups first, the centre first in each); "taken" puts each group's members oldest
    first and the groups by their oldest photo (files without a date last), which shows the
    original before its copies; the keeper comes first either way. ``metadata`` (the
    catalogue's) gives each member its capture time, size and camera, and the keeper its facts;
    dimensions of a file without metadata are read from its header the first time a page shows
    it; ``content_hashes`` gives each member its current hash, for the page's thumbnail URLs.
    ``catalogued`` (the catalogue's ``path_and_size``) says which shown files are still there: a
    file trashed or moved since the join is left out, and a group left with one file is not
    shown (so a page may hold fewer groups than ``limit`` until the next join; a cheap check,
    on the shown files only).
    """
    files, copies = grouping.files, join.copies
    present = [g for g in grouping.groups if _wanted(g, files, copies, folder)]
    tiers = {tier: sum(g.kind == tier for g in present) for tier in TIERS}
    chosen = [g for g in present if kind == "all" or g.kind == kind]
    facts: dict[int, PhotoMetadata] = {}
    if sort == "taken" and metadata is not None:
        facts = metadata(m for g in chosen for m in g.members)
        chosen = sorted(chosen, key=lambda g: _oldest(g.members, facts))
    shown = chosen[offset : offset + limit]
    every = [f for g in shown for m in g.members for f in (m, *copies.get(m, ())) if f in files]
    now = catalogued(every) if catalogued is not None else {f: files[f] for f in every}
    every = [f for f in every if f in now]
    if metadata is not None:
        facts = metadata(every)
    hashes = content_hashes(now[f][0] for f in every) if content_hashes is not None else {}
    context = _Context(grouping, copies, facts, hashes, roots, keeping, now)
    groups = [answered for group in shown if (answered := _group_answer(group, context, sort)) is not None]
    end = offset + len(shown)
    return {
        "state": "ready",
        "extractor": join.extractor,
        "threshold": grouping.threshold,
        "thresholds": {"copies": join.copy_floor, "similar": grouping.threshold, "framing": FRAMING_COPY},
        "tiers": tiers,
        "kind": kind,
        "folder": folder,
        "sort": sort,
        "total": len(chosen),
        "offset": offset,
        "limit": limit,
        "next_offset": end if end < len(chosen) else None,
        "groups": groups,
        "largest_component": grouping.largest_component,
        **join_facts(join),
    }


def _wanted(
    group: Group, files: Mapping[int, tuple[str, int]], copies: Mapping[int, list[int]], folder: str | None
) -> bool:
    """Whether a page in ``folder`` shows the group: two of its members still catalogued, and
    one of its files (a content's byte copies too) in the folder."""
    own = [(m,) if group.kind == "identical" else (m, *copies.get(m, ())) for m in group.members]
    present = [[f for f in member if f in files] for member in own]
    if sum(1 for member in present if member) < 2:
        return False  # removed between the join and now
    return folder is None or any(is_under(files[f][0], folder) for member in present for f in member)


def _group_answer(group: Group, context: _Context, sort: str) -> GroupAnswer | None:
    """One group's members (those still catalogued, one name a file), the keeper first, with what
    is known of each; None when fewer than two are left."""
    rows: list[tuple[int, float, float | None, int]] = []  # file shown, score, framing, same_bytes
    for member, score, framing in zip(group.members, group.scores, group.framing):
        own = context.files_of(group, member)
        if not own:
            continue
        shown = own[0] if len(own) == 1 else own[_keep(own, context)[0]]  # what its identical group keeps
        rows.append((shown, score, framing, len(own) - 1))
    if group.kind == "identical":
        files = context.one_name_each([row[0] for row in rows])
        rows = [(f, s, fr, len(files) - 1) for f, s, fr, _ in rows if f in files]
    if len(rows) < 2:
        return None
    if sort == "taken":
        rows.sort(key=lambda row: _oldest((row[0],), context.facts))
    kept, reason = _keep([row[0] for row in rows], context)
    rows.insert(0, rows.pop(kept))
    members = [
        _member(file_id, score, framing, same, at == 0, context)
        for at, (file_id, score, framing, same) in enumerate(rows)
    ]
    return {
        "kind": group.kind,
        "files": len(members),
        "similarity": min(row[1] for row in rows),
        "keep": context.files[rows[0][0]][0],
        "keep_reason": reason,
        "members": members,
    }


def _keep(file_ids: Sequence[int], context: _Context) -> tuple[int, str]:
    """The keeper among ``file_ids`` (an index) and why."""
    keeping = context.keeping
    members = [_facts(file_id, context) for file_id in file_ids]
    return keeper.choose(members, keeping.rules, keeping.prefer, keeping.keep_in)


def _facts(file_id: int, context: _Context) -> keeper.MemberFacts:
    """What the keeper's rules compare of a file: its size, and what its metadata says."""
    path, size = context.files[file_id]
    found = context.facts.get(file_id)
    width, height = _dimensions(file_id, found, context)
    exif = found is not None and found.taken_from == "exif"
    known = (("capture time", exif), ("camera", found is not None and found.camera), ("GPS", found and found.has_gps))
    return keeper.MemberFacts(
        path,
        size,
        width,
        height,
        found.taken_at if found is not None and exif else None,
        found.taken if found is not None and exif else None,
        tuple(name for name, there in known if there) if found is not None else None,
        context.on_disk(file_id)[1],
    )


def _member(
    file_id: int, score: float, framing: float | None, same: int, keep: bool, context: _Context
) -> dict[str, object]:
    path, size = context.files[file_id]
    found = context.facts.get(file_id)
    about = metadata_json(found) if found is not None else metadata_json(None)
    width, height = _dimensions(file_id, found, context)
    return {
        **json_fields(path),
        "size": size,
        "score": score,
        "framing": framing,
        "hash": context.hashes.get(path),
        "keep": keep,
        "same_bytes": same,
        **about,
        "width": width,
        "height": height,
    }


def _dimensions(file_id: int, found: PhotoMetadata | None, context: _Context) -> tuple[int | None, int | None]:
    """From the metadata, else from the file's header (read once, kept with the grouping)."""
    if found is not None and found.width:
        return found.width, found.height
    dims = context.grouping.dimensions
    if file_id not in dims:
        dims[file_id] = media_files.header_size(context.files[file_id][0], context.roots)
    known = dims[file_id]
    return (known[0], known[1]) if known else (None, None)


def _oldest(members: Iterable[int], facts: Mapping[int, PhotoMetadata]) -> tuple[bool, float]:
    """A sort key: the earliest capture time among ``members``, those without one after all others."""
    times = [facts[m].taken_at for m in members if m in facts]
    return (not times, min(times) if times else 0.0)


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
    keeping: Keeping = Keeping(),
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
        keeping=keeping,
        catalogued=finder.catalog.path_and_size,
    )
    return {**shown, "stale": not fresh, "computing": progress}
