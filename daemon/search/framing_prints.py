"""The framing check on catalogued files: prints read once per content, scores cached per pair.

``FramingChecker.scores`` takes pairs of file ids (the duplicate join's) and answers each
pair's ``framing.framing_score``. A content's print comes from its stored thumbnail when the
thumbnail store has it (a 256 px JPEG: no decode of the file), else from its file, decoded with the daemon's
loader (EXIF orientation applied, the memory budget and caps kept; the thumbnail made on
the way is stored, so the review page finds it). Prints are kept per content hash (a
bounded LRU) and scores per pair of content hashes, so the next join, after one new file,
checks only that file's pairs. A file that cannot be read (gone, changed since it was
indexed, undecodable, outside the allowed roots) scores None: its pair is never a copy.
"""

from __future__ import annotations

import io
import logging
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable, Sequence
from typing import Generic, TypeVar

from PIL import Image

from ..media import files, images
from ..media.failures import ImageError
from ..media.limits import ImageLimits
from ..media.thumbnails import ThumbnailStore
from ..store.catalog import Catalog
from .framing import Print, framing_score, print_of

log = logging.getLogger("imgsearchd.search.framing_prints")

# A print is SIDE x SIDE bytes (4 KiB): 8192 of them hold 32 MiB, the contents of a join's
# checked pairs in a large library; a score is a few dozen bytes with its key.
MAX_PRINTS = 8192
MAX_SCORES = 500_000
# The decode for a print (and the thumbnail made on the way) needs no more than this on the shorter side.
DECODE_SIDE = 256

Progress = Callable[[int], None]
K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class Recent(Generic[K, V]):
    """At most ``bound`` entries, the least recently used dropped first (the caller locks)."""

    def __init__(self, bound: int) -> None:
        self.bound = bound
        self._items: OrderedDict[K, V] = OrderedDict()

    def get(self, key: K) -> V | None:
        found = self._items.get(key)
        if found is not None:
            self._items.move_to_end(key)
        return found

    def put(self, key: K, value: V) -> None:
        self._items[key] = value
        while len(self._items) > self.bound:
            self._items.popitem(last=False)

    def __len__(self) -> int:
        return len(self._items)


class FramingChecker:
    """Framing scores of pairs of catalogued files, with prints and scores cached."""

    def __init__(
        self,
        catalog: Catalog,
        roots: Sequence[str] | None = None,
        thumbnails: ThumbnailStore | None = None,
        limits: ImageLimits = ImageLimits(),
        max_prints: int = MAX_PRINTS,
        max_scores: int = MAX_SCORES,
    ) -> None:
        self.catalog = catalog
        self.roots = roots
        self.thumbnails = thumbnails
        self.limits = limits
        self._prints: Recent[str, Print] = Recent(max_prints)
        self._scores: Recent[tuple[str, str], float] = Recent(max_scores)
        self._lock = threading.Lock()
        self.reads = 0  # contents read (thumbnail or file): what the caches save
        self.computed = 0  # pair scores computed

    def scores(self, pairs: Sequence[tuple[int, int]], progress: Progress) -> dict[tuple[int, int], float | None]:
        """Each pair's framing score, None where a file cannot be read; ``progress(1)`` after each
        pair (it may raise to stop: the exception goes to the caller)."""
        ids = sorted({i for pair in pairs for i in pair})
        paths = self.catalog.paths_for(ids)
        hashes = self.catalog.content_hashes(paths.values())
        content = {i: (path, hashes.get(path)) for i, path in paths.items()}
        out: dict[tuple[int, int], float | None] = {}
        for a, b in pairs:
            out[(a, b)] = self._pair(content.get(a), content.get(b))
            progress(1)
        return out

    def _pair(self, a: tuple[str, str | None] | None, b: tuple[str, str | None] | None) -> float | None:
        if a is None or b is None or a[1] is None or b[1] is None:
            return None  # no longer catalogued as indexed, or no content hash
        key = (a[1], b[1]) if a[1] <= b[1] else (b[1], a[1])
        with self._lock:
            known = self._scores.get(key)
        if known is not None:
            return known
        first, second = self._print(a[0], a[1]), self._print(b[0], b[1])
        if first is None or second is None:
            return None  # not cached: the file may be readable next time
        score = framing_score(first, second)
        with self._lock:
            self.computed += 1
            self._scores.put(key, score)
        return score

    def _print(self, path: str, content_hash: str) -> Print | None:
        with self._lock:
            found = self._prints.get(content_hash)
        if found is not None:
            return found
        picture = self._picture(path, content_hash)
        if picture is None:
            return None
        made = print_of(picture)
        with self._lock:
            self.reads += 1
            self._prints.put(content_hash, made)
        return made

    def _picture(self, path: str, content_hash: str) -> Image.Image | None:
        """The stored thumbnail, else the file decoded; None when neither can be had."""
        if self.thumbnails is not None:
            stored = self.thumbnails.get(content_hash)
            if stored is not None:
                try:
                    with Image.open(io.BytesIO(stored.data)) as thumbnail:
                        return thumbnail.convert("RGB")
                except (OSError, ValueError) as exc:  # a damaged stored thumbnail: read the file
                    log.debug("thumbnail of %s unreadable: %s", path, exc)
        try:
            file = files.read_file(path, self.limits, self.roots)
            if file.content_hash != content_hash:
                log.info("framing check: %s changed since it was indexed; its pairs are not copies for now", path)
                return None
            side = max(DECODE_SIDE, self.thumbnails.size if self.thumbnails is not None else 0)
            picture = images.decode(file.data, side, self.limits)
        except ImageError as exc:
            log.info("framing check: cannot read %s: %s", path, exc)
            return None
        if self.thumbnails is not None:
            self.thumbnails.add_picture(content_hash, picture)
        return picture

    def stats(self) -> dict[str, int]:
        with self._lock:
            return {"prints": len(self._prints), "scores": len(self._scores), "reads": self.reads}
