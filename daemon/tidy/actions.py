"""One journaled file acted on (trash, move, link), and one a crash interrupted settled.

``act`` runs after the file's plan is in the journal: for the Trash it picks a free name,
journals it as the target, reserves it (``.trashinfo`` with ``O_EXCL``), then renames the file
in; a move or a link goes to the target planned. The journal marks the file ``done`` after.
``settle`` looks at a file a crash left ``planned``: ``done`` when it is at its target and not
at its source; ``untouched`` when it is at its source, its reserved ``.trashinfo`` or temporary
file removed. Nothing is ever deleted for good.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import NamedTuple

from ..store.resolutions import Journal, Step
from . import trash
from .checks import DENIED
from .files import hash_file, link_file, move_file, same_file, temp_name


class Done(NamedTuple):
    """What happened to one file: ``done`` (and where it went) or ``skipped`` (and why)."""

    state: str
    to: str | None
    reason: str | None


def tag(rid: int, step: Step) -> str:
    """The part of a temporary name that ties it to its resolution and file."""
    return f"{rid}-{step.n}"


def act(journal: Journal, rid: int, step: Step, action: str) -> Done:
    """Do ``step`` (its plan journaled), then journal it done; an error leaves it untouched, said."""
    try:
        if action == "trash":
            target = _to_trash(journal, rid, step)
        elif action == "move":
            target = step.target
            move_file(step.path, target, tag(rid, step))
        else:
            target = step.target
            link_file(step.keep, step.path, tag(rid, step))
    except (OSError, trash.NoTrash) as exc:
        reason = said(exc, step.path, step.target)
        journal.set_step(rid, step.n, "untouched", reason)
        return Done("skipped", None, reason)
    journal.set_step(rid, step.n, "done")
    return Done("done", target, None)


NOT_ALLOWED = (errno.EROFS, errno.EACCES, errno.EPERM)


def said(exc: BaseException, path: str, target: str = "") -> str:
    """Why a file could not be acted on (or put back): the error, and where the daemon may not
    write, what to do (``checks.DENIED``)."""
    cause = exc if isinstance(exc, OSError) else exc.__cause__  # NoTrash: from the folder it could not make
    if isinstance(exc, FileExistsError):
        return f"the target {exc.filename or target} exists already"
    if isinstance(cause, OSError) and cause.errno in NOT_ALLOWED:
        return DENIED.format(why=f"{cause.filename or path}: {cause.strerror or cause}")
    if isinstance(exc, OSError):
        return f"{path}: {exc.strerror or exc}" + (f" ({exc.filename})" if exc.filename else "")
    return str(exc)


def _to_trash(journal: Journal, rid: int, step: Step) -> str:
    """Into the Trash: a free name journaled, reserved, then the rename."""
    where = trash.trash_for(step.path)
    name = os.path.basename(step.path)
    for _ in range(100):  # another program may take the name between our look and our reservation
        free = trash.free_name(where, name)
        target = str(where.files / free)
        journal.set_target(rid, step.n, target)
        if trash.reserve(where, step.path, free):
            break
    else:
        raise trash.NoTrash(f"no free name for {name} in {where.root}")
    try:
        os.rename(step.path, target)
    except OSError:
        trash.release(where, free, step.path)
        raise
    return target


def dry_target(path: str) -> str:
    """Where the Trash would put ``path`` now (nothing reserved)."""
    where = trash.trash_for(path, make=False)
    return str(where.files / trash.free_name(where, os.path.basename(path)))


def settle(rid: int, step: Step, action: str) -> str:
    """``done`` or ``untouched``: what a file a crash left ``planned`` is, made so (see the module)."""
    at_source, at_target = os.path.lexists(step.path), bool(step.target) and os.path.lexists(step.target)
    if action == "link":
        Path(temp_name(step.path, tag(rid, step))).unlink(missing_ok=True)
        return "done" if same_file(step.path, step.keep) else "untouched"
    if action == "move":
        Path(temp_name(step.target, tag(rid, step))).unlink(missing_ok=True)
        if at_target and at_source and _same_bytes(step, step.target, step.path):
            os.unlink(step.path)  # a move across file systems, renamed into place: finish it
            return "done"
    if at_target and not at_source:
        return "done"
    if action == "trash" and step.target:
        where, name = trash.locate(step.target)
        trash.release(where, name, step.path)
    return "untouched"


def _same_bytes(step: Step, *paths: str) -> bool:
    try:
        return all(hash_file(p) == step.content_hash for p in paths)
    except OSError:
        return False
