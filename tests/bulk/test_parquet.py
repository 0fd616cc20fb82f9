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

from imgsearchd.bulk.import_rows import ImportOptions, mapped
from imgsearchd.bulk.parquet import export, import_vectors, parse_map
from imgsearchd.bulk.sources import VectorsError, clip_model_id, find_parts
from imgsearchd.cli.main import main
from imgsearchd.ingest.pipeline import Pipeline
from imgsearchd.media import files, photo_metadata
from imgsearchd.media.files import FileBytes
from imgsearchd.paths import path_key
from imgsearchd.search.index import ExtractorIndex
from imgsearchd.store.catalog import Catalog
from imgsearchd.store.rows import FileResult

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
    with Catalog(data / "catalog.sqlite3") as catalog, Pipeline(catalog, {NAME: efficientnet}) as pipeline:
        summary = pipeline.process(paths)
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
def test_export_then_import_into_a_served_data_folder_gives_the_same_answers(
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

    # Into the empty data folder of a running daemon, which knows none of the files: each is
    # read and hashed. One unreadable file (the import runs without root's file permission
    # bypass) fails alone.
    unreadable = library["paths"][0]
    config_b = config_for(tmp_path / "b.toml", tmp_path / "data-b")
    total = len(library["paths"])
    # The daemon in this process (its start without a second torch import); the import is a
    # separate process, as a user runs it.
    with live_server(config_b) as daemon:
        assert daemon.get("/search", image=library["paths"][1])[1]["results"] == []
        os.chmod(unreadable, 0)
        try:
            command = [*without_file_permissions_bypass(), *cli_command("import", str(out), "--config", str(config_b))]
            with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as importing:
                answered = 0
                while importing.poll() is None:  # the daemon keeps answering meanwhile
                    answered += daemon.get("/health")[0] == 200
                    time.sleep(0.2)
                stdout, stderr = importing.communicate()
        finally:
            os.chmod(unreadable, 0o644)
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
        assert b.result_facts(library["paths"]) == a.result_facts(library["paths"])  # hashes and metadata, read here
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


def test_an_import_into_an_index_of_another_model_is_refused(
    library: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The archive's vectors fit the configured model, but the data folder's index holds another model's:
    imported, they would never be searched (a model change is the daemon's)."""
    from imgsearchd.store.models import SERVING, ModelRow

    out = tmp_path / "export"
    with Catalog(library["data"] / "catalog.sqlite3") as catalog:
        export(catalog, out, [NAME])
    data = tmp_path / "data-o"
    data.mkdir()
    with Catalog(data / "catalog.sqlite3") as catalog:
        catalog.record_model(ModelRow(NAME, SERVING, "efficientnet_lite0:another", "{}", NAME, 1.0))
    assert main(["import", str(out), "--config", str(config_for(tmp_path / "o.toml", data))]) == 1
    stderr = capsys.readouterr().err
    assert "the index holds the vectors of efficientnet_lite0:another" in stderr, stderr
    assert "nothing was imported" in stderr
    with Catalog(data / "catalog.sqlite3") as catalog:
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
        "import sys; sys.modules['pyarrow'] = None; from imgsearchd.cli.main import main\n"
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
        "numbers as paths": (table.set_column(table.schema.get_field_index("path"), "path", pa.array(range(len(table)))), "column path is int64, not bytes or a string"),
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


# -- rows that lie: an import takes no claim the file or the catalogue does not back ------------------


def exported_table(library: dict[str, Any], tmp_path: Path) -> pa.Table:
    out = tmp_path / "export"
    with Catalog(library["data"] / "catalog.sqlite3") as catalog:
        export(catalog, out, [NAME])
    return pq.read_table(out / NAME / "part-00000.parquet")


def replaced(table: pa.Table, **columns: list[Any]) -> pa.Table:
    """``table`` with these columns' values replaced (same types, nulls allowed)."""
    for name, values in columns.items():
        kind = table.schema.field(name).type
        table = table.set_column(table.schema.get_field_index(name), pa.field(name, kind), pa.array(values, kind))
    return table


def rows_folder(folder: Path, table: pa.Table) -> Path:
    (folder / NAME).mkdir(parents=True)
    pq.write_table(table, folder / NAME / "part-00000.parquet")
    return folder


def row_of(table: pa.Table, path: str) -> int:
    return table.column("path").to_pylist().index(path_key(path))


def copy_catalogue(data: Path, to: Path) -> Path:
    to.mkdir(parents=True)
    for name in data.glob("catalog.sqlite3*"):
        shutil.copy(name, to / name.name)
    return to / "catalog.sqlite3"


def model_of(extractor: Any) -> dict[str, tuple[str, int]]:
    return {NAME: (extractor.model_id, extractor.dim)}


def test_a_row_claiming_another_files_hash_is_read_and_skipped_changing_no_vector(
    library: dict[str, Any], efficientnet: Any, tmp_path: Path
) -> None:
    """A row for a new file, with its real size and mtime, that claims chelsea's hash and brings
    coffee's vector: the file is read, holds other content, and the row is skipped. Chelsea still
    finds itself, and no duplicate appears."""
    table = exported_table(library, tmp_path)
    chelsea, coffee = (str(library["folder"] / f"{name}.jpg") for name in ("chelsea", "coffee"))
    c6 = tmp_path / "c6.jpg"
    library_photo(library, "astronaut").save(c6, quality=85)
    st = c6.stat()
    row = replaced(
        table.take([row_of(table, chelsea)]),
        path=[path_key(str(c6))],
        size=[st.st_size],
        mtime_ns=[st.st_mtime_ns],
        vector=[table.column("vector")[row_of(table, coffee)].as_py()],
    )
    with Catalog(copy_catalogue(library["data"], tmp_path / "data-i")) as catalog:
        before = catalog.vector_for_path(chelsea, NAME, efficientnet.model_id)
        summary = import_vectors(catalog, find_parts(rows_folder(tmp_path / "rows", row)), model_of(efficientnet))
        assert (summary.imported, summary.changed) == (0, 1), summary.as_json()
        assert catalog.get(str(c6)) is None and catalog.shared_contents() == []
        after = catalog.vector_for_path(chelsea, NAME, efficientnet.model_id)
    assert before is not None and after is not None and np.array_equal(after[1], before[1])


def test_an_imported_vector_never_replaces_one_of_the_same_model(
    library: dict[str, Any], efficientnet: Any, tmp_path: Path
) -> None:
    """A true claim (a byte copy of chelsea) with coffee's vector: the copy is catalogued, the
    duplicate it is, but chelsea's vector stays. One of another model (a model change the indexer
    would re-embed) is replaced; the indexer's own vectors replace any."""
    table = exported_table(library, tmp_path)
    chelsea, coffee = (str(library["folder"] / f"{name}.jpg") for name in ("chelsea", "coffee"))
    copy = tmp_path / "copy.jpg"
    shutil.copy(chelsea, copy)
    row = replaced(
        table.take([row_of(table, chelsea)]),
        path=[path_key(str(copy))],
        vector=[table.column("vector")[row_of(table, coffee)].as_py()],
    )
    with Catalog(copy_catalogue(library["data"], tmp_path / "data-v")) as catalog:
        before = catalog.vector_for_path(chelsea, NAME, efficientnet.model_id)
        summary = import_vectors(catalog, find_parts(rows_folder(tmp_path / "rows", row)), model_of(efficientnet))
        assert summary.imported == 1, summary.as_json()
        hashes = catalog.content_hashes([chelsea, str(copy)])
        assert hashes[chelsea] == hashes[str(copy)]
        for path in (chelsea, str(copy)):
            found = catalog.vector_for_path(path, NAME, efficientnet.model_id)
            assert before is not None and found is not None and np.array_equal(found[1], before[1])

    unit = np.eye(4, dtype=np.float32)
    with Catalog(tmp_path / "data-m" / "catalog.sqlite3") as catalog:

        def stored() -> int:  # which unit vector "h" holds for model "new"
            vector = catalog.vector_for_hash("h", NAME, "new")
            return -1 if vector is None else int(np.argmax(vector))

        catalog.record_batch([FileResult("/p/a.jpg", 1, 1, "h", {NAME: ("old", unit[0])})])
        catalog.record_batch([FileResult("/p/a.jpg", 1, 1, "h", {NAME: ("new", unit[1])})], keep_vectors=True)
        assert stored() == 1
        catalog.record_batch([FileResult("/p/b.jpg", 1, 1, "h", {NAME: ("new", unit[2])})], keep_vectors=True)
        assert stored() == 1
        catalog.record_batch([FileResult("/p/a.jpg", 1, 1, "h", {NAME: ("new", unit[3])})])  # the indexer's
        assert stored() == 3


def test_an_import_takes_a_files_metadata_from_its_bytes_never_from_the_row(
    library: dict[str, Any], efficientnet: Any, tmp_path: Path
) -> None:
    """Rows whose metadata the EXIF reader would never give (a 20 MB camera, a date that is
    none, an infinite time) into an empty catalogue: each file's metadata is its own."""
    table = exported_table(library, tmp_path)
    n = len(table)
    junk = replaced(
        table,
        camera=["x" * 20_000_000] + ["Canon"] * (n - 1),
        taken=["not a date"] * n,
        taken_at=[float("inf")] * n,
        taken_from=["exif"] * n,
        width=[-1] * n,
    )
    with Catalog(tmp_path / "data-m" / "catalog.sqlite3") as catalog:
        summary = import_vectors(catalog, find_parts(rows_folder(tmp_path / "rows", junk)), model_of(efficientnet))
        assert summary.imported == n, summary.as_json()
        facts = catalog.result_facts(library["paths"])
    for path in library["paths"]:
        assert facts[path][1] == photo_metadata.read_metadata(Path(path).read_bytes(), os.stat(path).st_mtime_ns)


def test_an_import_reads_no_file_the_catalogue_already_knows_and_keeps_its_metadata(
    library: dict[str, Any], efficientnet: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The catalogue knows every file, with another extractor's vectors: a row claiming the hash
    the catalogue holds for its unchanged file adds its vector without a read, and the catalogue
    keeps its own metadata (the rows' is junk). A row claiming another file's hash is read."""
    table = exported_table(library, tmp_path)
    n = len(table)
    claims = table.column("content_hash").to_pylist()
    wrong = library["paths"][1]
    claims[row_of(table, wrong)] = claims[row_of(table, library["paths"][2])]
    rows = replaced(table, content_hash=claims, taken=["not a date"] * n, camera=["x" * 100_000] * n)
    with Catalog(library["data"] / "catalog.sqlite3") as a:
        records = [a.get(p) for p in library["paths"]]
        facts = a.result_facts(library["paths"])
        vectors = {p: a.vector_for_path(p, NAME, efficientnet.model_id) for p in library["paths"]}
    other = {"other": ("other-model", np.eye(8, dtype=np.float32)[0])}
    with Catalog(tmp_path / "data-k" / "catalog.sqlite3") as catalog:
        catalog.record_batch(
            [FileResult(r.path, r.size, r.mtime_ns, r.content_hash, other, metadata=facts[r.path][1]) for r in records]
        )
        reads: list[str] = []
        read_file = files.read_file

        def counted(path: str, *args: Any) -> FileBytes:
            reads.append(path)
            return read_file(path, *args)

        monkeypatch.setattr(files, "read_file", counted)
        summary = import_vectors(catalog, find_parts(rows_folder(tmp_path / "rows", rows)), model_of(efficientnet))
        assert (summary.imported, summary.changed, reads) == (n - 1, 1, [wrong]), summary.as_json()
        assert catalog.result_facts(library["paths"]) == facts
        for path, exported in vectors.items():
            found = catalog.vector_for_path(path, NAME, efficientnet.model_id)
            if path == wrong:
                assert found is None
            else:
                assert found is not None and exported is not None and np.allclose(found[1], exported[1], atol=1e-6)


def test_odd_rows_are_counted_by_reason_and_never_stop_the_import(
    library: dict[str, Any], efficientnet: Any, tmp_path: Path
) -> None:
    table = exported_table(library, tmp_path)
    n = len(table)
    first = path_key(library["paths"][0])
    odd = {  # path, claimed hash: why the row is skipped
        (first.replace(b".jpg", b"\x00.jpg"), "h"): "bad_path",  # no file name holds a NUL
        (None, "h"): "bad_path",
        (b"", "h"): "bad_path",  # not the current folder
        (b"no/such/photo.jpg", "h"): "missing",  # relative: from the current folder
        (b"/" + b"a" * 5000, "h"): "missing",  # too long a name for any file
        (path_key(str(library["folder"])), "h"): "not_a_file",
        (first, None): "no_hash",  # an export always writes one
    }
    rows = replaced(
        table.take([*range(n), *[0] * len(odd)]),
        path=[*table.column("path").to_pylist(), *(path for path, _ in odd)],
        content_hash=[*table.column("content_hash").to_pylist(), *(claim for _, claim in odd)],
    )
    with Catalog(tmp_path / "data-o" / "catalog.sqlite3") as catalog:
        summary = import_vectors(catalog, find_parts(rows_folder(tmp_path / "rows", rows)), model_of(efficientnet))
        assert (summary.imported, summary.missing) == (n, 2), summary.as_json()
        assert summary.failures == {"bad_path": 3, "not_a_file": 1, "no_hash": 1}, summary.as_json()
        assert summary.imported + summary.already + summary.missing + summary.changed + summary.failed == len(rows)

    # A string path column whose bytes are not UTF-8 (pyarrow refuses to hand those over as
    # text): read as the bytes they are. A Latin-1 name is the file it names; a lone surrogate no file.
    named = [path_key(library["paths"][-1]), b"/nowhere/\xed\xa0\x80.jpg"]
    strings = pa.Array.from_buffers(pa.string(), 2, pa.array(named, pa.binary()).buffers())
    two = table.take([row_of(table, library["paths"][-1])] * 2)
    two = two.set_column(two.schema.get_field_index("path"), pa.field("path", pa.string()), strings)
    with Catalog(tmp_path / "data-s" / "catalog.sqlite3") as catalog:
        summary = import_vectors(catalog, find_parts(rows_folder(tmp_path / "strings", two)), model_of(efficientnet))
        assert (summary.imported, summary.missing, summary.failed) == (1, 1, 0), summary.as_json()
        assert catalog.get(library["paths"][-1]) is not None


def test_export_refuses_a_linked_extractor_folder_and_deletes_nothing_through_it(
    library: dict[str, Any], tmp_path: Path
) -> None:
    unrelated = tmp_path / "unrelated"
    unrelated.mkdir()
    (unrelated / "part-00000.parquet").write_bytes(b"someone else's data")
    out = tmp_path / "export"
    out.mkdir()
    (out / NAME).symlink_to(unrelated)
    with Catalog(library["data"] / "catalog.sqlite3") as catalog:
        for force in (True, False):
            with pytest.raises(VectorsError, match=f"{out / NAME} is a link \\(to {unrelated}\\)"):
                export(catalog, out, [NAME], force=force)
        (out / NAME).unlink()
        (out / NAME).write_text("a file")
        with pytest.raises(VectorsError, match=f"{out / NAME} is not a folder"):
            export(catalog, out, [NAME], force=True)
    assert [p.name for p in unrelated.iterdir()] == ["part-00000.parquet"]
    assert (unrelated / "part-00000.parquet").read_bytes() == b"someone else's data"
