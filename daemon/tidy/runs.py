"""Resolutions run through the journal: a resolve, an undo, and the recovery at start.

A resolve journals its resolution and every planned file's plan in one transaction, then acts
on each file (``actions.act``), then marks the resolution ``done``. An undo marks it
``undoing``, puts each done file back (``undo.undo_step``), then ``undone``; a file the undo
had to leave at its target is ``kept``, and the resolution reads ``partly undone``: a later
undo tries only those files again (409 once none is left). At start, a
resolution left ``running`` has each planned file settled (done or untouched, ``actions.settle``)
and ends ``done``; one left ``undoing`` is undone again to the end (each step may repeat).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import NamedTuple

from ..errors import Conflict, NotFound
from ..store.resolutions import Journal, Step
from .actions import act, settle, tag
from .checks import Item
from .undo import prune, undo_step

log = logging.getLogger("imgsearchd.tidy")


class UndoFile(NamedTuple):
    """One file of an undo: restored, or skipped and why."""

    image: str
    state: str  # restored, skipped
    reason: str | None


def resolve(journal: Journal, items: Sequence[Item], action: str, dest: str | None) -> int | None:
    """Act on the planned items (each becomes done or skipped); the resolution's id, or None
    when none was planned."""
    todo = [item for item in items if item.state == "planned"]
    if not todo:
        return None
    steps = [Step(n, i.image, i.keep, i.content_hash, i.to or "", i.mode, i.mtime_ns) for n, i in enumerate(todo)]
    rid = journal.create(action, dest, steps)
    try:
        for step, item in zip(steps, todo):
            item.state, item.to, item.reason = act(journal, rid, step, action)
    finally:
        _settle(journal, rid, action)  # after an error (the catalogue refused a write): what is where
    return rid


def _settle(journal: Journal, rid: int, action: str) -> None:
    for step in journal.steps(rid):
        if step.state == "planned":
            journal.set_step(rid, step.n, settle(rid, step, action))
    journal.set_state(rid, "done")


def undo(journal: Journal, rid: int) -> tuple[str, list[UndoFile], list[Step]]:
    """Put a resolution's done files back: (its action, each file, the steps restored)."""
    found = journal.get(rid)
    if found is None:
        raise NotFound(f"no resolution {rid} to undo (GET /duplicates/resolutions lists them)")
    if found.state == "undoing":
        raise Conflict(f"resolution {rid} is being undone")
    if found.state == "undone" or found.done == 0:
        raise Conflict(f"resolution {rid} is undone already: no file of it is left to put back")
    if found.state not in ("done", "partly undone"):
        raise Conflict(f"resolution {rid} is {found.state}: wait until it is done")
    journal.set_state(rid, "undoing")
    return found.action, *_undo_steps(journal, rid, found.action, found.dest)


def _undo_steps(journal: Journal, rid: int, action: str, dest: str | None) -> tuple[list[UndoFile], list[Step]]:
    """Each file still at its target (``done``, or ``kept`` by an earlier undo) put back."""
    files: list[UndoFile] = []
    restored: list[Step] = []
    for step in journal.steps(rid):
        if step.state not in ("done", "kept"):
            continue
        state, reason = undo_step(step, action, tag(rid, step))
        # gone: not at its target any more, nothing a retry could put back (undone, the reason kept)
        journal.set_step(rid, step.n, "undone" if state == "gone" else state, reason)
        files.append(UndoFile(step.path, "restored" if state == "undone" else "skipped", reason))
        if state == "undone":
            restored.append(step)
            if dest is not None and action == "move":
                prune(step.target, dest)
    journal.set_state(rid, "undone")
    return files, restored


def recover(journal: Journal) -> tuple[list[tuple[str, Step]], list[tuple[str, Step]]]:
    """Finish what a crash interrupted (see the module): (files now done, files now restored),
    each with its action, for the index to follow."""
    done: list[tuple[str, Step]] = []
    restored: list[tuple[str, Step]] = []
    for found in journal.unfinished():
        if found.state == "running":
            _settle(journal, found.id, found.action)
            settled = [s for s in journal.steps(found.id) if s.state == "done"]
            done += [(found.action, s) for s in settled]
            log.warning("resolution %d was interrupted: %d files done, the rest untouched", found.id, len(settled))
        else:
            _, back = _undo_steps(journal, found.id, found.action, found.dest)
            restored += [(found.action, s) for s in back]
            log.warning("the undo of resolution %d was interrupted: finished (%d files restored)", found.id, len(back))
    return done, restored
