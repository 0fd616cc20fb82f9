"""Catalog.sample_vectors: the background sample of search's match levels, read from a real catalogue."""

from __future__ import annotations

import numpy as np
import pytest

from imgsearchd.store.catalog import Catalog
from imgsearchd.store.rows import FileResult

DIM = 16


def unit(seed: int) -> np.ndarray:
    v = np.random.default_rng(seed).normal(size=DIM)
    return (v / np.linalg.norm(v)).astype(np.float32)


def put(catalog: Catalog, items: list[tuple[str, str, int]], model: str = "m1") -> None:
    """(path, content hash, seed of its vector) rows, indexed by ``model`` of extractor "x"."""
    catalog.record_batch(
        FileResult(path=p, size=10, mtime_ns=1, content_hash=h, vectors={"x": (model, unit(seed))})
        for p, h, seed in items
    )


def rows(sample: np.ndarray) -> set[bytes]:
    return {row.tobytes() for row in sample}


@pytest.fixture
def catalog(tmp_path):
    with Catalog(tmp_path / "catalog.sqlite3") as c:
        yield c


def test_an_empty_catalogue_gives_an_empty_sample(catalog) -> None:
    assert catalog.sample_vectors("x", "m1", 10).shape == (0, 0)
    put(catalog, [("/p/a.jpg", "h0", 0)])
    assert catalog.sample_vectors("x", "m1", 0).shape == (0, 0)
    assert catalog.sample_vectors("x", "nope", 10).shape == (0, 0)


def test_distinct_contents_bounded_and_random(catalog) -> None:
    put(catalog, [(f"/p/{n}.jpg", f"h{n}", n) for n in range(300)])
    # 100 more files, copies of the first 50 contents: a content is one row however many files hold it
    put(catalog, [(f"/p/copy/{n}.jpg", f"h{n % 50}", n % 50) for n in range(100)])
    stored = {unit(n).tobytes() for n in range(300)}
    sample = catalog.sample_vectors("x", "m1", 64, seed=1)
    assert sample.shape == (64, DIM) and sample.dtype == np.float32
    assert len(rows(sample)) == 64 and rows(sample) <= stored
    assert np.allclose(np.linalg.norm(sample, axis=1), 1.0, atol=1e-5)
    everything = catalog.sample_vectors("x", "m1", 1000, seed=2)  # more than there are: each content once
    assert everything.shape == (300, DIM) and rows(everything) == stored
    other = catalog.sample_vectors("x", "m1", 64, seed=3)
    assert rows(other) != rows(sample)  # another draw, another sample (64 of 300: never the same by chance)
    assert rows(catalog.sample_vectors("x", "m1", 64, seed=1)) == rows(sample)  # a seed repeats it


def test_only_the_model_asked_for(catalog) -> None:
    put(catalog, [(f"/p/a{n}.jpg", f"a{n}", n) for n in range(40)], model="m1")
    put(catalog, [(f"/p/b{n}.jpg", f"b{n}", 1000 + n) for n in range(40)], model="m2")
    first = rows(catalog.sample_vectors("x", "m1", 100))
    second = rows(catalog.sample_vectors("x", "m2", 100))
    assert first == {unit(n).tobytes() for n in range(40)}
    assert second == {unit(1000 + n).tobytes() for n in range(40)}
    assert catalog.sample_vectors("y", "m1", 100).shape == (0, 0)  # another extractor's name


def test_holes_in_the_ids_and_removed_files(catalog) -> None:
    put(catalog, [(f"/p/{n}.jpg", f"h{n}", n) for n in range(400)])
    catalog.remove_paths([f"/p/{n}.jpg" for n in range(400) if n % 2])  # every other id becomes a hole
    kept = {unit(n).tobytes() for n in range(0, 400, 2)}
    sample = catalog.sample_vectors("x", "m1", 50, seed=4)
    assert sample.shape == (50, DIM) and rows(sample) <= kept  # full, and never a removed file's vector
    assert rows(catalog.sample_vectors("x", "m1", 300, seed=5)) == kept  # asked for more than there are: all


def test_a_library_that_shrank_still_fills_its_sample(catalog) -> None:
    put(catalog, [(f"/p/{n}.jpg", f"h{n}", n) for n in range(5000)])
    catalog.remove_paths([f"/p/{n}.jpg" for n in range(5000) if n % 50])  # 100 files left, ids 50 apart
    kept = {unit(n).tobytes() for n in range(0, 5000, 50)}
    sample = catalog.sample_vectors("x", "m1", 64, seed=6)
    assert rows(sample) <= kept and sample.shape == (64, DIM)
