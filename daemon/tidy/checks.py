"""The checks before a file is acted on: each file of a request planned, or skipped with the reason.

A file is acted on only when it is the content that was grouped: catalogued, its bytes now
hashing to what the catalogue holds, and its keeper there and unchanged too; and only when it
is a duplicate of its keeper (the same bytes, or stored vectors at least the cut apart). A path
that is a keeper anywhere in the request is never acted on, a path listed twice is acted on once,
a link needs the keeper's bytes on the keeper's file system, and a move never overwrites. A file
that is a keeper itself (a hard link to it, a symbolic link either way) is never acted on: it
frees nothing, or leaves the keeper a dangling link. Its folder must be writable: the system
service sees the photo folders read-only (``DENIED``).
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from .files import hash_file

ACTIONS = ("trash", "move", "link")
DOING = {"trash": "trashing", "move": "moving", "link": "linking"}
# Said when the daemon may not change a folder (EROFS, EACCES, EPERM): the system service runs with
# ProtectSystem=strict and ProtectHome=read-only, so every photo folder is read-only to it.
DENIED = (
    "the daemon may not write there ({why}): acting on files needs the user service or a "
    "ReadWritePaths= drop-in (docs/duplicates.md, 'Who may act on the files')"
)


@dataclass(frozen=True)
class Group:
    """A keeper and the files to act on because they duplicate it."""

    keep: str
    others: Sequence[str]


@dataclass
class Item:
    """One file of a request: planned (then done) or skipped, where it goes, and why not."""

    image: str
    keep: str
    state: str = "planned"  # planned, done, skipped
    to: str | None = None
    reason: str | None = None
    content_hash: str = ""
    mode: int = 0
    mtime_ns: int = 0
    dev: int = field(default=0, repr=False)

    def skip(self, reason: str) -> None:
        self.state, self.reason, self.to = "skipped", reason, None


@dataclass(frozen=True)
class Facts:
    """What the checks read: the catalogue's hash of a path, the cosine of two contents' stored
    vectors (the default extractor's), the cut below which two contents are not duplicates, and
    for a move, where a path goes."""

    catalogued: Callable[[str], str | None]
    cosine: Callable[[str, str], float | None]
    cut: float
    target: Callable[[str], str] | None = None


def _now(path: str, catalogued: str | None) -> tuple[os.stat_result | None, str | None]:
    """(stat, why not) of a file: it must be a regular file whose bytes hash to ``catalogued``."""
    if catalogued is None:
        return None, f"{path} is not in the index"
    try:
        st = os.stat(path)
        if not stat.S_ISREG(st.st_mode):
            return None, f"{path} is not a regular file"
        if hash_file(path) != catalogued:
            return None, f"{path} changed since it was indexed (its bytes are not the ones grouped)"
    except OSError as exc:
        return None, f"{path} cannot be read: {exc.strerror or exc}"
    return st, None


def _inode(path: str) -> tuple[int, int] | None:
    """The file a path names, links followed (``os.path.samefile``'s test); None when it cannot be read."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


def plan(groups: Sequence[Group], action: str, facts: Facts) -> list[Item]:
    """Every file of ``groups`` as an ``Item``: planned, or skipped with its reason."""
    keeps = {g.keep for g in groups}
    inodes = {inode: g.keep for g in groups if (inode := _inode(g.keep)) is not None}
    seen: set[str] = set()
    targets: set[str] = set()
    items: list[Item] = []
    for group in groups:
        keep_hash = facts.catalogued(group.keep)
        keep_st, keep_trouble = _now(group.keep, keep_hash)
        for other in group.others:
            item = Item(other, group.keep)
            items.append(item)
            if other in seen:
                item.skip(f"{other} is listed twice in the request: acted on once")
                continue
            seen.add(other)
            if other in keeps:
                item.skip(f"{other} is kept by a group of the request")
            elif keep_st is None or keep_hash is None:
                item.skip(f"the keeper {group.keep} is gone or changed: {keep_trouble}")
            elif (keeper := inodes.get(_inode(other) or (-1, -1))) is not None:
                whose = "its keeper" if keeper == group.keep else "the keeper"
                item.skip(
                    f"{other} is the same file as {whose} {keeper} (a link): {DOING[action]} it would free "
                    "nothing, or leave the keeper a dangling link"
                )
            else:
                _check(item, keep_hash, keep_st, action, facts, targets)
    return items


def _check(item: Item, keep_hash: str, keep_st: os.stat_result, action: str, facts: Facts, targets: set[str]) -> None:
    """Skip ``item`` with the first reason it may not be acted on; else fill in its facts."""
    catalogued = facts.catalogued(item.image)
    st, trouble = _now(item.image, catalogued)
    if st is None or catalogued is None:
        item.skip(trouble or f"{item.image} is not in the index")
        return
    item.content_hash, item.mode, item.mtime_ns, item.dev = catalogued, st.st_mode, st.st_mtime_ns, st.st_dev
    if catalogued != keep_hash:
        cosine = facts.cosine(catalogued, keep_hash)
        if cosine is None or cosine < facts.cut:
            said = "no stored vector" if cosine is None else f"cosine {cosine:.3f} < {facts.cut:.3f}"
            item.skip(f"{item.image} is not a duplicate of its keeper {item.keep} ({said})")
            return
    if not os.access(os.path.dirname(item.image), os.W_OK):
        item.skip(DENIED.format(why=f"{os.path.dirname(item.image)} is read-only to it"))
        return
    if action == "link":  # the reasons name the keeper only: the file's path is listed beside them
        if catalogued != keep_hash:
            item.skip(f"link needs the same bytes as the keeper {item.keep}: this file's differ")
        elif st.st_dev != keep_st.st_dev:
            item.skip(f"link needs the same file system: the keeper {item.keep} is on another")
        else:
            item.to = item.keep
    elif action == "move" and facts.target is not None:
        target = facts.target(item.image)
        if os.path.lexists(target) or target in targets:
            item.skip(f"the move's target {target} exists already")
        else:
            targets.add(target)
            item.to = target
