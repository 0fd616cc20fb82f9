"""Groups of identical and near-identical files: a k-NN self-join over one extractor's index.

**Exact** groups are files with the same content hash (the catalogue's, of the whole file).
**Near** groups come from a self-join: every distinct content asks the index for its
``neighbours`` nearest vectors (``ExtractorIndex.query``: the HNSW or Annoy snapshot plus the fresh
vectors), or, while the index is an exact matrix anyway, from a blocked exact product. The
pairs above a cosine ``threshold`` are joined into groups by **star clustering**: the content
with the most links becomes a group's centre and takes its linked contents, then the next.
Plain union-find would chain A~B~C~... through a burst of similar photos into one giant
group whose ends look nothing alike; a star's members are all within the threshold of its
centre (bench/bench_duplicates.py measures both; BENCHMARKS.md).

The join does not depend on the threshold, so it runs once per catalogue change number
(``seq``) and extractor, in the background (``DuplicateFinder``), one at a time; grouping at
a threshold then takes milliseconds and is cached too. A request while it runs gets the
progress (or the previous answer, marked stale).

Longer than most modules: the join, the grouping, the background computation and the
answer's pages share one small data model, and read best together.
"""

from __future__ import annotations

import heapq
import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..media import images
from ..media.photo_metadata import PhotoMetadata, metadata_json
from ..paths import is_under, json_fields
from ..store.catalog import Catalog
from ..timestamps import iso_utc

log = logging.getLogger("imgsearchd.search.duplicates")

# Nearest neighbours asked for per content. Groups larger than this still form (through the
# centre's neighbours' links); 10 found every planted copy in the benchmark.
NEIGHBOURS = 10
# Below this many distinct contents, or while the index is an exact matrix, the join is one
# blocked matrix product (exact, and faster than a query per vector at that size).
EXACT_JOIN_BELOW = 20_000
EXACT_BLOCK = 1024
# Annoy candidates per join query. A near-duplicate is far closer than an ordinary
# neighbour, and fewer candidates find it: measured in bench/bench_duplicates.py (BENCHMARKS.md).
JOIN_SEARCH_K = 500
KEEP_GROUPINGS = 8  # thresholds kept per join

# unit rows, limit -> for each row its (id, cosine) hits, best first (``index.query_many``)
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


@dataclass(frozen=True)
class Group:
    """Files that are copies of one another: ``members`` are file ids, the centre first.

    ``scores`` is each member's cosine to the centre (1.0 for the centre and byte copies).
    """

    kind: str  # "exact" or "near"
    members: tuple[int, ...]
    scores: tuple[float, ...]

    @property
    def similarity(self) -> float:
        return min(self.scores)


# -- the pure part: contents, the join, the groups -------------------------------------


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


def exact_groups(copies: Mapping[int, list[int]]) -> list[Group]:
    return [Group("exact", (rep, *others), (1.0,) * (1 + len(others))) for rep, others in copies.items()]


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


def near_groups(stars: Iterable[tuple[list[int], list[float]]], copies: Mapping[int, list[int]]) -> list[Group]:
    """Stars of contents as groups of files: each content's byte copies beside it."""
    out = []
    for contents, scores in stars:
        members: list[int] = []
        member_scores: list[float] = []
        for content, score in zip(contents, scores):
            for file_id in (content, *copies.get(content, ())):
                members.append(file_id)
                member_scores.append(round(float(score), 4))
        out.append(Group("near", tuple(members), tuple(member_scores)))
    return out


def ordered(groups: Iterable[Group]) -> list[Group]:
    """Biggest first; then exact before near, closer before looser."""
    return sorted(groups, key=lambda g: (-len(g.members), g.kind != "exact", -g.similarity, g.members[0]))


# -- the background computation --------------------------------------------------------


@dataclass
class Join:
    """One extractor's k-NN self-join at a catalogue change number, and its groupings."""

    extractor: str
    model_id: str
    seq: int
    contents: int
    pairs: Pairs
    exact: list[Group]
    copies: dict[int, list[int]]
    finished: float
    seconds: float
    method: str
    groupings: dict[float, Grouping] = field(default_factory=dict)


@dataclass
class Grouping:
    """The groups at one threshold, with the files' paths, sizes and (read lazily) dimensions."""

    threshold: float
    groups: list[Group]
    largest_component: int
    files: dict[int, tuple[str, int]]
    dimensions: dict[int, tuple[int, int] | None] = field(default_factory=dict)


@dataclass
class Computing:
    """The join in progress, as the API and ``/stats`` show it."""

    extractor: str
    phase: str = "queued"
    done: int = 0
    total: int = 0
    started: float = field(default_factory=time.time)

    def as_dict(self) -> dict[str, Any]:
        return {
            "extractor": self.extractor,
            "phase": self.phase,
            "done": self.done,
            "total": self.total,
            "progress": round(min(1.0, self.done / self.total), 4) if self.total else 0.0,
            "seconds": round(time.time() - self.started, 3),
        }


@dataclass(frozen=True)
class Source:
    """What a join reads: the catalogue, and the index of the extractor (model, dim, query)."""

    catalog: Catalog
    model_id: str
    dim: int
    mode: Callable[[], str]  # the index's base kind now: "exact", "annoy" or "hnsw"
    query: Query


class DuplicateFinder:
    """Joins computed in the background, one at a time, cached until the catalogue changes."""

    def __init__(self, catalog: Catalog, neighbours: int = NEIGHBOURS, exact_below: int = EXACT_JOIN_BELOW) -> None:
        self.catalog = catalog
        self.neighbours = neighbours
        self.exact_below = exact_below
        self._lock = threading.Lock()
        self._joins: dict[str, Join] = {}
        self._computing: Computing | None = None
        self._waiting: dict[str, Source] = {}  # extractors asked for while another join ran
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self.last_error: dict[str, str] = {}

    def lookup(self, extractor: str, source: Source) -> tuple[Join | None, bool, Computing | None]:
        """The latest join of ``extractor`` (or None), whether it is current, and the work
        running for it. A join that is missing or behind the catalogue is started (or queued)."""
        seq = self.catalog.current_seq()
        with self._lock:
            join = self._joins.get(extractor)
            fresh = join is not None and join.seq == seq and join.model_id == source.model_id
            if not fresh and not self._stop.is_set():
                self._start_locked(extractor, source)
            computing = self._computing if self._computing and self._computing.extractor == extractor else None
            if not fresh and computing is None:
                computing = Computing(extractor)  # queued behind another extractor's join
            return join, fresh, computing

    def _start_locked(self, extractor: str, source: Source) -> None:
        if self._computing is not None:
            if self._computing.extractor != extractor:
                self._waiting[extractor] = source
            return
        self._computing = Computing(extractor)
        self._thread = threading.Thread(
            target=self._run, args=(extractor, source), name=f"duplicates-{extractor}", daemon=True
        )
        self._thread.start()

    def _run(self, extractor: str, source: Source) -> None:
        while True:
            computing = self._computing
            assert computing is not None
            try:
                join = self._join(extractor, source, computing)
                with self._lock:
                    self._joins[extractor] = join
                    self.last_error.pop(extractor, None)
            except InterruptedError:
                pass
            except Exception as exc:  # a closed index, a catalogue error: the next request tries again
                log.exception("duplicates: the join over %s failed", extractor)
                with self._lock:
                    self.last_error[extractor] = str(exc)
            with self._lock:
                if self._stop.is_set() or not self._waiting:
                    self._computing = None
                    return
                extractor, source = self._waiting.popitem()
                self._computing = Computing(extractor)

    def _join(self, extractor: str, source: Source, computing: Computing) -> Join:
        t0 = time.monotonic()
        computing.phase = "reading"
        shared = source.catalog.shared_contents()
        rep_of, copies = representatives(shared)
        seq, ids, vectors = source.catalog.all_vectors(extractor, source.model_id, source.dim)
        distinct = np.fromiter((rep_of.get(i, i) == i for i in ids.tolist()), bool, len(ids))
        ids, vectors = ids[distinct], vectors[distinct]
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        vectors = vectors / np.where(norms > 0, norms, 1.0)
        computing.phase, computing.total = "joining", len(ids)

        def progress(n: int) -> None:
            if self._stop.is_set():
                raise InterruptedError("the daemon is stopping")
            computing.done += n

        if len(ids) < self.exact_below or source.mode() == "exact":
            method = "exact"
            pairs = exact_join(ids, vectors, self.neighbours, progress)
        else:
            method = "index"
            pairs = index_join(ids, vectors, source.query, self.neighbours, rep_of, progress)
        seconds = time.monotonic() - t0
        log.info(
            "duplicates: %s joined %d contents (%s) in %.1f s: %d pairs, %d byte-identical groups",
            extractor,
            len(ids),
            method,
            seconds,
            len(pairs),
            len(copies),
        )
        return Join(
            extractor, source.model_id, seq, len(ids), pairs, exact_groups(copies), copies, time.time(), seconds, method
        )

    def grouping(self, join: Join, threshold: float) -> Grouping:
        """The groups of a join at ``threshold`` (cached with the join)."""
        with self._lock:
            found = join.groupings.get(threshold)
        if found is not None:
            return found
        stars, largest = star_groups(join.pairs, threshold)
        groups = ordered([*join.exact, *near_groups(stars, join.copies)])
        files = self.catalog.path_and_size(m for g in groups for m in g.members)
        grouping = Grouping(threshold, groups, largest, files)
        with self._lock:
            if len(join.groupings) >= KEEP_GROUPINGS:
                join.groupings.pop(next(iter(join.groupings)))
            join.groupings[threshold] = grouping
        return grouping

    def status(self) -> dict[str, Any]:
        """For ``/stats``: the join running (if any) and the joins cached."""
        seq = self.catalog.current_seq()
        with self._lock:
            return {
                "computing": self._computing.as_dict() if self._computing else None,
                "cached": {
                    name: {**join_facts(join), "current": join.seq == seq} for name, join in self._joins.items()
                },
                "errors": dict(self.last_error),
            }

    def close(self) -> None:
        """Stop a join in progress (at its next step) and wait for it."""
        self._stop.set()
        thread = self._thread
        if thread is not None:
            thread.join(timeout=60)


def join_facts(join: Join) -> dict[str, Any]:
    return {
        "seq": join.seq,
        "contents": join.contents,
        "pairs": len(join.pairs),
        "method": join.method,
        "computed_at": iso_utc(join.finished),
        "seconds": round(join.seconds, 3),
    }


# -- one page of the answer ------------------------------------------------------------


def page(
    join: Join,
    grouping: Grouping,
    *,
    kind: str,
    folder: str | None,
    offset: int,
    limit: int,
    roots: Sequence[str] | None,
    content_hashes: Callable[[Iterable[str]], dict[str, str]] | None = None,
    metadata: Callable[[Iterable[int]], dict[int, PhotoMetadata]] | None = None,
    sort: str = "similarity",
) -> dict[str, Any]:
    """The API's answer: groups ``offset`` to ``offset + limit`` of the kind (and folder) asked for.

    A ``folder`` keeps the groups with at least one member in it, shown whole. ``sort``:
    "similarity" keeps the join's order (biggest groups first, the centre first in each);
    "taken" puts each group's members oldest first and the groups by their oldest photo
    (files without a date last), which shows the original before its copies. ``metadata``
    (the catalogue's) gives each member its capture time, size and camera; dimensions of a
    file without metadata are read from its header the first time a page shows it;
    ``content_hashes`` gives each member its current hash, for the page's thumbnail URLs.
    """
    files = grouping.files

    def wanted(group: Group) -> bool:
        if kind != "all" and group.kind != kind:
            return False
        present = [m for m in group.members if m in files]
        if len(present) < 2:
            return False  # removed between the join and now
        return folder is None or any(is_under(files[m][0], folder) for m in present)

    chosen = [g for g in grouping.groups if wanted(g)]
    facts: dict[int, PhotoMetadata] = {}
    if sort == "taken" and metadata is not None:
        facts = metadata(m for g in chosen for m in g.members)
        chosen = sorted(chosen, key=lambda g: _oldest(g.members, facts))
    shown = chosen[offset : offset + limit]
    if metadata is not None and sort != "taken":
        facts = metadata(m for g in shown for m in g.members)
    out_groups = []
    paths_shown = (files[m][0] for g in shown for m in g.members if m in files)
    hashes = content_hashes(paths_shown) if content_hashes is not None else {}
    for group in shown:
        members = []
        pairs = list(zip(group.members, group.scores))
        if sort == "taken":
            pairs.sort(key=lambda pair: _oldest((pair[0],), facts))
        for file_id, score in pairs:
            if file_id not in files:
                continue
            path, size = files[file_id]
            found = facts.get(file_id)
            if found is None and file_id not in grouping.dimensions:
                grouping.dimensions[file_id] = images.header_size(path, roots)
            about = metadata_json(found) if found is not None else {**metadata_json(None), **_dims(grouping, file_id)}
            members.append({**json_fields(path), "size": size, "score": score, "hash": hashes.get(path), **about})
        out_groups.append(
            {"kind": group.kind, "files": len(members), "similarity": group.similarity, "members": members}
        )
    end = offset + len(shown)
    return {
        "state": "ready",
        "extractor": join.extractor,
        "threshold": grouping.threshold,
        "kind": kind,
        "folder": folder,
        "sort": sort,
        "total": len(chosen),
        "offset": offset,
        "limit": limit,
        "next_offset": end if end < len(chosen) else None,
        "groups": out_groups,
        "largest_component": grouping.largest_component,
        **join_facts(join),
    }


def _oldest(members: Iterable[int], facts: Mapping[int, PhotoMetadata]) -> tuple[bool, float]:
    """A sort key: the earliest capture time among ``members``, those without one after all others."""
    times = [facts[m].taken_at for m in members if m in facts]
    return (not times, min(times) if times else 0.0)


def _dims(grouping: Grouping, file_id: int) -> dict[str, int | None]:
    dims = grouping.dimensions.get(file_id)
    return {"width": dims[0] if dims else None, "height": dims[1] if dims else None}


def respond(
    finder: DuplicateFinder,
    extractor: str,
    source: Source,
    threshold: float,
    kind: str,
    folder: str | None,
    offset: int,
    limit: int,
    roots: Sequence[str],
    sort: str = "similarity",
) -> tuple[int, dict[str, Any]]:
    """``/duplicates``: 200 with a page of groups, or 202 while the first join runs."""
    join, fresh, computing = finder.lookup(extractor, source)
    progress = computing.as_dict() if computing is not None else None
    if join is None:
        error = finder.last_error.get(extractor)
        body = {"state": "computing", "extractor": extractor, "threshold": threshold, "computing": progress}
        return 202, {**body, "last_error": error}
    grouping = finder.grouping(join, threshold)
    answer = page(
        join,
        grouping,
        kind=kind,
        folder=folder,
        offset=offset,
        limit=limit,
        roots=roots or None,
        content_hashes=finder.catalog.content_hashes,
        metadata=finder.catalog.metadata_for,
        sort=sort,
    )
    return 200, {**answer, "stale": not fresh, "computing": progress}
