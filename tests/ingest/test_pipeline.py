"""ingest.pipeline (the indexer): the pipeline end to end on real files, its run loop, and the offline CLI."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import threading
from pathlib import Path

import pytest

from imgsearchd.ingest.pipeline import Pipeline
from imgsearchd.ingest.workqueue import Intent, WorkQueue
from imgsearchd.media.failures import Reason
from imgsearchd.media.photo_metadata import MetadataFields
from imgsearchd.store.catalog import Catalog
from imgsearchd.store.rows import FileResult

import image_factory as make
from helpers import EFFICIENTNET_FP32, cli_here, run_cli, wait_for, without_file_permissions_bypass, write_config

EXTENSIONS = [".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff"]

GOOD = {
    "chelsea.jpg",
    "coffee.png",
    "astronaut.webp",
    "rocket.bmp",
    "hubble.tif",
    "cmyk.jpg",
    "deep16.png",
    "palette.png",
    "rgba.png",
    "rotated.jpg",
    "anim.gif",
    "été photo ü ñ.jpg",
    "sub/deeper/motorcycle.jpg",
}
BAD = {
    "empty.jpg": Reason.EMPTY,
    "truncated.jpg": Reason.TRUNCATED,
    "notes.jpg": Reason.NOT_AN_IMAGE,
    "bomb.png": Reason.TOO_LARGE,
}


def make_tricky_folder(root: Path, photos) -> Path:
    (root / "sub" / "deeper").mkdir(parents=True)
    photos["chelsea"].save(root / "chelsea.jpg", quality=90)
    photos["coffee"].save(root / "coffee.png")
    photos["astronaut"].save(root / "astronaut.webp")
    photos["rocket"].save(root / "rocket.bmp")
    photos["hubble"].save(root / "hubble.tif")
    make.cmyk_jpeg(root / "cmyk.jpg", photos["immunohistochemistry"])
    make.png_16bit(root / "deep16.png")
    make.palette_png_with_transparency(root / "palette.png")
    make.rgba_png_half_transparent(root / "rgba.png")
    make.exif_rotated_jpeg(root / "rotated.jpg")
    make.animated_gif(root / "anim.gif")
    photos["retina"].save(root / "été photo ü ñ.jpg")
    photos["motorcycle_left"].save(root / "sub" / "deeper" / "motorcycle.jpg")
    make.zero_bytes(root / "empty.jpg")
    make.truncated_jpeg(root / "truncated.jpg", photos["coffee"])
    make.text_as_jpeg(root / "notes.jpg")
    make.png_claiming_size(root / "bomb.png")
    # never indexed: hidden, temporary, wrong extension
    photos["chelsea"].save(root / ".hidden.jpg")
    photos["chelsea"].save(root / "download.jpg.part", "JPEG")
    (root / "readme.txt").write_text("not an image")
    return root


def test_bad_files_are_recorded_and_every_good_file_is_indexed(tmp_path, photos, efficientnet):
    folder = make_tricky_folder(tmp_path / "photos", photos)
    with (
        Catalog(tmp_path / "catalog.sqlite3") as catalog,
        Pipeline(catalog, {"efficientnet": efficientnet}, loader_threads=2) as pipeline,
    ):
        found = pipeline.prune_folder(str(folder), EXTENSIONS)
        summary = pipeline.process(found)
        assert summary["embedded"] == len(GOOD)
        assert summary["failed"] == {reason: list(BAD.values()).count(reason) for reason in set(BAD.values())}
        for name in GOOD:
            record = catalog.get(str(folder / name))
            assert record is not None and record.state == "indexed", name
            assert catalog.vector_for_path(str(folder / name), "efficientnet", efficientnet.model_id) is not None
        for name, reason in BAD.items():
            record = catalog.get(str(folder / name))
            assert (record.state, record.error_reason) == ("failed", reason), name
            assert record.error_detail
        assert catalog.counts()["files"] == len(GOOD) + len(BAD)


def test_unchanged_touched_moved_and_copied_files(tmp_path, photos, efficientnet):
    folder = tmp_path / "photos"
    folder.mkdir()
    for name in ("chelsea", "coffee", "astronaut", "rocket", "motorcycle_left"):
        photos[name].save(folder / f"{name}.jpg", quality=90)
    with (
        Catalog(tmp_path / "catalog.sqlite3") as catalog,
        Pipeline(catalog, {"efficientnet": efficientnet}, loader_threads=2) as pipeline,
    ):

        def run() -> tuple[int, int, dict]:
            passes, embedded = efficientnet.forward_passes, efficientnet.images_embedded
            summary = pipeline.process(pipeline.prune_folder(str(folder), EXTENSIONS))
            return efficientnet.forward_passes - passes, efficientnet.images_embedded - embedded, summary

        passes, embedded, _ = run()
        assert embedded == 5 and passes >= 1
        # unchanged: nothing embedded, nothing even read
        passes, embedded, summary = run()
        assert (passes, embedded, summary["unchanged"]) == (0, 0, 5)
        # touched with new content: only that one re-embedded
        photos["coffee"].save(folder / "coffee.jpg", quality=70)
        passes, embedded, summary = run()
        assert (passes, embedded, summary["unchanged"]) == (1, 1, 4)
        # touched without a change of content (mtime only): re-read and re-hashed, the vector reused
        st = os.stat(folder / "chelsea.jpg")
        os.utime(folder / "chelsea.jpg", ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
        passes, embedded, summary = run()
        assert (passes, embedded, summary["reused"], summary["unchanged"]) == (0, 0, 1, 4)
        assert catalog.get(str(folder / "chelsea.jpg")).mtime_ns == st.st_mtime_ns + 10**9
        # moved: no forward pass, the vector follows, the old path is gone
        old = catalog.get(str(folder / "rocket.jpg"))
        (folder / "moved").mkdir()
        os.rename(folder / "rocket.jpg", folder / "moved" / "rocket-renamed.jpg")
        passes, embedded, summary = run()
        assert (passes, embedded, summary["reused"]) == (0, 0, 1)
        assert catalog.get(str(folder / "rocket.jpg")) is None
        new = catalog.get(str(folder / "moved" / "rocket-renamed.jpg"))
        assert new.content_hash == old.content_hash
        # copied: the copy reuses the stored vector
        shutil.copy(folder / "chelsea.jpg", folder / "chelsea-copy.jpg")
        passes, embedded, summary = run()
        assert (passes, embedded, summary["reused"]) == (0, 0, 1)
        assert catalog.counts()["files"] == 6


def test_a_new_model_id_re_embeds_and_never_mixes(tmp_path, photos, efficientnet):
    from imgsearchd.extractors import create
    from imgsearchd.extractors.efficientnet import packaged_weights_path

    folder = tmp_path / "photos"
    folder.mkdir()
    for name in ("chelsea", "coffee"):
        photos[name].save(folder / f"{name}.jpg")
    with Catalog(tmp_path / "catalog.sqlite3") as catalog:
        with Pipeline(catalog, {"efficientnet": efficientnet}) as pipeline:
            pipeline.process([str(folder / "chelsea.jpg"), str(folder / "coffee.jpg")])
        other = create("efficientnet", {**EFFICIENTNET_FP32, "weights": packaged_weights_path()})
        assert other.model_id != efficientnet.model_id
        with Pipeline(catalog, {"efficientnet": other}) as pipeline:
            summary = pipeline.process([str(folder / "chelsea.jpg"), str(folder / "coffee.jpg")])
        assert summary["embedded"] == 2
        # schema 6: the old model's vectors stay apart (a model change serves from them until its switch)
        old_vectors = catalog.all_vectors("efficientnet", efficientnet.model_id, 1280)[2]
        new_vectors = catalog.all_vectors("efficientnet", other.model_id, 1280)[2]
        assert old_vectors.shape == new_vectors.shape == (2, 1280)
        assert catalog.prune_other_models("efficientnet", keep=(other.model_id,)) == 2
        assert catalog.all_vectors("efficientnet", efficientnet.model_id, 1280)[1].size == 0


def test_vanished_file_is_dropped_not_failed(tmp_path, photos, efficientnet):
    path = tmp_path / "a.jpg"
    photos["coffee"].save(path)
    with (
        Catalog(tmp_path / "catalog.sqlite3") as catalog,
        Pipeline(catalog, {"efficientnet": efficientnet}) as pipeline,
    ):
        pipeline.process([str(path)])
        path.unlink()
        summary = pipeline.process([str(path)])
        assert summary["failed"] == {} and catalog.get(str(path)) is None


def test_missing_root_removes_nothing(tmp_path, photos, efficientnet):
    folder = tmp_path / "disk"
    folder.mkdir()
    photos["coffee"].save(folder / "a.jpg")
    with (
        Catalog(tmp_path / "catalog.sqlite3") as catalog,
        Pipeline(catalog, {"efficientnet": efficientnet}) as pipeline,
    ):
        pipeline.process(pipeline.prune_folder(str(folder), EXTENSIONS))
        folder.rename(tmp_path / "unmounted")
        with pytest.raises(FileNotFoundError, match="nothing was removed"):
            pipeline.prune_folder(str(folder), EXTENSIONS)
        assert catalog.get(str(folder / "a.jpg")) is not None


def test_run_loop_applies_adds_and_removes(tmp_path, photos, efficientnet):
    photos["coffee"].save(tmp_path / "a.jpg")
    photos["chelsea"].save(tmp_path / "b.jpg")
    seqs: list[int] = []
    with (
        Catalog(tmp_path / "catalog.sqlite3") as catalog,
        Pipeline(catalog, {"efficientnet": efficientnet}, on_commit=seqs.append) as pipeline,
    ):
        queue, stop = WorkQueue(), threading.Event()
        worker = threading.Thread(target=pipeline.run, args=(queue, stop, 0.05))
        worker.start()
        try:
            queue.put_many([str(tmp_path / "a.jpg"), str(tmp_path / "b.jpg")])
            wait_for(lambda: catalog.counts()["files"] == 2)
            queue.put(str(tmp_path / "a.jpg"), Intent.REMOVE)
            wait_for(lambda: catalog.counts()["files"] == 1)
        finally:
            stop.set()
            worker.join(10)
        assert seqs and seqs == sorted(seqs)
        snapshot = pipeline.progress.snapshot()
        assert snapshot["embedded"] == 2 and snapshot["removed"] == 1


def test_run_loop_prunes_orphan_vectors_when_idle(tmp_path, photos, efficientnet):
    photos["coffee"].save(tmp_path / "a.jpg")
    with (
        Catalog(tmp_path / "catalog.sqlite3") as catalog,
        Pipeline(catalog, {"efficientnet": efficientnet}) as pipeline,
    ):
        pipeline.process([str(tmp_path / "a.jpg")])
        content = catalog.get(str(tmp_path / "a.jpg")).content_hash
        assert content is not None
        pipeline.remove([str(tmp_path / "a.jpg")])
        assert catalog.vector_for_hash(content, "efficientnet", efficientnet.model_id) is not None  # kept for now
        queue, stop = WorkQueue(), threading.Event()
        worker = threading.Thread(target=pipeline.run, args=(queue, stop, 0.02, 0.1))
        worker.start()
        try:
            wait_for(lambda: catalog.vector_for_hash(content, "efficientnet", efficientnet.model_id) is None, 10)
        finally:
            stop.set()
            worker.join(10)


# -- the command line -------------------------------------------------------------


# What a result holds: the API's fields and the photo's metadata (defined once, in media.photo_metadata).
RESULT_KEYS = {"image", "distance", "score", "hash", "match", *MetadataFields.__struct_fields__}


def test_cli_index_and_search(tmp_path, photos, offline_config, capsys):
    folder = tmp_path / "photos"
    folder.mkdir()
    for name in ("chelsea", "coffee", "astronaut", "rocket", "motorcycle_left", "motorcycle_right"):
        photos[name].save(folder / f"{name}.jpg", quality=90)
    first = cli_here(capsys, "index", str(folder), "--config", str(offline_config))
    assert first.returncode == 0, first.stderr
    summary = json.loads(first.stdout)
    assert summary["embedded"] == 6 and summary["forward_passes"] >= 1
    assert summary["precision"]["efficientnet"] == "fp32"  # as offline_config says
    assert summary["engine"]["efficientnet"] == "torch"
    again = json.loads(cli_here(capsys, "index", str(folder), "--config", str(offline_config)).stdout)
    assert (again["embedded"], again["forward_passes"], again["unchanged"]) == (0, 0, 6)
    found = cli_here(
        capsys,
        "search",
        str(folder / "motorcycle_left.jpg"),
        "--local",
        "--limit",
        "3",
        "--config",
        str(offline_config),
    )
    assert found.returncode == 0, found.stderr
    results = json.loads(found.stdout)["results"]
    assert [r["image"] for r in results[:2]] == [
        str(folder / "motorcycle_left.jpg"),
        str(folder / "motorcycle_right.jpg"),
    ]
    assert results[0]["distance"] == pytest.approx(0.0, abs=1e-3)
    assert len(results) == 3 and all(set(r) == RESULT_KEYS for r in results)
    assert results[1]["distance"] <= results[2]["distance"]


@pytest.mark.process
def test_cli_indexes_an_unreadable_file_as_failed_and_goes_on(tmp_path, photos, offline_config):
    """``imgsearchd index`` as a process (its smoke test), with permissions dropped for it alone."""
    folder = tmp_path / "photos"
    folder.mkdir()
    photos["coffee"].save(folder / "ok.jpg")
    photos["chelsea"].save(folder / "secret.jpg")
    (folder / "secret.jpg").chmod(0)
    done = run_cli("index", str(folder), "--config", str(offline_config), prefix=without_file_permissions_bypass())
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["failed"] == {"unreadable": 1}
    conn = sqlite3.connect(tmp_path / "data" / "catalog.sqlite3")
    rows = dict(conn.execute("SELECT CAST(path AS TEXT), COALESCE(error_reason, state) FROM files"))
    assert rows == {str(folder / "ok.jpg"): "indexed", str(folder / "secret.jpg"): "unreadable"}


def test_cli_errors_are_clear(tmp_path, offline_config, capsys):
    missing = cli_here(capsys, "index", str(tmp_path / "nope"), "--config", str(offline_config))
    assert missing.returncode == 2 and "no such file or folder" in missing.stderr
    bad = write_config(tmp_path / "bad.toml", {"index": {"trees": -1}})
    wrong = cli_here(capsys, "index", str(tmp_path), "--config", str(bad))
    assert wrong.returncode == 2 and "index.trees" in wrong.stderr and str(bad) in wrong.stderr
    limit = cli_here(capsys, "search", str(tmp_path), "--local", "--limit", "0", "--config", str(offline_config))
    assert limit.returncode == 2 and "--limit" in limit.stderr


def test_cli_without_weights_and_without_fallback_exits_non_zero(tmp_path, monkeypatch, capsys):
    from imgsearchd.cli import main as cli
    from imgsearchd.extractors import clip as clip_module

    monkeypatch.setattr(clip_module, "host_reachable", lambda *a, **k: False)
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path / "hf"))
    config = write_config(
        tmp_path / "c.toml",
        {"index": {"data_dir": str(tmp_path / "d"), "fallback_extractor": ""}, "extractors.clip": {"device": "cpu"}},
    )
    (tmp_path / "pics").mkdir()
    assert cli.main(["index", str(tmp_path / "pics"), "--config", str(config)]) == cli.EXIT_MODEL
    assert "cannot be reached" in capsys.readouterr().err


def test_the_retry_timer_queues_failed_files_whose_time_has_come(tmp_path, efficientnet):
    from imgsearchd.ingest.workqueue import Intent, Work, WorkQueue

    with Catalog(tmp_path / "c.sqlite3") as catalog, Pipeline(catalog, {"efficientnet": efficientnet}) as pipeline:
        catalog.record_batch(
            [
                FileResult("/p/unreadable.jpg", 1, 2, None, error_reason="unreadable", error_detail="denied"),
                FileResult("/p/fresh.jpg", 1, 2, None, error_reason="unreadable", error_detail="denied"),
                FileResult("/p/corrupt.jpg", 1, 2, None, error_reason="corrupt", error_detail="bad"),
            ]
        )
        with sqlite3.connect(tmp_path / "c.sqlite3") as conn:  # failed 2 minutes ago, except fresh.jpg
            conn.execute(
                "UPDATE files SET updated_at = updated_at - 120 WHERE path <> CAST(? AS BLOB)", ("/p/fresh.jpg",)
            )
        queue = WorkQueue()
        assert pipeline._queue_due_retries(queue) == 1
        assert queue.take(10) == [Work("/p/unreadable.jpg", Intent.ADD)]
