"""Walking a folder and planning it against the catalogue: what is new, changed, back or gone.

Nothing here writes: ``plan_folder`` only stats files and reads the catalogue, and the
caller (a folder job, the watcher's reconcile scan, ``imgsearchd index``) decides what
to queue or forget. Hidden and temporary names are never images to index.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field

from ..media import formats
from ..media.failures import TRANSIENT_REASONS, Reason
from ..paths import is_inside, is_under, normalise_path
from ..store.catalog import Catalog
from ..store.rows import FailedFile, FileState

TEMPORARY_SUFFIXES = (".part", ".partial", ".tmp", ".temp", ".crdownload", ".download", ".swp", "~")

OnError = Callable[[str, OSError], None]


def is_hidden_or_temporary(name: str) -> bool:
    """Dotfiles, office lock files and names that downloads and editors use while writing."""
    lower = name.lower()
    return name.startswith((".", "~$")) or lower.endswith(TEMPORARY_SUFFIXES)


def is_visible_under(root: str, path: str) -> bool:
    """Inside ``root`` with no hidden or temporary name on the way."""
    if not is_under(path, root):
        return False
    rel = os.path.relpath(path, root)
    if rel == ".":
        return True
    return not any(is_hidden_or_temporary(part) for part in rel.split(os.sep))


def is_wanted_image(root: str, path: str, extensions: tuple[str, ...], recursive: bool) -> bool:
    """Would a walk of ``root`` yield ``path``? (By name only: the file is not looked at.)"""
    if not path.lower().endswith(extensions) or not is_visible_under(root, path):
        return False
    return recursive or os.path.dirname(path) == root


def leads_outside(path: str, roots: Sequence[str] | None) -> bool:
    """True when ``roots`` are given and ``path``, its links resolved, lies outside all of them."""
    if not roots:
        return False
    return not is_inside(os.path.realpath(path), roots)


def walk_images(
    root: str,
    extensions: Iterable[str],
    recursive: bool = True,
    on_error: OnError | None = None,
    roots: Sequence[str] | None = None,
    on_outside: Callable[[str], None] | None = None,
) -> Iterator[str]:
    """Image paths below ``root`` with one of ``extensions``, in a stable order.

    Follows symbolic links but visits each folder once (symlink loops end), skips
    hidden and temporary names, and reports unreadable folders to ``on_error``. A link to a
    folder inside ``root`` is not followed: that folder is walked under its own name, so a
    file has one name here (the one ``/add`` gives it: ``canonical_path``) and no
    second entry that outlives the link. With
    ``roots`` (real paths), a link that leads out of them is skipped and told to
    ``on_outside``: a link must not make a file outside the allowed folders searchable.
    """
    wanted = tuple(e.lower() for e in extensions)
    seen: set[tuple[int, int]] = set()
    stack = [normalise_path(root)]
    real_root = os.path.realpath(stack[0])
    while stack:
        folder = stack.pop()
        try:
            st = os.stat(folder)
            key = (st.st_dev, st.st_ino)
            if key in seen:
                continue
            seen.add(key)
            with os.scandir(folder) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError as exc:
            if on_error is not None:
                on_error(folder, exc)
            continue
        subfolders = []
        for entry in entries:
            if is_hidden_or_temporary(entry.name):
                continue
            try:
                if entry.is_symlink() and leads_outside(entry.path, roots):
                    if on_outside is not None:
                        on_outside(entry.path)
                    continue
                if entry.is_dir(follow_symlinks=True):
                    if entry.is_symlink() and walked_by_name(os.path.realpath(entry.path), real_root):
                        continue  # walked under its own name
                    if recursive:
                        subfolders.append(entry.path)
                elif entry.name.lower().endswith(wanted) and entry.is_file(follow_symlinks=True):
                    yield entry.path
            except OSError as exc:
                if on_error is not None:
                    on_error(entry.path, exc)
        stack.extend(reversed(subfolders))


def walked_by_name(real: str, real_root: str) -> bool:
    """Whether a walk of ``real_root`` reaches the folder ``real`` under its own name: it lies
    inside, and no folder on the way is hidden or temporary (a link ``Camera -> .store/Camera``
    is the only way in, so it is followed)."""
    if not is_inside(real, [real_root]):
        return False
    inner = os.path.relpath(real, real_root)
    return inner == "." or not any(is_hidden_or_temporary(part) for part in inner.split(os.sep))


def _alias(path: str, real_root: str) -> bool:
    """Whether ``path`` reaches its file through a folder link whose target a walk of
    ``real_root`` reaches by name: a row catalogued under such a name (by an older version, or
    an /add of a subfolder) is a second entry of a file the walk names otherwise."""
    folder = os.path.dirname(path)
    real = os.path.realpath(folder)
    return real != folder and walked_by_name(real, real_root)


def canonical_path(path: str, roots: Sequence[tuple[str, str]]) -> str:
    """``path`` (absolute, normalised) as a scan names it: below the root that holds it (roots
    as (configured, real) pairs: ``Config.root_pairs``), with folder links resolved where the
    walk reaches the real folder by its own name (``walked_by_name``). ``/add`` of
    ``ROOT/link/a.jpg``, ``link`` a folder link to ``ROOT/real``, is ``ROOT/real/a.jpg``, not a
    second entry for the same file. A path through a link out of its root is kept as given."""
    for configured, root in sorted(roots, key=lambda pair: len(pair[0]), reverse=True):
        base = configured.rstrip("/")
        if not (path + "/").startswith(base + "/"):
            continue
        real = os.path.realpath(path)
        folder = real if os.path.isdir(real) else os.path.dirname(real)
        if walked_by_name(folder, root):
            return base + real[len(root.rstrip("/")) :] if root != "/" else base + real
        return path
    return path


def probe_folder(root: str) -> tuple[tuple[int, int] | None, str | None]:
    """((st_dev, st_ino), None) for a usable folder, else (None, why not)."""
    try:
        st = os.stat(root)
        if not stat.S_ISDIR(st.st_mode):
            return None, "not a folder"
        if not os.access(root, os.R_OK | os.X_OK):
            return None, "unreadable (permission denied)"
        with os.scandir(root) as entries:
            next(entries, None)
    except FileNotFoundError:
        return None, "missing"
    except OSError as exc:
        return None, f"unreadable ({exc.strerror or exc})"
    return (st.st_dev, st.st_ino), None


@dataclass
class FolderPlan:
    """A folder compared with the catalogue by size and mtime only; no image was opened."""

    root: str
    paths: list[str] = field(default_factory=list)  # every image found, in walk order
    to_add: list[tuple[str, int]] = field(default_factory=list)  # (path, mtime_ns): new, changed or lacking a vector
    to_restore: list[str] = field(default_factory=list)  # offline in the catalogue, unchanged on disk
    vanished: list[str] = field(default_factory=list)  # in the catalogue, gone from disk
    unchanged: int = 0
    unreadable: list[str] = field(default_factory=list)  # folders or files that could not be read
    outside: list[str] = field(default_factory=list)  # links that lead out of the allowed roots: skipped

    @property
    def found(self) -> int:
        return len(self.paths)


def plan_folder(
    catalog: Catalog,
    root: str,
    extensions: Iterable[str],
    recursive: bool = True,
    models: dict[str, str] | None = None,
    on_error: OnError | None = None,
    roots: Sequence[str] | None = None,
) -> FolderPlan:
    """Compare a folder with the catalogue: what to add, restore and forget. Writes nothing.

    ``models`` (extractor -> model id) marks unchanged files that lack one of those vectors
    as to add. Files are only stat'ed; links out of ``roots`` are skipped. Raises
    FileNotFoundError when ``root`` is not a folder. (Failed files whose retry is due are
    the pipeline's retry timer's, catalogue-wide: ``retry_due``.)
    """
    root = normalise_path(root)
    if not os.path.isdir(root):
        raise FileNotFoundError(f"folder {root} is missing")
    plan = FolderPlan(root)

    def note_error(path: str, exc: OSError) -> None:
        plan.unreadable.append(path)
        if on_error is not None:
            on_error(path, exc)

    known = catalog.files_under(root)
    lacking: set[str] = set()
    for name, model_id in (models or {}).items():
        lacking.update(catalog.missing_vectors(name, model_id))
    seen: set[str] = set()
    for path in walk_images(root, extensions, recursive, note_error, roots, plan.outside.append):
        try:
            st = os.stat(path)
        except FileNotFoundError:
            continue  # deleted while we looked; its event or the next scan deals with it
        except OSError as exc:
            note_error(path, exc)
            continue
        seen.add(path)
        plan.paths.append(path)
        record = known.get(path)
        if record is None or (st.st_size, st.st_mtime_ns) != (record[0], record[1]):
            plan.to_add.append((path, st.st_mtime_ns))
        elif record[2] == FileState.OFFLINE:
            plan.to_restore.append(path)
        elif path in lacking:
            plan.to_add.append((path, st.st_mtime_ns))
        else:
            plan.unchanged += 1
    plan.vanished = _vanished(known, seen, plan.unreadable, os.path.realpath(root))
    # Catalogued before the link led out of the roots (an older version, a narrowed
    # allowed_roots): such rows must go, or they stay searchable and cannot be /removed.
    plan.vanished += [path for path in known if path not in seen and any(is_under(path, link) for link in plan.outside)]
    plan.vanished = list(dict.fromkeys(plan.vanished))
    return plan


# A file that failed for a reason that may pass (unreadable) is tried again after this
# many seconds, doubling with each failure in a row, up to a day.
RETRY_FIRST_DELAY = 60.0
RETRY_MAX_DELAY = 86400.0


def retry_delay(failures: int) -> float:
    """Seconds to wait before trying a file again after ``failures`` failures in a row."""
    return min(RETRY_MAX_DELAY, RETRY_FIRST_DELAY * 2 ** max(0, min(failures - 1, 20)))


def retry_due(failed: FailedFile, now: float) -> bool:
    """Should an unchanged failed file be tried again now? Only for reasons that may pass."""
    if not may_pass(failed.path, failed.reason, failed.updated_at):
        return False
    # no timer for missing_library: only a restart brings a decoder, and may_pass says when one did
    return failed.reason == Reason.MISSING_LIBRARY or now - failed.updated_at >= retry_delay(failed.failures)


def may_pass(path: str, reason: str | None, failed_at: float) -> bool:
    """Whether a failure may not happen again with the file unchanged (``unreadable``: a chmod
    changes neither size nor mtime; ``missing_library``: ``formats.worth_retrying``)."""
    if reason == Reason.MISSING_LIBRARY:
        return formats.worth_retrying(path, failed_at)
    return reason in TRANSIENT_REASONS


def _vanished(known: Iterable[str], on_disk: set[str], unreadable: list[str], real_root: str) -> list[str]:
    """Catalogued paths gone from disk, or catalogued under a folder link's name that the walk
    reaches by its own (``_alias``); leaving alone what sits in a folder that could not be read."""
    return [
        path
        for path in known
        if path not in on_disk
        and not any(is_under(path, bad) for bad in unreadable)
        and (not os.path.exists(path) or _alias(path, real_root))
    ]
