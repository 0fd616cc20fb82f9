"""A catalogued file's pictures, as ``/thumbnail`` and ``/original`` send them.

Only files the catalogue holds as indexed are shown (anything else is ``NotFound``), and
the file opened must still lie inside the allowed roots when it is opened.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from typing import BinaryIO

from ..errors import BadImage, Busy, NotFound
from ..media import files
from ..media.failures import ImageError
from ..media.limits import ImageLimits
from ..media.thumbnails import Thumbnail, ThumbnailBusy, ThumbnailStore
from ..store.catalog import Catalog
from ..store.rows import FileRecord, FileState


def indexed(catalog: Catalog, path: str) -> FileRecord:
    """The catalogue's record of an indexed file; ``NotFound`` for any other path."""
    record = catalog.get(path)
    if record is None or record.state != FileState.INDEXED:
        raise NotFound(f"{path} is not an indexed file in the catalogue", image=path)
    return record


def find_thumbnail(
    catalog: Catalog,
    store: ThumbnailStore,
    path: str,
    limits: ImageLimits,
    roots: Sequence[str] | None,
    slot: Callable[[], AbstractContextManager[None]],
) -> Thumbnail:
    """The thumbnail of a catalogued file: stored, or made now from the file (one decode)."""
    record = indexed(catalog, path)
    if record.content_hash is not None:
        found = store.get(record.content_hash)
        if found is not None:
            return found
    try:
        # One of the slow slots while it is made (the HTTP workers stay free for /health and
        # stored thumbnails), none while it waits for its turn.
        return store.make_from_file(path, limits, roots, slot=slot)
    except ImageError as exc:
        raise BadImage.of(exc, path) from None
    except ThumbnailBusy as exc:
        raise Busy(str(exc), image=path) from None


def open_original(
    catalog: Catalog, path: str, limits: ImageLimits, roots: Sequence[str] | None
) -> tuple[BinaryIO, int, str]:
    """An indexed file opened to be sent as it is: (file, size, content type)."""
    indexed(catalog, path)
    try:
        return files.open_original(path, limits, roots)
    except ImageError as exc:
        raise BadImage.of(exc, path) from None
