"""The loaders kept busy (issue 31): the window filled before a batch is embedded, the loader count,
and the content hash of every byte (the daemon's loop streaming across takes: test_stream.py)."""

from __future__ import annotations

import hashlib
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from imgsearchd.ingest.pipeline import Pipeline
from imgsearchd.media import files
from imgsearchd.media.failures import ImageError, Reason
from imgsearchd.store.catalog import Catalog


def small_jpegs(folder: Path, count: int) -> list[str]:
    """``count`` distinct 64x48 JPEGs (different bytes, so none reuses another's vector)."""
    rng = np.random.default_rng(7)
    paths = []
    for i in range(count):
        path = folder / f"p{i:02d}.jpg"
        Image.fromarray(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)).save(path, quality=85)
        paths.append(str(path))
    return paths


def test_the_window_is_filled_before_a_batch_is_embedded(tmp_path, efficientnet):
    """Taking out every loaded file flushed batches back to back with nothing new loading."""
    paths = small_jpegs(tmp_path, 40)
    heard: list[str] = []
    with (
        Catalog(tmp_path / "catalog.sqlite3") as catalog,
        Pipeline(
            catalog, {"efficientnet": efficientnet}, loader_threads=2, listener=lambda p, o, e: heard.append(p)
        ) as pipe,
    ):
        window = max(4 * pipe.batch_size, 2 * pipe.loader_threads)
        loaded, first_batch = [], threading.Event()
        load = pipe._load

        def counted_load(path: str):
            item = load(path)
            loaded.append(path)
            if len(loaded) >= pipe.batch_size:
                first_batch.set()
            return item

        pipe._load = counted_load  # type: ignore[method-assign]
        outcomes_at_pull: list[int] = []

        def paths_in():
            for i, path in enumerate(paths):
                if i == pipe.batch_size:
                    assert first_batch.wait(30)  # a whole batch loaded before the next file is given
                outcomes_at_pull.append(len(heard))
                yield path

        pipe.process(paths_in())
        assert sorted(heard) == sorted(paths)
        assert outcomes_at_pull[:window] == [0] * window  # nothing embedded while the window had room


@pytest.mark.parametrize(("cores", "loaders"), [(None, 2), (1, 2), (2, 2), (16, 16)])
def test_one_loader_per_core_and_at_least_two(tmp_path, efficientnet, monkeypatch, cores, loaders):
    monkeypatch.setattr("os.cpu_count", lambda: cores)
    with Catalog(tmp_path / "catalog.sqlite3") as catalog:
        assert Pipeline(catalog, {"efficientnet": efficientnet}).loader_threads == loaders
        assert Pipeline(catalog, {"efficientnet": efficientnet}, loader_threads=3).loader_threads == 3


@pytest.mark.parametrize("size", [1, 1 << 16, (1 << 16) + 1, 3_000_001])
def test_the_content_hash_is_blake2b_of_every_byte(tmp_path, size):
    data = np.random.default_rng(size).integers(0, 256, size, dtype=np.uint8).tobytes()
    (tmp_path / "f.bin").write_bytes(data)
    file = files.read_file(str(tmp_path / "f.bin"))
    assert file.data == data and file.content_hash == hashlib.blake2b(data, digest_size=16).hexdigest()
    (tmp_path / "empty.bin").write_bytes(b"")
    with pytest.raises(ImageError) as caught:
        files.read_file(str(tmp_path / "empty.bin"))
    assert caught.value.reason == Reason.EMPTY
