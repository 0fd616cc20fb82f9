"""search.background: the samples match levels correct scores against, drawn from a real catalogue:
on first use, again in the background when the library moved by a tenth, anew for a new model."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from imgsearchd.search.background import REDRAW_SHARE, Backgrounds, moved
from imgsearchd.store.catalog import Catalog
from imgsearchd.store.rows import FileResult

DIM = 8


def unit(seed: int) -> np.ndarray:
    v = np.random.default_rng(seed).normal(size=DIM)
    return (v / np.linalg.norm(v)).astype(np.float32)


class GatedCatalog(Catalog):
    """A real catalogue whose ``sample_vectors`` waits for ``gate`` once ``gated`` is set (a slow draw)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.gated = False
        self.gate = threading.Event()
        self.waiting = threading.Event()
        self.calls = 0

    def sample_vectors(self, extractor: str, model_id: str, n: int, seed: int | None = None) -> np.ndarray:
        self.calls += 1
        if self.gated:
            self.waiting.set()
            assert self.gate.wait(30), "the test never opened the gate"
        return super().sample_vectors(extractor, model_id, n, seed)


def put(catalog: Catalog, first: int, count: int, model: str = "m1", seeds: int = 0) -> None:
    """Files ``first``.. with vectors of ``model`` (vector n's seed: ``seeds + n``)."""
    catalog.record_batch(
        FileResult(
            path=f"/p/{n}.jpg", size=1, mtime_ns=1, content_hash=f"h{n}", vectors={"x": (model, unit(seeds + n))}
        )
        for n in range(first, first + count)
    )


def rows(vectors: np.ndarray) -> set[bytes]:
    return {row.tobytes() for row in vectors}


@pytest.fixture
def catalog(tmp_path):
    with GatedCatalog(tmp_path / "catalog.sqlite3") as c:
        yield c


def test_moved_means_a_tenth_either_way() -> None:
    assert REDRAW_SHARE == 0.10
    assert not moved(100, 109) and moved(100, 110) and moved(100, 90) and not moved(100, 91)
    assert moved(0, 1) and not moved(0, 0)  # drawn from an empty library: any picture is news


def test_drawn_on_first_use_then_kept(catalog) -> None:
    put(catalog, 0, 100)
    backgrounds = Backgrounds(size=32)
    first = backgrounds.get(catalog, "x", "m1", 100)
    assert first.vectors.shape == (32, DIM) and first.extractor == "x" and first.usable is False  # 32 < 64
    assert rows(first.vectors) <= {unit(n).tobytes() for n in range(100)}
    assert backgrounds.get(catalog, "x", "m1", 109) is first  # under a tenth more: the same sample
    assert catalog.calls == 1 and backgrounds.draws == 1
    backgrounds.close()


def test_a_moved_library_is_drawn_again_in_the_background_without_waiting(catalog) -> None:
    put(catalog, 0, 100)
    backgrounds = Backgrounds(size=200)
    first = backgrounds.get(catalog, "x", "m1", 100)
    assert first.vectors.shape == (100, DIM) and first.usable
    put(catalog, 100, 100)  # the library doubled
    catalog.gated = True  # the redraw will hang until the gate opens
    started = time.monotonic()
    assert backgrounds.get(catalog, "x", "m1", 200) is first  # the search goes on with the old sample
    assert catalog.waiting.wait(10)  # the redraw is running, on its own thread
    for _ in range(3):  # searches meanwhile: no second draw starts, none waits
        assert backgrounds.get(catalog, "x", "m1", 200) is first
    assert time.monotonic() - started < 5 and catalog.calls == 2
    catalog.gate.set()
    backgrounds.close()
    again = backgrounds.get(catalog, "x", "m1", 200)
    assert again is not first and again.vectors.shape == (200, DIM)
    assert rows(again.vectors) == {unit(n).tobytes() for n in range(200)}
    assert backgrounds.get(catalog, "x", "m1", 210) is again and catalog.calls == 2  # counted from the redraw
    backgrounds.close()


def test_a_new_model_gets_its_own_sample_at_once(catalog) -> None:
    put(catalog, 0, 80, model="m1")
    backgrounds = Backgrounds(size=100)
    old = backgrounds.get(catalog, "x", "m1", 80)
    put(catalog, 0, 80, model="m2", seeds=1000)  # the same files, re-embedded by the new model
    new = backgrounds.get(catalog, "x", "m2", 80)  # the same count: a model change all the same
    assert rows(new.vectors) == {unit(1000 + n).tobytes() for n in range(80)} and catalog.calls == 2
    assert backgrounds.get(catalog, "x", "m2", 80) is new
    assert old is not new
    backgrounds.close()


def test_an_empty_library_then_pictures(catalog) -> None:
    backgrounds = Backgrounds(size=64)
    empty = backgrounds.get(catalog, "x", "m1", 0)
    assert empty.vectors.shape[0] == 0 and not empty.usable  # the prior stands in
    put(catalog, 0, 70)
    assert backgrounds.get(catalog, "x", "m1", 70) is empty  # this search does not wait
    backgrounds.close()
    assert backgrounds.get(catalog, "x", "m1", 70).usable
    backgrounds.close()
