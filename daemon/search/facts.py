"""What a build records and what ``/stats`` shows of an index, as typed dicts.

They stay dicts (JSON in ``index.json``, in the builder's argument and answer, in the
``/stats`` answer); the types name their keys once. ``SnapshotMeta`` is not total: an
exact base has none of it, and a snapshot carries the keys of its kind only.
"""

from __future__ import annotations

from typing import NotRequired, TypedDict


class TuningFields(TypedDict):
    """``recall.Tuning`` on its way to the builder process."""

    target: float
    budget_ms: float
    sample: int
    search_k: int | None
    ef: int | None
    max_trees: int | None
    seed: int


class RecallFacts(TypedDict):
    """A build's recall measurement (``recall.tune``, ``recall.tune_hnsw``): ``index.json``'s "recall"."""

    recall_at_10: float
    p50_ms: float
    p95_ms: float
    sample: int  # queries measured
    target_recall: float
    search_budget_ms: float
    target_met: bool
    sweep: list[list[float]]  # [effort, p50 ms, recall@10] per step
    seconds: NotRequired[float]
    search_k: NotRequired[int]  # Annoy: the chosen search_k, where it came from, the trees now and next
    search_k_source: NotRequired[str]
    trees: NotRequired[int]
    next_trees: NotRequired[int]
    ef: NotRequired[int]  # HNSW: the chosen ef and where it came from
    ef_source: NotRequired[str]


class SnapshotMeta(TypedDict, total=False):
    """``index.json``, the commit point of a snapshot (``snapshot``), and a base's ``meta``."""

    format: int
    kind: str
    extractor: str
    model_id: str
    dim: int
    metric: str
    file: str
    ids_file: str
    items: int
    seq: int
    file_size: int
    file_crc32: int
    ids_size: int
    ids_crc32: int
    built_at: str
    build_seconds: float
    recall: RecallFacts
    trees: int  # Annoy
    annoy_build_seconds: float
    full_build: bool  # HNSW (``hnsw``): grown from the last snapshot, or built in full, and why
    full_build_reason: str | None
    full_items: int
    removed_since_full: int
    connectivity: int
    dtype: str
    graph_seconds: float


class GrowFrom(TypedDict):
    """The HNSW snapshot in use that a build grows (``hnsw.write_hnsw_snapshot``)."""

    file: str
    seq: int
    removed_since_full: int
    full_items: int | None


class BuilderArgs(TypedDict):
    """The builder process's one JSON argument (``snapshot.builder_main``)."""

    parent: int
    catalog: str
    extractor: str
    model_id: str
    dim: int
    trees: int
    jobs: int
    kind: str
    previous: GrowFrom | None
    ann: str
    ids: str
    tuning: TuningFields | None


class RecallReport(TypedDict):
    """The ``/stats`` fields of a base (``recall.report``): its measured recall and search effort."""

    target_recall: float
    search_budget_ms: float
    trees_source: str
    next_trees: int | None
    search_k: int | None
    search_k_source: str | None
    ef: int | None
    ef_source: str | None
    trees: int | None
    recall_at_10: float | None
    target_met: bool | None
    p50_ms: float | None
    p95_ms: float | None
    recall_sample: int | None
    recall_note: str | None


class IndexStats(RecallReport):
    """One extractor's index in ``/stats`` (``ExtractorIndex.stats``)."""

    extractor: str
    model_id: str
    mode: str
    indexed: int
    fresh: int
    tombstones: int
    seq: int
    last_build: str
    last_build_seconds: float
    building: bool


class Found(TypedDict):
    """One result of ``ExtractorIndex.search``."""

    image: str
    distance: float
    score: float
