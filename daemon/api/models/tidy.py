"""What the routes acting on duplicates accept and answer: ``POST /duplicates/resolve``,
``POST /duplicates/undo`` and ``GET /duplicates/resolutions``."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec
from msgspec import Meta

PathName = Annotated[str, Meta(description="absolute path; bytes that are not UTF-8 appear as \\udcXX escapes")]
Action = Literal["trash", "move", "link"]
UndoId = Annotated[int, Meta(description="a resolution's id, as its resolve answered it (404: none)")]


class ResolveGroup(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """One group: the file kept, and the files acted on because they duplicate it."""

    keep: PathName
    others: list[PathName]


class ResolveBody(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """``POST /duplicates/resolve``: at most 10,000 paths, keepers included."""

    groups: list[ResolveGroup]
    action: Annotated[
        Action,
        Meta(
            description="trash: into the freedesktop.org Trash; move: into 'to', keeping each path relative "
            "to its watched folder; link: a hard link to the keeper (identical bytes, one file system)"
        ),
    ]
    to: Annotated[
        str | None, Meta(description="move only: a folder inside the allowed roots, not inside a watched one")
    ] = None
    dry_run: Annotated[bool, Meta(description="say what would be done, do nothing")] = False


class UndoBody(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """``POST /duplicates/undo``: the resolution to undo."""

    undo: UndoId


class ResolvedFile(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """One file of a resolve: done, planned (a dry run) or skipped, where it goes, and why not."""

    image: PathName
    keep: PathName
    state: Literal["done", "planned", "skipped"]
    to: Annotated[str | None, Meta(description="the Trash's files/NAME, the moved path, or the keeper (link)")]
    reason: str | None


class Resolved(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """What a resolve did (or would do), file by file, and the id that undoes it."""

    undo: Annotated[int | None, Meta(description="POST /duplicates/undo with this; null: nothing was done")]
    action: Action
    dry_run: bool
    to: str | None
    done: Annotated[int, Meta(ge=0)]
    skipped: Annotated[int, Meta(ge=0)]
    files: list[ResolvedFile]


class RestoredFile(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """One file of an undo: restored to its path, or skipped and why (a file is there again)."""

    image: PathName
    state: Literal["restored", "skipped"]
    reason: str | None


class Undone(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """What an undo put back."""

    undo: int
    restored: Annotated[int, Meta(ge=0)]
    skipped: Annotated[int, Meta(ge=0)]
    files: list[RestoredFile]


class Resolution(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """One resolution as the journal holds it."""

    undo: int
    action: Action
    to: str | None
    created_at: Annotated[str, Meta(description="ISO 8601, UTC")]
    state: Annotated[
        Literal["running", "done", "undoing", "undone", "partly undone"],
        Meta(
            description="partly undone: an undo left some files at their target (a file is at the path "
            "again, a folder it may not write); POST /duplicates/undo again tries only those"
        ),
    ]
    files: Annotated[int, Meta(ge=0, description="files acted on (those skipped at the checks are not journaled)")]
    done: Annotated[int, Meta(ge=0, description="files still at their target (not undone)")]


class Resolutions(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """The latest resolutions (at most 50), newest first."""

    resolutions: list[Resolution]
