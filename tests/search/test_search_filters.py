"""Folder filter and combined queries, against brute force over the catalogue's vectors.

The folder search runs on a real catalogue and a real ExtractorIndex with an Annoy
snapshot (exhaustive ``search_k``, so the index's answer is the exact one and any
difference is a bug in the filter), with fresh vectors and removals after the build.
The HTTP tests run a real daemon with random-weight CLIP (texts) and EfficientNet.
"""

from __future__ import annotations

import base64
import json
import math
from pathlib import Path
from typing import Any

import jsonschema
import numpy as np
import pytest

from imgsearchd.api.spec import spec
from imgsearchd.cli import main as cli
from imgsearchd.extractors import LoadedExtractors
from imgsearchd.paths import is_under
from imgsearchd.search.index import ExtractorIndex
from imgsearchd.search.scoped import Method, UnknownFolder, search_folder
from imgsearchd.service import facade as service_module
from imgsearchd.store.catalog import Catalog
from imgsearchd.store.rows import FileResult

from helpers import CLIP_RANDOM_FP32, live_server, server_config, write_config
from index_helpers import EXTRACTOR, MODEL, random_unit

DIM = 64
EXHAUSTIVE = 10**6  # search_k far above trees x items: Annoy inspects every item
FOLDERS = {"/lib/small": 150, "/lib/small/sub": 30, "/lib/small2": 40, "/lib/big": 1500, "/lib/other": 1200}


# -- the folder search on a real catalogue and Annoy index ----------------------------------------


def library_vectors() -> dict[str, np.ndarray]:
    """Random unit vectors per folder; /lib/other is one tight cluster around ``far_direction``."""
    out = {}
    for n, (folder, count) in enumerate(FOLDERS.items()):
        out[folder] = random_unit(count, DIM, seed=10 + n)
    cluster = far_direction() + 0.3 * random_unit(FOLDERS["/lib/other"], DIM, seed=99)
    out["/lib/other"] = (cluster / np.linalg.norm(cluster, axis=1, keepdims=True)).astype(np.float32)
    return out


def far_direction() -> np.ndarray:
    return random_unit(1, DIM, seed=7)[0]


def record(catalog: Catalog, folder: str, vectors: np.ndarray, tag: str) -> None:
    catalog.record_batch(
        FileResult(f"{folder}/{tag}{k:05d}.jpg", 100, k, f"{folder}-{tag}-{k}", vectors={EXTRACTOR: (MODEL, v)})
        for k, v in enumerate(vectors)
    )


@pytest.fixture(scope="module")
def library(tmp_path_factory):
    """A catalogue, an exhaustive and a tuned Annoy index over it, then fresh files and removals since the build.

    (The HNSW kind's folder search: ``test_index_hnsw``.)
    """
    tmp = tmp_path_factory.mktemp("folders")
    catalog = Catalog(tmp / "catalog.sqlite3")
    for folder, vectors in library_vectors().items():
        record(catalog, folder, vectors, "base")
    quiet = {"rebuild_after_changes": 10**9, "rebuild_after_seconds": 10**6}
    index = ExtractorIndex(
        catalog, tmp / "exhaustive", EXTRACTOR, MODEL, DIM, kind="annoy", exact_below=100, search_k=EXHAUSTIVE, **quiet
    )
    tuned = ExtractorIndex(catalog, tmp / "tuned", EXTRACTOR, MODEL, DIM, kind="annoy", exact_below=100, **quiet)
    index.open()
    tuned.open()
    try:
        assert index.wait_idle(60) and tuned.wait_idle(60)
        assert index.stats()["mode"] == "annoy" and tuned.stats()["mode"] == "annoy"
        # after the build: fresh files in both folders, and removals (tombstones)
        record(catalog, "/lib/small", random_unit(20, DIM, seed=50), "fresh")
        record(catalog, "/lib/big", random_unit(60, DIM, seed=51), "fresh")
        catalog.remove_paths(["/lib/small/base00003.jpg", "/lib/big/base00004.jpg", "/lib/small/sub"])
        index.refresh()
        assert index.stats()["fresh"] == 80 and index.stats()["tombstones"] == 32
        yield catalog, index, tuned
    finally:
        tuned.close()
        index.close()
        catalog.close()


def brute_force(catalog: Catalog, query: np.ndarray, folder: str, limit: int) -> list[tuple[int, float]]:
    """(id, distance) of the best ``limit`` files under ``folder``: numpy over every catalogue vector."""
    _, ids, vectors = catalog.all_vectors(EXTRACTOR, MODEL, DIM)
    paths = catalog.paths_for(ids)
    inside = np.array([is_under(paths[i], folder) for i in ids.tolist()])
    ids, vectors = ids[inside], vectors[inside]
    scores = (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)) @ (query / np.linalg.norm(query))
    order = np.argsort(-scores)[:limit]
    return [(int(ids[i]), math.sqrt(max(0.0, 2 - 2 * float(scores[i])))) for i in order]


def assert_same(found, expected) -> None:
    assert [h.id for h, _ in found.hits] == [i for i, _ in expected]
    assert [h.distance for h, _ in found.hits] == pytest.approx([d for _, d in expected], abs=1e-4)


QUERIES = random_unit(12, DIM, seed=3)


@pytest.mark.parametrize("folder", ["/lib/small", "/lib/big", "/lib/small2", "/lib"])
@pytest.mark.parametrize("cost", [0.0, math.inf], ids=["exact", "overfetch"])
def test_folder_search_equals_brute_force(library, folder, cost):
    catalog, index, _ = library
    for q in QUERIES:
        found = search_folder(index, q, folder, 10, exact_cost=cost)
        assert found.method == (Method.EXACT if cost == 0 else Method.OVERFETCH)
        assert_same(found, brute_force(catalog, q, folder, 10))
        assert all(is_under(path, folder) for _, path in found.hits)


def test_fresh_files_count_and_removed_ones_never_appear(library):
    _, index, _ = library
    fresh = random_unit(20, DIM, seed=50)
    for cost in (0.0, math.inf):
        top = search_folder(index, fresh[5], "/lib/small", 3, exact_cost=cost).hits
        assert top[0][1] == "/lib/small/fresh00005.jpg" and top[0][0].distance < 1e-3
    removed = library_vectors()["/lib/small"][3]
    for cost in (0.0, math.inf):
        paths = [p for _, p in search_folder(index, removed, "/lib/small", 50, exact_cost=cost).hits]
        assert "/lib/small/base00003.jpg" not in paths and not any("/sub/" in p for p in paths)
    with pytest.raises(UnknownFolder):
        search_folder(index, removed, "/lib/small/sub", 10)  # every file there was removed


def test_the_cost_picks_exact_for_a_small_folder_and_over_fetch_for_a_large_one(library):
    catalog, _, tuned = library  # Annoy with its measured search_k, trees 10
    small = [search_folder(tuned, q, "/lib/small", 10) for q in QUERIES]
    large = [search_folder(tuned, q, "/lib/big", 10) for q in QUERIES]
    assert {f.method for f in small} == {Method.EXACT}
    assert {f.method for f in large} == {Method.OVERFETCH}
    for q, found in zip(QUERIES, small):
        assert_same(found, brute_force(catalog, q, "/lib/small", 10))
    hits = sum(
        len({h.id for h, _ in f.hits} & {i for i, _ in brute_force(catalog, q, "/lib/big", 10)})
        for q, f in zip(QUERIES, large)
    )
    assert hits / (10 * len(QUERIES)) >= 0.9  # Annoy at its own recall


def test_a_query_far_from_the_folder_grows_the_ask_then_falls_back_to_exact(library):
    catalog, index, _ = library
    far = far_direction()  # the best 100 of the library all lie in /lib/other
    # over-fetch first (1560 files x 3000 > 4 x 10^6 candidates), exact once the ask grows
    found = search_folder(index, far, "/lib/big", 10, exact_cost=3000)
    assert found.method == Method.EXACT
    assert_same(found, brute_force(catalog, far, "/lib/big", 10))
    grown = search_folder(index, far, "/lib/big", 10, exact_cost=math.inf)
    assert grown.method == Method.OVERFETCH and grown.asked > 100
    assert_same(grown, brute_force(catalog, far, "/lib/big", 10))
    near = search_folder(index, -far, "/lib/big", 10, exact_cost=3000)  # /lib/other is the furthest
    assert near.method == Method.OVERFETCH and near.asked < 100


def test_max_distance_and_unknown_folders(library):
    catalog, index, _ = library
    q = library_vectors()["/lib/big"][7]
    expected = [(i, d) for i, d in brute_force(catalog, q, "/lib/big", 10) if d <= 1.1]
    assert 1 <= len(expected) < 10
    for cost in (0.0, math.inf):
        assert_same(search_folder(index, q, "/lib/big", 10, 1.1, exact_cost=cost), expected)
    for folder in ("/lib/nothing", "/lib/smal", "/elsewhere"):
        with pytest.raises(UnknownFolder, match="no indexed image"):
            search_folder(index, q, folder, 10)


# -- over HTTP: folder= and combined queries on a real daemon -----------------------------------------

LAYOUT = {
    "a/chelsea.jpg": "chelsea",
    "a/coffee.jpg": "coffee",
    "a/astronaut.jpg": "astronaut",
    "a/sub/rocket.jpg": "rocket",
    "b/motorcycle_left.jpg": "motorcycle_left",
    "b/motorcycle_right.jpg": "motorcycle_right",
    "ab/hubble.jpg": "hubble",
}


def check_schema(method: str, status: int, body) -> None:
    document: dict[str, Any] = dict(spec())
    responses = document["paths"]["/search"][method.lower()]["responses"]
    assert str(status) in responses, f"{method} /search answered undocumented {status}: {body}"
    schema = responses[str(status)]["content"]["application/json"]["schema"]
    jsonschema.validate(body, {**schema, "components": document["components"]})


@pytest.fixture(scope="module")
def server(tmp_path_factory, photos, clip_random, efficientnet):
    root = tmp_path_factory.mktemp("filters-http")
    photo_root = root / "photos"
    for rel, name in LAYOUT.items():
        (photo_root / rel).parent.mkdir(parents=True, exist_ok=True)
        photos[name].convert("RGB").save(photo_root / rel, quality=90)
    (root / "outside").mkdir()
    config = server_config(
        root,
        server={"allowed_roots": [str(photo_root)]},
        index={"extractors": ["clip", "efficientnet"]},
        **{"extractors.clip": dict(CLIP_RANDOM_FP32)},
    )
    # the session's real extractors, not a second CLIP load (7 s): the daemon is otherwise as configured
    shared = LoadedExtractors({"clip": clip_random, "efficientnet": efficientnet}, "clip")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(service_module, "load", lambda *_: shared)
        stack = live_server(config)
        live = stack.__enter__()
    try:
        for rel in LAYOUT:
            status, body = live.get("/add", image=str(photo_root / rel))
            assert status == 200, body
        live.root = photo_root
        yield live
    finally:
        stack.__exit__(None, None, None)


def stored(live, extractor: str) -> dict[str, np.ndarray]:
    """path -> the catalogue's vector, for every indexed photo."""
    model = live.service.loaded.extractors[extractor].model_id
    out = {}
    for rel in LAYOUT:
        found = live.service.catalog.vector_for_path(str(live.root / rel), extractor, model)
        assert found is not None, rel
        out[str(live.root / rel)] = found[1]
    return out


def ranked(vectors: dict[str, np.ndarray], query: np.ndarray, folder: Path | None = None) -> list[str]:
    """Brute force: paths best first by cosine with ``query``, only under ``folder``."""
    q = query / np.linalg.norm(query)
    scores = {
        p: float(v @ q / np.linalg.norm(v)) for p, v in vectors.items() if folder is None or is_under(p, str(folder))
    }
    return sorted(scores, key=lambda p: -scores[p])


def post_json(live, body: dict) -> tuple[int, dict]:
    status, answer = live.post("/search", json.dumps(body).encode(), "application/json")
    check_schema("POST", status, answer)
    return status, answer


def test_folder_filter_over_http(server):
    vectors = stored(server, "clip")
    folder_a = server.root / "a"
    query = str(server.root / "b/motorcycle_left.jpg")  # outside the folder: none of its own results
    status, body = server.get("/search", image=query, folder=str(folder_a))
    check_schema("GET", status, body)
    assert status == 200 and body["folder"] == str(folder_a)
    assert [r["image"] for r in body["results"]] == ranked(vectors, vectors[query], folder_a)
    assert len(body["results"]) == 4  # a/ and a/sub/, not ab/
    clip = server.service.loaded.extractors["clip"]
    status, body = server.get("/search", text="a red motorcycle", folder=str(server.root / "b"))
    check_schema("GET", status, body)
    assert [r["image"] for r in body["results"]] == ranked(
        vectors, clip.encode_text(["a red motorcycle"])[0], server.root / "b"
    )
    data = (server.root / "a/coffee.jpg").read_bytes()
    status, body = server.post("/search", data, "application/octet-stream", folder=str(server.root / "ab"))
    check_schema("POST", status, body)
    assert [r["image"] for r in body["results"]] == [str(server.root / "ab/hubble.jpg")]
    status, body = post_json(server, {"image_base64": base64.b64encode(data).decode(), "folder": str(folder_a)})
    assert status == 200 and body["results"][0]["image"] == str(server.root / "a/coffee.jpg")
    assert {r["image"] for r in body["results"]} == {p for p in vectors if is_under(p, str(folder_a))}


@pytest.mark.parametrize(
    ("folder", "status", "needle"),
    [
        ("outside", 403, "outside the watched folders"),
        ("photos/nowhere", 404, "no indexed image"),
        ("photos/a/sub/../../b/../c", 404, "no indexed image"),
        ("relative/path", 400, "must be absolute"),
        ("photos/a/coffee.jpg", 400, "a file, not a folder"),
    ],
)
def test_folder_errors(server, folder, status, needle):
    where = folder if folder.startswith("relative") else str(server.root.parent / folder)
    image = str(server.root / "a/coffee.jpg")
    got, body = server.get("/search", image=image, folder=where)
    check_schema("GET", got, body)
    assert got == status and needle in body["error"], body
    got, body = post_json(server, {"query": [{"image": image}], "folder": where})
    assert got == status and needle in body["error"], body


def test_combined_query_equals_brute_force(server):
    vectors = stored(server, "clip")
    clip = server.service.loaded.extractors["clip"]
    cat = str(server.root / "a/chelsea.jpg")
    parts = [{"image": cat}, {"text": "at night", "weight": 0.5}, {"text": "people", "weight": -1}]
    status, body = post_json(server, {"query": parts, "limit": 10, "extractor": "clip"})
    assert status == 200 and body["extractor"] == "clip"
    night, people = clip.encode_text(["at night", "people"])
    unit = lambda v: v / np.linalg.norm(v)  # noqa: E731
    combined = unit(vectors[cat]) + 0.5 * unit(night) - unit(people)
    assert [r["image"] for r in body["results"]] == ranked(vectors, combined)
    expected_scores = {p: float(unit(v) @ unit(combined)) for p, v in vectors.items()}
    for r in body["results"]:
        assert r["score"] == pytest.approx(expected_scores[r["image"]], abs=1e-4)
    status, body = post_json(server, {"query": parts, "folder": str(server.root / "b")})
    assert [r["image"] for r in body["results"]] == ranked(vectors, combined, server.root / "b")


def test_combined_image_parts_with_efficientnet(server):
    vectors = stored(server, "efficientnet")
    left, right = str(server.root / "b/motorcycle_left.jpg"), str(server.root / "b/motorcycle_right.jpg")
    upload = base64.b64encode((server.root / "a/coffee.jpg").read_bytes()).decode()
    parts = [{"image": left, "weight": 2}, {"image_base64": upload, "weight": -0.5}, {"image": right}]
    status, body = post_json(server, {"query": parts, "extractor": "efficientnet"})
    assert status == 200 and body["extractor"] == "efficientnet"
    unit = lambda v: v / np.linalg.norm(v)  # noqa: E731
    coffee = vectors[str(server.root / "a/coffee.jpg")]  # the upload is that file: the same vector
    combined = 2 * unit(vectors[left]) - 0.5 * unit(coffee) + unit(vectors[right])
    assert [r["image"] for r in body["results"]] == ranked(vectors, combined)


@pytest.mark.parametrize(
    ("body", "status", "needle"),
    [
        ({"query": []}, 400, "non-empty list"),
        ({"query": {"text": "x"}}, 400, "non-empty list"),
        ({"query": [{"text": "x"}] * 17}, 400, "at most 16"),
        ({"query": [{"txt": "x"}]}, 400, "unknown key 'txt'"),
        ({"query": [{"text": "x", "image": "/a.jpg"}]}, 400, "exactly one of"),
        ({"query": [{"text": "x", "weight": "heavy"}]}, 400, "weight must be a number"),
        ({"query": [{"text": "x", "weight": True}]}, 400, "weight must be a number"),
        ({"query": [{"text": "  "}]}, 400, "text is empty"),
        ({"query": [{"image_base64": "%%%"}]}, 400, "not valid base64"),
        ({"query": [{"text": "x"}], "extractor": "efficientnet"}, 400, "no text encoder"),
        ({"query": [{"text": "x"}, {"text": "x", "weight": -1}]}, 400, "cancel"),
        ({"query": [{"text": "x", "weight": 0}]}, 400, "cancel"),
        ({"query": [{"text": "x"}], "text": "y"}, 400, "not both"),
        ({"query": [{"image": "relative.jpg"}]}, 400, "must be absolute"),
        ({"query": [{"image": "/etc/hostname"}]}, 403, "outside"),
        ({"query": [{"image": "PHOTOS/missing.jpg"}]}, 404, "missing.jpg"),
        ({"query": [{"image": "PHOTOS/a"}]}, 400, "not a regular file"),
        ({"query": [{"text": "x", "weight": 10**400}]}, 400, "finite"),  # past float's range: no 500
        ({"query": [{"text": "x"}], "limit": "5"}, 400, "limit must be an integer"),
        ({"query": [{"text": "x"}], "image": "PHOTOS/a/coffee.jpg"}, 400, "unknown field 'image'"),
    ],
)
def test_combined_query_errors(server, body, status, needle):
    raw = json.dumps(body).replace("PHOTOS", str(server.root))
    got, answer = post_json(server, json.loads(raw))
    assert got == status and needle in answer["error"], answer


def test_an_empty_folder_is_refused_not_ignored(server):
    image = str(server.root / "a/coffee.jpg")
    got, body = server.get("/search", image=image, folder="")
    check_schema("GET", got, body)
    assert got == 400 and "'folder' is empty" in body["error"], body
    got, body = post_json(server, {"query": [{"image": image}], "folder": ""})
    assert got == 400 and "'folder' is empty" in body["error"], body


def test_an_infinite_weight_is_refused(server):
    body = b'{"query": [{"text": "x", "weight": Infinity}]}'  # Python's json reads it; it must not pass
    status, answer = server.post("/search", body, "application/json")
    check_schema("POST", status, answer)
    assert status == 400 and "finite" in answer["error"]


# -- the command line -------------------------------------------------------------------------------------


def test_terms_read_as_rclip_does(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "a.jpg").write_bytes(b"x")
    parts = cli.terms_to_parts(["a.jpg", "+", "at night:0.5", "-", "people", "cats"], text="dogs")
    assert parts == [
        {"image": str(tmp_path / "a.jpg")},
        {"text": "at night", "weight": 0.5},
        {"text": "people", "weight": -1.0},
        {"text": "cats"},
        {"text": "dogs"},
    ]
    assert cli.terms_to_parts(["-", "a.jpg:2"]) == [{"image": str(tmp_path / "a.jpg"), "weight": -2.0}]
    assert cli.terms_to_parts(["a photo: sunset"]) == [{"text": "a photo: sunset"}]  # no number after the colon
    for bad, needle in (
        (["a.jpg", "+"], "ends with a sign"),
        (["+", "-", "x"], "follows another sign"),
        (["missing.jpg"], "no such file"),
        (["some/dir/x"], "no such file"),
        (["x:inf"], "finite"),
    ):
        with pytest.raises(cli.BadTerms, match=needle):
            cli.terms_to_parts(bad)


def test_cli_combined_and_folder_against_the_daemon(server, tmp_path, capsys):
    port = int(server.base.rsplit(":", 1)[1])
    config = write_config(tmp_path / "c.toml", {"server": {"port": port}})
    cat = str(server.root / "a/chelsea.jpg")
    code = cli.main(
        ["search", cat, "+", "at night:0.5", "-", "people", "--folder", str(server.root / "a"), "--config", str(config)]
    )
    out = capsys.readouterr()
    assert code == 0, out.err
    parts = [{"image": cat}, {"text": "at night", "weight": 0.5}, {"text": "people", "weight": -1}]
    _, expected = post_json(server, {"query": parts, "folder": str(server.root / "a")})
    assert json.loads(out.out) == expected
    code = cli.main(["search", cat, "--folder", str(server.root / "nowhere"), "--config", str(config)])
    out = capsys.readouterr()
    assert code == 1 and "no indexed image" in json.loads(out.err)["error"]


def test_cli_local_combined_and_folder(tmp_path, photos, offline_config, capsys):
    folder = tmp_path / "photos"
    for rel, name in LAYOUT.items():
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        photos[name].convert("RGB").save(folder / rel, quality=90)
    assert cli.main(["index", str(folder), "--no-progress", "--config", str(offline_config)]) == 0
    capsys.readouterr()
    left, coffee = str(folder / "b/motorcycle_left.jpg"), str(folder / "a/coffee.jpg")
    args = [
        "search",
        left,
        "-",
        f"{coffee}:0.5",
        "--folder",
        str(folder / "a"),
        "--local",
        "--config",
        str(offline_config),
    ]
    assert cli.main(args) == 0
    answer = json.loads(capsys.readouterr().out)
    with Catalog(tmp_path / "data" / "catalog.sqlite3") as catalog:
        _, ids, vectors = catalog.all_vectors("efficientnet", _model_id(catalog, left), 1280)
        paths = catalog.paths_for(ids)
        by_path = {paths[i]: v for i, v in zip(ids.tolist(), vectors)}
    unit = lambda v: v / np.linalg.norm(v)  # noqa: E731
    combined = unit(by_path[left]) - 0.5 * unit(by_path[coffee])
    assert [r["image"] for r in answer["results"]] == ranked(by_path, combined, folder / "a")
    assert cli.main(["search", "a cat", "--local", "--config", str(offline_config)]) == 1
    assert "no text encoder" in capsys.readouterr().err


def _model_id(catalog: Catalog, path: str) -> str:
    record = catalog.get(path)
    assert record is not None and record.content_hash is not None
    return catalog.models_present(record.content_hash)["efficientnet"]
