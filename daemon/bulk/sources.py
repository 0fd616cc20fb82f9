"""The folders ``imgsearchd import`` reads: what a folder holds, and its rows in batches.

Two layouts, told apart by what the folder holds:

- ours (``imgsearchd export``): ``*/part-*.parquet`` (or ``*.parquet``) with content_hash,
  path (bytes, or a string), size, mtime_ns, model_id, extractor, dim, vector and the photo
  metadata columns; ``imgsearchd.format`` in the key-value metadata. An import reads only
  path, content_hash and vector of each row (size, mtime_ns and the metadata are an exporter's
  claims about another machine's files, which an import never takes: ``parquet``).
- clip-retrieval's: ``img_emb/img_emb_K.npy`` (float16 or float32), whose row i belongs to
  row i of ``metadata/metadata_K.parquet`` (an ``image_path`` column). It names no model:
  the caller gives clip-retrieval's ``--clip_model`` (``clip_model_id`` translates it).

pyarrow is optional: ``pyarrow_modules`` imports it, or raises ParquetMissing saying how to
install it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

FORMAT_KEY = b"imgsearchd.format"
FORMAT_VERSION = b"1"
# The photo metadata columns (catalog's metadata columns, ``PhotoMetadata``'s order): an export
# writes them; an import does not read them.
METADATA_COLUMNS = ("taken_at", "taken", "taken_from", "width", "height", "camera", "orientation", "has_gps")
# The columns an import of ours needs (an export writes size, mtime_ns and the metadata too).
REQUIRED_COLUMNS = ("content_hash", "path", "model_id", "extractor", "dim", "vector")
OURS = "imgsearchd"
CLIP_RETRIEVAL = "clip-retrieval"
INSTALL_HINT = "pip install 'imgsearchd[parquet]'"

# openai/clip's model names (``clip.available_models()``, clip-retrieval's ``--clip_model``
# default is ViT-B/32) as open_clip names them; its weights are open_clip's "openai" tag.
OPENAI_MODELS = {
    "RN50": "RN50",
    "RN101": "RN101",
    "RN50x4": "RN50x4",
    "RN50x16": "RN50x16",
    "RN50x64": "RN50x64",
    "ViT-B/32": "ViT-B-32",
    "ViT-B/16": "ViT-B-16",
    "ViT-L/14": "ViT-L-14",
    "ViT-L/14@336px": "ViT-L-14-336",
}
# Our extractors' model id prefixes: such a --model is one of our ids, taken as it is.
OUR_PREFIXES = ("clip:", "efficientnet_lite0:", "resnet")


class VectorsError(Exception):
    """An export or import refused: the message names the file and why."""


class ParquetMissing(VectorsError):
    """pyarrow is not installed."""

    def __init__(self) -> None:
        super().__init__(f"export and import need pyarrow, which is not installed: {INSTALL_HINT}")


def pyarrow_modules() -> tuple[Any, Any]:
    """(pyarrow, pyarrow.parquet), or ParquetMissing."""
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise ParquetMissing() from None
    return pa, pq


def format_metadata() -> dict[bytes, bytes]:
    return {FORMAT_KEY: FORMAT_VERSION}


def clip_model_id(name: str, default_tag: Callable[[str], str | None] | None = None) -> str:
    """Our model id for clip-retrieval's ``--clip_model`` (or one of our ids, unchanged).

    ``ViT-B/32`` is OpenAI's weights: ``clip:ViT-B-32:openai``. ``open_clip:MODEL/TAG`` is
    ``clip:MODEL:TAG``; plain ``open_clip:MODEL`` takes the tag clip-retrieval would load
    (``default_tag(MODEL)``: the last one open_clip lists). clip-retrieval preprocesses with
    the model's own transform, the centre crop: our framing "crop", whose ids carry no suffix
    (``framing.framed_id``). ValueError for a name that is none of these.
    """
    if name.startswith(OUR_PREFIXES):
        return name
    if name.startswith("open_clip:"):
        model, _, tag = name[len("open_clip:") :].partition("/")
        if not tag and default_tag is not None:
            tag = default_tag(model) or ""
        if not model or not tag:
            raise ValueError(f"--model {name!r}: name the weights too, as open_clip:MODEL/TAG")
        return f"clip:{model}:{tag}"
    if name in OPENAI_MODELS:
        return f"clip:{OPENAI_MODELS[name]}:openai"
    raise ValueError(
        f"--model {name!r}: not a CLIP model imgsearchd runs; give clip-retrieval's --clip_model "
        f"({', '.join(OPENAI_MODELS)}, or open_clip:MODEL/TAG) or one of our model ids"
    )


def open_clip_default_tag(model: str) -> str | None:
    """The tag clip-retrieval loads for ``open_clip:MODEL``: ``dict(open_clip.list_pretrained())[MODEL]``."""
    import open_clip

    return dict(open_clip.list_pretrained()).get(model)


@dataclass(frozen=True)
class Part:
    """One file of vectors: its layout, extractor, model id, dimension and rows."""

    file: Path
    layout: str
    extractor: str
    model_id: str
    dim: int
    rows: int
    metadata_file: Path | None = None  # clip-retrieval: the parquet that holds the paths


@dataclass
class ImportBatch:
    """Up to a batch of rows of one part: paths as bytes, vectors, and the hashes ours claims.

    A path is None where the row has none that names a file (null, or a value that is no
    file name); ``hashes`` is None for a layout without them (clip-retrieval's), and an
    entry None for a row without one.
    """

    paths: list[bytes | None]
    vectors: np.ndarray  # (n, dim), any float dtype
    hashes: list[str | None] | None = None


# -- finding the parts ----------------------------------------------------------------------------


def find_parts(folder: Path, extractor: str | None = None, model_id: str | None = None) -> list[Part]:
    """The parts ``folder`` holds; VectorsError when it holds neither layout.

    ``extractor``: ours, only that extractor's parts; clip-retrieval's, the target (default
    clip). ``model_id`` (our id form) is needed for clip-retrieval's layout only.
    """
    if not folder.is_dir():
        raise VectorsError(f"{folder}: {'not a folder' if folder.exists() else 'no such folder'}")
    if (folder / "img_emb").is_dir():
        if model_id is None:
            raise VectorsError(
                f"{folder} is clip-retrieval output, which names no model: give --model as its --clip_model"
            )
        return _clip_retrieval_parts(folder, extractor or "clip", model_id)
    files = sorted(folder.glob("*/part-*.parquet")) or sorted(folder.glob("*.parquet"))
    if not files:
        raise VectorsError(
            f"{folder} holds no vectors: neither an export (*/part-*.parquet) nor clip-retrieval "
            "output (img_emb/*.npy with metadata/*.parquet)"
        )
    parts = [part for part in map(_our_part, files) if part.rows]
    if extractor is not None:
        parts = [p for p in parts if p.extractor == extractor]
        if not parts:
            raise VectorsError(f"{folder} holds no vectors of extractor {extractor!r}")
    return parts


def _our_part(file: Path) -> Part:
    pa, pq = pyarrow_modules()
    try:
        schema = pq.read_schema(file)
    except (OSError, pa.ArrowException) as exc:
        raise VectorsError(f"{file}: not an imgsearchd export: {exc}") from exc
    meta = schema.metadata or {}
    # Checked on the schema, before any row: a missing column or a vector of another length
    # would otherwise surface as a KeyError or a failed reshape halfway through the import.
    lacking = [name for name in REQUIRED_COLUMNS if name not in schema.names]
    if lacking:
        raise VectorsError(f"{file}: not an imgsearchd export: no column {', '.join(lacking)}")
    for name in ("path", "content_hash"):
        if not _is_text_or_bytes(schema.field(name).type):
            raise VectorsError(f"{file}: column {name} is {schema.field(name).type}, not bytes or a string")
    vector_type = schema.field("vector").type
    if not pa.types.is_list(vector_type) and not pa.types.is_fixed_size_list(vector_type):
        raise VectorsError(f"{file}: column vector is {vector_type}, not a list of floats")
    if not pa.types.is_floating(vector_type.value_type):
        raise VectorsError(f"{file}: column vector holds {vector_type.value_type}, not floats")
    try:
        table = pq.read_table(file, columns=["extractor", "model_id", "dim"])
    except (OSError, pa.ArrowException) as exc:
        raise VectorsError(f"{file}: cannot read: {exc}") from exc
    version = meta.get(FORMAT_KEY)
    if version is not None and version != FORMAT_VERSION:
        raise VectorsError(f"{file}: export format {version.decode(errors='replace')}, this imgsearchd reads 1")
    found = {
        name: sorted({v for v in table.column(name).to_pylist() if v is not None})
        for name in ("extractor", "model_id", "dim")
    }
    for name, values in found.items():
        if len(values) > 1:
            raise VectorsError(f"{file}: several {name} values in one file ({', '.join(map(str, values))})")
    if table.num_rows == 0:
        return Part(file, OURS, "", "", 0, 0)
    if not all(found.values()):
        raise VectorsError(f"{file}: rows without an extractor, model_id or dim")
    dim = int(found["dim"][0])
    if pa.types.is_fixed_size_list(vector_type) and vector_type.list_size != dim:
        raise VectorsError(f"{file}: its dim column says {dim}, but its vectors have {vector_type.list_size} values")
    return Part(file, OURS, found["extractor"][0], found["model_id"][0], dim, table.num_rows)


def _suffix_key(path: Path) -> tuple[int, str]:
    suffix = path.stem.rpartition("_")[2]
    return (int(suffix), suffix) if suffix.isdigit() else (1 << 62, suffix)


def _clip_retrieval_parts(folder: Path, extractor: str, model_id: str) -> list[Part]:
    _, pq = pyarrow_modules()
    parts = []
    for emb in sorted((folder / "img_emb").glob("img_emb_*.npy"), key=_suffix_key):
        suffix = re.sub(r"^img_emb_", "", emb.stem)
        meta = folder / "metadata" / f"metadata_{suffix}.parquet"
        if not meta.is_file():
            raise VectorsError(f"{emb}: no {meta} beside it (clip-retrieval writes one per embedding file)")
        try:
            vectors = np.load(emb, mmap_mode="r")
            schema = pq.read_schema(meta)
            rows = pq.ParquetFile(meta).metadata.num_rows
        except (OSError, ValueError) as exc:
            raise VectorsError(f"{emb}: cannot read: {exc}") from exc
        if vectors.ndim != 2 or vectors.dtype.kind != "f":
            raise VectorsError(f"{emb}: not a 2-D float array ({vectors.dtype}, shape {vectors.shape})")
        if "image_path" not in schema.names:
            raise VectorsError(f"{meta}: no image_path column (clip-retrieval run with --enable_image False?)")
        if rows != vectors.shape[0]:
            raise VectorsError(f"{emb} has {vectors.shape[0]} rows but {meta} has {rows}")
        parts.append(Part(emb, CLIP_RETRIEVAL, extractor, model_id, int(vectors.shape[1]), rows, meta))
    if not parts:
        raise VectorsError(f"{folder / 'img_emb'} holds no img_emb_*.npy")
    return parts


# -- reading the rows ----------------------------------------------------------------------------


def batches(part: Part, size: int) -> Iterator[ImportBatch]:
    """The rows of ``part``, ``size`` at a time; VectorsError naming the file when one cannot be read
    (a corrupt page, a truncated file: the rows before it are already committed)."""
    if part.rows == 0:
        return
    pa, _ = pyarrow_modules()
    rows = _clip_retrieval_batches(part, size) if part.layout == CLIP_RETRIEVAL else _our_batches(part, size)
    try:
        yield from rows
    except (OSError, ValueError, pa.ArrowException) as exc:
        raise VectorsError(
            f"{part.file}: cannot read: {exc}; what came before it is imported (a rerun skips it)"
        ) from exc


def _is_text_or_bytes(kind: Any) -> bool:
    types = pyarrow_modules()[0].types
    return bool(
        types.is_string(kind) or types.is_large_string(kind) or types.is_binary(kind) or types.is_large_binary(kind)
    )


def _as_bytes(column: Any) -> list[bytes | None]:
    """A column of file names as their bytes; None for a null or a value that is no name.

    A string column is read as its bytes, unchecked: pyarrow refuses to hand over a string
    that is not UTF-8 (a Latin-1 name, a lone surrogate), which would end the whole import;
    as bytes it is the file name it says.
    """
    pa, _ = pyarrow_modules()
    if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
        column = column.cast(pa.large_binary() if pa.types.is_large_string(column.type) else pa.binary())
    return [v if isinstance(v, bytes) else None for v in column.to_pylist()]


def _as_text(column: Any) -> list[str | None]:
    """A column of content hashes as text; bytes that are not UTF-8 replaced (no real hash has any)."""
    return [None if v is None else v.decode("utf-8", "replace") for v in _as_bytes(column)]


def _our_batches(part: Part, size: int) -> Iterator[ImportBatch]:
    _, pq = pyarrow_modules()
    reader = pq.ParquetFile(part.file)
    for record in reader.iter_batches(batch_size=size, columns=["path", "content_hash", "vector"]):
        vectors = record.column("vector")
        flat = vectors.flatten().to_numpy(zero_copy_only=False)
        whole = vectors.null_count == 0 and flat.size == len(record) * part.dim and _all_of_length(vectors, part.dim)
        matrix = flat.reshape(len(record), part.dim) if whole else _with_nans(vectors, part.dim)
        yield ImportBatch(
            paths=_as_bytes(record.column("path")),
            vectors=matrix,
            hashes=_as_text(record.column("content_hash")),
        )


def _all_of_length(vectors: Any, dim: int) -> bool:
    """Every vector holds ``dim`` values (a fixed-size list was checked on the schema)."""
    pa, _ = pyarrow_modules()
    if pa.types.is_fixed_size_list(vectors.type):
        return True
    import pyarrow.compute as pc

    return bool(pc.all(pc.equal(pc.list_value_length(vectors), dim)).as_py())


def _with_nans(vectors: Any, dim: int) -> np.ndarray:
    """Null vectors, and those of another length (a plain list column), as rows of NaN:
    refused row by row as not finite."""
    return np.array(
        [v if v is not None and len(v) == dim else [np.nan] * dim for v in vectors.to_pylist()], dtype=np.float32
    )


def _clip_retrieval_batches(part: Part, size: int) -> Iterator[ImportBatch]:
    _, pq = pyarrow_modules()
    assert part.metadata_file is not None
    vectors = np.load(part.file, mmap_mode="r")
    start = 0
    for record in pq.ParquetFile(part.metadata_file).iter_batches(batch_size=size, columns=["image_path"]):
        n = len(record)
        yield ImportBatch(paths=_as_bytes(record.column("image_path")), vectors=np.asarray(vectors[start : start + n]))
        start += n
