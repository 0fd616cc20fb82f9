"""The HNSW index kind (daemon/search/hnsw.py): measured ef, growth by the catalogue's changes, compaction, kind switches.

Real catalogues, real usearch snapshots built and grown by the builder process, answers
checked against brute force over the catalogue's live vectors.
"""

from __future__ import annotations

import logging
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from imgsearchd.config import ConfigError, load_config
from imgsearchd.search.index import ExtractorIndex
from imgsearchd.search.scoped import Method, search_folder
from imgsearchd.store.catalog import Catalog
from imgsearchd.store.rows import FileResult

from helpers import write_config
from index_helpers import EXTRACTOR, MODEL, add_files, brute_force_recall, index_files, path_of, photo_like

DIM = 64
QUIET = dict(rebuild_after_changes=10**9, rebuild_after_seconds=3600.0)  # no automatic rebuilds


def open_index(catalog: Catalog, directory: Path, **kw) -> ExtractorIndex:
    index = ExtractorIndex(
        catalog, directory, EXTRACTOR, MODEL, DIM, exact_below=100, recall_sample=100, **{**QUIET, **kw}
    )
    index.open()
    assert index.wait_idle(120)
    return index


def exact_top10(catalog: Catalog, query: np.ndarray) -> list[int]:
    _, ids, vectors = catalog.all_vectors(EXTRACTOR, MODEL, DIM)
    vectors = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    return ids[np.argsort(-(vectors @ (query / np.linalg.norm(query))))[:10]].tolist()


def test_hnsw_is_the_default_and_its_measured_recall_is_the_brute_force_recall(tmp_path):
    with Catalog(tmp_path / "catalog.db") as catalog:
        add_files(catalog, photo_like(3000, DIM, seed=3, topic_size=500))
        index = open_index(catalog, tmp_path / "index")
        try:
            stats = index.stats()
            measured = index._state.base.meta["recall"]
            assert stats["mode"] == "hnsw" and stats["indexed"] == 3000
            assert (stats["ef"], stats["ef_source"]) == (measured["ef"], "auto") and stats["ef"] >= 16
            assert stats["search_k"] is None and stats["trees"] is None and stats["next_trees"] is None
            assert stats["target_met"] is True and stats["recall_at_10"] >= 0.95 and stats["recall_note"] is None
            assert 0 < stats["p50_ms"] <= stats["search_budget_ms"]
            # the builder's figure is what the daemon's own query path finds for the same queries
            assert abs(brute_force_recall(index, catalog, 100) - measured["recall_at_10"]) <= 0.02
            assert [f.rsplit(".", 1)[-1] for f in index_files(index.directory)] == ["npy", "usearch"]
        finally:
            index.close()


def test_a_rebuild_grows_the_graph_by_the_changes_and_answers_like_brute_force(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="imgsearchd.search.index")
    data = photo_like(2600, DIM, seed=4, topic_size=400)
    with Catalog(tmp_path / "catalog.db") as catalog:
        add_files(catalog, data[:2000])
        index = open_index(catalog, tmp_path / "index", ef=400)  # ef this deep: every query exact here
        try:
            first = index._state.base.files()[0].name
            add_files(catalog, data[2000:], start=2000)  # 600 new files
            catalog.remove_paths([path_of(k) for k in range(100)])  # 100 removed
            changed = photo_like(50, DIM, seed=99)  # 50 files whose pictures changed
            add_files(catalog, changed, start=500, tag="-edited")
            index.rebuild()
            meta = index._state.base.meta
            assert meta["full_build"] is False and meta["removed_since_full"] == 150  # removed + replaced
            assert index.stats()["indexed"] == 2500 and index.stats()["fresh"] == 0
            assert index._state.base.files()[0].name != first and not (index.directory / first).exists()
            # the graph now holds exactly the catalogue's live vectors: brute force agrees on every kind of change
            for q in (data[50], data[2300], changed[7], data[507]):
                assert [h.id for h in index.query(q, 10)] == exact_top10(catalog, q)
        finally:
            index.close()
        # a restart serves the grown snapshot without building
        again = open_index(catalog, tmp_path / "index", ef=400)
        try:
            assert again._state.base.seq == catalog.current_seq() and again.stats()["building"] is False
            assert [h.id for h in again.query(data[2300], 10)] == exact_top10(catalog, data[2300])
        finally:
            again.close()


def test_removals_past_a_quarter_of_the_graph_bring_a_full_build(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="imgsearchd.search.index")
    with Catalog(tmp_path / "catalog.db") as catalog:
        add_files(catalog, photo_like(1200, DIM, seed=5, topic_size=300))
        index = open_index(catalog, tmp_path / "index")
        try:
            catalog.remove_paths([path_of(k) for k in range(200)])  # 1/6: grown
            index.rebuild()
            assert index._state.base.meta["full_build"] is False
            catalog.remove_paths([path_of(k) for k in range(200, 300)])  # 300 of 1200 in all: a quarter
            index.rebuild()
            meta = index._state.base.meta
            assert meta["full_build"] is True and meta["removed_since_full"] == 0 and meta["items"] == 900
            assert any("full HNSW build" in r.message for r in caplog.records)
        finally:
            index.close()


def test_unchanged_pictures_are_left_alone_and_a_lost_graph_file_brings_a_full_build(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="imgsearchd.search.index")
    data = photo_like(800, DIM, seed=14, topic_size=200)
    with Catalog(tmp_path / "catalog.db") as catalog:
        add_files(catalog, data)
        index = open_index(catalog, tmp_path / "index")
        try:
            # 300 files re-recorded with the same picture (touched, re-scanned): no change to the graph
            catalog.record_batch(
                FileResult(path_of(k), 1000 + k, 10**6 + k, f"hash-{k}", vectors={EXTRACTOR: (MODEL, data[k])})
                for k in range(300)
            )
            index.rebuild()
            meta = index._state.base.meta
            assert meta["full_build"] is False and meta["removed_since_full"] == 0 and meta["items"] == 800
            # the graph file vanishes under the running daemon: the next build starts from the catalogue
            index._state.base.files()[0].unlink()
            add_files(catalog, photo_like(10, DIM, seed=15), start=800)
            index.rebuild()
            meta = index._state.base.meta
            assert meta["full_build"] is True and meta["items"] == 810
            assert any("cannot be read back" in r.message for r in caplog.records)
            assert [h.id for h in index.query(data[5], 10)] == exact_top10(catalog, data[5])
        finally:
            index.close()


def test_a_graph_emptied_during_its_build_answers_nothing_instead_of_failing(tmp_path):
    with Catalog(tmp_path / "catalog.db") as catalog:
        add_files(catalog, photo_like(300, DIM, seed=16, topic_size=100))
        index = open_index(catalog, tmp_path / "index")
        try:
            catalog.remove_paths(["/photos"])  # everything gone; the build was decided before the read
            index.rebuild()
            assert index.stats()["mode"] == "hnsw" and index.stats()["indexed"] == 0
            assert index.query(photo_like(1, DIM, seed=17)[0], 10) == []
            ids = add_files(catalog, photo_like(3, DIM, seed=18), start=900)  # fresh vectors still found
            assert index.query(photo_like(3, DIM, seed=18)[1], 1)[0].id == ids[1]
        finally:
            index.close()


def test_switching_kind_rebuilds_while_the_old_snapshot_serves(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="imgsearchd.search.index")
    data = photo_like(1500, DIM, seed=6, topic_size=300)
    with Catalog(tmp_path / "catalog.db") as catalog:
        add_files(catalog, data)
        annoy = open_index(catalog, tmp_path / "index", kind="annoy")
        annoy.close()
        index = ExtractorIndex(
            catalog, tmp_path / "index", EXTRACTOR, MODEL, DIM, exact_below=100, rebuild_after_changes=10**9
        )
        index.open()
        try:
            assert index.stats()["mode"] == "annoy"  # served at once, not exact search
            assert index.wait_idle(120) and index.stats()["mode"] == "hnsw"
            assert any("index.kind is hnsw" in r.message for r in caplog.records)
            assert [f for f in index_files(index.directory) if f.endswith(".ann")] == []
            assert index.query(data[9], 1)[0].distance < 0.05
        finally:
            index.close()


def test_threads_searching_at_once_get_the_answers_one_thread_gets(tmp_path):
    data = photo_like(1500, DIM, seed=12, topic_size=300)
    with Catalog(tmp_path / "catalog.db") as catalog:
        add_files(catalog, data)
        index = open_index(catalog, tmp_path / "index")
        try:
            queries = photo_like(200, DIM, seed=13, topic_size=300)
            alone = [[h.id for h in index.query(q, 10)] for q in queries]
            with ThreadPoolExecutor(4) as pool:
                together = list(pool.map(lambda q: [h.id for h in index.query(q, 10)], np.concatenate([queries] * 3)))
            assert together == alone * 3
        finally:
            index.close()


def test_a_corrupt_graph_file_is_rejected_and_rebuilt(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="imgsearchd.search.index")
    with Catalog(tmp_path / "catalog.db") as catalog:
        add_files(catalog, photo_like(600, DIM, seed=7, topic_size=300))
        open_index(catalog, tmp_path / "index").close()
        graph = next((tmp_path / "index").glob("snapshot-*.usearch"))
        with open(graph, "r+b") as f:
            f.seek(os.path.getsize(graph) // 2)
            f.write(b"\xff" * 64)
        index = open_index(catalog, tmp_path / "index")
        try:
            assert any("CRC-32 mismatch" in r.message for r in caplog.records)
            assert index.stats()["mode"] == "hnsw" and index.stats()["indexed"] == 600
        finally:
            index.close()


def test_a_budget_too_small_is_reported_with_the_remedy(tmp_path, caplog):
    with Catalog(tmp_path / "catalog.db") as catalog:
        add_files(catalog, photo_like(600, DIM, seed=8, topic_size=300))
        index = open_index(catalog, tmp_path / "index", search_budget_ms=0.0001)
        try:
            stats = index.stats()
            assert stats["target_met"] is False and stats["ef"] == 16
            assert "index.search_budget_ms" in stats["recall_note"]
            assert any("short of the target" in r.message for r in caplog.records)
        finally:
            index.close()


def test_folder_search_over_the_graph_matches_brute_force(tmp_path):
    data = photo_like(2000, DIM, seed=9, topic_size=250)
    with Catalog(tmp_path / "catalog.db") as catalog:
        add_files(catalog, data)  # path_of: 1000 files per folder, /photos/0000 and /photos/0001
        index = open_index(catalog, tmp_path / "index")
        try:
            catalog.remove_paths([path_of(k) for k in range(1000, 1040)])  # tombstones inside the folder
            add_files(catalog, photo_like(30, DIM, seed=10), start=1990, tag="-new")  # fresh vectors
            hits = total = 0
            for q in photo_like(20, DIM, seed=11, topic_size=250):
                found = search_folder(index, q, "/photos/0001", 10, exact_cost=float("inf"))
                exact = search_folder(index, q, "/photos/0001", 10, exact_cost=0.0)
                assert found.method == Method.OVERFETCH and exact.method == Method.EXACT
                assert all(p.startswith("/photos/0001/") for _, p in found.hits)
                hits += len({h.id for h, _ in found.hits} & {h.id for h, _ in exact.hits})
                total += len(exact.hits)
            assert hits / total >= 0.95
        finally:
            index.close()


@pytest.mark.parametrize(
    ("index", "message"),
    [({"kind": "faiss"}, 'index.kind must be "hnsw" or "annoy"'), ({"ef": 0}, "index.ef must be greater than 0")],
)
def test_kind_and_ef_settings_are_checked(tmp_path, index, message):
    path = write_config(tmp_path / "bad.toml", {"index": index})
    with pytest.raises(ConfigError, match=message) as caught:
        load_config(path)
    assert str(path) in str(caught.value)
