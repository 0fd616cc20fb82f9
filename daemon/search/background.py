"""The background samples a search's scores are corrected against: one per extractor and model id.

``match_levels.corrected`` compares a result's cosine with the query's cosines to a random
sample of the library (``match_levels.Background``). ``Backgrounds.get`` draws that sample
with ``Catalog.sample_vectors`` (``match_levels.BACKGROUND_SIZE`` rows) on the first search of
an extractor and model id, in the search (one indexed read of a few thousand rows: 3 ms for
1024 rows of 1280 floats here). It is drawn again on a thread of its own once the index's
vector count has moved by ``REDRAW_SHARE`` since the draw (the library grew or shrank), while
searches go on with the sample they have: a search never waits for a redraw. One draw runs at
a time. A model id the sample was not drawn for (a model change) is a first use: the old
sample is of another model's space (and maybe of another size), so it is never used for the
new model's queries.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from dataclasses import dataclass

from ..store.catalog import Catalog
from .match_levels import BACKGROUND_SIZE, Background

log = logging.getLogger("imgsearchd.search.background")

# The index's vector count moved this much (up or down) since the draw: draw again. A tenth
# more pictures barely moves a query's background statistics; a library that doubled may have
# new kinds of picture in it.
REDRAW_SHARE = 0.10


@dataclass(frozen=True)
class Drawn:
    """One extractor's sample: the model id it is of, and the index's vector count at the draw."""

    model_id: str
    count: int
    background: Background


def moved(then: int, now: int, share: float = REDRAW_SHARE) -> bool:
    """True when a vector count moved by ``share`` or more since ``then`` (from none: any at all)."""
    return abs(now - then) >= share * then if then > 0 else now > 0


class Backgrounds:
    """The background samples of the running extractors, drawn on first use and kept current."""

    def __init__(self, size: int = BACKGROUND_SIZE) -> None:
        self.size = size
        self._drawn: dict[str, Drawn] = {}
        self._lock = threading.Lock()  # guards _drawn and _thread
        self._first = threading.Lock()  # one draw in a search at a time
        self._thread: threading.Thread | None = None
        self.draws = 0  # samples drawn (tests, /stats)

    def get(self, catalog: Catalog, extractor: str, model_id: str, count: int) -> Background:
        """The sample of ``extractor``'s ``model_id`` vectors; ``count``: its index's vector count now."""
        with self._lock:
            drawn = self._drawn.get(extractor)
        if drawn is None or drawn.model_id != model_id:
            with self._first:
                with self._lock:
                    drawn = self._drawn.get(extractor)
                if drawn is None or drawn.model_id != model_id:  # not drawn meanwhile by another search
                    drawn = self._draw(catalog, extractor, model_id, count)
            return drawn.background
        if moved(drawn.count, count):
            self._redraw(catalog, extractor, model_id, count)
        return drawn.background

    def _draw(self, catalog: Catalog, extractor: str, model_id: str, count: int, first: bool = True) -> Drawn:
        """Draw a sample and keep it; a redraw (``first`` False) finished after a model change is dropped."""
        vectors = catalog.sample_vectors(extractor, model_id, self.size)
        drawn = Drawn(model_id, count, Background(vectors, extractor))
        with self._lock:
            current = self._drawn.get(extractor)
            if first or current is None or current.model_id == model_id:
                self._drawn[extractor] = drawn
            self.draws += 1
        log.debug("background of %s (%s): %d vectors, index at %d", extractor, model_id, len(vectors), count)
        return drawn

    def _redraw(self, catalog: Catalog, extractor: str, model_id: str, count: int) -> None:
        """Draw again on a thread of its own, unless a draw is running (the next search asks again)."""
        with self._lock:
            if self._thread is not None and self._thread.is_alive():
                return
            self._thread = threading.Thread(
                target=self._quietly,
                args=(catalog, extractor, model_id, count),
                name=f"imgsearchd-background-{extractor}",
                daemon=True,
            )
            self._thread.start()

    def _quietly(self, catalog: Catalog, extractor: str, model_id: str, count: int) -> None:
        try:
            self._draw(catalog, extractor, model_id, count, first=False)
        except (sqlite3.Error, ValueError) as exc:  # a catalogue closing under it, a disk error: the old one stays
            log.warning("cannot draw the search background of %s again: %s", extractor, exc)

    def close(self) -> None:
        """Wait for a redraw in flight (a fraction of a second)."""
        with self._lock:
            thread = self._thread
        if thread is not None:
            thread.join(timeout=30)
