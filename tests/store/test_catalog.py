"""catalog: WAL, schema versions, one row per path, vectors by content, change numbers."""

from __future__ import annotations

import os
import sqlite3

import numpy as np
import pytest

from imgsearchd.store.catalog import Catalog
from imgsearchd.store.database import CatalogError
from imgsearchd.store.rows import FileResult
from imgsearchd.store.schema import VERSION as SCHEMA_VERSION


def vec(seed: int, dim: int = 8) -> np.ndarray:
    v = np.random.default_rng(seed).normal(size=dim)
    return (v / np.linalg.norm(v)).astype(np.float32)


def result(path: str, h: str, seed: int, model: str = "m1", size: int = 10, mtime: int = 1) -> FileResult:
    return FileResult(path=path, size=size, mtime_ns=mtime, content_hash=h, vectors={"x": (model, vec(seed))})


@pytest.fixture
def catalog(tmp_path):
    with Catalog(tmp_path / "catalog.sqlite3") as c:
        yield c


def test_wal_mode_and_schema_version(tmp_path, catalog):
    conn = sqlite3.connect(tmp_path / "catalog.sqlite3")
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert catalog.integrity_check() == "ok"


def test_refuses_a_newer_schema(tmp_path):
    path = tmp_path / "future.sqlite3"
    Catalog(path).close()
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
    conn.commit()
    conn.close()
    with pytest.raises(CatalogError, match="newer than"):
        Catalog(path)


def test_not_a_database_is_a_clear_error(tmp_path):
    path = tmp_path / "junk.sqlite3"
    path.write_bytes(b"definitely not sqlite" * 100)
    with pytest.raises(CatalogError, match="cannot open catalogue"):
        Catalog(path)


def test_migrates_an_empty_version_0_file(tmp_path):
    path = tmp_path / "old.sqlite3"
    sqlite3.connect(path).close()
    with Catalog(path) as c:
        assert c.schema_version == SCHEMA_VERSION


def test_record_and_read_back(catalog):
    seq = catalog.record_batch([result("/p/a.jpg", "h1", 1)])
    record = catalog.get("/p/a.jpg")
    assert record.state == "indexed" and record.content_hash == "h1" and record.seq == seq
    assert np.allclose(catalog.vector_for_hash("h1", "x", "m1"), vec(1))
    assert catalog.vector_for_hash("h1", "x", "other-model") is None


def test_paths_are_normalised(tmp_path, catalog):
    catalog.record_batch([result("/p/q/../a.jpg", "h1", 1)])
    catalog.record_batch([result("/p//a.jpg", "h1", 1)])  # the same file, spelt another way: the same row
    record = catalog.get("/p/a.jpg")
    assert record is not None and record.path == "/p/a.jpg"
    assert catalog.get("/p//a.jpg") == record == catalog.get("/p/q/../a.jpg")
    assert catalog.counts()["files"] == 1
    stored = sqlite3.connect(tmp_path / "catalog.sqlite3").execute("SELECT path FROM files").fetchall()
    assert stored == [(b"/p/a.jpg",)]  # written normalised, not only looked up so


def test_same_name_in_two_folders_are_two_files(catalog):
    catalog.record_batch([result("/one/a.jpg", "h1", 1), result("/two/a.jpg", "h2", 2)])
    assert catalog.counts()["files"] == 2


def test_changed_content_gets_a_new_id_and_the_old_one_is_reported_removed(catalog):
    catalog.record_batch([result("/p/a.jpg", "h1", 1)])
    old = catalog.get("/p/a.jpg")
    catalog.record_batch([result("/p/a.jpg", "h2", 2, mtime=2)])
    new = catalog.get("/p/a.jpg")
    assert new.id != old.id
    changes = catalog.changes_since("x", "m1", old.seq, 8)
    assert list(changes.ids) == [new.id]
    assert old.id in changes.removed_ids
    assert catalog.counts()["files"] == 1


def test_failed_file_keeps_reason_and_no_vector(catalog):
    catalog.record_batch(
        [FileResult(path="/p/bad.jpg", size=3, mtime_ns=1, error_reason="truncated", error_detail="cut")]
    )
    record = catalog.get("/p/bad.jpg")
    assert (record.state, record.error_reason, record.error_detail) == ("failed", "truncated", "cut")
    assert catalog.counts()["failed_by_reason"] == {"truncated": 1}
    assert catalog.recent_failures()[0]["path"] == "/p/bad.jpg"


def test_move_keeps_id_and_vector(catalog):
    catalog.record_batch(
        [result("/p/dir/a.jpg", "h1", 1), result("/p/dir/sub/b.jpg", "h2", 2), result("/p/dir2/c.jpg", "h3", 3)]
    )
    a = catalog.get("/p/dir/a.jpg")
    assert catalog.move("/p/dir", "/p/moved") == 2
    assert catalog.get("/p/dir/a.jpg") is None
    assert catalog.get("/p/moved/a.jpg").id == a.id
    assert catalog.get("/p/moved/sub/b.jpg") is not None
    assert catalog.get("/p/dir2/c.jpg") is not None  # a sibling with a shared prefix is untouched


def test_remove_folder_only_touches_that_folder(catalog):
    catalog.record_batch([result("/p/dir/a.jpg", "h1", 1), result("/p/dir2/b.jpg", "h2", 2)])
    assert catalog.remove_paths(["/p/dir"]) == 1
    assert catalog.get("/p/dir2/b.jpg") is not None
    assert catalog.vector_for_hash("h1", "x", "m1") is not None  # kept for a file that reappears
    assert catalog.prune_orphan_vectors() == 1
    assert catalog.vector_for_hash("h1", "x", "m1") is None
    assert catalog.vector_for_hash("h2", "x", "m1") is not None


def test_copies_share_one_vector_row(tmp_path, catalog):
    catalog.record_batch([result("/p/a.jpg", "h1", 1), result("/p/copy.jpg", "h1", 1)])
    db = sqlite3.connect(tmp_path / "catalog.sqlite3")
    assert db.execute("SELECT content_hash, extractor, model_id FROM vectors").fetchall() == [("h1", "x", "m1")]
    original, copy = catalog.vector_for_path("/p/a.jpg", "x", "m1"), catalog.vector_for_path("/p/copy.jpg", "x", "m1")
    assert original is not None and copy is not None and np.array_equal(original[1], copy[1])
    catalog.remove_paths(["/p/a.jpg"])
    assert catalog.prune_orphan_vectors() == 0  # the copy still uses the row
    assert catalog.vector_for_path("/p/copy.jpg", "x", "m1") is not None
    assert db.execute("SELECT COUNT(*) FROM vectors").fetchone()[0] == 1


def test_changes_since_and_full_read_agree(catalog):
    s0 = catalog.current_seq()
    catalog.record_batch([result(f"/p/{i}.jpg", f"h{i}", i) for i in range(5)])
    seq, ids, vectors = catalog.all_vectors("x", "m1", 8)
    changes = catalog.changes_since("x", "m1", s0, 8)
    assert sorted(ids) == sorted(changes.ids) and seq == changes.seq
    assert vectors.shape == (5, 8)
    assert catalog.changes_since("x", "m1", seq, 8).ids.size == 0


def test_a_new_model_id_keeps_the_old_models_vector_never_mixes(catalog):
    # schema 6: vectors are keyed by model too, so the old model serves while the new one embeds
    catalog.record_batch([result("/p/a.jpg", "h1", 1, model="m1")])
    catalog.record_batch([result("/p/a.jpg", "h1", 9, model="m2")])
    assert np.allclose(catalog.vector_for_hash("h1", "x", "m1"), vec(1))
    assert np.allclose(catalog.vector_for_hash("h1", "x", "m2"), vec(9))
    assert catalog.all_vectors("x", "m1", 8)[2].shape == (1, 8)
    assert catalog.missing_vectors("x", "m3") == ["/p/a.jpg"] and catalog.missing_vectors("x", "m2") == []
    assert catalog.counts()["vectors"] == {"x": 1}  # files with a vector, not rows
    assert catalog.prune_other_models("x", keep=("m2",)) == 1
    assert catalog.vector_for_hash("h1", "x", "m1") is None


def test_files_under_uses_folder_boundaries(catalog):
    catalog.record_batch([result("/p/a/x.jpg", "h1", 1), result("/p/ab/y.jpg", "h2", 2)])
    assert list(catalog.files_under("/p/a")) == ["/p/a/x.jpg"]


def test_a_version_1_catalogue_with_text_paths_is_migrated_to_byte_paths(tmp_path):
    from imgsearchd.store import schema

    db = tmp_path / "old.sqlite3"
    conn = sqlite3.connect(db, isolation_level=None)
    for statement in schema._split_sql(schema.MIGRATIONS[1]):
        conn.execute(statement)
    conn.execute("PRAGMA user_version=1")
    conn.execute(
        "INSERT INTO files (path, size, mtime_ns, content_hash, state, seq, updated_at)"
        " VALUES ('/photos/été/a.jpg', 1, 2, 'h', 'indexed', 1, 0), ('/photos/b.jpg', 1, 2, 'h2', 'failed', 1, 0)"
    )
    conn.close()
    with Catalog(db) as catalog:
        assert catalog.schema_version == schema.VERSION
        record = catalog.get("/photos/été/a.jpg")
        assert record is not None and record.content_hash == "h" and record.failures == 0
        assert set(catalog.files_under("/photos")) == {"/photos/été/a.jpg", "/photos/b.jpg"}
        catalog.record_batch([FileResult("/photos/été/a.jpg", 1, 2, "h")])  # the same row, not a second one
        assert catalog.counts()["files"] == 2
    types = sqlite3.connect(db).execute("SELECT DISTINCT typeof(path) FROM files").fetchall()
    assert types == [("blob",)]


def test_a_latin1_name_is_one_row_that_reads_back_moves_and_is_removed(tmp_path):
    name = os.fsdecode(b"/photos/caf\xe9/r\xe9sum\xe9.jpg")  # Latin-1 bytes: not UTF-8
    with Catalog(tmp_path / "c.sqlite3") as catalog:
        catalog.record_batch([FileResult(name, 1, 2, "h")])
        assert catalog.get(name).path == name
        assert list(catalog.files_under(os.fsdecode(b"/photos/caf\xe9"))) == [name]
        assert catalog.move(os.fsdecode(b"/photos/caf\xe9"), "/photos/cafe") == 1
        moved = os.fsdecode(b"/photos/cafe/r\xe9sum\xe9.jpg")
        assert catalog.get(moved).path == moved and catalog.get(name) is None
        assert catalog.remove_paths(["/photos"]) == 1


def test_a_failed_file_counts_its_failures_in_a_row(tmp_path):
    with Catalog(tmp_path / "c.sqlite3") as catalog:
        for expected in (1, 2, 3):
            catalog.record_batch([FileResult("/p/x.jpg", 1, 2, None, error_reason="unreadable", error_detail="no")])
            assert catalog.get("/p/x.jpg").failures == expected
        catalog.record_batch([FileResult("/p/x.jpg", 1, 2, "h")])
        assert catalog.get("/p/x.jpg").failures == 0
        assert catalog.failed_everywhere() == []


def test_an_error_detail_quoting_a_name_that_is_not_utf8_is_stored(tmp_path):
    detail = "leads to " + os.fsdecode(b"/outside/caf\xe9.jpg")
    with Catalog(tmp_path / "c.sqlite3") as catalog:
        catalog.record_batch([FileResult("/p/x.jpg", 1, 2, None, error_reason="outside_roots", error_detail=detail)])
        assert catalog.get("/p/x.jpg").error_detail == "leads to /outside/caf\\udce9.jpg"
