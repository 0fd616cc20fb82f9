"""Schema 6: vectors keyed by (content, extractor, model), the ``models`` table, and a model change's reads and writes."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np
import pytest

from imgsearchd.store import schema
from imgsearchd.store.catalog import Catalog
from imgsearchd.store.models import NEXT, SERVING, ModelRow
from imgsearchd.store.rows import FileResult


def unit(seed: int, dim: int = 4) -> np.ndarray:
    v = np.random.default_rng(seed).normal(size=dim).astype(np.float32)
    return v / np.linalg.norm(v)


def schema_5_file(path: Path) -> None:
    """A real schema-5 catalogue: the migrations up to 5, and rows as version 5 wrote them."""
    conn = sqlite3.connect(path, isolation_level=None)
    for version in range(1, 6):
        for statement in schema._split_sql(schema.MIGRATIONS[version]):
            conn.execute(statement)
    conn.execute("PRAGMA user_version=5")
    rows = [("/p/a.jpg", "ha"), ("/p/b.jpg", "hb"), ("/p/c.jpg", "hc")]
    for i, (name, content) in enumerate(rows):
        conn.execute(
            "INSERT INTO files (path, size, mtime_ns, content_hash, state, seq, updated_at) VALUES (?, 1, 1, ?, 'indexed', 1, 0)",
            (name.encode(), content),
        )
        model = "old" if i < 2 else "older"  # mid-way through a change as schema 5 made one
        conn.execute("INSERT INTO vectors VALUES (?, 'x', ?, 4, ?)", (content, model, unit(i).tobytes()))
    conn.close()


def stored(catalog: Catalog, content: str, model: str) -> np.ndarray:
    vector = catalog.vector_for_hash(content, "x", model)
    assert vector is not None, (content, model)
    return vector


def test_a_schema_5_catalogue_migrates_keeping_every_vector(tmp_path: Path) -> None:
    path = tmp_path / "catalog.sqlite3"
    schema_5_file(path)
    with Catalog(path) as catalog:
        assert catalog.schema_version == 6 == schema.VERSION
        assert np.allclose(stored(catalog, "ha", "old"), unit(0))
        assert np.allclose(stored(catalog, "hc", "older"), unit(2))
        serving = catalog.models("x")[SERVING]  # the most used model, settings unknown (never stored)
        assert (serving.model_id, serving.settings, serving.folder) == ("old", None, "x")
        # the new key: a second model's vector of a content is a row of its own
        catalog.put_vectors("x", "new", {"ha": unit(7)}, visible=False)
        assert np.allclose(stored(catalog, "ha", "old"), unit(0))
        assert catalog.vector_models("x") == {"old": 2, "older": 1, "new": 1}
    pk = sqlite3.connect(path).execute("SELECT name FROM pragma_table_info('vectors') WHERE pk>0 ORDER BY pk")
    assert [r[0] for r in pk] == ["content_hash", "extractor", "model_id"]


def test_contents_lacking_a_model_in_hash_order_one_path_each(tmp_path: Path) -> None:
    with Catalog(tmp_path / "c.sqlite3") as catalog:
        rows = [FileResult(f"/p/{i}.jpg", 1, 1, f"h{i % 3}", {"x": ("old", unit(i))}) for i in range(6)]
        catalog.record_batch(rows)
        assert catalog.count_contents("x", "new") == (3, 0)
        lacking = catalog.lacking_contents("x", "new", "", limit=2)
        assert [h for h, _ in lacking] == ["h0", "h1"] and lacking[0][1] == "/p/0.jpg"
        assert [h for h, _ in catalog.lacking_contents("x", "new", "h1", limit=2)] == ["h2"]
        seq = catalog.current_seq()
        catalog.put_vectors("x", "new", {"h0": unit(9)}, visible=False)
        assert catalog.current_seq() == seq  # the next model's vectors: no change number, no index reads them
        assert catalog.count_contents("x", "new") == (3, 1)
        assert not catalog.lacks_vectors("h0", {"x": "new"}) and catalog.lacks_vectors("h1", {"x": "new"})
        catalog.put_vectors("x", "new", {"h1": unit(8)}, visible=True)
        changes = catalog.changes_since("x", "new", seq, 4)
        assert changes.seq == seq + 1 and sorted(changes.ids.tolist()) == [2, 5]  # the files of h1
        assert catalog.prune_other_models("x", keep=("new",)) == 3
        assert catalog.count_contents("x", "old") == (3, 0)


def test_model_rows_serving_next_and_the_switch(tmp_path: Path) -> None:
    with Catalog(tmp_path / "c.sqlite3") as catalog:
        assert catalog.models("x") == {}
        catalog.record_model(ModelRow("x", SERVING, "old", '{"a": 1}', "x", 1.0))
        catalog.record_model(ModelRow("x", NEXT, "new", '{"a": 2}', "x-abc", 2.0))
        assert catalog.model_folder("x", "new") == "x-abc" and catalog.model_folder("x", "old") == "x"
        assert catalog.model_folder("x", "other") is None
        catalog.promote_next_model("x")
        rows = catalog.models("x")
        assert list(rows) == [SERVING] and rows[SERVING].model_id == "new" and rows[SERVING].folder == "x-abc"


def test_the_switch_promotes_and_prunes_in_one_transaction_and_a_model_can_be_renamed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from imgsearchd.store import file_writes

    with Catalog(tmp_path / "c.sqlite3") as catalog:
        catalog.record_batch([FileResult(f"/p/{i}.jpg", 1, 1, f"h{i}", {"x": ("old", unit(i))}) for i in range(3)])
        catalog.record_model(ModelRow("x", SERVING, "old", None, "x", 1.0))
        catalog.record_model(ModelRow("x", NEXT, "new", '{"a": 2}', "x-n", 2.0))
        catalog.put_vectors("x", "new", {f"h{i}": unit(10 + i) for i in range(3)}, visible=False)

        def crash(*_args: object) -> int:
            raise sqlite3.OperationalError("disk I/O error (a test)")

        monkeypatch.setattr(file_writes, "prune_other_models", crash)
        with pytest.raises(sqlite3.OperationalError):
            catalog.promote_next_model("x")
        # a failure half-way leaves the old model serving with its vectors: never one without
        assert catalog.models("x")[SERVING].model_id == "old" and catalog.vector_models("x") == {"old": 3, "new": 3}
        monkeypatch.undo()
        assert catalog.promote_next_model("x") == 3
        assert list(catalog.models("x")) == [SERVING] and catalog.vector_models("x") == {"new": 3}
        assert catalog.promote_next_model("x") == 0  # none comes next: nothing changes
        # a rename in place (the same weights under a newer fingerprint): vectors and the row, nothing else
        assert catalog.rename_model("x", "new", "newer", '{"a": 3}') == 3
        serving = catalog.models("x")[SERVING]
        assert (serving.model_id, serving.settings, serving.folder) == ("newer", '{"a": 3}', "x-n")
        assert catalog.vector_models("x") == {"newer": 3} and np.allclose(stored(catalog, "h1", "newer"), unit(11))
