"""Tests for imgsearchd.search.index: real SQLite catalogue, real Annoy files, no images."""

from __future__ import annotations

import itertools
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from imgsearchd.search.index import ExtractorIndex
from imgsearchd.search.snapshot import META_NAME
from imgsearchd.store.catalog import Catalog
from imgsearchd.store.rows import FileResult

from helpers import wait_for
from index_helpers import (
    EXTRACTOR,
    MODEL,
    add_files,
    exact_top,
    index_files,
    mappings_under,
    open_fds_under,
    path_of,
    photo_like,
    random_unit,
)

DIM = 32
QUIET = dict(rebuild_after_changes=10**9, rebuild_after_seconds=3600.0)  # no automatic rebuilds


@pytest.fixture
def catalog(tmp_path: Path):
    with Catalog(tmp_path / "catalog.db") as cat:
        yield cat


def make_index(catalog: Catalog, tmp_path: Path, **kw: Any) -> ExtractorIndex:
    """An opened small-dimension index that always uses Annoy, with its first build done."""
    settings: dict[str, Any] = dict(
        dim=DIM, kind="annoy", trees=4, search_k=10**6, exact_below=0, recall_sample=30, **QUIET
    )
    # exhaustive search_k; a small recall sample, as the exhaustive search is slow
    settings.update(kw)
    dim = settings.pop("dim")
    index = ExtractorIndex(
        catalog, tmp_path / "index" / EXTRACTOR, EXTRACTOR, settings.pop("model_id", MODEL), dim, **settings
    )
    index.open()
    assert index.wait_idle(60)
    return index


def top_id(index: ExtractorIndex, vector: np.ndarray) -> int:
    return index.query(vector, limit=1)[0].id


# -- recall --------------------------------------------------------------------------


def test_recall_at_10_on_20k_with_default_settings(catalog, tmp_path):
    data = photo_like(20_100, 512, seed=1)
    vectors, queries = data[:20_000], data[20_000:]  # held out: new pictures, not stored ones
    ids = add_files(catalog, vectors)
    index = ExtractorIndex(catalog, tmp_path / "index" / EXTRACTOR, EXTRACTOR, MODEL, 512)  # the defaults
    index.open()
    assert index.wait_idle(300)
    try:
        stats = index.stats()
        assert stats["mode"] == "hnsw" and stats["indexed"] == 20_000 and stats["fresh"] == 0
        truth = exact_top(vectors, ids, queries, 10)
        found = [[h.id for h in index.query(q, 10)] for q in queries]
        recall = np.mean([len(set(f) & set(t)) / 10 for f, t in zip(found, truth)])
        assert recall >= 0.95, recall
    finally:
        index.close()


# -- results -------------------------------------------------------------------------


@pytest.mark.parametrize("exact_below", [0, 10**6], ids=["annoy", "exact"])
def test_results_are_ranked_scored_and_cut(catalog, tmp_path, exact_below):
    vectors = random_unit(500, DIM, seed=2)
    ids = add_files(catalog, vectors)
    index = make_index(catalog, tmp_path, exact_below=exact_below)
    try:
        assert index.stats()["mode"] == ("annoy" if exact_below == 0 else "exact")
        q = random_unit(1, DIM, seed=3)[0]
        hits = index.query(q * 7.0, limit=20)  # any length: the query is normalised
        truth = exact_top(vectors, ids, q[None], 20)[0]
        assert [h.id for h in hits] == list(truth)
        scores = vectors[np.searchsorted(ids, [h.id for h in hits])] @ q
        assert np.allclose([h.score for h in hits], scores, atol=1e-4)
        assert np.allclose([h.distance for h in hits], np.sqrt(2 - 2 * scores), atol=1e-3)
        assert all(a.distance <= b.distance for a, b in itertools.pairwise(hits))
        cut = hits[5].distance
        assert [h.id for h in index.query(q, 20, max_distance=cut)] == [h.id for h in hits if h.distance <= cut]
        assert hits[0].id not in [h.id for h in index.query(q, 5, exclude_ids=[hits[0].id])]
        assert index.search(q, 3) == [
            {"image": path_of(int(np.searchsorted(ids, h.id))), "distance": h.distance, "score": h.score}
            for h in index.query(q, 3)
        ]
        with pytest.raises(ValueError):
            index.query(np.zeros(DIM))
        with pytest.raises(ValueError):
            index.query(np.ones(DIM + 1))
    finally:
        index.close()


def test_small_collection_uses_exact_search_without_files(catalog, tmp_path):
    add_files(catalog, random_unit(300, DIM))
    index = make_index(catalog, tmp_path, exact_below=1000)
    try:
        assert index.stats()["mode"] == "exact"
        assert index_files(index.directory) == []
        # growing past the threshold switches to Annoy at the next rebuild
        add_files(catalog, random_unit(800, DIM, seed=5), start=300)
        index.refresh()
        assert index.stats()["fresh"] == 800
        index.rebuild()
        assert index.stats()["mode"] == "annoy" and index.stats()["indexed"] == 1100
        assert len(index_files(index.directory)) == 2  # .ann and .ids.npy
    finally:
        index.close()


# -- freshness -----------------------------------------------------------------------


def test_added_vector_is_found_before_any_rebuild(catalog, tmp_path):
    add_files(catalog, random_unit(2000, DIM))
    index = make_index(catalog, tmp_path)
    try:
        before = index_files(index.directory)
        new = random_unit(1, DIM, seed=9)
        (new_id,) = add_files(catalog, new, start=2000)
        assert top_id(index, new[0]) == new_id  # query() refreshes by itself
        stats = index.stats()
        assert (stats["indexed"], stats["fresh"], stats["tombstones"], stats["building"]) == (2000, 1, 0, False)
        assert index_files(index.directory) == before  # no rebuild happened
        assert index.search(new[0], 1)[0]["image"] == path_of(2000)
    finally:
        index.close()


def test_removed_vector_never_comes_back(catalog, tmp_path):
    vectors = random_unit(2000, DIM)
    ids = add_files(catalog, vectors)
    index = make_index(catalog, tmp_path)
    try:
        assert top_id(index, vectors[7]) == ids[7]
        catalog.remove_paths([path_of(7)])
        assert ids[7] not in [h.id for h in index.query(vectors[7], 50)]
        assert index.stats()["tombstones"] == 1
        index.rebuild()
        assert index.stats()["tombstones"] == 0 and index.stats()["indexed"] == 1999
        assert ids[7] not in [h.id for h in index.query(vectors[7], 50)]
    finally:
        index.close()


def test_changed_file_is_found_with_its_new_vector_only(catalog, tmp_path):
    vectors = random_unit(2000, DIM)
    ids = add_files(catalog, vectors)
    index = make_index(catalog, tmp_path)
    try:
        new_vec = random_unit(1, DIM, seed=11)[0]
        catalog.record_batch(
            [
                FileResult(
                    path=path_of(3), size=5, mtime_ns=5, content_hash="edited", vectors={EXTRACTOR: (MODEL, new_vec)}
                )
            ]
        )
        new_id = catalog.get(path_of(3)).id
        assert new_id != ids[3]
        for phase in ("fresh", "rebuilt"):
            assert top_id(index, new_vec) == new_id, phase
            old_hits = [h.id for h in index.query(vectors[3], 50)]
            assert ids[3] not in old_hits and old_hits[0] != new_id, phase
            index.rebuild()
    finally:
        index.close()


def test_vector_replaced_under_the_same_id_is_searched_fresh(catalog, tmp_path):
    vectors = random_unit(1000, DIM)
    ids = add_files(catalog, vectors)
    index = make_index(catalog, tmp_path)
    try:
        new_vec = random_unit(1, DIM, seed=12)[0]  # same content hash, re-embedded
        catalog.record_batch(
            [
                FileResult(
                    path=path_of(8), size=1008, mtime_ns=8, content_hash="hash-8", vectors={EXTRACTOR: (MODEL, new_vec)}
                )
            ]
        )
        assert catalog.get(path_of(8)).id == ids[8]
        assert top_id(index, new_vec) == ids[8]
        assert index.query(vectors[8], 1)[0].id != ids[8]
        stats = index.stats()
        assert (stats["fresh"], stats["tombstones"]) == (1, 1)  # the snapshot's copy is hidden
    finally:
        index.close()


def test_moved_file_keeps_its_id_and_reports_its_new_path(catalog, tmp_path):
    vectors = random_unit(500, DIM)
    ids = add_files(catalog, vectors)
    index = make_index(catalog, tmp_path)
    try:
        catalog.move(path_of(4), "/elsewhere/moved.jpg")
        assert top_id(index, vectors[4]) == ids[4]
        assert index.search(vectors[4], 1)[0]["image"] == "/elsewhere/moved.jpg"
        assert index.stats()["fresh"] == 0
    finally:
        index.close()


def test_rebuild_starts_by_itself_after_enough_changes_or_time(catalog, tmp_path):
    add_files(catalog, random_unit(500, DIM))
    index = make_index(catalog, tmp_path, rebuild_after_changes=20, rebuild_after_seconds=3600.0)
    try:
        add_files(catalog, random_unit(19, DIM, seed=1), start=500)
        index.refresh()
        assert not index.maybe_rebuild() and index.stats()["fresh"] == 19
        add_files(catalog, random_unit(1, DIM, seed=2), start=519)
        index.refresh()  # the indexer calls this after each batch; it may start the build
        wait_for(lambda: index.stats()["indexed"] == 520 and index.stats()["fresh"] == 0)
    finally:
        index.close()
    index = make_index(catalog, tmp_path, rebuild_after_changes=10**9, rebuild_after_seconds=0.5)
    try:
        add_files(catalog, random_unit(1, DIM, seed=3), start=520)  # nobody calls refresh: the timer does
        wait_for(lambda: index.stats()["indexed"] == 521 and index.stats()["fresh"] == 0)
    finally:
        index.close()


# -- concurrency ---------------------------------------------------------------------


def test_searches_during_three_swaps_see_no_error_and_no_stale_result(catalog, tmp_path):
    stable = random_unit(3000, DIM, seed=20)
    doomed = random_unit(300, DIM, seed=21)
    stable_ids = list(add_files(catalog, stable))
    doomed_ids = list(add_files(catalog, doomed, start=3000))
    index = make_index(catalog, tmp_path)
    vectors = dict(zip(stable_ids + doomed_ids, np.concatenate([stable, doomed])))
    live = list(stable_ids)  # ids a search must find at rank 1 (appended only once refreshed)
    removed: set[int] = set()  # ids a search must never return (added only once refreshed)
    errors: list[str] = []
    queries = [0]
    stop = threading.Event()

    def searcher(seed: int) -> None:
        rng = np.random.default_rng(seed)
        while not stop.is_set():
            try:
                gone = set(removed)
                if rng.random() < 0.5:
                    target = live[rng.integers(len(live))]
                    hits = index.query(vectors[target], 5)
                    if hits[0].id != target or hits[0].distance > 1e-3:
                        errors.append(f"{target} not found first: {hits[:2]}")
                else:
                    target = doomed_ids[rng.integers(len(doomed_ids))]
                    hits = index.query(vectors[target], 5)
                if gone & {h.id for h in hits}:
                    errors.append(f"removed ids returned: {gone & {h.id for h in hits}}")
                queries[0] += 1
            except Exception as exc:
                errors.append(repr(exc))

    threads = [threading.Thread(target=searcher, args=(s,)) for s in range(8)]
    for t in threads:
        t.start()
    try:
        first = index_files(index.directory)
        for round_ in range(3):
            new = random_unit(50, DIM, seed=100 + round_)
            new_ids = add_files(catalog, new, start=4000 + 50 * round_)
            vectors.update(zip(new_ids, new))
            index.refresh()
            live.extend(new_ids)
            batch = doomed_ids[100 * round_ : 100 * round_ + 100]
            catalog.remove_paths([path_of(3000 + doomed_ids.index(i)) for i in batch])
            index.refresh()
            removed.update(batch)
            time.sleep(0.2)
            index.rebuild()
            time.sleep(0.2)
    finally:
        stop.set()
        for t in threads:
            t.join()
    try:
        assert not errors, errors[:5]
        assert queries[0] > 100
        stats = index.stats()
        assert (stats["indexed"], stats["fresh"], stats["tombstones"]) == (3150, 0, 0)
        files = index_files(index.directory)
        assert len(files) == 2 and not set(files) & set(first)  # old snapshots deleted
        ann_fds = [p for p in open_fds_under(index.directory) if p.endswith(".ann")]
        assert [os.path.basename(p) for p in ann_fds] == [f for f in files if f.endswith(".ann")]
        maps = mappings_under(index.directory)
        assert len(maps) == 1 and files[0] in maps[0] and "(deleted)" not in maps[0], maps
    finally:
        index.close()
    assert open_fds_under(index.directory) == [] and mappings_under(index.directory) == []


# -- crashes and damaged files -------------------------------------------------------


CHILD = """
import sys
from imgsearchd.store.catalog import Catalog
from imgsearchd.search.index import ExtractorIndex
catalog = Catalog(sys.argv[1])
index = ExtractorIndex(catalog, sys.argv[2], "clip", "model-x", int(sys.argv[3]), kind="annoy", trees=20, exact_below=0,
                       rebuild_after_changes=10**9, rebuild_after_seconds=3600.0)
index.open()
print("open", flush=True)
index.rebuild(wait=True)
print("rebuilt", flush=True)
"""


def _children(pid: int) -> list[int]:
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    if int(f.read().rsplit(")", 1)[1].split()[1]) == pid:
                        out.append(int(entry))
            except (OSError, IndexError, ValueError):
                pass
    return out


def _gone(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except OSError:
        return True


@pytest.mark.fault
def test_sigkill_during_rebuild_leaves_previous_snapshot_usable(catalog, tmp_path, caplog):
    vectors = random_unit(20_000, DIM, seed=30)
    ids = add_files(catalog, vectors)
    index = make_index(catalog, tmp_path, trees=20)
    directory = index.directory
    snapshot = index_files(directory)
    index.close()
    extra = random_unit(10, DIM, seed=31)
    extra_ids = add_files(catalog, extra, start=20_000)
    catalog.remove_paths([path_of(0)])

    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(catalog.path), str(directory), str(DIM)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert child.stdout.readline().strip() == "open"
        deadline = time.monotonic() + 30
        while not any(p.name.startswith(".build-") and p.stat().st_size > 0 for p in directory.iterdir()):
            assert time.monotonic() < deadline, "the build never started"
            time.sleep(0.001)
        (builder,) = _children(child.pid)
        os.kill(builder, signal.SIGSTOP)  # freeze the build half-way: the temp file is partly written
        assert [p.name for p in directory.iterdir() if p.name.startswith(".build-")]
        os.kill(child.pid, signal.SIGKILL)
        child.wait(10)
    finally:
        child.kill()
    assert child.returncode == -signal.SIGKILL
    wait_for(lambda: _gone(builder), 10)  # the builder dies with the daemon
    assert index_files(directory) == snapshot

    caplog.set_level(logging.INFO, logger="imgsearchd.search.index")
    index = make_index(catalog, tmp_path, trees=20)
    try:
        assert "loaded snapshot" in caplog.text and "rejected" not in caplog.text and "rebuilding" not in caplog.text
        assert index_files(directory) == snapshot and not [p for p in directory.iterdir() if p.name.startswith(".")]
        stats = index.stats()
        assert (stats["indexed"], stats["fresh"], stats["tombstones"]) == (20_000, 10, 1)
        assert top_id(index, extra[3]) == extra_ids[3]
        assert ids[0] not in [h.id for h in index.query(vectors[0], 10)]
        assert top_id(index, vectors[5]) == ids[5]
        index.rebuild()
        assert index.stats()["indexed"] == 20_009
    finally:
        index.close()


def _truncate(d: Path, meta: dict) -> None:
    path = d / meta["file"]
    os.truncate(path, path.stat().st_size // 2)


def _flip_byte(d: Path, meta: dict) -> None:
    with open(d / meta["file"], "r+b") as f:
        f.seek(meta["file_size"] // 2)
        byte = f.read(1)
        f.seek(meta["file_size"] // 2)
        f.write(bytes([byte[0] ^ 0xFF]))


def _garble_ids(d: Path, meta: dict) -> None:
    (d / meta["ids_file"]).write_bytes(b"\0" * meta["ids_size"])


def _garble_meta(d: Path, meta: dict) -> None:
    (d / META_NAME).write_text('{"format": 1, "model_id": ')


def _delete_ann(d: Path, meta: dict) -> None:
    (d / meta["file"]).unlink()


@pytest.mark.parametrize(
    "damage, message",
    [
        (_truncate, "is truncated"),
        (_flip_byte, "is corrupt"),
        (_garble_ids, "is corrupt"),
        (_garble_meta, "is unreadable"),
        (_delete_ann, "is missing"),
    ],
)
def test_damaged_snapshot_is_detected_logged_and_rebuilt(catalog, tmp_path, caplog, damage, message):
    import json

    vectors = random_unit(2000, DIM)
    ids = add_files(catalog, vectors)
    index = make_index(catalog, tmp_path)
    directory = index.directory
    old = index_files(directory)
    index.close()
    damage(directory, json.loads((directory / META_NAME).read_text()))

    caplog.set_level(logging.INFO, logger="imgsearchd.search.index")
    index = make_index(catalog, tmp_path)
    try:
        warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
        assert len(warnings) == 1 and message in warnings[0] and "rebuilding" in warnings[0], caplog.text
        assert index.stats()["mode"] == "annoy" and index.stats()["indexed"] == 2000
        assert index_files(directory) and not set(index_files(directory)) & set(old)
        assert top_id(index, vectors[42]) == ids[42]
    finally:
        index.close()


# -- start-up ------------------------------------------------------------------------


def test_restart_with_matching_snapshot_does_not_rebuild(catalog, tmp_path, caplog):
    vectors = random_unit(2000, DIM)
    ids = add_files(catalog, vectors)
    index = make_index(catalog, tmp_path)
    files, last_build = index_files(index.directory), index.stats()["last_build"]
    index.close()

    caplog.set_level(logging.INFO, logger="imgsearchd.search.index")
    index = make_index(catalog, tmp_path)
    try:
        time.sleep(0.3)  # give a wrongly scheduled build the chance to show
        assert index.wait_idle(0) and not index.stats()["building"]
        assert index_files(index.directory) == files and index.stats()["last_build"] == last_build
        assert "loaded snapshot" in caplog.text and "rebuil" not in caplog.text
        assert top_id(index, vectors[1]) == ids[1]
    finally:
        index.close()


def test_restart_with_another_model_rebuilds(catalog, tmp_path, caplog):
    vectors = random_unit(2000, DIM)
    ids = add_files(catalog, vectors)
    index = make_index(catalog, tmp_path)
    files = index_files(index.directory)
    index.close()
    new_vectors = random_unit(2000, DIM, seed=40)
    assert list(add_files(catalog, new_vectors, model="model-y")) == list(ids)  # same files, re-embedded

    caplog.set_level(logging.INFO, logger="imgsearchd.search.index")
    index = make_index(catalog, tmp_path, model_id="model-y")
    try:
        assert "built for model 'model-x'" in caplog.text and "rebuilding" in caplog.text
        assert index_files(index.directory) != files
        assert index.stats()["indexed"] == 2000 and index.stats()["model_id"] == "model-y"
        assert top_id(index, new_vectors[9]) == ids[9]
    finally:
        index.close()


def test_stats_shape_and_directory_lock(catalog, tmp_path):
    add_files(catalog, random_unit(100, DIM))
    index = make_index(catalog, tmp_path)
    try:
        stats = index.stats()
        assert {"indexed", "fresh", "tombstones", "last_build", "last_build_seconds", "building", "mode"} <= set(stats)
        assert stats["mode"] == "annoy" and stats["last_build"].endswith("+00:00")
        other = ExtractorIndex(catalog, index.directory, EXTRACTOR, MODEL, DIM)
        with pytest.raises(RuntimeError, match="in use"):
            other.open()
    finally:
        index.close()
