"""Vectors out and in as Parquet (``imgsearchd export`` / ``import``), on real photos embedded
by EfficientNet-Lite0's real weights, real catalogues and real indexes."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from imgsearchd.catalog import Catalog
from imgsearchd.cli import main
from imgsearchd.index import ExtractorIndex
from imgsearchd.indexer import Indexer
from imgsearchd.paths import path_key
from imgsearchd.vectors_io import ImportOptions, export, import_vectors, mapped, parse_map
from imgsearchd.vectors_sources import VectorsError, clip_model_id, find_parts

from helpers import EFFICIENTNET_FP32, cli_command, live_server, wait_for, without_file_permissions_bypass, write_config

NAME = "efficientnet"
NOT_UTF8 = os.fsdecode(b"caf\xe9 \xff.jpg")  # a Latin-1 name, and a byte no encoding maps


def config_for(path: Path, data: Path) -> Path:
    return write_config(
        path,
        {
            "index": {"data_dir": str(data), "extractors": [NAME], "fallback_extractor": "", "loader_threads": 2},
            f"extractors.{NAME}": dict(EFFICIENTNET_FP32),
        },
    )


@pytest.fixture(scope="module")
def library(tmp_path_factory: pytest.TempPathFactory, photos: dict[str, Any], efficientnet: Any) -> dict[str, Any]:
    """Ten real photos (one named in bytes that are not UTF-8), indexed into data folder A."""
    root = tmp_path_factory.mktemp("vectors")
    folder = root / "photos"
    folder.mkdir()
    paths = []
    for name, photo in photos.items():
        path = folder / f"{name}.jpg"
        photo.convert("RGB").save(path, quality=90)
        paths.append(str(path))
    odd = os.path.join(str(folder), NOT_UTF8)
    photos["chelsea"].convert("RGB").rotate(90, expand=True).save(odd, "JPEG", quality=80)
    paths.append(odd)
    data = root / "data-a"
    with Catalog(data / "catalog.sqlite3") as catalog, Indexer(catalog, {NAME: efficientnet}) as indexer:
        summary = indexer.process(paths)
    assert summary["embedded"] == len(paths), summary
    return {"root": root, "folder": folder, "paths": paths, "data": data, "config": config_for(root / "a.toml", data)}


def answers(data: Path, extractor: Any, queries: list[np.ndarray], tmp: Path) -> list[list[tuple[str, float]]]:
    """The search answers of a data folder's catalogue through a real index."""
    with (
        Catalog(data / "catalog.sqlite3") as catalog,
        ExtractorIndex(catalog, tmp, NAME, extractor.model_id, extractor.dim, kind="annoy") as index,
    ):
        return [[(r["image"], r["distance"]) for r in index.search(q, limit=5)] for q in queries]


def stored_vectors(data: Path, extractor: Any, paths: list[str]) -> list[np.ndarray]:
    with Catalog(data / "catalog.sqlite3") as catalog:
        found = [catalog.vector_for_path(p, NAME, extractor.model_id) for p in paths]
    return [f[1] for f in found if f is not None]


def test_clip_retrieval_model_names_translate_to_our_ids() -> None:
    assert clip_model_id("ViT-B/32") == "clip:ViT-B-32:openai"
    assert clip_model_id("ViT-L/14@336px") == "clip:ViT-L-14-336:openai"
    assert clip_model_id("RN50") == "clip:RN50:openai"
    assert clip_model_id("open_clip:ViT-B-32/laion2b_s34b_b79k") == "clip:ViT-B-32:laion2b_s34b_b79k"
    assert clip_model_id("open_clip:ViT-H-14", lambda model: "laion2b_s32b_b79k") == "clip:ViT-H-14:laion2b_s32b_b79k"
    assert clip_model_id("clip:ViT-B-32:random-seed0:squash") == "clip:ViT-B-32:random-seed0:squash"  # ours, as is
    for bad in ("hf_clip:patrickjohncyh/fashion-clip", "ViT-B/99", "open_clip:ViT-B-32"):
        with pytest.raises(ValueError, match="--model"):
            clip_model_id(bad)
    assert mapped(b"/mnt/archive/a.jpg", [parse_map("/mnt/archive/=/home/me")]) == b"/home/me/a.jpg"
    assert mapped(b"/mnt/archived/a.jpg", [parse_map("/mnt/archive=/home/me")]) == b"/mnt/archived/a.jpg"


@pytest.mark.process
def test_export_then_import_into_a_served_data_folder_gives_the_same_answers_reading_no_unchanged_file(
    library: dict[str, Any], efficientnet: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "export"
    assert main(["export", "--format", "parquet", str(out), "--config", str(library["config"])]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["rows"] == {NAME: len(library["paths"])} and summary["files"] == 1
    part = out / NAME / "part-00000.parquet"
    schema = pq.read_schema(part)
    assert schema.metadata[b"imgsearchd.format"] == b"1"
    assert schema.field("path").type == pa.binary()
    assert schema.field("vector").type == pa.list_(pa.float32(), efficientnet.dim)
    assert {"taken_at", "width", "camera", "has_gps"} <= set(schema.names)
    table = pq.read_table(part)
    assert path_key(library["paths"][-1]) in table.column("path").to_pylist()  # the bytes, exactly
    assert main(["export", str(out), "--config", str(library["config"])]) == 2
    assert str(part) in capsys.readouterr().err
    assert main(["export", str(out), "--force", "--config", str(library["config"])]) == 0
    assert json.loads(capsys.readouterr().out)["rows"] == {NAME: len(library["paths"])}
    assert sorted(p.name for p in out.rglob("*parquet*")) == ["part-00000.parquet"]  # replaced, no temporary left

    # Into the empty data folder of a running daemon. Every photo unreadable: an import that
    # trusts size + mtime reads none. One touched file must be read, and fails: proof that
    # the files really cannot be read.
    touched = library["paths"][0]
    os.utime(touched, ns=(os.stat(touched).st_atime_ns, os.stat(touched).st_mtime_ns + 10**9))
    config_b = config_for(tmp_path / "b.toml", tmp_path / "data-b")
    total = len(library["paths"])
    # The daemon in this process (its start without a second torch import): the import, which must
    # not read the files, is the separate process that runs without root's file permission bypass.
    with live_server(config_b) as daemon:
        assert daemon.get("/search", image=library["paths"][1])[1]["results"] == []
        for path in library["paths"]:
            os.chmod(path, 0)
        try:
            command = [*without_file_permissions_bypass(), *cli_command("import", str(out), "--config", str(config_b))]
            with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as importing:
                answered = 0
                while importing.poll() is None:  # the daemon keeps answering meanwhile
                    answered += daemon.get("/health")[0] == 200
                    time.sleep(0.2)
                stdout, stderr = importing.communicate()
        finally:
            for path in library["paths"]:
                os.chmod(path, 0o644)
        assert importing.returncode == 0, stderr
        assert answered > 0
        summary = json.loads(stdout)
        assert (summary["imported"], summary["failed"], summary["failures"]) == (total - 1, 1, {"unreadable": 1})

        def found() -> list[str]:  # its index pulls the new rows by itself
            status, body = daemon.get("/search", image=library["paths"][1], limit="20")
            assert status == 200, body
            return [r["image"] for r in body["results"]] if len(body["results"]) == total - 1 else []

        assert wait_for(found, 10, "the daemon to answer with the imported files")[0] == library["paths"][1]
        assert main(["import", str(out), "--config", str(config_b)]) == 0
        rerun = json.loads(capsys.readouterr().out)
        assert (rerun["imported"], rerun["already"], rerun["failed"]) == (1, total - 1, 0), rerun

    with Catalog(library["data"] / "catalog.sqlite3") as a, Catalog(tmp_path / "data-b" / "catalog.sqlite3") as b:
        untouched = library["paths"][1:]  # hashes and metadata as exported (the touched one was read here)
        assert b.result_facts(untouched) == a.result_facts(untouched)
    queries = stored_vectors(library["data"], efficientnet, library["paths"][:4] + library["paths"][-1:])
    queries.append(efficientnet.embed_images([library_photo(library, "coffee").rotate(180)])[0])
    want = answers(library["data"], efficientnet, queries, tmp_path / "index-a")
    got = answers(tmp_path / "data-b", efficientnet, queries, tmp_path / "index-b")
    assert [[p for p, _ in row] for row in got] == [[p for p, _ in row] for row in want]
    assert np.allclose([[d for _, d in row] for row in got], [[d for _, d in row] for row in want], atol=1e-5)
    assert any(NOT_UTF8 in p for row in got for p, _ in row)


def library_photo(library: dict[str, Any], name: str) -> Any:
    from PIL import Image

    return Image.open(library["folder"] / f"{name}.jpg").convert("RGB")


def clip_retrieval_folder(folder: Path, paths: list[str], vectors: list[np.ndarray]) -> Path:
    """clip-retrieval's layout, two parts: img_emb/img_emb_K.npy (float16) + metadata/metadata_K.parquet."""
    (folder / "img_emb").mkdir(parents=True)
    (folder / "metadata").mkdir()
    half = len(paths) // 2
    for k, (start, end) in enumerate([(0, half), (half, len(paths))]):
        np.save(folder / "img_emb" / f"img_emb_{k}.npy", np.stack(vectors[start:end]).astype(np.float16))
        table = pa.table({"image_path": paths[start:end], "caption": [None] * (end - start)})
        pq.write_table(table, folder / "metadata" / f"metadata_{k}.parquet")
    return folder


def test_a_clip_retrieval_folder_imports_and_finds_the_right_files(
    library: dict[str, Any], efficientnet: Any, tmp_path: Path
) -> None:
    paths = library["paths"][:-1]  # a parquet string column holds UTF-8 names only
    vectors = stored_vectors(library["data"], efficientnet, paths)
    not_a_vector = np.full_like(vectors[0], np.nan)  # for a file that exists: refused before any read
    folder = clip_retrieval_folder(tmp_path / "cr", [*paths, str(library["config"])], [*vectors, not_a_vector])
    parts = find_parts(folder, NAME, efficientnet.model_id)
    assert [p.rows for p in parts] == [(len(paths) + 1) // 2, len(paths) + 1 - (len(paths) + 1) // 2]
    expected = {NAME: (efficientnet.model_id, efficientnet.dim)}
    with Catalog(tmp_path / "data-c" / "catalog.sqlite3") as catalog:
        summary = import_vectors(catalog, parts, expected).as_json()
        assert (summary["imported"], summary["failures"]) == (len(paths), {"bad_vector": 1}), summary
        with Catalog(library["data"] / "catalog.sqlite3") as original:
            assert catalog.content_hashes(paths) == original.content_hashes(paths)  # read and hashed here
    found = answers(tmp_path / "data-c", efficientnet, vectors, tmp_path / "index-c")
    assert [row[0][0] for row in found] == paths
    assert max(row[0][1] for row in found) < 0.01  # float16 costs a little


def test_a_model_or_dim_mismatch_is_refused_and_nothing_is_written(
    library: dict[str, Any], efficientnet: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "export"
    with Catalog(library["data"] / "catalog.sqlite3") as catalog:
        export(catalog, out, [NAME])
    part = out / NAME / "part-00000.parquet"
    table = pq.read_table(part)
    other = "efficientnet_lite0:someone-elses-weights"
    table = table.set_column(table.schema.get_field_index("model_id"), "model_id", pa.array([other] * len(table)))
    pq.write_table(table, part)
    data = tmp_path / "data-d"
    assert main(["import", str(out), "--config", str(config_for(tmp_path / "d.toml", data))]) == 1
    stderr = capsys.readouterr().err
    for needed in (other, efficientnet.model_id, NAME, str(part), "nothing was imported"):
        assert needed in stderr, stderr
    assert not data.exists()

    small = [v[:64] for v in stored_vectors(library["data"], efficientnet, library["paths"][:4])]
    folder = clip_retrieval_folder(tmp_path / "cr", library["paths"][:4], small)
    with Catalog(data / "catalog.sqlite3") as catalog:
        with pytest.raises(VectorsError, match=r"\(64 dimensions\).*\(1280 dimensions\)"):
            parts = find_parts(folder, NAME, efficientnet.model_id)
            import_vectors(catalog, parts, {NAME: (efficientnet.model_id, efficientnet.dim)})
        assert catalog.counts()["files"] == 0


def test_changed_and_missing_files_are_skipped_and_a_rerun_imports_nothing(
    library: dict[str, Any], efficientnet: Any, tmp_path: Path
) -> None:
    out = tmp_path / "export"
    with Catalog(library["data"] / "catalog.sqlite3") as catalog:
        export(catalog, out, [NAME])
    here = tmp_path / "mounted-here"
    shutil.copytree(library["folder"], here)  # copy2: size and mtime kept
    library_photo(library, "rocket").rotate(90).save(here / "rocket.jpg", quality=70)  # new content
    (here / "coffee.jpg").unlink()
    options = ImportOptions(maps=[parse_map(f"{library['folder']}={here}")])
    expected = {NAME: (efficientnet.model_id, efficientnet.dim)}
    total = len(library["paths"])
    with Catalog(tmp_path / "data-e" / "catalog.sqlite3") as catalog:

        def crash(rows: int) -> None:  # killed after its first transaction of 3 rows
            raise KeyboardInterrupt

        with pytest.raises(KeyboardInterrupt):
            import_vectors(catalog, find_parts(out), expected, replace(options, batch=3), on_rows=crash)
        committed = catalog.counts()["files"]
        assert 0 < committed <= 3
        first = import_vectors(catalog, find_parts(out), expected, options).as_json()
        assert (first["imported"] + first["already"], first["changed"], first["missing"]) == (total - 2, 1, 1), first
        assert first["already"] == committed  # the rerun after the crash imports the rest, nothing twice
        assert first["first_missing"] == str(here / "coffee.jpg")  # named in the CLI's --map hint
        again = import_vectors(catalog, find_parts(out), expected, options).as_json()
        assert (again["imported"], again["already"], again["changed"], again["missing"]) == (0, total - 2, 1, 1)
        assert catalog.get(str(here / "chelsea.jpg")) is not None and catalog.get(str(here / "rocket.jpg")) is None


def test_without_pyarrow_the_commands_say_how_to_install_it(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = str(config_for(tmp_path / "g.toml", tmp_path / "data-g"))
    code = (
        "import sys; sys.modules['pyarrow'] = None; from imgsearchd.cli import main\n"
        "for command in ('export', 'import'):\n"
        "    print(command, main([command, sys.argv[1], '--config', sys.argv[2]]), file=sys.stderr)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path), config], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert "export 2\n" in done.stderr and "import 2\n" in done.stderr, done.stderr
    assert done.stderr.count("pip install 'imgsearchd[parquet]'") == 2, done.stderr
    with pytest.raises(SystemExit) as refused:
        main(["export", "--format", "csv", str(tmp_path)])
    assert refused.value.code == 2 and "invalid choice" in capsys.readouterr().err


def test_junk_parquet_is_refused_naming_the_file_and_ragged_vectors_row_by_row(
    library: dict[str, Any], efficientnet: Any, tmp_path: Path
) -> None:
    out = tmp_path / "export"
    with Catalog(library["data"] / "catalog.sqlite3") as catalog:
        export(catalog, out, [NAME])
    table = pq.read_table(out / NAME / "part-00000.parquet")
    column = table.schema.get_field_index("vector")
    matrix = np.stack(table.column("vector").to_numpy(zero_copy_only=False))
    short = pa.FixedSizeListArray.from_arrays(pa.array(matrix[:, :64].ravel(), pa.float32()), 64)
    junk = {
        "no vector column": (table.drop_columns(["vector"]), "no column vector"),
        "vectors shorter than dim": (table.set_column(column, "vector", short), "dim column says 1280, but its vectors have 64"),
        "strings as vectors": (table.set_column(column, "vector", pa.array(["x"] * len(table))), "not a list of floats"),
    }  # fmt: skip
    for name, (bad, message) in junk.items():
        folder = tmp_path / name
        folder.mkdir()
        pq.write_table(bad, folder / "a.parquet")
        with pytest.raises(VectorsError, match=message):
            find_parts(folder)
    # A plain list column (pandas writes those) whose last row is too short: that row alone is refused.
    rows = [list(r) for r in matrix[:-1]] + [list(matrix[-1][:10])]
    ragged = table.set_column(column, "vector", pa.array(rows, pa.list_(pa.float32())))
    (tmp_path / "ragged").mkdir()
    pq.write_table(ragged, tmp_path / "ragged" / "a.parquet")
    expected = {NAME: (efficientnet.model_id, efficientnet.dim)}
    with Catalog(tmp_path / "data-j" / "catalog.sqlite3") as catalog:
        summary = import_vectors(catalog, find_parts(tmp_path / "ragged"), expected).as_json()
        assert (summary["imported"], summary["failures"]) == (len(table) - 1, {"bad_vector": 1}), summary
        # A corrupt page (the footer intact): an error naming the file, not a traceback.
        data = bytearray((out / NAME / "part-00000.parquet").read_bytes())
        data[len(data) // 8 : len(data) // 3] = bytes(len(data) // 3 - len(data) // 8)
        (tmp_path / "corrupt").mkdir()
        (tmp_path / "corrupt" / "a.parquet").write_bytes(bytes(data))
        with pytest.raises(VectorsError, match=r"a\.parquet: cannot read"):
            import_vectors(catalog, find_parts(tmp_path / "corrupt"), expected)


def test_an_import_brings_in_no_file_outside_the_allowed_roots(
    library: dict[str, Any], efficientnet: Any, tmp_path: Path
) -> None:
    out = tmp_path / "export"
    with Catalog(library["data"] / "catalog.sqlite3") as catalog:
        export(catalog, out, [NAME])
    elsewhere = tmp_path / "allowed"
    elsewhere.mkdir()
    os.symlink(library["folder"] / "coffee.jpg", elsewhere / "coffee.jpg")  # a link out of the roots
    options = ImportOptions(
        maps=[parse_map(f"{library['folder']}/coffee.jpg={elsewhere}/coffee.jpg")], roots=[str(elsewhere)]
    )
    with Catalog(tmp_path / "data-r" / "catalog.sqlite3") as catalog:
        summary = import_vectors(catalog, find_parts(out), {NAME: (efficientnet.model_id, efficientnet.dim)}, options)
        assert (summary.imported, summary.failures) == (0, {"outside_roots": len(library["paths"])})
        assert catalog.counts()["files"] == 0


def test_careless_folders_and_extractor_names_are_refused_clearly(
    library: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = str(library["config"])
    a_file = tmp_path / "a-file"
    a_file.write_text("not a folder")
    assert main(["export", str(a_file), "--config", config]) == 2
    assert f"{a_file} is not a folder" in capsys.readouterr().err
    assert main(["export", str(tmp_path / "out"), "--extractor", "efficientnt", "--config", config]) == 2
    assert f"no vectors of extractor 'efficientnt' (it holds: {NAME})" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
    with pytest.raises(VectorsError, match="not a folder"):
        find_parts(a_file)


def test_a_failed_export_keeps_the_earlier_one_and_leaves_no_file_of_its_own(
    library: dict[str, Any], tmp_path: Path
) -> None:
    out = tmp_path / "export"
    with Catalog(library["data"] / "catalog.sqlite3") as catalog:
        export(catalog, out, [NAME])
        before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}

        def disk_full(rows: int) -> None:
            raise OSError(28, "No space left on device")

        with pytest.raises(OSError, match="No space"):
            export(catalog, out, [NAME], force=True, on_rows=disk_full)
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
