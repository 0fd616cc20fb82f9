"""A model change without a gap: a real daemon (HTTP, watcher, SQLite, EfficientNet's real weights)
whose ``preprocess`` changes between two starts keeps answering from the old model while the new
one embeds the library, resumes after a restart, switches, and prunes; a new model that cannot
load leaves the old one serving."""

from __future__ import annotations

import json
import sqlite3
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from PIL import Image, ImageDraw, ImageOps

from helpers import EFFICIENTNET_FP32, Live, cli_here, live_server, server_config, skimage_photos, wait_for

FAST = {"check_seconds": 0.2, "poll_seconds": 0.3, "settle_seconds": 0.5, "debounce_seconds": 0.1}
NAME = "efficientnet"
EXTRA = 3  # pictures added during the change: one dropped in the watched folder, two by a folder job


def library(folder: Path) -> list[Path]:
    """40 distinct pictures: the scikit-image photos in four variants, and four drawn ones."""
    folder.mkdir(parents=True)
    made: list[Path] = []
    for name, photo in skimage_photos().items():
        w, h = photo.size
        variants = {
            "": photo,
            "-crop": photo.crop((w // 8, h // 8, w - w // 8, h - h // 8)),
            "-mirror": ImageOps.mirror(photo),
            "-grey": ImageOps.grayscale(photo).convert("RGB"),
        }
        for suffix, picture in variants.items():
            made.append(folder / f"{name}{suffix}.jpg")
            picture.save(made[-1], quality=90)
    for i in range(40 - len(made)):
        picture = Image.new("RGB", (320, 240), (40 * i, 200 - 30 * i, 90))
        ImageDraw.Draw(picture).ellipse((30 + 20 * i, 40, 200 + 10 * i, 200), fill=(250, 240 - 50 * i, 20 * i))
        made.append(folder / f"drawn-{i}.png")
        picture.save(made[-1])
    return made


def library_extra(folder: Path) -> list[Path]:
    """Two more pictures, for a folder job."""
    folder.mkdir(parents=True)
    made = []
    for i, colour in enumerate(((200, 30, 30), (30, 30, 200))):
        picture = Image.new("RGB", (300, 300), colour)
        ImageDraw.Draw(picture).rectangle((40 + 60 * i, 40, 200, 260 - 50 * i), fill=(240, 240, 240))
        made.append(folder / f"job-{i}.png")
        picture.save(made[-1])
    return made


def duplicate_groups(live: Live) -> list[list[str]] | None:
    """The groups of /duplicates once its join is done (None while it computes)."""
    status, body = live.get("/duplicates")
    assert status in (200, 202), body
    if status != 200 or body["stale"]:
        return None
    return [[m["image"] for m in group["members"]] for group in body["groups"]]


def config_for(tmp_path: Path, folder: Path, **efficientnet: Any) -> Path:
    return server_config(
        tmp_path,
        server={"allowed_roots": [str(tmp_path)]},
        watch={"directories": [str(folder)]},
        **{
            "extractors.efficientnet": {
                "device": "cpu",
                "batch_size": 8,
                "precision": "fp32",
                "engine": "torch",
                **efficientnet,
            }
        },
    )


@contextmanager
def daemon(config: Path, pace: float = 0.0) -> Iterator[Live]:
    with live_server(config, load=False, watch_overrides=FAST) as live:
        live.service.change_overrides = {"pace": pace}
        live.service.load()
        yield live


def extractor_stats(live: Live) -> dict[str, Any]:
    status, stats = live.get("/stats")
    assert status == 200, stats
    return dict(stats["extractors"][NAME])


def first_and_count(live: Live, path: Path, limit: int = 10) -> tuple[str, int]:
    status, body = live.get("/search", image=str(path), limit=limit)
    assert status == 200, body
    return body["results"][0]["image"], len(body["results"])


def vector_models(data: Path) -> dict[str, int]:
    with sqlite3.connect(data / "catalog.sqlite3") as conn:
        return dict(conn.execute("SELECT model_id, count(*) FROM vectors GROUP BY model_id").fetchall())


@pytest.fixture(scope="module")
def indexed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, list[Path], str]:
    """A library indexed by EfficientNet with ``preprocess = "squash"``: (tmp, folder, pictures, model id)."""
    tmp = tmp_path_factory.mktemp("change")
    folder = tmp / "library"
    pictures = library(folder)
    with daemon(config_for(tmp, folder, preprocess="squash")) as live:
        wait_for(lambda: live.get("/stats")[1]["images"] == len(pictures), 120, "the library to be indexed")
        model = extractor_stats(live)["model"]
    return tmp, folder, pictures, model


def test_a_preprocess_change_keeps_serving_the_old_model_then_switches(
    indexed: tuple[Path, Path, list[Path], str], capsys: pytest.CaptureFixture[str]
) -> None:
    tmp, folder, pictures, old_id = indexed
    data = tmp / "data"
    config = config_for(tmp, folder, preprocess="letterbox")
    # 1. the change starts; the old model serves every search with the full limit, itself first
    with daemon(config, pace=2.0) as live:  # the checks below run while it embeds: >= 10 s
        change = extractor_stats(live)["change"]
        new_id = change["to"]
        assert change["from"] == old_id and new_id != old_id and change["state"] == "embedding"
        assert change["total"] == len(pictures) and change["error"] is None and change["old_model_bytes"] > 1_000_000
        for path in pictures[::7]:
            assert first_and_count(live, path) == (str(path), 10)
        dropped = folder / "dropped.jpg"
        ImageOps.flip(Image.open(pictures[0])).save(dropped, quality=90)
        wait_for(lambda: first_and_count(live, dropped)[0] == str(dropped), 60, "the dropped file to be found")
        # a folder job, and duplicates (the variants of a photo), work on the old model meanwhile
        job_pictures = library_extra(tmp / "added")
        status, job = live.get("/add", image=str(tmp / "added"))
        assert status == 202, job
        assert live.wait_job(job["job"])["state"] == "done"
        assert first_and_count(live, job_pictures[1]) == (str(job_pictures[1]), 10)
        groups = wait_for(lambda: duplicate_groups(live), 60, "the duplicates")
        assert any(len({Path(p).stem.split("-")[0] for p in group}) == 1 for group in groups), groups
        stats = extractor_stats(live)
        assert stats["model"] == old_id and "change" in stats, "the change ended before the checks ran: slower pace"
        wait_for(lambda: extractor_stats(live)["change"]["done"] >= 8, 60, "a batch of the new model")
    done_before = vector_models(data)[new_id]
    assert 8 <= done_before < len(pictures) + EXTRA
    # without the daemon, `search --local` answers from the serving (old) model too: by a file
    # the new model has not embedded yet, which its partial index could not find
    with sqlite3.connect(data / "catalog.sqlite3") as conn:
        lacking = conn.execute(
            "SELECT CAST(path AS TEXT) FROM files f WHERE NOT EXISTS (SELECT 1 FROM vectors v"
            " WHERE v.content_hash=f.content_hash AND v.model_id=?) ORDER BY path LIMIT 1",
            (new_id,),
        ).fetchone()[0]
    local = cli_here(capsys, "search", lacking, "--local", "--json", "--limit", "10", "--config", str(config))
    assert local.returncode == 0, local.stderr
    results = json.loads(local.stdout)["results"]
    assert len(results) == 10 and results[0]["image"] == lacking
    # 2. a restart resumes (done counts what is stored), then switches and prunes
    with daemon(config, pace=0.2) as live:
        change = extractor_stats(live)["change"]
        assert change["done"] >= done_before and change["total"] == len(pictures) + EXTRA
        assert first_and_count(live, pictures[3]) == (str(pictures[3]), 10)
        wait_for(lambda: "change" not in extractor_stats(live), 120, "the switch")
        stats = extractor_stats(live)
        assert stats["model"] == new_id and stats["vectors"] == len(pictures) + EXTRA
        for path in [*pictures[::9], dropped]:
            assert first_and_count(live, path) == (str(path), 10)
        after = folder / "after.jpg"  # the pipeline and the watcher moved to the new model too
        ImageOps.mirror(Image.open(pictures[5])).save(after, quality=90)
        wait_for(lambda: first_and_count(live, after)[0] == str(after), 60, "the file dropped after the switch")
        assert live.get("/health")[1]["status"] == "ok"
    assert vector_models(data) == {new_id: len(pictures) + EXTRA + 1}  # no vector of the old model is left
    assert not (data / NAME).exists()  # the old index folder is gone
    with sqlite3.connect(data / "catalog.sqlite3") as conn:
        rows = conn.execute("SELECT state, model_id, folder FROM models").fetchall()
    assert rows == [("serving", new_id, rows[0][2])] and (data / rows[0][2]).is_dir()


def data_copy(tmp: Path, tmp_path: Path) -> Path:
    """A data folder under ``tmp_path`` holding a copy of the indexed library's catalogue (SQLite's backup)."""
    copy = tmp_path / "data"
    copy.mkdir()
    with sqlite3.connect(tmp / "data" / "catalog.sqlite3") as source, sqlite3.connect(copy / "catalog.sqlite3") as dest:
        source.backup(dest)
    return copy


def test_a_new_model_that_cannot_load_leaves_the_old_one_serving(
    indexed: tuple[Path, Path, list[Path], str], tmp_path: Path
) -> None:
    tmp, folder, pictures, _ = indexed
    # the library's catalogue as the last test left it, under a config whose weights are missing
    copy = data_copy(tmp, tmp_path)
    serving = dict(vector_models(copy))
    config = server_config(
        tmp_path,
        watch={"directories": [str(folder)]},
        **{"extractors.efficientnet": {"device": "cpu", "batch_size": 8, "weights": str(tmp_path / "gone.pth")}},
    )
    with daemon(config) as live:
        stats = extractor_stats(live)
        change = stats["change"]
        assert change["state"] == "failed" and "gone.pth" in change["error"] and change["to"] is None
        assert stats["model"] == change["from"] == next(iter(serving))
        assert first_and_count(live, pictures[5]) == (str(pictures[5]), 10)
        health = live.get("/health")[1]
        assert health["status"] == "degraded" and "gone.pth" in health["model_change"][NAME]
        with urllib.request.urlopen(f"{live.base}/metrics", timeout=30) as answer:
            assert "imgsearchd_health_degraded 1.0" in answer.read().decode()
    assert vector_models(copy) == serving  # nothing re-embedded, nothing pruned


def as_schema_5(catalogue: Path) -> None:
    """Turn a catalogue back into what schema version 5 wrote: no ``models``, vectors keyed without the model."""
    with sqlite3.connect(catalogue, isolation_level=None) as conn:
        conn.executescript(
            """
            DROP TABLE models;
            CREATE TABLE v5 (content_hash TEXT NOT NULL, extractor TEXT NOT NULL, model_id TEXT NOT NULL,
                dim INTEGER NOT NULL, vector BLOB NOT NULL, PRIMARY KEY (content_hash, extractor)) WITHOUT ROWID;
            INSERT INTO v5 SELECT * FROM vectors;
            DROP TABLE vectors;
            ALTER TABLE v5 RENAME TO vectors;
            PRAGMA user_version=5;
            """
        )


def test_a_schema_5_catalogue_migrates_and_changes_with_a_gap_it_names(
    indexed: tuple[Path, Path, list[Path], str], tmp_path: Path
) -> None:
    tmp, folder, pictures, _ = indexed
    copy = data_copy(tmp, tmp_path)
    (old_id,) = vector_models(copy)
    as_schema_5(copy / "catalog.sqlite3")
    config = server_config(
        tmp_path,
        watch={"directories": [str(folder)]},
        **{"extractors.efficientnet": {**EFFICIENTNET_FP32, "preprocess": "crop"}},
    )
    with daemon(config, pace=0.3) as live:
        stats = extractor_stats(live)
        change = stats["change"]
        # the old model's settings were never stored: the new one serves at once, and says why there is a gap
        assert change["from"] == old_id and stats["model"] == change["to"] != old_id
        assert "schema version 6" in change["error"] and change["old_model_bytes"] is None
        wait_for(lambda: "change" not in extractor_stats(live), 120, "the change to finish")
        new_id = extractor_stats(live)["model"]
        for path in pictures[1::10]:
            assert first_and_count(live, path) == (str(path), 10)
    assert set(vector_models(copy)) == {new_id}
    with sqlite3.connect(copy / "catalog.sqlite3") as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == 6
        assert conn.execute("SELECT state, model_id FROM models").fetchall() == [("serving", new_id)]


def test_a_catalogue_the_daemon_never_served_names_its_most_used_model(
    indexed: tuple[Path, Path, list[Path], str], tmp_path: Path
) -> None:
    from imgsearchd.config import load_config
    from imgsearchd.service.model_change import load_models
    from imgsearchd.store.catalog import Catalog

    tmp, folder, _, _ = indexed
    copy = data_copy(tmp, tmp_path)
    with sqlite3.connect(copy / "catalog.sqlite3") as conn:
        conn.execute("DELETE FROM models")  # as `imgsearchd index` leaves a catalogue: vectors, no models
    (made_by,) = vector_models(copy)
    config = load_config(config_for(tmp_path, folder, preprocess="crop"))
    with Catalog(copy / "catalog.sqlite3") as catalog:
        loaded, changes = load_models(catalog, config)
        change = changes[NAME]
        assert change.from_id == made_by and change.to_id == loaded.extractors[NAME].model_id != made_by
        assert change.error is not None and "not recorded" in change.error  # a gap, said why
        assert catalog.models(NAME)["next"].model_id == change.to_id


def test_weights_are_fingerprinted_by_their_bytes_and_an_old_form_id_is_renamed_not_re_embedded(
    indexed: tuple[Path, Path, list[Path], str], tmp_path: Path
) -> None:
    import os
    import shutil

    from imgsearchd.config import load_config
    from imgsearchd.extractors import LoadedExtractors
    from imgsearchd.extractors.base import file_fingerprint, legacy_file_fingerprint
    from imgsearchd.extractors.efficientnet import packaged_weights_path
    from imgsearchd.extractors.registry import create
    from imgsearchd.service.model_change import load_models, settings_json, use_serving_models
    from imgsearchd.store.catalog import Catalog

    tmp, folder, _, _ = indexed
    weights = tmp_path / "w.pth"
    shutil.copy(packaged_weights_path(), weights)  # a restore without -p: a new mtime, the same bytes
    config = load_config(config_for(tmp_path, folder, preprocess="squash", weights=str(weights)))
    catalogue = data_copy(tmp, tmp_path) / "catalog.sqlite3"
    with Catalog(catalogue) as catalog:
        new_id = load_models(catalog, config)[1][NAME].to_id or ""
    assert file_fingerprint(str(weights)) in new_id
    # the catalogue as the daemon before content digests left it: its vectors under the old form's id
    legacy_id = new_id.replace(file_fingerprint(str(weights)), legacy_file_fingerprint(str(weights)))
    stale_id = new_id.replace(file_fingerprint(str(weights)), f"file:w.pth:{weights.stat().st_size}:1")
    for model_id, expect_change in ((legacy_id, False), (stale_id, True)):
        with sqlite3.connect(catalogue) as conn:
            conn.execute("UPDATE vectors SET model_id=?", (model_id,))
            conn.execute("DELETE FROM models")
            conn.execute(
                "INSERT INTO models VALUES (?, 'serving', ?, ?, ?, 0)",
                (NAME, model_id, settings_json(config, NAME), NAME),
            )
        count = sum(vector_models(catalogue.parent).values())
        with Catalog(catalogue) as catalog:
            changes = load_models(catalog, config)[1]
        # the same weights (name, size and mtime as stored): renamed in place; another mtime: a real change
        assert (NAME in changes) is expect_change
        assert vector_models(catalogue.parent) == ({model_id: count} if expect_change else {new_id: count})
    # `search --local` (no daemon) renames it too, rather than answering from a model it cannot build
    with sqlite3.connect(catalogue) as conn:
        conn.execute("UPDATE vectors SET model_id=?", (legacy_id,))
        conn.execute("UPDATE models SET model_id=?", (legacy_id,))
    configured = create(NAME, config.extractor(NAME))
    with Catalog(catalogue) as catalog:
        assert use_serving_models(catalog, LoadedExtractors({NAME: configured}, NAME), config) == ([], [])
    assert vector_models(catalogue.parent) == {new_id: count}
    # indexed offline by an earlier version: no settings stored; the configured ones rename it the same
    with sqlite3.connect(catalogue) as conn:
        conn.execute("UPDATE vectors SET model_id=?", (legacy_id,))
        conn.execute("UPDATE models SET model_id=?, settings=NULL", (legacy_id,))
    with Catalog(catalogue) as catalog:
        assert use_serving_models(catalog, LoadedExtractors({NAME: configured}, NAME), config) == ([], [])
    assert vector_models(catalogue.parent) == {new_id: count}
    # a touch (the same bytes) leaves the model id as it is
    os.utime(weights, (1_000_000_000, 1_000_000_000))
    assert create(NAME, config.extractor(NAME)).model_id == new_id


def test_a_switch_that_fails_puts_the_pipeline_back_on_the_serving_model(
    indexed: tuple[Path, Path, list[Path], str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    import logging

    from imgsearchd.service import model_switch

    tmp, folder, _, _ = indexed
    catalogue = data_copy(tmp, tmp_path) / "catalog.sqlite3"
    (serving_id,) = vector_models(catalogue.parent)

    def refuse(*_args: object) -> None:
        raise OSError("the new index cannot open (a test)")

    monkeypatch.setattr(model_switch, "index_for", refuse)
    added = tmp_path / "added"
    added.mkdir()
    config = server_config(
        tmp_path,
        server={"allowed_roots": [str(tmp), str(tmp_path)]},
        watch={"directories": [str(folder), str(added)]},
        **{"extractors.efficientnet": {**EFFICIENTNET_FP32, "preprocess": "crop"}},
    )

    def drop(name: str, shade: int) -> Path:
        picture = Image.new("RGB", (280, 210), (shade, 255 - shade, 128))
        ImageDraw.Draw(picture).rectangle((20 + shade // 8, 30, 200, 180 - shade // 4), fill=(255, shade, 0))
        picture.save(added / name)
        return added / name

    with caplog.at_level(logging.INFO, logger=model_switch.log.name), daemon(config, pace=2.0) as live:
        change = extractor_stats(live)["change"]
        assert change["from"] == serving_id
        # new contents during the pass (some land behind its cursor: the switch's second pass embeds them)
        new = [drop(f"new-{i}.png", 30 * i) for i in range(6)]
        wait_for(lambda: first_and_count(live, new[-1])[0] == str(new[-1]), 60, "the new files to be indexed")
        # the total follows the library while the pass goes on (not only at its end)
        grown = {"state": "embedding", "total": change["total"] + len(new)}
        wait_for(lambda: grown.items() <= extractor_stats(live)["change"].items(), 10, "the total to follow")
        wait_for(lambda: extractor_stats(live)["change"]["state"] == "failed", 120, "the switch to fail")
        assert "cannot open" in extractor_stats(live)["change"]["error"]
        # the old model serves, so the pipeline and the watcher embed with it again: a new file is found
        assert live.service.pipeline is not None and live.service.watcher is not None
        assert live.service.pipeline.extractors[NAME].model_id == serving_id
        assert live.service.watcher.models[NAME] == serving_id
        after = drop("after.png", 250)
        wait_for(lambda: first_and_count(live, after)[0] == str(after), 60, "the file dropped after the failure")
    # every content was handed to the new model (none to the indexer): no warning says otherwise
    assert not [r.getMessage() for r in caplog.records if "could not be embedded" in r.getMessage()]


def test_index_model_ids_name_the_vectors_each_index_holds(tmp_path: Path) -> None:
    """What ``engine = "auto"`` keeps to: the serving model, else the most used; never one coming next, so
    that putting the old settings back (engine and precision too) gives the change up."""
    import numpy as np

    from imgsearchd.service.model_change import index_model_ids
    from imgsearchd.store.catalog import Catalog
    from imgsearchd.store.models import NEXT, SERVING, ModelRow

    one = np.ones(4, dtype=np.float32) / 2
    with Catalog(tmp_path / "catalog.sqlite3") as catalog:
        catalog.put_vectors("a", "made-most", {"h1": one, "h2": one}, visible=False)  # never served
        catalog.put_vectors("a", "made-once", {"h3": one}, visible=False)
        catalog.record_model(ModelRow("b", SERVING, "b-serving", "{}", "b", 1.0))
        catalog.record_model(ModelRow("c", SERVING, "c-old", "{}", "c", 1.0))
        catalog.record_model(ModelRow("c", NEXT, "c-new", "{}", "c-1", 2.0))
        ids = index_model_ids(catalog, ["a", "b", "c", "new"])
    assert ids == {"a": "made-most", "b": "b-serving", "c": "c-old"}  # "new": nothing embedded yet


def test_an_old_int8_model_that_cannot_run_int8_here_is_named_as_such(
    tmp_path: Path, efficientnet: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The serving model ran OpenVINO int8, which cannot run here (a CPU whose int8 does not compile: its
    build fails as OpenVINO's does there): not "its weights changed"."""
    from imgsearchd.extractors import openvino_build
    from imgsearchd.service.model_change import _build_old
    from imgsearchd.store.models import SERVING, ModelRow

    real = openvino_build.openvino_model

    def no_int8(extractor: Any, precision: str, models_dir: Any) -> Any:
        if precision == "int8":
            raise RuntimeError("Supported primitive descriptors list is empty for node: Softmax")
        return real(extractor, precision, models_dir)

    monkeypatch.setattr(openvino_build, "openvino_model", no_int8)
    settings = json.dumps({**EFFICIENTNET_FP32, "engine": "openvino", "precision": "int8"})
    serving = ModelRow(NAME, SERVING, efficientnet.model_id + ":openvino-int8", settings, NAME, 1.0)
    old, why = _build_old(NAME, serving, tmp_path / "models")
    assert old is None and "cannot run OpenVINO int8 here" in why and "weights changed" not in why


def test_an_old_int8_model_that_runs_but_now_fails_its_check_answers_from_its_index(
    tmp_path: Path, efficientnet: Any, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An int8 index whose int8 now fails the check (an upgrade, another CPU; EfficientNet's int8 fails it,
    its smallest probe cosine about 0.98): the new model embeds the library again, and meanwhile the int8
    model answers from the index its vectors made (a hostile test saw searches miss pictures for the
    whole change), down to a floor; it is kept as no choice. The floor is set on each side of what this
    CPU measures, so the test holds wherever int8's cosines land."""
    import logging

    from imgsearchd.extractors import engines
    from imgsearchd.service.model_change import _build_old
    from imgsearchd.store.models import SERVING, ModelRow

    int8_id = efficientnet.model_id + ":openvino-int8"
    settings = json.dumps({**EFFICIENTNET_FP32, "engine": "openvino", "precision": "int8"})
    serving = ModelRow(NAME, SERVING, int8_id, settings, NAME, 1.0)
    monkeypatch.setattr(engines, "MIN_COSINE", 0.9)
    with caplog.at_level(logging.WARNING, logger="imgsearchd.extractors"):
        old, why = _build_old(NAME, serving, tmp_path / "models")
    assert old is not None and old.model_id == int8_id and why == ""
    assert (old.precision.engine, old.precision.used) == ("openvino", "int8")
    said = [r.getMessage() for r in caplog.records]
    assert any("fails the check" in m and "answers from the index" in m for m in said), said
    assert not list((tmp_path / "models").glob("*-choice-*.json"))
    monkeypatch.setattr(engines, "MIN_COSINE", 0.99999)  # vectors that fall too far: no old model
    old, why = _build_old(NAME, serving, tmp_path / "models")
    assert old is None and "cannot run OpenVINO int8 here" in why
