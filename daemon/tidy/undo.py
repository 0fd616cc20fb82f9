"""One file of a resolution put back: from the Trash or the move's folder to its path, or a
link made an independent copy again (its old mode and mtime).

A file is put back only where nothing is: a file at its path again is kept there and the
undo says so. A file already back (a file manager restored it, or a crash came after the
rename) counts as restored. Each step is safe to repeat, so a start after a crash finishes
an undo by running it again. An undone move removes the folders it made under ``to`` once
they are empty again (``prune``).
"""

from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import NamedTuple

from ..store.resolutions import Step
from . import trash
from .actions import said
from .files import hash_file, independent_copy, move_file, same_file


class Undone(NamedTuple):
    """``undone``, ``kept`` (left at its target: a later undo tries again) or ``gone`` (not at its
    target any more: nothing to put back), and why."""

    state: str
    reason: str | None


def undo_step(step: Step, action: str, tag: str) -> Undone:
    """Put one done file back (see the module); an error keeps it where it is, said."""
    try:
        if action == "link":
            return _unlink(step, tag)
        return _back(step, action, tag)
    except OSError as exc:
        return Undone("kept", said(exc, step.path))


def _back(step: Step, action: str, tag: str) -> Undone:
    at_path, at_target = os.path.lexists(step.path), os.path.lexists(step.target)
    if at_path and at_target:
        if action == "move" and _hashes(step, step.path, step.target):
            os.unlink(step.target)  # a move back across file systems, renamed into place: finish it
            return Undone("undone", None)
        return Undone("kept", f"a file is at {step.path} again: {step.target} stays where it is")
    if not at_target:
        if at_path:
            _forget_trash_info(step, action)
            return Undone("undone", None)
        return Undone("gone", f"{step.target} is not there any more")
    os.makedirs(os.path.dirname(step.path), exist_ok=True)
    if action == "trash":
        try:
            os.rename(step.target, step.path)
        except OSError as exc:
            if exc.errno != errno.EXDEV:
                raise
            move_file(step.target, step.path, tag)
        _forget_trash_info(step, action)
    else:
        move_file(step.target, step.path, tag)
    return Undone("undone", None)


def prune(target: str, dest: str) -> None:
    """Remove the folders a move made for ``target`` under ``dest`` once empty again: each empty
    folder from ``target``'s up to ``dest`` (never ``dest`` itself, nor a folder holding anything)."""
    folder, top = os.path.dirname(target), os.path.normpath(dest)
    while folder != top and os.path.dirname(folder) != folder and folder.startswith(top + os.sep):
        try:
            os.rmdir(folder)  # only an empty folder goes: ENOTEMPTY for any other
        except OSError:
            return
        folder = os.path.dirname(folder)


def _forget_trash_info(step: Step, action: str) -> None:
    if action == "trash":
        where, name = trash.locate(step.target)
        if not os.path.lexists(where.files / name):
            Path(where.info_for(name)).unlink(missing_ok=True)


def _unlink(step: Step, tag: str) -> Undone:
    exists = os.path.lexists(step.path)
    if exists and not same_file(step.path, step.keep):
        return Undone("undone", None)  # an independent file already (a crash after the rename)
    if not _hashes(step, step.keep):
        return Undone("kept", f"the keeper {step.keep} changed since: its bytes are not {step.path}'s any more")
    independent_copy(step.keep, step.path, step.mode, step.mtime_ns, tag)
    return Undone("undone", None)


def _hashes(step: Step, *paths: str) -> bool:
    try:
        return all(hash_file(p) == step.content_hash for p in paths)
    except OSError:
        return False
