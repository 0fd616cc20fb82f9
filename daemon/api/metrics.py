"""``GET /metrics``: the daemon's numbers in Prometheus text format (prometheus-client).

Everything but the search latency is read from the service's own ``/stats`` answer at scrape
time (a custom collector), so the two can never disagree and no counter is kept twice. The
latency histogram is fed where searches are answered (the search routes). Each app has its own
registry: tests run several daemons in one process, and the process-wide default registry
would mix them (and add the client's Python process metrics, which an operator gets from
node_exporter or systemd anyway).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import datetime
from typing import Literal, TypedDict, cast

from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, InfoMetricFamily, Metric
from prometheus_client.exposition import generate_latest
from prometheus_client.registry import Collector

from ..paths import printable

# The classic text format: what every Prometheus (2.x and 3.x) and agent reads. Spelled out:
# the client's constant for it came in 0.23 (pyproject allows 0.20), and CONTENT_TYPE_LATEST is now 1.0.0.
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# A search answered from a stored vector takes about a millisecond; one that embeds an
# uploaded picture or a text on the CPU tens to hundreds of milliseconds.
SEARCH_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

Outcome = Literal["embedded", "reused", "unchanged", "removed"]
INDEXING_OUTCOMES: tuple[Outcome, ...] = ("embedded", "reused", "unchanged", "removed")
SEARCH_KINDS = ("path", "upload", "text", "combined", "hash")


class _Failed(TypedDict):
    by_reason: dict[str, int]


class _Indexing(TypedDict, total=False):
    embedded: int
    reused: int
    unchanged: int
    removed: int
    failed: dict[str, int]  # by reason


class _Change(TypedDict, total=False):
    state: str


class _Extractor(TypedDict, total=False):
    change: _Change  # a model change under way or failed
    vectors: int
    indexed: int
    fresh: int
    tombstones: int
    last_build_seconds: float
    last_build: str | None
    building: bool


class _Backfill(TypedDict, total=False):
    state: str
    planned: int
    done: int
    embedded: int
    reused: int
    failed: int


class _Folder(TypedDict, total=False):
    folder: str
    state: str
    events: int


class _Fallback(TypedDict):
    configured: str
    running: str


class _Storage(TypedDict, total=False):
    state: str


class Stats(TypedDict, total=False):
    """What the collector reads of the ``/stats`` answer (the API's ``StatsAnswer`` has every field).

    Typed here, not imported: ``/metrics`` reads the answer it is handed and nothing of the daemon.
    """

    version: str
    uptime_s: float
    ready: bool
    pending: int
    images: int | None  # None while starting: the catalogue is not open yet
    files: int
    failed: _Failed
    indexing: _Indexing | None
    extractors: dict[str, _Extractor]
    watch: list[_Folder]
    backfill: _Backfill | None
    fallback: _Fallback | None
    storage: _Storage


def _timestamp(iso: str | None) -> float | None:
    if not iso:
        return None
    try:
        return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


class StatsCollector(Collector):
    """Turns one ``/stats`` answer into metric families, at each scrape."""

    def __init__(
        self, stats: Callable[[], Mapping[str, object]], reasons: Iterable[str] = (), watch_states: Iterable[str] = ()
    ) -> None:
        self._stats = stats
        # Every known failure reason is exported from the start, at 0: Prometheus' increase() and
        # rate() need a sample before the first failure, or that failure never shows in them.
        self._reasons = tuple(str(r) for r in reasons)
        self._watch_states = tuple(str(s) for s in watch_states)  # each folder gets a 0/1 series per state

    def collect(self) -> Iterator[Metric]:
        stats = cast(Stats, self._stats())  # the JSON answer, read by the keys above
        yield InfoMetricFamily("imgsearchd", "the daemon's version", value={"version": str(stats["version"])})
        yield GaugeMetricFamily("imgsearchd_up_seconds", "seconds since the daemon started", value=stats["uptime_s"])
        yield GaugeMetricFamily("imgsearchd_ready", "1 once models and indexes are loaded", value=int(stats["ready"]))
        yield GaugeMetricFamily("imgsearchd_queue_depth", "files waiting to be indexed", value=stats["pending"])
        yield from self._health(stats)
        yield from self._catalogue(stats)
        yield from self._indexing(stats.get("indexing"))
        yield from self._extractors(stats["extractors"])
        yield from self._watch(stats["watch"])
        yield from self._backfill(stats.get("backfill"))

    def _health(self, stats: Stats) -> Iterator[Metric]:
        """What /health says, as numbers: degraded (1) while the catalogue cannot be written or a
        configured model runs on its fallback; and each running model, 1 where it stands in."""
        fallback = stats.get("fallback")
        storage_ok = stats.get("storage", {}).get("state", "ok") == "ok"
        failed = any(e.get("change", {}).get("state") == "failed" for e in stats["extractors"].values())
        yield GaugeMetricFamily(
            "imgsearchd_health_degraded",
            "1 while /health says degraded: the catalogue cannot be written, a model runs on its fallback, "
            "or a model change failed",
            value=int(bool(stats["ready"]) and (fallback is not None or not storage_ok or failed)),
        )
        series = GaugeMetricFamily(
            "imgsearchd_extractor_fallback",
            "1: the configured extractor cannot load and the running one stands in (GET /stats fallback says why)",
            labels=["configured", "running"],
        )
        if fallback is not None:
            series.add_metric([fallback["configured"], fallback["running"]], 1)
        for name in sorted(stats["extractors"]):
            if fallback is None or name != fallback["running"]:
                series.add_metric([name, name], 0)
        yield series

    def _catalogue(self, stats: Stats) -> Iterator[Metric]:
        if stats["images"] is None:  # still starting: the catalogue is not open yet
            return
        yield GaugeMetricFamily("imgsearchd_files", "files in the catalogue, in any state", value=stats["files"])
        yield GaugeMetricFamily("imgsearchd_images_indexed", "files indexed (catalogue)", value=stats["images"])
        failed = GaugeMetricFamily(
            "imgsearchd_images_failed", "files that could not be indexed (catalogue), by reason", labels=["reason"]
        )
        for reason, count in sorted(self._with_known_reasons(stats["failed"]["by_reason"]).items()):
            failed.add_metric([reason], count)
        yield failed

    def _indexing(self, progress: _Indexing | None) -> Iterator[Metric]:
        if not progress:
            return
        done = CounterMetricFamily(
            "imgsearchd_indexing_files", "files the indexer has handled since start, by outcome", labels=["outcome"]
        )
        for outcome in INDEXING_OUTCOMES:
            done.add_metric([outcome], progress.get(outcome, 0))
        yield done
        failed = CounterMetricFamily(
            "imgsearchd_indexing_failed", "files the indexer failed on since start, by reason", labels=["reason"]
        )
        for reason, count in sorted(self._with_known_reasons(progress.get("failed", {})).items()):
            failed.add_metric([reason], count)
        yield failed

    def _with_known_reasons(self, counts: dict[str, int]) -> dict[str, int]:
        return {**dict.fromkeys(self._reasons, 0), **{str(k): v for k, v in counts.items()}}

    def _extractors(self, extractors: dict[str, _Extractor]) -> Iterator[Metric]:
        by = ["extractor"]
        vectors = GaugeMetricFamily("imgsearchd_vectors", "vectors stored in the catalogue, per extractor", labels=by)
        size = GaugeMetricFamily("imgsearchd_index_vectors", "vectors in the built index snapshot", labels=by)
        fresh = GaugeMetricFamily("imgsearchd_index_fresh_vectors", "vectors added since the last build", labels=by)
        dead = GaugeMetricFamily("imgsearchd_index_tombstones", "vectors removed since the last build", labels=by)
        build = GaugeMetricFamily("imgsearchd_index_build_seconds", "how long the last index build took", labels=by)
        built = GaugeMetricFamily(
            "imgsearchd_index_last_build_timestamp_seconds", "when the index in use was built", labels=by
        )
        building = GaugeMetricFamily("imgsearchd_index_building", "1 while an index build runs", labels=by)
        for name, facts in sorted(extractors.items()):
            vectors.add_metric([name], facts.get("vectors", 0))
            size.add_metric([name], facts.get("indexed", 0))
            fresh.add_metric([name], facts.get("fresh", 0))
            dead.add_metric([name], facts.get("tombstones", 0))
            build.add_metric([name], facts.get("last_build_seconds", 0))
            when = _timestamp(facts.get("last_build"))
            if when is not None:
                built.add_metric([name], when)
            building.add_metric([name], int(bool(facts.get("building"))))
        yield from (vectors, size, fresh, dead, build, built, building)

    def _backfill(self, backfill: _Backfill | None) -> Iterator[Metric]:
        """The last ``imgsearchd backfill`` on this catalogue (none: no series)."""
        if not backfill or "planned" not in backfill:
            return
        files = GaugeMetricFamily("imgsearchd_backfill_files", "the last backfill's files, by stage", labels=["stage"])
        for stage in ("planned", "done", "embedded", "reused", "failed"):
            files.add_metric([stage], backfill[stage])
        yield files
        yield GaugeMetricFamily(
            "imgsearchd_backfill_running",
            "1 while a backfill writes to this catalogue",
            value=int(backfill["state"] == "running"),
        )

    def _watch(self, folders: list[_Folder]) -> Iterator[Metric]:
        state = GaugeMetricFamily(
            "imgsearchd_watch_state", "1 for each watched folder's current state", labels=["folder", "state"]
        )
        events = CounterMetricFamily("imgsearchd_watch_events", "file events seen per folder", labels=["folder"])
        for folder in folders:
            label = printable(str(folder["folder"]))
            current = str(folder["state"])
            known = self._watch_states
            for name in (*known, *([current] if current not in known else [])):
                state.add_metric([label, name], int(name == current))
            if "events" in folder:
                events.add_metric([label], folder["events"])
        yield state
        yield events


class Metrics:
    """One daemon's registry: the stats collector and the search latency histogram."""

    def __init__(
        self, stats: Callable[[], Mapping[str, object]], reasons: Iterable[str] = (), watch_states: Iterable[str] = ()
    ) -> None:
        """``reasons``: the failure reasons the loader can give, exported at 0 before any failure;
        ``watch_states``: a watched folder's states (the watcher's), each folder's 0 or 1."""
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(StatsCollector(stats, reasons, watch_states))
        self.search_seconds = Histogram(
            "imgsearchd_search_seconds",
            "time to answer a search that succeeded, by query kind",
            ["kind"],
            buckets=SEARCH_BUCKETS,
            registry=self.registry,
        )
        for kind in SEARCH_KINDS:  # each kind's series exists, at 0, before its first search
            self.search_seconds.labels(kind)

    def observe_search(self, kind: str, started: float) -> None:
        """Record one answered search that began at ``started`` (``time.perf_counter()``)."""
        self.search_seconds.labels(kind).observe(time.perf_counter() - started)

    def render(self) -> bytes:
        return generate_latest(self.registry)
