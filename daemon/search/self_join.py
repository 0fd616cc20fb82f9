"""Many queries against one index at once: the duplicates' self-join over every stored vector.

``index.ExtractorIndex.query`` answers one picture; a bulk self-join asks it for every
item, looking for very close neighbours, which far fewer candidates find
(bench/bench_duplicates.py), so it searches an Annoy base with its own ``search_k``.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

from .holder import StateHolder
from .parts import AnnoyBase, distance_of, exact_top


class Held(Protocol):
    """What ``query_many`` needs of an index: catching up with the catalogue, and its state."""

    @property
    def holder(self) -> StateHolder: ...

    def refresh(self) -> None: ...


def query_many(
    index: Held, vectors: np.ndarray, limit: int, search_k: int, chunk: int = 1000
) -> list[list[tuple[int, float]]]:
    """(id, cosine) of the ``limit`` nearest to each unit row, best first, like ``index.query``,
    with its own Annoy ``search_k``: a bulk self-join (duplicates) looks for very close
    neighbours, which far fewer candidates find (bench/bench_duplicates.py). An HNSW base
    searches at its own ef (a few hundred candidates already). One state is
    held per ``chunk`` rows, so a rebuild swapped in meanwhile is used from the next chunk on.
    """
    out: list[list[tuple[int, float]]] = []
    for start in range(0, len(vectors), chunk):
        index.refresh()
        with index.holder.using() as state:
            for v in vectors[start : start + chunk]:
                base = state.base
                if isinstance(base, AnnoyBase):
                    k = limit if not state.dead else 2 * limit + 10
                    positions, distances = base.annoy.get_nns_by_vector(v.tolist(), k, max(search_k, k), True)
                    found = [(d, i) for i, d in zip(base.ids[positions].tolist(), distances) if i not in state.dead]
                    if len(found) < limit and len(positions) == k:
                        found = base.search(v, limit, state.dead, frozenset())  # many tombstones: the full search
                else:
                    found = base.search(v, limit, state.dead, frozenset())
                ids, scores = exact_top(state.fresh_vectors, state.fresh_ids, v, limit)
                found.extend((distance_of(s), i) for i, s in zip(ids.tolist(), scores.tolist()))
                found.sort()
                out.append([(i, max(-1.0, min(1.0, 1.0 - d * d / 2.0))) for d, i in found[:limit]])
    return out
