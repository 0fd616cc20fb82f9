"""The pure part of ``duplicates``: distinct contents, the k-NN self-join, the tiers' star groups.

Three tiers, each pair of files in its closest one only (``tier_groups``):

- **identical**: files with the same content hash (the catalogue's, of the whole file);
- **copies**: two distinct contents that are one picture edited: their cosine is at least the
  copy floor (the extractor's ``duplicate_threshold``) AND the framing check on their pixels
  (``framing``) says one is the other up to a small crop, scale and tone;
- **similar**: distinct contents with a cosine of at least the similar cut that are not copies
  (bursts, a second shot). The cosine alone cannot tell these from copies: both reach 0.93-0.99
  (BENCHMARKS.md "Duplicate tiers (issue 29)").

The pairs come from a self-join: every distinct content asks the index for its ``neighbours``
nearest vectors (``index_join``), or, while the index is an exact matrix anyway, from a blocked
exact product (``exact_join``). A tier's links are joined into groups by **star clustering**
(``star_groups``): the content with the most links becomes a group's centre and takes its linked
contents, then the next. Plain union-find would chain A~B~C~... through a burst of similar photos
into one giant group whose ends look nothing alike; a star's members are all linked to its centre
(bench/bench_duplicates.py measures both; BENCHMARKS.md). Copies and similar groups list contents
(one file each); a content's byte copies are its identical group, not repeated there.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

# Nearest neighbours asked for per content. Groups larger than this still form (through the
# centre's neighbours' links); 10 found every planted copy in the benchmark.
NEIGHBOURS = 10
EXACT_BLOCK = 1024

# unit rows, limit -> for each row its (id, cosine) hits, best first (``self_join.query_many``)
Query = Callable[[np.ndarray, int], Sequence[Sequence[tuple[int, float]]]]


@dataclass(frozen=True)
class Pairs:
    """Undirected k-NN pairs of contents (``a < b``) with their cosine."""

    a: np.ndarray
    b: np.ndarray
    score: np.ndarray

    @classmethod
    def of(cls, a: Iterable[int], b: Iterable[int], score: Iterable[float]) -> Pairs:
        """Ordered, each pair once (its best score)."""
        a_arr, b_arr = np.fromiter(a, np.int64), np.fromiter(b, np.int64)
        s = np.fromiter(score, np.float32)
        keep = a_arr != b_arr
        a_arr, b_arr, s = a_arr[keep], b_arr[keep], s[keep]
        lo, hi = np.minimum(a_arr, b_arr), np.maximum(a_arr, b_arr)
        order = np.lexsort((-s, hi, lo))
        lo, hi, s = lo[order], hi[order], s[order]
        first = np.ones(len(lo), dtype=bool)
        first[1:] = (lo[1:] != lo[:-1]) | (hi[1:] != hi[:-1])
        return cls(lo[first], hi[first], s[first])

    def __len__(self) -> int:
        return len(self.a)

    def where(self, keep: np.ndarray) -> Pairs:
        """The pairs where ``keep`` (a boolean per pair) holds."""
        return Pairs(self.a[keep], self.b[keep], self.score[keep])


TIERS = ("identical", "copies", "similar")  # closest first
# A pair's framing score (search/framing.py) by (a, b), a < b; None: a picture could not be read
Framing = Mapping[tuple[int, int], float | None]


@dataclass(frozen=True)
class Group:
    """Files of one tier: ``members`` are file ids, the centre first (in copies and similar
    groups one file per content: its representative, ``representatives``).

    ``scores`` is each member's cosine to the centre (1.0 for the centre and byte copies),
    ``framing`` its framing score to the centre (1.0 for the centre and byte copies; None
    where the pair was not checked: below the copy floor, or a picture unreadable).
    """

    kind: str  # one of TIERS
    members: tuple[int, ...]
    scores: tuple[float, ...]
    framing: tuple[float | None, ...]

    @property
    def similarity(self) -> float:
        return min(self.scores)


def representatives(shared: Sequence[tuple[str, int, str, int]]) -> tuple[dict[int, int], dict[int, list[int]]]:
    """From ``Catalog.shared_contents`` rows: file id -> its content's representative (smallest
    id), and representative -> the other files with those bytes."""
    rep_of: dict[int, int] = {}
    copies: dict[int, list[int]] = {}
    first: dict[str, int] = {}
    for content, file_id, _path, _size in shared:
        rep = first.setdefault(content, file_id)
        rep_of[file_id] = rep
        if rep != file_id:
            copies.setdefault(rep, []).append(file_id)
    return rep_of, copies


def identical_groups(copies: Mapping[int, list[int]]) -> list[Group]:
    """Each content with byte copies as one group: its files."""
    groups = []
    for rep, others in copies.items():
        ones = (1.0,) * (1 + len(others))
        groups.append(Group("identical", (rep, *others), ones, ones))
    return groups


def exact_join(
    ids: np.ndarray, vectors: np.ndarray, neighbours: int, progress: Callable[[int], None] = lambda n: None
) -> Pairs:
    """Each row's ``neighbours`` nearest other rows by cosine (unit rows), by blocked products.

    ``progress`` hears of each block done (and may raise to stop the join).
    """
    n = len(ids)
    k = min(neighbours, n - 1)
    if k <= 0:
        return Pairs.of([], [], [])
    a_parts, b_parts, s_parts = [], [], []
    for start in range(0, n, EXACT_BLOCK):
        block = vectors[start : start + EXACT_BLOCK]
        scores = block @ vectors.T
        rows = np.arange(len(block))
        scores[rows, start + rows] = -np.inf  # not itself
        top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
        a_parts.append(np.repeat(ids[start : start + len(block)], k))
        b_parts.append(ids[top].reshape(-1))
        s_parts.append(np.take_along_axis(scores, top, axis=1).reshape(-1))
        progress(len(block))
    return Pairs.of(np.concatenate(a_parts), np.concatenate(b_parts), np.concatenate(s_parts))


def index_join(
    ids: np.ndarray,
    vectors: np.ndarray,
    query: Query,
    neighbours: int,
    rep_of: Mapping[int, int],
    progress: Callable[[int], None] = lambda n: None,
    chunk: int = 1000,
) -> Pairs:
    """Each row's ``neighbours`` nearest other contents, through the index, ``chunk`` rows a call.

    Hits on byte copies count as their representative, so they do not take the slots;
    hits on files not among ``ids`` (added since the read) are ignored. ``progress`` hears
    of every chunk done (and may raise to stop the join).
    """
    known = set(ids.tolist())
    a: list[int] = []
    b: list[int] = []
    s: list[float] = []
    for start in range(0, len(ids), chunk):
        rows = ids[start : start + chunk].tolist()
        for own, hits in zip(rows, query(vectors[start : start + chunk], 2 * neighbours + 1)):
            taken = 0
            for hit, score in hits:
                other = rep_of.get(hit, hit)
                if other == own or other not in known:
                    continue
                a.append(own)
                b.append(other)
                s.append(score)
                taken += 1
                if taken == neighbours:
                    break
        progress(len(rows))
    return Pairs.of(a, b, s)


def star_groups(pairs: Pairs, threshold: float) -> tuple[list[tuple[list[int], list[float]]], int]:
    """Pairs at or above ``threshold`` joined into stars: (members centre first, cosines to it).

    Also returns the size of the largest connected component (what union-find would have
    made one group), to show how much chaining the stars avoid.
    """
    keep = pairs.score >= threshold
    links: dict[int, dict[int, float]] = {}
    for x, y, score in zip(pairs.a[keep].tolist(), pairs.b[keep].tolist(), pairs.score[keep].tolist()):
        links.setdefault(x, {})[y] = score
        links.setdefault(y, {})[x] = score
    largest = _largest_component(links)
    degree = {node: len(others) for node, others in links.items()}
    heap = [(-d, node) for node, d in degree.items()]
    heapq.heapify(heap)
    taken: set[int] = set()
    groups = []
    while heap:
        negative, centre = heapq.heappop(heap)
        if centre in taken or -negative != degree[centre]:
            continue  # already grouped, or an old entry (its degree fell since)
        members = [m for m in links[centre] if m not in taken]
        if not members:
            continue
        members.sort(key=lambda m: (-links[centre][m], m))
        group = [centre, *members]
        taken.update(group)
        groups.append((group, [1.0, *(links[centre][m] for m in members)]))
        for node in group:
            for other in links[node]:
                if other not in taken:
                    degree[other] -= 1
                    heapq.heappush(heap, (-degree[other], other))
    return groups, largest


def _largest_component(links: Mapping[int, Mapping[int, float]]) -> int:
    parent: dict[int, int] = {}

    def find(x: int) -> int:
        root = x
        while parent.get(root, root) != root:
            root = parent[root]
        while parent.get(x, x) != root:
            parent[x], x = root, parent[x]
        return root

    for x, others in links.items():
        for y in others:
            rx, ry = find(x), find(y)
            if rx != ry:
                parent[max(rx, ry)] = min(rx, ry)
    sizes: dict[int, int] = {}
    for x in links:
        root = find(x)
        sizes[root] = sizes.get(root, 0) + 1
    return max(sizes.values(), default=0)


def copy_links(pairs: Pairs, framing: Framing, floor: float, framing_copy: float) -> np.ndarray:
    """Which pairs are copies: a cosine of at least ``floor`` and a framing score of at least
    ``framing_copy`` (a pair not checked, or unreadable, is no copy)."""
    keep = pairs.score >= floor
    for at in np.flatnonzero(keep).tolist():
        score = framing.get((int(pairs.a[at]), int(pairs.b[at])))
        keep[at] = score is not None and score >= framing_copy
    return keep


def tier_groups(
    pairs: Pairs, framing: Framing, floor: float, similar: float, framing_copy: float
) -> tuple[list[Group], int]:
    """The copies and similar groups of contents, and the largest connected component of their
    links (what chaining would have made one group).

    Copies: stars over the copy links (``copy_links``). Similar: stars over the pairs with a
    cosine of at least ``similar`` that are not copy links, leaving out links whose two ends are
    already in one copies group (a pair belongs to its closest tier only)."""
    is_copy = copy_links(pairs, framing, floor, framing_copy)
    copy_stars, largest_copies = star_groups(pairs.where(is_copy), -np.inf)
    group_of = {m: at for at, (members, _) in enumerate(copy_stars) for m in members}
    apart = np.fromiter(
        (group_of.get(a, -1) != group_of.get(b, -2) for a, b in zip(pairs.a.tolist(), pairs.b.tolist())),
        bool,
        len(pairs),
    )
    similar_stars, largest_similar = star_groups(pairs.where(~is_copy & apart), similar)
    groups = [_content_group("copies", star, framing) for star in copy_stars]
    groups += [_content_group("similar", star, framing) for star in similar_stars]
    return groups, max(largest_copies, largest_similar)


def _content_group(kind: str, star: tuple[list[int], list[float]], framing: Framing) -> Group:
    members, scores = star
    centre = members[0]
    checked = [1.0, *(framing.get((min(centre, m), max(centre, m))) for m in members[1:])]
    return Group(
        kind,
        tuple(members),
        tuple(round(float(s), 4) for s in scores),
        tuple(None if f is None else round(float(f), 4) for f in checked),
    )


def ordered(groups: Iterable[Group]) -> list[Group]:
    """Biggest first; then the closer tier first, closer before looser."""
    return sorted(groups, key=lambda g: (-len(g.members), TIERS.index(g.kind), -g.similarity, g.members[0]))
