"""The loaders kept busy (issue 31): the window filled before a batch is embedded, a failing forward
inside the daemon's loop, the loader count, and the content hash of every byte."""

from __future__ import annotations

import hashlib
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from imgsearchd.ingest.outcomes import Outcome
from imgsearchd.ingest.pipeline import Pipeline
from imgsearchd.ingest.workqueue import WorkQueue
from imgsearchd.media import files
from imgsearchd.media.failures import ImageError, Reason
from imgsearchd.store.catalog import Catalog

BATCH = 2  # the daemon takes 2 batches (4 files) at a time


def small_jpegs(folder: Path, count: int) -> list[str]:
    """``count`` distinct 64x48 JPEGs (different bytes, so none reuses another's vector)."""
    rng = np.random.default_rng(7)
    paths = []
    for i in range(count):
        path = folder / f"p{i:02d}.jpg"
        Image.fromarray(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)).save(path, quality=85)
        paths.append(str(path))
    return paths


class Daemon:
    """A real pipeline's ``run`` loop on its own thread over a real queue and catalogue."""

    def __init__(self, catalog: Catalog, extractor, **kwargs) -> None:
        self.heard: list[tuple[str, Outcome]] = []
        self.on_outcome = lambda path, outcome: None
        self.pipeline = Pipeline(catalog, {"efficientnet": extractor}, listener=self._hear, **kwargs)
        self.pipeline.batch_size = BATCH
        self.queue, self.stop = WorkQueue(), threading.Event()
        self.runs = 0
        process = self.pipeline._process

        def counted(*args, **kw):
            self.runs += 1
            return process(*args, **kw)

        self.pipeline._process = counted  # type: ignore[method-assign]
        self.worker = threading.Thread(target=self.pipeline.run, args=(self.queue, self.stop, 0.02))

    def _hear(self, path: str, outcome: Outcome, error: ImageError | None) -> None:
        self.heard.append((path, outcome))
        self.on_outcome(path, outcome)

    def __enter__(self) -> Daemon:
        self.worker.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.worker.join(30)
        self.pipeline.close()
        assert not self.worker.is_alive()


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


def test_a_forward_that_raises_records_every_file_of_the_run_and_the_loop_goes_on(tmp_path, efficientnet, monkeypatch):
    paths = small_jpegs(tmp_path, 10)

    def embed(batch):
        raise RuntimeError("forward failed")

    monkeypatch.setattr(efficientnet, "embed", embed)
    with Catalog(tmp_path / "catalog.sqlite3") as catalog, Daemon(catalog, efficientnet) as daemon:
        daemon.queue.put_many(paths)
        assert daemon.queue.join(60), "the files the run took are reported done"
        for path in paths:
            record = catalog.get(path)
            assert record is not None and record.error_reason == Reason.INTERNAL, path
        monkeypatch.undo()
        Image.new("RGB", (40, 30), "blue").save(tmp_path / "after.jpg")
        daemon.queue.put(str(tmp_path / "after.jpg"))
        assert daemon.queue.join(60)
        assert catalog.get(str(tmp_path / "after.jpg")).error_reason is None


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
