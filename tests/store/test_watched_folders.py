"""The folders added at run time, as the catalogue keeps them: bytes of any name, oldest first,
kept across a reopen, replaced by a folder that holds them."""

from __future__ import annotations

import os
import sqlite3
import time

import numpy as np

from imgsearchd.store.catalog import Catalog
from imgsearchd.store.rows import FileResult


def test_added_folders_are_kept_in_order_with_their_bytes_across_a_reopen(tmp_path):
    latin = os.fsdecode(b"/photos/caf\xe9")  # not UTF-8: kept as its own bytes
    with Catalog(tmp_path / "catalog.sqlite3") as catalog:
        before = time.time()
        catalog.add_watched_folder("/photos/b")
        catalog.add_watched_folder(latin)
        catalog.add_watched_folder("/photos/b")  # again: keeps its first time
        first = catalog.watched_folders()
        assert [f.path for f in first] == ["/photos/b", latin]
        assert before <= first[0].added_at <= first[1].added_at <= time.time()
    conn = sqlite3.connect(tmp_path / "catalog.sqlite3")
    assert {bytes(row[0]) for row in conn.execute("SELECT path FROM watched_folders")} == {
        b"/photos/b",
        b"/photos/caf\xe9",
    }
    conn.close()
    with Catalog(tmp_path / "catalog.sqlite3") as catalog:
        assert catalog.watched_folders() == first
        catalog.add_watched_folder("/photos", replaces=["/photos/b", latin])
        assert [f.path for f in catalog.watched_folders()] == ["/photos"]
        assert catalog.remove_watched_folder("/photos") is True
        assert catalog.remove_watched_folder("/photos") is False
        assert catalog.watched_folders() == []


def test_indexed_and_failed_files_are_counted_below_a_folder_only(tmp_path):
    vector = np.ones(4, dtype=np.float32) / 2
    results = [
        FileResult(path="/p/a/1.jpg", size=1, mtime_ns=1, content_hash="h1", vectors={"x": ("m", vector)}),
        FileResult(path="/p/a/sub/2.jpg", size=1, mtime_ns=1, content_hash="h2", vectors={"x": ("m", vector)}),
        FileResult(path="/p/a/3.jpg", size=1, mtime_ns=1, content_hash=None, error_reason="corrupt"),
        FileResult(path="/p/ab/4.jpg", size=1, mtime_ns=1, content_hash="h4", vectors={"x": ("m", vector)}),
    ]
    with Catalog(tmp_path / "catalog.sqlite3") as catalog:
        catalog.record_batch(results)
        assert catalog.indexed_and_failed_under("/p/a") == (2, 1)
        assert catalog.indexed_and_failed_under("/p") == (3, 1)
        assert catalog.indexed_and_failed_under("/q") == (0, 0)
