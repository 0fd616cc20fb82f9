"""Import and export speed of vectors as Parquet, against embedding the same files.

For N small JPEGs (<= 1 MP, bench_indexing's set: distinct bytes each), side by side in one run:

* index: ``Pipeline.process`` with EfficientNet-Lite0's real weights into a fresh catalogue
  (read, hash, decode, embed, write): what ``imgsearchd index`` does, the baseline;
* export: ``bulk.parquet.export`` of that catalogue (one read transaction, Parquet parts);
* import, ours: ``import_vectors`` of the export into an empty catalogue, which knows none of
  the files: each is read and hashed (its hash checked against the exported one), and its
  metadata read from its bytes;
* import, known: the same export into a catalogue that already knows every file (indexed,
  with another extractor's vectors only): the catalogue vouches for each file whose size and
  mtime are unchanged and whose exported hash is the one it holds, so no file is read (stat
  only), and only the vectors are added;
* import, read + hash: the same vectors as clip-retrieval's layout (``img_emb/*.npy`` float16
  + ``metadata/*.parquet``), which has no hash: every file is read, hashed and its metadata read.

Each repeat makes fresh catalogues; medians (and ranges) shown, and each import's speed as a
ratio to the index run's. The files are read once first, so every variant sees a warm page
cache (an archive on a disk or network share makes the read + hash path slower, the stat
path barely). Run: ``.venv/bin/python bench/bench_parquet.py`` (``--help``).
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_indexing import SMALL_SIZES, cpu_model, make_set
from imgsearchd import extractors
from imgsearchd.bulk.parquet import export, import_vectors
from imgsearchd.bulk.sources import find_parts
from imgsearchd.ingest.pipeline import Pipeline
from imgsearchd.paths import path_from_key
from imgsearchd.store.catalog import Catalog
from imgsearchd.store.rows import FileResult

NAME = "efficientnet"


def run_index(extractor: extractors.Extractor, paths: list[str], data: Path) -> tuple[float, Catalog]:
    catalog = Catalog(data / "catalog.sqlite3")
    with Pipeline(catalog, {NAME: extractor}) as pipeline:
        started = time.perf_counter()
        summary = pipeline.process(paths)
        elapsed = time.perf_counter() - started
    assert summary["embedded"] == len(paths), summary
    return elapsed, catalog


def run_import(folder: Path, expected: dict[str, tuple[str, int]], data: Path, model: str | None) -> float:
    with Catalog(data / "catalog.sqlite3") as catalog:
        started = time.perf_counter()
        summary = import_vectors(catalog, find_parts(folder, NAME if model else None, model), expected)
        elapsed = time.perf_counter() - started
    assert summary.imported == summary.as_json()["imported"] > 0 and summary.failed == 0, summary.as_json()
    return elapsed


def known_catalogue(indexed: Catalog, data: Path) -> Path:
    """A catalogue that knows every file ``indexed`` does, with another extractor's vectors only
    (what a catalogue holds before an import adds a second model's vectors)."""
    with Catalog(data / "catalog.sqlite3") as catalog:
        for _, _, rows in indexed.iter_export([NAME], 1000):
            other = {"other": ("other-model", np.zeros(4, dtype=np.float32) + 0.5)}
            catalog.record_batch(FileResult(path_from_key(r[1]), r[2], r[3], r[0], other) for r in rows)
    return data


def clip_retrieval_copy(export_dir: Path, out: Path) -> Path:
    """The export's paths and vectors in clip-retrieval's layout (float16, as it stores them)."""
    (out / "img_emb").mkdir(parents=True)
    (out / "metadata").mkdir()
    for k, part in enumerate(sorted(export_dir.glob("*/part-*.parquet"))):
        table = pq.read_table(part, columns=["path", "vector"])
        dim = table.schema.field("vector").type.list_size
        vectors = table.column("vector").combine_chunks().flatten().to_numpy().reshape(-1, dim)
        np.save(out / "img_emb" / f"img_emb_{k}.npy", vectors.astype(np.float16))
        paths = [os.fsdecode(p) for p in table.column("path").to_pylist()]
        pq.write_table(pa.table({"image_path": paths}), out / "metadata" / f"metadata_{k}.parquet")
    return out


def spread(values: list[float]) -> str:
    median = statistics.median(values)
    return f"{median:,.2f}" if len(values) == 1 else f"{median:,.2f} ({min(values):,.2f}-{max(values):,.2f})"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=1000, help="small JPEGs")
    parser.add_argument("--repeats", type=int, default=3, help="fresh catalogues this many times (medians shown)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument(
        "--data-dir",
        default=os.path.join(tempfile.gettempdir(), "imgsearchd-bench-data"),
        help="where the test images are made and kept between runs",
    )
    parser.add_argument("--seed", type=int, default=4321)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.ERROR)

    paths = make_set(Path(args.data_dir) / f"vectors-io-{args.files}", args.files, SMALL_SIZES, 3.0, args.seed)
    for path in paths:
        Path(path).read_bytes()  # a warm page cache for every variant
    extractor = extractors.create(NAME, {"device": "cpu", "engine": "torch", "batch_size": args.batch_size})
    expected = {NAME: (extractor.model_id, extractor.dim)}
    load_before = os.getloadavg()
    times: dict[str, list[float]] = {"index": [], "export": [], "ours": [], "known": [], "read": []}
    parquet_bytes = 0
    for repeat in range(args.repeats):
        with tempfile.TemporaryDirectory(prefix="bench-vectors-io-") as tmp:
            work = Path(tmp)
            elapsed, catalog = run_index(extractor, paths, work / "indexed")
            times["index"].append(elapsed)
            with catalog:
                started = time.perf_counter()
                export(catalog, work / "export", [NAME])
                times["export"].append(time.perf_counter() - started)
                known = known_catalogue(catalog, work / "known")  # made outside the timed import
            parquet_bytes = sum(p.stat().st_size for p in (work / "export").rglob("*.parquet"))
            times["ours"].append(run_import(work / "export", expected, work / "ours", None))
            times["known"].append(run_import(work / "export", expected, known, None))
            folder = clip_retrieval_copy(work / "export", work / "clip-retrieval")
            times["read"].append(run_import(folder, expected, work / "read", extractor.model_id))
        print(f"repeat {repeat + 1}: " + ", ".join(f"{k} {v[-1]:.2f} s" for k, v in times.items()), file=sys.stderr)
    load_after = os.getloadavg()

    n = len(paths)
    index_rate = statistics.median(n / t for t in times["index"])
    print(
        f"\n{cpu_model()}, {os.cpu_count()} CPUs; load average {load_before[0]:.2f} before, {load_after[0]:.2f} after"
    )
    print(f"{n} small JPEGs (<= 1 MP), {args.repeats} repeats, EfficientNet-Lite0 ({extractor.dim} dimensions)")
    print(f"export: {parquet_bytes / n:,.0f} bytes of Parquet per vector\n")
    print("| step | seconds | vectors/s | vs index |")
    print("|---|---|---|---|")
    labels = {
        "index": "index (Pipeline.process: read, hash, decode, embed)",
        "export": "export (one read transaction, Parquet)",
        "ours": "import, ours, into an empty catalogue (read + hash + metadata)",
        "known": "import, ours (stat only)",
        "read": "import, clip-retrieval layout (read + hash + metadata)",
    }
    for key, label in labels.items():
        rates = [n / t for t in times[key]]
        ratio = statistics.median(rates) / index_rate
        print(f"| {label} | {spread(times[key])} | {spread(rates)} | {ratio:,.1f}x |")
    print("\nstat only: into a catalogue that already knows every file (another extractor's vectors);")
    print("the catalogue, not the export, vouches for the hashes. Into an empty one, every file is read.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
