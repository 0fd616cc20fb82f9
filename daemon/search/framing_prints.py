"""The framing check on catalogued files: prints read once per content, scores cached per pair.

``FramingChecker.scores`` takes pairs of file ids (the duplicate join's) and answers each
pair's ``framing.framing_score``. Every print is made from the thumbnail as the store makes and
keeps it: the stored one when the store has it (no decode of the file), else the file (or an
upload) decoded with the daemon's loader (EXIF orientation applied, the memory budget and caps
kept), shrunk and encoded as the store does and decoded again (``stored_form``; the thumbnail
is stored, so the review page finds it). So the same pixels give the same print (a large
PNG that the model's decode shrank by another step: 0.9996 or more), where a print of a decode
had scored a text page's own 192x256 JPEG thumbnail 0.963, under FRAMING_COPY.
Two flat prints (``framing.flat``: no structure to compare) are copies when their mean
colours are within ``framing.FLAT_COLOUR``. Prints are kept per content hash (a
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
from ..media.thumbnails import ENCODE, ThumbnailStore
from ..store.catalog import Catalog
from .framing import Colour, Print, colour_of, flat_copy, framing_score, print_of

log = logging.getLogger("imgsearchd.search.framing_prints")

# A print is SIDE x SIDE bytes (4 KiB) and a mean colour: 8192 of them hold 33 MiB, the contents of a join's
# checked pairs in a large library; a score is a few dozen bytes with its key.
MAX_PRINTS = 8192
MAX_SCORES = 500_000
# The decode for a print (and the thumbnail made on the way) needs no more than this on the shorter side.
DECODE_SIDE = 256
# The thumbnail a print is made from where there is no store (``imgsearchd search --local``): the
# store's defaults, so its prints are those of a daemon with the default [thumbnails].
THUMBNAIL_SIDE, THUMBNAIL_FORMAT = 256, "JPEG"

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
        self._prints: Recent[str, tuple[Print, Colour]] = Recent(max_prints)
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

    def pair_score(self, a: tuple[str, str], b: tuple[str, str]) -> float | None:
        """One pair's framing score, each side a picture's (path, content hash): a search's query
        (any readable file, or a print kept by ``remember``) and a result; cached as ``scores``'."""
        return self._pair(a, b)

    def remember(self, content_hash: str, picture: Callable[[], Image.Image]) -> None:
        """Keep the print of a picture that is no file (an uploaded query) under its content hash;
        ``picture`` decodes it, called only when the print is not kept already."""
        with self._lock:
            if self._prints.get(content_hash) is not None:
                return
        made = self._stamp(self.stored_form(picture()))
        with self._lock:
            self._prints.put(content_hash, made)

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
        # one colour each, the same: a flat picture and its copy (crop, scale, re-encode)
        score = 1.0 if flat_copy(first, second) else framing_score(first[0], second[0])
        with self._lock:
            self.computed += 1
            self._scores.put(key, score)
        return score

    def _print(self, path: str, content_hash: str) -> tuple[Print, Colour] | None:
        with self._lock:
            found = self._prints.get(content_hash)
        if found is not None:
            return found
        picture = self._picture(path, content_hash)
        if picture is None:
            return None
        made = self._stamp(picture)
        with self._lock:
            self.reads += 1
            self._prints.put(content_hash, made)
        return made

    def _picture(self, path: str, content_hash: str) -> Image.Image | None:
        """The stored thumbnail, else the file decoded in its thumbnail's form (``stored_form``);
        None when neither can be had."""
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
            # debug: a search asks again each time, and a file gone is the watcher's to record
            log.debug("framing check: cannot read %s: %s", path, exc)
            return None
        if self.thumbnails is not None:
            self.thumbnails.add_picture(content_hash, picture)
        return self.stored_form(picture)

    def stored_form(self, picture: Image.Image) -> Image.Image:
        """A decoded picture as its stored thumbnail shows it: shrunk to fit the store's size,
        encoded in its format and decoded again (what ``ThumbnailStore`` does to keep one)."""
        store = self.thumbnails
        side, fmt = (store.size, store.pillow_format) if store is not None else (THUMBNAIL_SIDE, THUMBNAIL_FORMAT)
        width, height = picture.size
        scale = side / max(width, height)
        if scale < 1:  # ThumbnailStore._encode's resize (tests/search/test_matches.py checks they agree)
            target = (max(1, round(width * scale)), max(1, round(height * scale)))
            picture = picture.resize(target, Image.Resampling.BILINEAR, reducing_gap=1.0)
        out = io.BytesIO()
        picture.save(out, fmt, **ENCODE[fmt])
        with Image.open(io.BytesIO(out.getvalue())) as stored:
            return stored.convert("RGB")

    @staticmethod
    def _stamp(picture: Image.Image) -> tuple[Print, Colour]:
        return print_of(picture), colour_of(picture)

    def stats(self) -> dict[str, int]:
        with self._lock:
            return {"prints": len(self._prints), "scores": len(self._scores), "reads": self.reads}
