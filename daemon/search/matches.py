"""Each search result's match level (``match_levels``): the same check, the correction per query, ``min_match``.

``Grading.levels`` gives a page of results their levels: the cosines corrected against the
query's background sample (``match_levels.corrected``, ``background``) and cut per extractor.
A picture query's result is ``same`` when it has the query's content hash, or when its cosine
is at least the extractor's ``duplicate_threshold`` (the copy floor) and the framing check
(``framing_prints``: the one ``/duplicates`` uses, with its caches) scores the pair at least
``framing.FRAMING_COPY``: the rule of /duplicates' copies. Only results above the floor are
checked, a handful in a search, so a search stays fast. Text and combined queries are never
``same`` (there is no picture to be a copy of).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from ..media import files, images
from ..media.failures import ImageError
from ..media.limits import ImageLimits
from . import match_levels
from .framing import FRAMING_COPY
from .framing_prints import DECODE_SIDE, FramingChecker
from .match_levels import Background

Found = tuple[str, str | None, float]  # a result's path, content hash (None: unknown) and cosine

# The framing checks one search makes at most. EfficientNet's copy floor (0.7) lets many close
# results through (on 288 pictures: 9 to 36 of a search's top 100, a median 13.5 of its top 20),
# and a check whose prints are not kept yet costs 5 ms (median: a print read, the score, one BLAS
# thread); a search for 1000 results would pay seconds. Copies rank among the first results
# above the floor (the 24 copies of that run: within the first 10), so no check is made past
# the 50th: a result there is ``same`` only by its content.
COPY_CHECKS = 50


@dataclass(frozen=True)
class Picture:
    """The picture a query was by, for the same check.

    ``path``: a file with its pixels ("" when there is none: an upload, a hash without a
    library file in the results); ``content_hash``: None when not known yet (a path that is
    not indexed: read when a result needs it); ``data``: an upload's bytes.
    """

    path: str = ""
    content_hash: str | None = None
    data: bytes | None = None


@dataclass
class Grading:
    """How one search's results get their levels, and which ``min_match`` keeps."""

    query: np.ndarray
    extractor: str
    background: Background
    picture: Picture | None  # None: a text or combined query (never ``same``)
    text: bool  # the text cuts (a text, or a combined query with a text part)
    floor: float  # the extractor's duplicate_threshold: the cosine from which a result may be a copy
    framing: FramingChecker | None = None  # None: only the same content is ``same``
    limits: ImageLimits = field(default_factory=ImageLimits)
    roots: Sequence[str] | None = None
    min_match: str | None = None
    _hash: str | None = field(default=None, init=False)
    _hash_read: bool = field(default=False, init=False)

    def levels(self, found: Sequence[Found]) -> list[str]:
        """Each result's level, in order (``found`` best first)."""
        if not found:
            return []
        scores = np.array([score for _, _, score in found], dtype=np.float32)
        corrected = match_levels.corrected(self.query, scores, self.background)
        cuts = match_levels.cuts_for(self.extractor)
        return match_levels.levels(corrected, cuts, self.same(found), self.text)

    def keeps(self, level: str) -> bool:
        """True when ``min_match`` keeps a result of ``level``."""
        return self.min_match is None or match_levels.at_least(level, self.min_match)

    def later_may_reach(self, score: float) -> bool:
        """Whether a result after one of cosine ``score`` (so of that cosine or less) may be kept."""
        if self.min_match is None or (self.picture is not None and score >= self.floor):
            return True  # a copy may come further down, found by its pixels
        corrected = match_levels.corrected(self.query, np.array([score], dtype=np.float32), self.background)
        cuts = match_levels.cuts_for(self.extractor)
        return self.keeps(match_levels.levels(corrected, cuts, np.zeros(1, dtype=bool), self.text)[0])

    def same(self, found: Sequence[Found]) -> np.ndarray:
        """The ``same`` mask: the query's content, or a copy of it by the floor and the framing check."""
        mask = np.zeros(len(found), dtype=bool)
        if self.picture is None or self.text:
            return mask
        side: tuple[str, str] | None = None
        checks = 0
        for n, (path, content_hash, score) in enumerate(found):
            if content_hash is None or score < self.floor:
                continue  # a copy's cosine is at least the floor; the same content's is 1
            query_hash = self._query_hash()
            if content_hash == query_hash:
                mask[n] = True
            elif self.framing is not None and query_hash is not None and checks < COPY_CHECKS:
                side = side or self._query_side(query_hash, found)
                framed = self.framing.pair_score(side, (path, content_hash))
                mask[n] = framed is not None and framed >= FRAMING_COPY
                checks += 1
        return mask

    def _query_hash(self) -> str | None:
        """The query picture's content hash: known, else its file's, read once (None: unreadable)."""
        assert self.picture is not None
        if self.picture.content_hash is not None:
            return self.picture.content_hash
        if not self._hash_read:
            self._hash_read = True
            try:
                self._hash = files.read_file(self.picture.path, self.limits, self.roots).content_hash
            except ImageError:
                self._hash = None  # gone since it was embedded: only its vector is left to compare
        return self._hash

    def _query_side(self, query_hash: str, found: Sequence[Found]) -> tuple[str, str]:
        """The query as the framing check names a picture: (a file with its pixels, content hash).

        An upload's print is made now from its bytes; a hash query's pixels are those of a result
        with its content (else a print kept from an upload search, or none: never a copy)."""
        assert self.picture is not None
        data = self.picture.data
        if data is not None and self.framing is not None:
            try:
                self.framing.remember(query_hash, lambda: images.decode(data, DECODE_SIDE, self.limits))
            except ImageError:
                pass  # embedded a moment ago, so not expected; the pair then scores None
            return ("", query_hash)
        if self.picture.path:
            return (self.picture.path, query_hash)
        return next(((path, h) for path, h, _ in found if h == query_hash), ("", query_hash))
