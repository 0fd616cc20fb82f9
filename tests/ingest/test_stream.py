"""The daemon's loop streams (issue 31): a run goes on with the queued work of its own kind instead of
draining the loaders every 2-batch take; what ends a stream; a failure replays only what is not written."""

from __future__ import annotations

import collections
import sqlite3
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import imgsearchd.store.disk_health as disk_health
from imgsearchd.ingest.outcomes import Outcome
from imgsearchd.ingest.pipeline import Pipeline
from imgsearchd.ingest.stream import MAX_BATCHES, Stream
from imgsearchd.ingest.workqueue import Intent, Work, WorkQueue
from imgsearchd.media.failures import ImageError, Reason
from imgsearchd.store.catalog import Catalog

BATCH = 2  # the daemon takes 2 batches (4 files) at a time
LOADERS = 2  # fixed, so no bound below depends on the machine's cores


def jpegs(folder: Path, count: int) -> list[str]:
    """``count`` distinct 64x48 JPEGs (different bytes, so none reuses another's vector)."""
    paths = [str(folder / f"s{i:03d}.jpg") for i in range(count)]
    rewrite(paths, seed=11)
    return paths


def rewrite(paths: list[str], seed: int) -> None:
    """New random pixels in each of ``paths`` (an edit): a catalogued one needs work again."""
    rng = np.random.default_rng(seed)
    for path in paths:
        Image.fromarray(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)).save(path, quality=85)


class Daemon:
    """A real pipeline's ``run`` loop on its own thread over a real queue and catalogue.

    ``runs`` counts the pipeline's runs (each ends with its window drained); ``loads`` the files read.
    """

    def __init__(self, catalog: Catalog, extractor) -> None:
        self.heard: list[tuple[str, Outcome]] = []
        self.on_outcome = lambda path, outcome: None
        self.pipeline = Pipeline(catalog, {"efficientnet": extractor}, listener=self._hear, loader_threads=LOADERS)
        self.pipeline.batch_size = BATCH
        self.queue, self.stop = WorkQueue(), threading.Event()
        self.runs = 0
        self.loads: collections.Counter[str] = collections.Counter()
        loads_lock = threading.Lock()
        process, load = self.pipeline._process, self.pipeline._load

        def counted_process(*args, **kw):
            self.runs += 1
            return process(*args, **kw)

        def counted_load(path: str):
            with loads_lock:
                self.loads[path] += 1
            return load(path)

        self.pipeline._process = counted_process  # type: ignore[method-assign]
        self.pipeline._load = counted_load  # type: ignore[method-assign]
        self.worker = threading.Thread(target=self.pipeline.run, args=(self.queue, self.stop, 0.02))

    def _hear(self, path: str, outcome: Outcome, error: ImageError | None) -> None:
        self.heard.append((path, outcome))
        self.on_outcome(path, outcome)

    def outcomes(self) -> dict[str, list[Outcome]]:
        by_path = collections.defaultdict(list)
        for path, outcome in self.heard:
            by_path[path].append(outcome)
        return dict(by_path)

    def __enter__(self) -> Daemon:
        self.worker.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.worker.join(30)
        self.pipeline.close()
        assert not self.worker.is_alive()


@pytest.mark.parametrize("intent", [Intent.ADD, Intent.RECHECK])
def test_the_loop_streams_its_own_kind_across_takes(tmp_path, efficientnet, intent):
    """A watcher's adds and a folder job's rechecks (``/add DIR``) each run once, not once per take."""
    paths = jpegs(tmp_path, 40)
    with Catalog(tmp_path / "catalog.sqlite3") as catalog, Daemon(catalog, efficientnet) as daemon:
        daemon.queue.put_many(paths, intent)
        assert daemon.queue.join(60), "every file taken is reported done"
        assert catalog.counts()["files"] == 40
        assert daemon.outcomes() == {path: [Outcome.EMBEDDED] for path in paths}
        assert daemon.runs == 1  # one window drain for 40 files at batch 2 (per 4-file take it was 10)


def test_a_stream_takes_only_its_own_kind_and_ends_at_anything_else(tmp_path):
    """An ADD stream pulls ADDs until a RECHECK is at the front; the pulls join the loop's taken list."""
    queue, stop = WorkQueue(), threading.Event()
    queue.put_many(["/p/a.jpg", "/p/b.jpg"])
    queue.put_many(["/p/c.jpg"], Intent.RECHECK)
    queue.put("/p/d.jpg")
    taken = queue.take(1)
    stream = Stream(queue, stop, taken, BATCH, lambda: False)
    assert list(stream.paths(["/p/a.jpg"], Intent.ADD)) == ["/p/a.jpg", "/p/b.jpg"]
    assert taken == [Work("/p/a.jpg", Intent.ADD), Work("/p/b.jpg", Intent.ADD)]  # the loop's list grows
    assert list(stream.paths([], Intent.RECHECK)) == ["/p/c.jpg"]
    assert queue.take(10) == [Work("/p/d.jpg", Intent.ADD)]
    queue.task_done(1)
    assert not queue.join(0)  # the pulled ones are the loop's to report done, with its own
    queue.task_done(len(taken))
    assert queue.join(0)


@pytest.mark.parametrize("ending", ["stop", "switch", "limit"])
def test_a_stop_a_model_switch_or_a_full_pass_end_a_stream(tmp_path, ending):
    """Each ends the stream before its first pull: the queued files stay queued."""
    queue, stop, switching = WorkQueue(), threading.Event(), [False]
    queue.put_many(["/p/a.jpg", "/p/b.jpg"])
    taken = [Work(f"/p/t{i}.jpg", Intent.ADD) for i in range(MAX_BATCHES * BATCH if ending == "limit" else 1)]
    stream = Stream(queue, stop, taken, BATCH, lambda: switching[0])
    if ending == "stop":
        stop.set()
    elif ending == "switch":
        switching[0] = True
    assert list(stream.paths(["/p/t0.jpg"], Intent.ADD)) == ["/p/t0.jpg"]
    assert len(queue) == 2


def test_a_failure_replays_only_the_files_not_written(tmp_path):
    """Written files are dropped from the replay; a REMOVE is not a file the stream writes, so it stays."""
    taken = [Work("/p/a.jpg", Intent.ADD), Work("/p/b.jpg", Intent.RECHECK), Work("/p/c.jpg", Intent.ADD)]
    taken.append(Work("/p/d", Intent.REMOVE))
    stream = Stream(WorkQueue(), threading.Event(), taken, BATCH, lambda: False)
    stream.wrote(["/p/a.jpg", "/p/b.jpg", "/p/d"])
    assert stream.unfinished(taken) == [Work("/p/c.jpg", Intent.ADD), Work("/p/d", Intent.REMOVE)]


@pytest.mark.parametrize("half_unchanged", [False, True])
def test_a_storage_error_in_a_stream_defers_only_the_files_not_written(
    tmp_path, efficientnet, monkeypatch, half_unchanged
):
    """Given back whole, a stream's committed files were told DEFERRED after EMBEDDED and counted twice.

    ``half_unchanged``: every other file is catalogued and unchanged already, so the pass writes no
    row for it; replayed, it was told UNCHANGED twice and counted twice in /stats.
    """
    monkeypatch.setattr(disk_health, "FIRST_DELAY", 0.05)
    paths = jpegs(tmp_path, 40)
    with Catalog(tmp_path / "catalog.sqlite3") as catalog:
        unchanged = set(paths[0::2]) if half_unchanged else set()
        if unchanged:
            with Daemon(catalog, efficientnet) as first:
                first.queue.put_many(paths)
                assert first.queue.join(60)
            rewrite(paths[1::2], seed=12)  # the others need work again
        with Daemon(catalog, efficientnet) as daemon:
            real, calls = catalog.record_batch, [0]

            def flaky(rows):
                calls[0] += 1
                if calls[0] == 5:  # the 5th batch, inside the first take's stream
                    raise sqlite3.OperationalError("disk I/O error")
                return real(rows)

            monkeypatch.setattr(catalog, "record_batch", flaky)
            daemon.queue.put_many(paths)
            assert daemon.queue.join(60)
            assert calls[0] > 5
            assert catalog.counts()["files"] == 40
            heard = daemon.outcomes()
            assert set(heard) == set(paths)
            deferred = [path for path, outcomes in heard.items() if outcomes == [Outcome.DEFERRED, Outcome.EMBEDDED]]
            assert 0 < len(deferred) <= BATCH + LOADERS + BATCH  # the failing batch and the window only
            for path in set(paths) - set(deferred):  # told once
                assert heard[path] == [Outcome.UNCHANGED if path in unchanged else Outcome.EMBEDDED], path
            snapshot = daemon.pipeline.progress.snapshot()
            assert (snapshot["queued"], snapshot["done"]) == (40, 40)  # each file counted once


def test_a_storage_error_after_a_batch_is_written_replays_it(tmp_path, efficientnet, monkeypatch):
    """Disk full in ``remove_paths`` (a vanished file), just after its batch's commit: the batch's files
    were marked written before they were told, so none was ever told and the row stayed (a folder job
    waited for ever). Replayed, each is told, and the vanished file's row goes."""
    monkeypatch.setattr(disk_health, "FIRST_DELAY", 0.05)
    paths = jpegs(tmp_path, 40)
    with Catalog(tmp_path / "catalog.sqlite3") as catalog:
        with Daemon(catalog, efficientnet) as first:
            first.queue.put_many(paths)
            assert first.queue.join(60)
        rewrite(paths, seed=12)  # each needs work again
        gone = paths[21]
        Path(gone).unlink()  # gone before its event is handled, in the middle of the stream
        with Daemon(catalog, efficientnet) as daemon:
            real, calls = catalog.remove_paths, [0]

            def flaky(forget):
                calls[0] += 1
                if calls[0] == 1:
                    raise sqlite3.OperationalError("database or disk is full")
                return real(forget)

            monkeypatch.setattr(catalog, "remove_paths", flaky)
            daemon.queue.put_many(paths)
            assert daemon.queue.join(60)
            assert calls[0] == 2, "the batch was replayed and its vanished file forgotten"
            heard = daemon.outcomes()
            assert set(heard) == set(paths), "every file was told"
            assert heard[gone] == [Outcome.DEFERRED, Outcome.REMOVED]
            assert catalog.get(gone) is None
            assert catalog.counts()["files"] == 39
            for path in set(paths) - {gone}:  # told once, after a DEFERRED if its batch was replayed
                assert heard[path][-1] in (Outcome.EMBEDDED, Outcome.UNCHANGED), path
                assert heard[path][:-1] in ([], [Outcome.DEFERRED]), path
            snapshot = daemon.pipeline.progress.snapshot()
            assert (snapshot["queued"], snapshot["done"]) == (40, 40)


def test_a_late_failure_in_a_stream_retries_only_the_files_not_written(tmp_path, efficientnet, monkeypatch):
    """One by one, the files already written were told UNCHANGED a second time (and cost a check each)."""
    paths = jpegs(tmp_path, 40)
    real, calls = efficientnet.embed, [0]

    def embed(batch):
        calls[0] += 1
        if calls[0] == 6:
            raise RuntimeError("forward failed once")
        return real(batch)

    monkeypatch.setattr(efficientnet, "embed", embed)
    with Catalog(tmp_path / "catalog.sqlite3") as catalog, Daemon(catalog, efficientnet) as daemon:
        daemon.queue.put_many(paths)
        assert daemon.queue.join(60)
        assert catalog.counts()["files"] == 40
        assert daemon.outcomes() == {path: [Outcome.EMBEDDED] for path in paths}
        assert daemon.runs > 1  # the failure did happen inside the stream, and its files went one by one


def test_a_path_queued_again_while_in_the_window_is_loaded_once(tmp_path, efficientnet):
    """The stream ends at a path it holds: the next pass finds it written and unchanged.

    6 files: at the first outcome the stream has pulled all but one, so it meets the paths queued
    again while they still load (with more queued behind, they would be written by then).
    """
    paths = jpegs(tmp_path, 6)
    with Catalog(tmp_path / "catalog.sqlite3") as catalog, Daemon(catalog, efficientnet) as daemon:
        requeued: list[str] = []

        def again(path: str, outcome: Outcome) -> None:  # on the pipeline's thread, at the first outcome
            if not requeued:
                heard = {p for p, _ in daemon.heard}
                requeued.extend([p for p in list(daemon.loads) if p not in heard][-2:])
                for p in requeued:
                    daemon.queue.put(p)  # a watcher's event for a file still in the window

        daemon.on_outcome = again
        daemon.queue.put_many(paths)
        assert daemon.queue.join(60)
        assert requeued
        assert max(daemon.loads.values()) == 1, daemon.loads
        for path in requeued:
            assert daemon.outcomes()[path] == [Outcome.EMBEDDED, Outcome.UNCHANGED]
        assert catalog.counts()["files"] == 6


def test_a_model_switch_gets_in_while_files_are_still_queued(tmp_path, efficientnet):
    """``use_extractor`` waiting ends the stream: it does not wait for the whole queue."""
    paths = jpegs(tmp_path, 80)
    with Catalog(tmp_path / "catalog.sqlite3") as catalog, Daemon(catalog, efficientnet) as daemon:
        left_at_switch: list[int] = []

        def switch() -> None:
            daemon.pipeline.use_extractor("efficientnet", efficientnet)
            left_at_switch.append(len(daemon.queue))

        switcher = threading.Thread(target=switch)

        def start_switch(path: str, outcome: Outcome) -> None:
            daemon.on_outcome = lambda *_: None
            switcher.start()

        daemon.on_outcome = start_switch
        daemon.queue.put_many(paths)
        assert daemon.queue.join(60)
        switcher.join(30)
        assert left_at_switch and left_at_switch[0] > 0, "the switch waited for the whole queue"
        assert daemon.runs >= 2
        assert catalog.counts()["files"] == 80


def test_a_request_put_in_front_waits_about_two_batches(tmp_path, efficientnet):
    """A user's /add of one file (RECHECK, in front) ends an ADD stream; its window drains first."""
    paths = jpegs(tmp_path, 24)
    Image.new("RGB", (40, 30), "red").save(tmp_path / "front.jpg")
    front = str(tmp_path / "front.jpg")
    with Catalog(tmp_path / "catalog.sqlite3") as catalog, Daemon(catalog, efficientnet) as daemon:

        def request_once(path: str, outcome: Outcome) -> None:  # the first outcome, on the pipeline's thread
            daemon.on_outcome = lambda *_: None
            daemon.queue.put(front, Intent.RECHECK, front=True)

        daemon.on_outcome = request_once
        daemon.queue.put_many(paths)
        assert daemon.queue.join(60)
        order = [path for path, _ in daemon.heard]
        assert sorted(order) == sorted([*paths, front])
        # before it: the first batch, the window (a batch and a file per loader) and the batch pending
        assert order.index(front) <= BATCH + (BATCH + LOADERS) + BATCH
        assert daemon.runs >= 3  # the first run, the request's, and one for the adds behind it
        assert catalog.counts()["files"] == 25


def test_a_stop_ends_the_stream_and_leaves_the_rest_queued(tmp_path, efficientnet):
    """A shutdown ends the stream at its next pull; what was taken is written, the rest stays queued."""
    paths = jpegs(tmp_path, 24)
    with Catalog(tmp_path / "catalog.sqlite3") as catalog, Daemon(catalog, efficientnet) as daemon:
        daemon.on_outcome = lambda path, outcome: daemon.stop.set()
        daemon.queue.put_many(paths)
        daemon.worker.join(60)
        left = len(daemon.queue)
        assert left >= 24 - (BATCH + LOADERS + 2 * BATCH), "the stream stopped taking files"
        assert catalog.counts()["files"] == 24 - left, "every file taken was written, none lost"
        assert {path for path, _ in daemon.heard} == set(paths[: 24 - left])


def test_a_forward_that_raises_records_every_file_of_the_run_and_the_loop_goes_on(tmp_path, efficientnet, monkeypatch):
    """One by one, every file of the failed run is recorded INTERNAL; the next file is indexed."""
    paths = jpegs(tmp_path, 10)

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
