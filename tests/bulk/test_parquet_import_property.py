"""``imgsearchd import`` of hostile rows, as a property: whatever a Parquet file claims (paths of
any bytes, other files' hashes, metadata of any type and size), no file stops finding itself,
nothing outside the allowed roots is catalogued, and every row is counted once.

The vectors are a cheap deterministic function of a file's bytes (``true_vector``), standing in
for a model: a row that claims a file's true hash brings that file's true vector, any other row
any vector. Each example imports into a fresh copy of one prepared catalogue.
"""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from PIL import Image

from imgsearchd.bulk.import_rows import ImportOptions
from imgsearchd.bulk.parquet import export, import_vectors
from imgsearchd.bulk.sources import METADATA_COLUMNS, find_parts
from imgsearchd.media import files as media_files
from imgsearchd.media import photo_metadata
from imgsearchd.media.limits import ImageLimits
from imgsearchd.paths import is_inside, path_key
from imgsearchd.store.catalog import Catalog
from imgsearchd.store.rows import FileResult

NAME = "efficientnet"
MODEL = "bytes-model"
DIM = 8
OTHER = ("other", "other-model")
LIMITS = ImageLimits(max_file_bytes=4000)  # big.jpg is over it


def true_vector(data: bytes) -> np.ndarray:
    """A unit vector made of a file's bytes, the same every time: the model's stand-in."""
    seed = int.from_bytes(hashlib.sha256(data).digest()[:8], "little")
    vector = np.random.default_rng(seed).standard_normal(DIM).astype(np.float32)
    return vector / np.linalg.norm(vector)


def other_vector(data: bytes) -> np.ndarray:
    return true_vector(data[::-1])


@dataclass
class World:
    root: str  # the allowed root (a real path)
    tmp: Path
    files: dict[bytes, bytes]  # every path a row may name that leads to a file -> the file's bytes
    paths: list[bytes]  # paths a row may name: those, a folder, a file outside
    template: Path  # the prepared catalogue, copied for each example
    schema: pa.Schema  # the export's, every field nullable


def jpeg(colour: tuple[int, int, int], exif: Image.Exif | None = None) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (16, 16), colour).save(out, "JPEG", quality=90, exif=exif.tobytes() if exif else b"")
    return out.getvalue()


def make_files(root: Path, outside: Path) -> list[bytes]:
    """The photos under ``root`` (links in and out of it, a copy, a name that is not UTF-8, one
    over LIMITS) and one outside it; every path a row may name."""
    camera = Image.Exif()
    camera[0x0110] = "Model X"  # Model
    camera[0x0132] = "2021:06:01 12:00:00"  # DateTime
    a = jpeg((200, 10, 10), camera)
    contents = {  # the first ones are drawn most: files whose rows may be imported
        b"new-e.jpg": jpeg((10, 200, 200)),
        b"other-c.jpg": jpeg((10, 10, 200)),
        b"copy-of-a.jpg": a,
        b"caf\xe9 \xff.jpg": jpeg((120, 60, 30)),
        b"other-d.jpg": jpeg((200, 200, 10)),
        b"known-a.jpg": a,
        b"known-b.jpg": jpeg((10, 200, 10)),
        b"big.jpg": jpeg((1, 2, 3)) + bytes(5000),
    }
    for name, data in contents.items():
        Path(os.fsdecode(path_key(str(root)) + b"/" + name)).write_bytes(data)
    (outside / "x.jpg").write_bytes(jpeg((90, 90, 90)))
    os.symlink(root / "known-b.jpg", root / "link-in.jpg")
    os.symlink(outside / "x.jpg", root / "link-out.jpg")
    (root / "sub").mkdir()
    names = [*contents, b"link-in.jpg", b"link-out.jpg", b"sub", b"gone.jpg"]
    return [*(path_key(str(root)) + b"/" + name for name in names), path_key(str(outside / "x.jpg"))]


def prepare_catalogue(template: Path, root: Path) -> pa.Schema:
    """known-*: catalogued with both extractors' vectors; other-*: with the other extractor's
    only (a row with its true hash is then taken without a read); the rest unknown. The
    export's schema, every field nullable."""
    with Catalog(template) as catalog:
        prepared = []
        for stem in ("known-a", "known-b", "other-c", "other-d"):
            read = media_files.read_file(str(root / f"{stem}.jpg"))
            vectors = {OTHER[0]: (OTHER[1], other_vector(read.data))}
            if stem.startswith("known"):
                vectors[NAME] = (MODEL, true_vector(read.data))
            metadata = photo_metadata.read_metadata(read.data, read.mtime_ns)
            prepared.append(
                FileResult(read.path, read.size, read.mtime_ns, read.content_hash, vectors, metadata=metadata)
            )
        catalog.record_batch(prepared)
        export(catalog, template.parent / "export", [NAME])
    schema = pq.read_schema(template.parent / "export" / NAME / "part-00000.parquet")
    return pa.schema([field.with_nullable(True) for field in schema], metadata=schema.metadata)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    tmp = tmp_path_factory.mktemp("import-property")
    root, outside = tmp / "photos", tmp / "outside"
    root.mkdir()
    outside.mkdir()
    paths = make_files(root, outside)
    files = {p: Path(os.fsdecode(p)).read_bytes() for p in paths if os.path.isfile(p)}  # through links
    schema = prepare_catalogue(tmp / "template" / "catalog.sqlite3", root)
    return World(os.path.realpath(root), tmp, files, paths, tmp / "template" / "catalog.sqlite3", schema)


def row_strategy(world: World) -> st.SearchStrategy[dict[str, Any]]:
    hashes = sorted({media_files.content_hash(data) for data in world.files.values()})
    vectors = [true_vector(data) for data in world.files.values()]
    readable = [p for p in world.files if is_inside(os.path.realpath(p).decode(errors="surrogateescape"), [world.root])]
    files = st.sampled_from(readable)  # what the claims are about: most rows name one
    named = st.sampled_from(world.paths)
    with_nul = st.tuples(named, st.integers(0, 200)).map(lambda pi: pi[0][: pi[1]] + b"\0" + pi[0][pi[1] :])
    path = st.one_of(
        *[files] * 6,
        named,  # links out, a file outside, a folder, a file that is gone, ...
        with_nul,
        named.map(lambda p: p.lstrip(b"/")),  # relative
        st.binary(max_size=30),
        st.binary(max_size=30).map(lambda b: os.fsencode(world.root) + b"/" + b),
        st.none(),
    )
    huge = st.sampled_from([100_000, 3_000_000]).map(lambda n: "x" * n)
    text = st.one_of(st.none(), st.text(max_size=20), st.just("not a date"), huge)
    int32 = st.one_of(st.none(), st.integers(-(2**31), 2**31 - 1))
    int64 = st.one_of(st.none(), st.integers(-(2**63), 2**63 - 1))

    @st.composite
    def row(draw: st.DrawFn) -> dict[str, Any]:
        chosen = draw(path)
        data = world.files.get(chosen) if chosen is not None else None
        true = media_files.content_hash(data) if data is not None else None
        claims = [st.sampled_from(hashes), st.text(max_size=70), st.none()]
        claimed = draw(st.one_of(st.just(true), claims[0], st.just(true), *claims) if true else st.one_of(*claims))
        if claimed is not None and claimed == true:
            assert data is not None
            vector = true_vector(data)
        else:
            value = st.one_of(st.floats(-2, 2), st.sampled_from([0.0, float("nan"), float("inf")]))
            vector = draw(st.one_of(st.sampled_from(vectors), st.lists(value, min_size=DIM, max_size=DIM)))
        size: int | None
        mtime_ns: int | None
        if data is not None and draw(st.booleans()):
            st_ = os.stat(os.fsdecode(chosen))  # the real size and mtime: what a careless import trusted
            size, mtime_ns = st_.st_size, st_.st_mtime_ns
        else:
            size, mtime_ns = draw(int64), draw(int64)
        return {
            "content_hash": claimed,
            "path": chosen,
            "size": size,
            "mtime_ns": mtime_ns,
            "model_id": MODEL,
            "extractor": NAME,
            "dim": DIM,
            "vector": [float(x) for x in vector],
            "taken_at": draw(st.one_of(st.none(), st.floats())),
            "taken": draw(text),
            "taken_from": draw(text),
            "width": draw(int32),
            "height": draw(int32),
            "camera": draw(text),
            "orientation": draw(int32),
            "has_gps": draw(st.one_of(st.none(), st.booleans())),
        }

    return row()


def table_of(rows: list[dict[str, Any]], schema: pa.Schema, metadata: str) -> pa.Table:
    """The rows in the export's schema; its metadata columns as they are, as strings, or absent."""
    fields = []
    for field in schema:
        if field.name in METADATA_COLUMNS and metadata == "absent":
            continue
        if field.name in METADATA_COLUMNS and metadata == "strings":
            field = pa.field(field.name, pa.string())
        fields.append(field)
    columns = {}
    for field in fields:
        values = [row[field.name] for row in rows]
        if pa.types.is_string(field.type) and field.name in METADATA_COLUMNS:
            values = [None if v is None else str(v) for v in values]
        columns[field.name] = pa.array(values, field.type)
    return pa.table(columns, schema=pa.schema(fields, metadata=schema.metadata))


def indexed(catalog: Catalog) -> dict[str, str]:
    """path -> content hash of every indexed file."""
    paths = [p for p, (_, _, state) in catalog.files_under("/").items() if state == "indexed"]
    return catalog.content_hashes(paths)


def check_catalogue(catalog: Catalog, world: World, before: dict[str, str]) -> None:
    now = indexed(catalog)
    assert before.items() <= now.items()  # every file indexed before still is, with its hash
    _, ids, stored = catalog.all_vectors(NAME, MODEL, DIM)
    records = {path: catalog.get(path) for path in now}
    hash_of_id = {record.id: record.content_hash for record in records.values() if record is not None}
    facts = catalog.result_facts(list(now))
    for path, content_hash in now.items():
        assert is_inside(os.path.realpath(path), [world.root]), path
        data = world.files[path_key(path)]
        assert content_hash == media_files.content_hash(data), path
        vector = catalog.vector_for_hash(content_hash, NAME, MODEL)
        if vector is not None:
            assert np.allclose(vector, true_vector(data), atol=1e-6), path
            nearest = ids[int(np.argmax(stored @ true_vector(data)))]
            assert hash_of_id[int(nearest)] == content_hash, path  # it finds itself (or its copy)
        other = catalog.vector_for_hash(content_hash, *OTHER)
        assert other is None or np.allclose(other, other_vector(data), atol=1e-6), path
        metadata = facts[path][1]
        assert metadata is None or metadata == photo_metadata.read_metadata(data, os.stat(path).st_mtime_ns), path


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(data=st.data())
def test_no_row_makes_a_file_lose_itself_or_brings_in_one_outside_the_roots(world: World, data: st.DataObject) -> None:
    rows = data.draw(st.lists(row_strategy(world), min_size=1, max_size=16), label="rows")
    metadata = data.draw(st.sampled_from(["as exported", "strings", "absent"]), label="metadata columns")
    batch = data.draw(st.integers(1, 6), label="batch")
    with tempfile.TemporaryDirectory(dir=world.tmp) as tmp:
        work = Path(tmp)
        (work / "rows" / NAME).mkdir(parents=True)
        pq.write_table(table_of(rows, world.schema, metadata), work / "rows" / NAME / "part-00000.parquet")
        shutil.copy(world.template, work / "catalog.sqlite3")
        with Catalog(work / "catalog.sqlite3") as catalog:
            before = indexed(catalog)
            options = ImportOptions(limits=LIMITS, roots=[world.root], batch=batch)
            summary = import_vectors(catalog, find_parts(work / "rows"), {NAME: (MODEL, DIM)}, options)
            counted = summary.imported + summary.already + summary.missing + summary.changed + summary.failed
            assert counted == len(rows), summary.as_json()
            assert sum(summary.failures.values()) == summary.failed
            for outcome in ("imported", "already", "missing", "changed"):
                if getattr(summary, outcome):
                    event(outcome)  # --hypothesis-show-statistics: which outcomes the examples reach
            for reason in summary.failures:
                event(f"failed: {reason}")
            check_catalogue(catalog, world, before)
