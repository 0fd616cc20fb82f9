"""Match levels through a real daemon: every search result's ``match`` and ``min_match`` on every
search (GET, POST raw, JSON and form, by path, upload, hash, text and combined), on real photos
(EfficientNet-Lite0, real ImageNet weights) and pictures made with Pillow, CLIP with random
weights for text; and ``imgsearchd search --local`` on a data folder of its own."""

from __future__ import annotations

import base64
import io
import json
import uuid
from pathlib import Path
from typing import Any, get_args

import numpy as np
import pytest
from PIL import Image

from imgsearchd.api.models.answers import MatchLevel
from imgsearchd.media.images import decode
from imgsearchd.search.match_levels import BACKGROUND_SIZE, LEVELS, MIN_BACKGROUND
from match_set import UNRELATED_KINDS, match_set, unrelated
from openapi_checker import OpenApiChecker

from duplicate_set import scenes
from helpers import EFFICIENTNET_FP32, Live, cli_here, live_server, server_config, wait_for

CLIP = {"pretrained": "none", "device": "cpu", "batch_size": 4, "precision": "fp32", "engine": "torch"}
DRAWINGS_EACH = 10  # 6 kinds x 10 + 11 photos: a background sample over match_levels.MIN_BACKGROUND (64)


def jpeg_copy(picture: Image.Image, scale: float, quality: int = 70) -> bytes:
    """An edited copy: resized, then saved as JPEG at ``quality``."""
    w, h = picture.size
    small = picture.convert("RGB").resize((int(w * scale), int(h * scale)), Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    small.save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()


def make_library(folder: Path, photos: dict[str, Image.Image]) -> int:
    """The photos, two edited copies and Pillow-made pictures of other kinds; how many files."""
    folder.mkdir(parents=True)
    for name, picture in photos.items():
        picture.convert("RGB").save(folder / f"{name}.jpg", quality=90)
    (folder / "coffee-copy.jpg").write_bytes(jpeg_copy(photos["coffee"], 0.8))  # q70, 80%
    (folder / "chelsea-copy.jpg").write_bytes(jpeg_copy(photos["chelsea"], 0.6))  # q70, 60%
    rng = np.random.default_rng(30)
    for kind in UNRELATED_KINDS:
        for n in range(DRAWINGS_EACH):
            unrelated(kind, rng).convert("RGB").save(folder / f"{kind}{n}.png")
    return len(photos) + 2 + len(UNRELATED_KINDS) * DRAWINGS_EACH


@pytest.fixture(scope="module")
def server(tmp_path_factory, photos) -> Any:
    root = tmp_path_factory.mktemp("levels")
    count = make_library(root / "photos", photos)
    config = server_config(
        root,
        server={"allowed_roots": [str(root)]},
        index={"extractors": ["efficientnet", "clip"]},
        **{"extractors.clip": CLIP},
    )
    with live_server(config) as live:
        status, job = live.get("/add", image=str(root / "photos"))
        assert status == 202, job
        done = live.wait_job(job["job"])
        assert done["found"] == count and done["state"] == "done", done
        live.root = root / "photos"
        yield live


def found(server: Live, **params: Any) -> dict[str, Any]:
    status, body = server.get("/search", **params)
    assert status == 200, body
    OpenApiChecker().check("GET", "/search", status, body)
    return body


def posted(server: Live, body: bytes, content_type: str, **params: Any) -> dict[str, Any]:
    status, answer = server.post("/search", body, content_type, **params)
    assert status == 200, answer
    OpenApiChecker().check("POST", "/search", status, answer)
    return answer


def levels(body: dict[str, Any]) -> dict[str, str]:
    return {Path(r["image"]).name: r["match"] for r in body["results"]}


def strengths_fall(results: list[dict[str, Any]]) -> bool:
    """Past ``same`` (found by its pixels, anywhere above the copy floor), the levels never rise."""
    ranks = [LEVELS.index(r["match"]) for r in results if r["match"] != "same"]
    return ranks == sorted(ranks)


def test_the_answer_model_knows_the_levels() -> None:
    assert get_args(MatchLevel) == LEVELS


def test_a_photo_finds_itself_and_its_edited_copy_as_same(server) -> None:
    body = found(server, image=str(server.root / "coffee.jpg"), limit=40)
    first = body["results"][0]
    assert Path(first["image"]).name == "coffee.jpg" and first["match"] == "same"
    got = levels(body)
    assert got["coffee-copy.jpg"] == "same"  # q70, resized to 80%
    assert [name for name, level in got.items() if level == "same"] == ["coffee.jpg", "coffee-copy.jpg"]
    assert not any(got[f"{kind}0.png"] == "same" for kind in UNRELATED_KINDS if f"{kind}0.png" in got)
    assert {"weak"} <= set(got.values()) and strengths_fall(body["results"])
    assert "weaker" not in body  # only with min_match


def test_the_daemon_corrects_against_a_sample_of_its_library(server) -> None:
    found(server, image=str(server.root / "rocket.jpg"), limit=3)
    backgrounds = server.service.backgrounds
    model = server.service.loaded.extractors["efficientnet"].model_id
    sample = backgrounds.get(server.service.catalog, "efficientnet", model, 71)
    assert MIN_BACKGROUND <= 71 and sample.usable  # the library is large enough for a sample
    assert sample.vectors.shape == (min(71, BACKGROUND_SIZE), 1280)  # each content at most once
    draws = backgrounds.draws
    found(server, image=str(server.root / "coffee.jpg"), limit=3)
    assert backgrounds.draws == draws  # kept: the library has not moved


def test_the_copy_finds_its_original_as_same(server) -> None:
    body = found(server, image=str(server.root / "chelsea-copy.jpg"), limit=10)
    got = levels(body)
    assert got["chelsea-copy.jpg"] == "same" and got["chelsea.jpg"] == "same"  # q70, 60%
    assert list(got.values()).count("same") == 2


def test_an_upload_and_its_hash_know_their_picture(server) -> None:
    data = (server.root / "coffee.jpg").read_bytes()
    upload = posted(server, data, "application/octet-stream", limit=10)
    got = levels(upload)
    assert got["coffee.jpg"] == "same" and got["coffee-copy.jpg"] == "same"  # the copy by the upload's pixels
    again = found(server, hash=upload["query"]["hash"], limit=10)
    assert levels(again) == got
    copy = (server.root / "coffee-copy.jpg").read_bytes()  # an upload that is a copy, by its pixels only
    as_json = posted(server, json.dumps({"image_base64": base64.b64encode(copy).decode()}).encode(), "application/json")
    assert levels(as_json)["coffee.jpg"] == "same"


def test_an_unrelated_picture_finds_no_same(server) -> None:
    rng = np.random.default_rng(3030)  # other seeds than the library's
    for kind in ("drawing", "chart", "screenshot"):
        buffer = io.BytesIO()
        unrelated(kind, rng).convert("RGB").save(buffer, "PNG")
        body = posted(server, buffer.getvalue(), "application/octet-stream", limit=20)
        assert "same" not in levels(body).values(), (kind, body["results"][:3])


def test_min_match_drops_weaker_results_and_keeps_the_order(server) -> None:
    coffee = str(server.root / "coffee.jpg")
    everything = found(server, image=coffee, limit=40)["results"]
    close = found(server, image=coffee, limit=40, min_match="similar")
    wanted = [r for r in everything if r["match"] in ("same", "similar")]
    assert close["results"] == wanted and 2 <= len(wanted) < len(everything)
    assert close["weaker"] == len(everything) - len(wanted) and close["next_offset"] is None
    same = found(server, image=coffee, limit=40, min_match="same")
    assert [Path(r["image"]).name for r in same["results"]] == ["coffee.jpg", "coffee-copy.jpg"]
    assert found(server, image=coffee, limit=40, min_match="weak")["results"] == everything


def test_min_match_pages_while_a_later_result_can_reach_it(server) -> None:
    coffee = str(server.root / "coffee.jpg")
    first = found(server, image=coffee, limit=1, min_match="same")
    assert len(first["results"]) == 1 and first["next_offset"] == 1 and first["weaker"] == 0
    second = found(server, image=coffee, limit=1, offset=1, min_match="same")
    assert Path(second["results"][0]["image"]).name == "coffee-copy.jpg"
    far = found(server, image=coffee, limit=5, offset=30, min_match="similar")  # weak all the way down
    assert far["results"] == [] and far["weaker"] == 5 and far["next_offset"] is None
    plain = found(server, image=coffee, limit=5, offset=30)
    assert plain["next_offset"] == 35 and {r["match"] for r in plain["results"]} <= {"weak", "related"}


def test_min_match_on_every_post_form(server) -> None:
    data = (server.root / "coffee.jpg").read_bytes()
    raw = posted(server, data, "application/octet-stream", limit=20, min_match="same")
    encoded = base64.b64encode(data).decode()
    as_json = posted(
        server, json.dumps({"image_base64": encoded, "limit": 20, "min_match": "same"}).encode(), "application/json"
    )
    boundary = uuid.uuid4().hex
    form = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="min_match"\r\n\r\nsame\r\n'
            f'--{boundary}\r\nContent-Disposition: form-data; name="limit"\r\n\r\n20\r\n'
            f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="q.jpg"\r\n'
            "Content-Type: image/jpeg\r\n\r\n"
        ).encode()
        + data
        + f"\r\n--{boundary}--\r\n".encode()
    )
    as_form = posted(server, form, f"multipart/form-data; boundary={boundary}")
    for body in (raw, as_json, as_form):
        assert sorted(levels(body)) == ["coffee-copy.jpg", "coffee.jpg"] and body["weaker"] == 18
    by_hash = posted(
        server, json.dumps({"hash": raw["query"]["hash"], "min_match": "same"}).encode(), "application/json"
    )
    assert levels(by_hash) == levels(raw)


def test_a_value_that_is_no_level_is_a_400_naming_the_levels(server) -> None:
    coffee = str(server.root / "coffee.jpg")
    allowed = "min_match must be one of same, similar, related, weak"
    status, body = server.get("/search", image=coffee, min_match="bogus")
    assert status == 400 and allowed in body["error"] and "bogus" in body["error"], body
    status, body = server.post("/search", b"x", "application/octet-stream", min_match="close")
    assert status == 400 and allowed in body["error"], body
    for value in ("bogus", "SAME"):
        request = json.dumps({"text": "a cat", "extractor": "clip", "min_match": value}).encode()
        status, body = server.post("/search", request, "application/json")
        assert status == 400 and allowed in body["error"], (value, body)
    status, body = server.post("/search", json.dumps({"text": "a cat", "min_match": 2}).encode(), "application/json")
    assert status == 400 and "min_match must be a string, not int" in body["error"], body
    blank = found(server, image=coffee, limit=5, min_match="")  # an empty form field: left out, as others are
    assert len(blank["results"]) == 5 and "weaker" not in blank


def test_text_and_combined_queries_are_never_same(server) -> None:
    text = found(server, text="a cup of coffee", extractor="clip", limit=80)
    assert len(text["results"]) == 71 and "same" not in levels(text).values()
    assert text["query"]["kind"] == "text"
    picture = found(server, image=str(server.root / "coffee.jpg"), extractor="clip", limit=3)  # random weights
    assert picture["results"][0]["match"] == "same"  # its own content: same by hash, whatever the model
    coffee = str(server.root / "coffee.jpg")
    for parts in ([{"image": coffee}], [{"image": coffee}, {"text": "at night", "weight": 0.5}]):
        body = posted(
            server, json.dumps({"query": parts, "extractor": "clip", "limit": 10}).encode(), "application/json"
        )
        assert body["query"]["kind"] == "combined" and "same" not in levels(body).values(), parts
    none = found(server, text="a cup of coffee", extractor="clip", limit=80, min_match="same")
    assert none["results"] == [] and none["weaker"] == 71 and none["next_offset"] is None


def test_search_local_finds_the_copy_as_same_and_honours_min_match(server, tmp_path, photos, capsys) -> None:
    """``--local`` builds its own searcher: the framing check and the copy floor are wired there too."""
    folder = tmp_path / "library"
    folder.mkdir()
    for name in ("coffee.jpg", "coffee-copy.jpg", "rocket.jpg", "drawing0.png", "chart0.png"):
        (folder / name).write_bytes((server.root / name).read_bytes())
    config = server_config(tmp_path)
    indexed = cli_here(capsys, "index", str(folder), "--no-progress", "--config", str(config))
    assert indexed.returncode == 0, indexed.stderr
    args = ("search", str(folder / "coffee.jpg"), "--local", "--json", "--config", str(config))
    everything = json.loads(cli_here(capsys, *args).stdout)["results"]
    assert len(everything) == 5 and {Path(r["image"]).name: r["match"] for r in everything[:2]} == {
        "coffee.jpg": "same",
        "coffee-copy.jpg": "same",
    }
    kept = cli_here(capsys, *args, "--min-match", "same")
    assert kept.returncode == 0, kept.stderr
    answer = json.loads(kept.stdout)
    assert answer["results"] == everything[:2] and answer["weaker"] == 3


# -- the order: ``same`` first among the first SAME_FIRST, on scenes where a second shot outscores the original


@pytest.fixture(scope="module")
def scene_server(tmp_path_factory, photos) -> Any:
    """Two scenes of match_set (each an original and its six second shots), pictures of other
    kinds, a flat white page twice (PNG, and larger as JPEG) and a light grey one; queries outside
    the library: an edited copy of each original that a second shot of its scene outscores (fp32
    cosines, seed 30), a smaller crop of the white page and a grey page."""
    root = tmp_path_factory.mktemp("order")
    (root / "library").mkdir()
    (root / "queries").mkdir()
    scene_list = scenes(photos[k] for k in sorted(photos))
    made = match_set(scene_list, list(range(len(scene_list))), 30, decode, per_kind=2)
    wanted = {"scene:3": "combo-exif", "scene:6": "resize"}
    for n, picture in enumerate(made.library):
        if made.category[n] in wanted or made.category[n].startswith("kind:"):
            picture.convert("RGB").save(root / "library" / f"{n:03d}-{made.made[n].replace(':', '-')}.png")
    for copy, at, kind in zip(made.copies, made.copy_of, made.copy_kind, strict=True):
        if wanted.get(made.category[at]) == kind:
            copy.convert("RGB").save(root / "queries" / f"copy-of-{at:03d}.png")
    Image.new("RGB", (400, 300), (250, 250, 250)).save(root / "library" / "white.png")
    Image.new("RGB", (640, 480), (250, 250, 250)).save(root / "library" / "white-large.jpg", quality=80)
    Image.new("RGB", (400, 300), (220, 220, 220)).save(root / "library" / "light-grey.png")
    Image.new("RGB", (333, 222), (250, 250, 250)).save(root / "queries" / "white-crop.png")
    Image.new("RGB", (400, 300), (235, 235, 235)).save(root / "queries" / "grey.png")
    config = server_config(
        root, server={"allowed_roots": [str(root)]}, **{"extractors.efficientnet": dict(EFFICIENTNET_FP32)}
    )
    with live_server(config) as live:
        status, job = live.get("/add", image=str(root / "library"))
        assert status == 202, job
        assert live.wait_job(job["job"])["state"] == "done"
        live.root = root
        yield live


def names(body: dict[str, Any]) -> list[str]:
    return [Path(r["image"]).name for r in body["results"]]


@pytest.mark.parametrize("scene", [0, 1])
def test_the_original_comes_first_as_same_though_a_second_shot_outscores_it(scene_server, scene) -> None:
    query = sorted((scene_server.root / "queries").glob("copy-of-*.png"))[scene]
    original = query.name.removeprefix("copy-of-")[:3]
    body = found(scene_server, image=str(query), limit=12)
    results = body["results"]
    scores = {Path(r["image"]).name: r["score"] for r in results}
    at = next(n for n, r in enumerate(results) if Path(r["image"]).name.startswith(f"{original}-original"))
    best = max(scores, key=lambda name: scores[name])
    assert not best.startswith(original), f"the original outscores its second shots here: {scores}"
    assert at == 0 and results[0]["match"] == "same", [
        (n, r["score"], r["match"]) for n, r in zip(names(body), results)
    ]
    # past the `same` results, the order is the score's
    rest = [r["score"] for r in results if r["match"] != "same"]
    assert rest == sorted(rest, reverse=True)
    # the pages join up: no result twice, none lost
    pages = [names(found(scene_server, image=str(query), limit=4, offset=offset)) for offset in (0, 4, 8)]
    assert [name for page in pages for name in page] == names(body)


def test_a_crop_of_a_flat_page_is_same_and_another_grey_is_not(scene_server) -> None:
    """Flat prints scored 0: a white page's crop was no copy of it (the reviewer saw `weak`)."""
    crop = found(scene_server, image=str(scene_server.root / "queries" / "white-crop.png"), limit=4)
    got = levels(crop)
    assert got["white.png"] == "same" and got["white-large.jpg"] == "same", crop["results"]
    assert got.get("light-grey.png") != "same"
    grey = found(scene_server, image=str(scene_server.root / "queries" / "grey.png"), limit=4)
    assert all(r["match"] != "same" for r in grey["results"]), grey["results"]


def test_flat_pages_of_one_colour_are_a_copies_group_of_duplicates(scene_server) -> None:
    def answered() -> Any:
        status, body = scene_server.get("/duplicates")
        assert status in (200, 202), body
        return body if status == 200 and not body["stale"] else None

    body = wait_for(answered, 120, "the duplicates")
    copies = [{Path(m["image"]).name for m in g["members"]} for g in body["groups"] if g["kind"] == "copies"]
    whites = next((names for names in copies if "white.png" in names), set())
    assert whites >= {"white.png", "white-large.jpg"} and "light-grey.png" not in whites, body["groups"]
