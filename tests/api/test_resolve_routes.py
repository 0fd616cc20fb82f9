"""Acting on duplicates through the API: ``POST /duplicates/resolve`` (trash, move, link),
``POST /duplicates/undo`` and ``GET /duplicates/resolutions``.

One real daemon (service and HTTP server on a loopback port, real watchdog, real SQLite) over real
photos from scikit-image, their byte copies and Pillow edits: a watched folder, and a folder
indexed with ``/add`` (so a file changed after indexing stays changed until it is resolved). The
home trash is ``$XDG_DATA_HOME/Trash`` on the same file system; a topdir trash is on a tmpfs mounted
for the test. Every answer is checked against /openapi.json.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mounts import tmpfs
from openapi_checker import OpenApiChecker

from helpers import Live, live_server, server_config, skimage_photos, wait_for
from image_factory import jpeg_bytes

OPENAPI = OpenApiChecker()
FAST = {"check_seconds": 0.2, "poll_seconds": 0.3, "settle_seconds": 0.5, "debounce_seconds": 0.1}
TOKEN = "resolve-token"


def make_files(root: Path) -> dict[str, Path]:
    """Keepers, byte copies and an edited copy, in a watched folder and an added one."""
    photos = skimage_photos()
    pictures = {name: jpeg_bytes(photos[name]) for name in ("chelsea", "coffee", "astronaut", "rocket", "hubble")}
    pictures["motorcycle_left"] = jpeg_bytes(photos["motorcycle_left"])
    w, lib = root / "watched", root / "lib"
    small = photos["coffee"].resize((photos["coffee"].width * 3 // 4, photos["coffee"].height * 3 // 4))
    layout = {
        "chelsea": (w / "chelsea.jpg", pictures["chelsea"]),
        "chelsea_copy": (w / "chelsea copy.jpg", pictures["chelsea"]),
        "chelsea_sub": (w / "sub" / "chelsea.jpg", pictures["chelsea"]),
        "coffee": (w / "coffee.jpg", pictures["coffee"]),
        "coffee_small": (w / "coffee small.jpg", jpeg_bytes(small, quality=75)),
        "astro": (lib / "astro.jpg", pictures["astronaut"]),
        "astro_copy": (lib / "a" / "astro.jpg", pictures["astronaut"]),
        "rocket": (lib / "rocket.jpg", pictures["rocket"]),
        "rocket_copy": (lib / "rocket2.jpg", pictures["rocket"]),
        "motor": (lib / "motor.jpg", pictures["motorcycle_left"]),
        "motor_copy": (lib / "motor2.jpg", pictures["motorcycle_left"]),
        "hubble": (lib / "hubble.jpg", pictures["hubble"]),
        "cafe": (lib / os.fsdecode(b"caf\xe9.jpg"), pictures["hubble"]),  # a name that is not UTF-8
    }
    for path, data in layout.values():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return {name: path for name, (path, _) in layout.items()}


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    root = tmp_path_factory.mktemp("resolve")
    files = make_files(root)
    config = server_config(
        root,
        server={"allowed_roots": [str(root)], "token": TOKEN},
        watch={"directories": [str(root / "watched")]},
    )
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("XDG_DATA_HOME", str(root / "xdg"))
        with live_server(config, watch_overrides=FAST) as server:
            server.paths = files
            server.root = root
            status, job = server.get("/add", image=str(root / "lib"))
            assert status == 202, job
            server.wait_job(job["job"])
            quiet(server)
            yield server


def quiet(live: Live) -> None:
    watcher = live.service.watcher
    assert watcher is not None
    wait_for(lambda: watcher.idle() and live.service.queue.join(0), 120, "the watcher and indexer to be idle")


def post(live: Live, route: str, body: Any, headers: dict[str, str] | None = None) -> tuple[int, Any]:
    status, answer, _ = live.request(
        "POST", route, body=json.dumps(body).encode(), headers={"Content-Type": "application/json", **(headers or {})}
    )
    OPENAPI.check("POST", route, status, answer)
    return status, answer


def resolve(live: Live, groups: list[tuple[Path, list[Path]]], action: str, **extra: Any) -> tuple[int, Any]:
    body = {"groups": [{"keep": str(k), "others": [str(o) for o in others]} for k, others in groups], "action": action}
    return post(live, "/duplicates/resolve", {**body, **extra})


def found(live: Live, query: Path, wanted: Path) -> bool:
    """Whether a search by the picture at ``query`` returns ``wanted``."""
    status, body, _ = live.request("GET", "/search", {"image": str(query), "limit": "50"})
    assert status == 200, body
    return str(wanted) in {r["image"] for r in body["results"]}


def by_image(answer: Any) -> dict[str, dict[str, Any]]:
    return {f["image"]: f for f in answer["files"]}


def test_trash_then_undo_puts_everything_back_and_searchable(live):
    p, home = live.paths, live.root / "xdg" / "Trash"
    groups = [(p["chelsea"], [p["chelsea_copy"], p["chelsea_sub"]]), (p["coffee"], [p["coffee_small"]])]
    status, dry = resolve(live, groups, "trash", dry_run=True)
    assert status == 200, dry
    assert (dry["undo"], dry["done"], dry["skipped"]) == (None, 0, 0)
    assert by_image(dry)[str(p["chelsea_copy"])]["to"] == str(home / "files" / "chelsea copy.jpg")
    assert by_image(dry)[str(p["chelsea_sub"])]["to"] == str(home / "files" / "chelsea.jpg")
    assert {f["state"] for f in dry["files"]} == {"planned"} and not home.exists()

    status, done = resolve(live, groups, "trash")
    assert status == 200, done
    assert (done["done"], done["skipped"]) == (3, 0) and isinstance(done["undo"], int)
    assert sorted(os.listdir(home / "files")) == ["chelsea copy.jpg", "chelsea.jpg", "coffee small.jpg"]
    for name in os.listdir(home / "files"):
        info = (home / "info" / f"{name}.trashinfo").read_text()
        assert info.startswith("[Trash Info]\nPath=/") and "DeletionDate=" in info
    assert "Path=" + str(p["chelsea_sub"]) + "\n" in (home / "info" / "chelsea.jpg.trashinfo").read_text()
    for other in (p["chelsea_copy"], p["chelsea_sub"], p["coffee_small"]):
        assert not other.exists()
        assert not found(live, p["chelsea"], other) and not found(
            live, p["coffee"], other
        )  # gone from the index at once
    assert p["chelsea"].exists() and p["coffee"].exists() and found(live, p["chelsea"], p["chelsea"])

    status, listed, _ = live.request("GET", "/duplicates/resolutions")
    OPENAPI.check("GET", "/duplicates/resolutions", status, listed)
    assert listed["resolutions"][0] | {"created_at": ""} == {
        "undo": done["undo"],
        "action": "trash",
        "to": None,
        "created_at": "",
        "state": "done",
        "files": 3,
        "done": 3,
    }

    status, undone = post(live, "/duplicates/undo", {"undo": done["undo"]})
    assert status == 200, undone
    assert (undone["restored"], undone["skipped"]) == (3, 0)
    assert os.listdir(home / "files") == [] and os.listdir(home / "info") == []
    for other in (p["chelsea_copy"], p["chelsea_sub"]):
        assert found(live, p["chelsea"], other)  # indexed again within the undo
    assert found(live, p["coffee"], p["coffee_small"])
    assert post(live, "/duplicates/undo", {"undo": done["undo"]})[0] == 409
    assert post(live, "/duplicates/undo", {"undo": done["undo"] + 100})[0] == 404
    quiet(live)


def test_a_changed_file_a_stranger_and_a_keeper_elsewhere_are_skipped(live):
    p = live.paths
    original = p["motor_copy"].read_bytes()
    p["motor_copy"].write_bytes(original + b"edited after indexing")  # not watched: the catalogue keeps the old hash
    try:
        groups = [(p["motor"], [p["motor_copy"], p["hubble"], p["rocket"]]), (p["rocket"], [p["rocket_copy"]])]
        status, answer = resolve(live, groups, "trash", dry_run=True)
        assert status == 200, answer
        files = by_image(answer)
        assert "changed since it was indexed" in files[str(p["motor_copy"])]["reason"]
        assert "not a duplicate of its keeper" in files[str(p["hubble"])]["reason"]
        assert "kept by a group" in files[str(p["rocket"])]["reason"]
        assert files[str(p["rocket_copy"])]["state"] == "planned"
        assert answer["skipped"] == 3
    finally:
        p["motor_copy"].write_bytes(original)


def test_move_keeps_the_relative_path_and_undo_brings_it_back(live):
    p, root = live.paths, live.root
    to = root / "moved"
    status, answer = resolve(live, [(p["astro"], [p["astro_copy"]])], "move", to=str(to))
    assert status == 200, answer
    target = to / "lib" / "a" / "astro.jpg"  # relative to the allowed root that holds it
    assert answer["files"][0] | {"reason": None} == {
        "image": str(p["astro_copy"]),
        "keep": str(p["astro"]),
        "state": "done",
        "to": str(target),
        "reason": None,
    }
    assert target.exists() and not p["astro_copy"].exists() and answer["to"] == str(to)
    assert not found(live, p["astro"], p["astro_copy"])
    status, undone = post(live, "/duplicates/undo", {"undo": answer["undo"]})
    assert (status, undone["restored"]) == (200, 1)
    assert p["astro_copy"].exists() and not target.exists() and found(live, p["astro"], p["astro_copy"])
    assert os.listdir(to) == []  # the folders the move made under 'to' went with it


def test_link_makes_a_hard_link_and_undo_an_independent_copy(live):
    p = live.paths
    os.chmod(p["rocket_copy"], 0o600)
    before = os.stat(p["rocket_copy"])
    status, answer = resolve(live, [(p["rocket"], [p["rocket_copy"], p["hubble"]])], "link")
    assert status == 200, answer
    assert (answer["done"], by_image(answer)[str(p["rocket_copy"])]["to"]) == (1, str(p["rocket"]))
    assert "not a duplicate" in by_image(answer)[str(p["hubble"])]["reason"]
    assert os.path.samefile(p["rocket"], p["rocket_copy"])
    status, undone = post(live, "/duplicates/undo", {"undo": answer["undo"]})
    assert (status, undone["restored"]) == (200, 1)
    after = os.stat(p["rocket_copy"])
    assert not os.path.samefile(p["rocket"], p["rocket_copy"]) and os.stat(p["rocket"]).st_nlink == 1
    assert (after.st_mode, after.st_mtime_ns) == (before.st_mode, before.st_mtime_ns)
    assert found(live, p["rocket"], p["rocket_copy"])


def test_refused_requests_do_nothing(live, tmp_path):
    p, root = live.paths, live.root
    outside = tmp_path / "outside.jpg"
    outside.write_bytes(p["rocket"].read_bytes())
    status, answer = resolve(live, [(p["rocket"], [p["rocket_copy"], outside])], "trash")
    assert status == 403 and str(outside) in answer["error"] and p["rocket_copy"].exists()
    status, answer = resolve(live, [(p["rocket"], [p["rocket_copy"]])], "move")
    assert status == 400 and "'to'" in answer["error"]
    status, answer = resolve(live, [(p["rocket"], [p["rocket_copy"]])], "move", to=str(root / "watched" / "dups"))
    assert status == 400 and "inside the watched folder" in answer["error"]
    assert not (root / "watched" / "dups").exists()
    status, answer = resolve(live, [(p["rocket"], [p["rocket_copy"]] * 10_000)], "trash")
    assert status == 400 and "at most 10000" in answer["error"]
    status, answer = resolve(live, [(p["rocket"], [p["rocket_copy"]])], "shred")
    assert status == 400 and "shred" in answer["error"]
    assert all(action in answer["error"].split("one of ")[1] for action in ("trash", "move", "link")), answer
    status, answer = post(live, "/duplicates/resolve", {"groups": [], "action": "trash", "typo": 1})
    assert status == 400 and "typo" in answer["error"]
    body = json.dumps({"groups": [{"keep": str(p["rocket"]), "others": [str(p["rocket_copy"])]}], "action": "trash"})
    status, answer, _ = live.request(
        "POST",
        "/duplicates/resolve",
        body=body.encode(),
        headers={"Content-Type": "application/json", "Authorization": ""},
    )
    assert status == 401
    status, answer = post(
        live,
        "/duplicates/resolve",
        json.loads(body),
        headers={"Origin": "http://evil.example", "Sec-Fetch-Site": "cross-site"},
    )
    assert status == 403 and p["rocket_copy"].exists()


@pytest.fixture
def mounted(live: Live) -> Iterator[Path]:
    with tmpfs(live.root / "mnt", "16m", "a topdir trash needs a second file system") as point:
        yield point


def test_a_file_on_another_file_system_goes_to_its_topdir_trash(live, mounted):
    keep, copy = mounted / "keep.jpg", mounted / "pics" / "copy.jpg"
    copy.parent.mkdir()
    keep.write_bytes(live.paths["hubble"].read_bytes())
    copy.write_bytes(keep.read_bytes())
    status, job = live.get("/add", image=str(mounted))
    live.wait_job(job["job"])
    status, answer = resolve(live, [(keep, [copy])], "trash")
    assert (status, answer["done"]) == (200, 1), answer
    own = mounted / f".Trash-{os.getuid()}"
    assert answer["files"][0]["to"] == str(own / "files" / "copy.jpg")
    assert (own / "info" / "copy.jpg.trashinfo").read_text().splitlines()[1] == "Path=pics/copy.jpg"
    assert not found(live, keep, copy)
    status, job = live.get("/add", image=str(mounted))  # the Trash is hidden: a walk never indexes it
    assert live.wait_job(job["job"])["found"] == 1  # keep.jpg; not the copy in .Trash-UID
    assert post(live, "/duplicates/undo", {"undo": answer["undo"]})[1]["restored"] == 1
    assert copy.exists() and found(live, keep, copy) and os.listdir(own / "files") == []


def test_a_name_that_is_not_utf8_goes_to_the_trash_and_back(live):
    p, home = live.paths, live.root / "xdg" / "Trash"
    status, answer = resolve(live, [(p["hubble"], [p["cafe"]])], "trash")  # JSON: the name as \udcXX escapes
    assert (status, answer["done"], answer["files"][0]["image"]) == (200, 1, str(p["cafe"])), answer
    name = os.path.basename(answer["files"][0]["to"])
    assert os.fsencode(name) == b"caf\xe9.jpg" and not p["cafe"].exists()
    assert (home / "info" / f"{name}.trashinfo").read_text().splitlines()[1].endswith("/caf%E9.jpg")
    assert not found(live, p["hubble"], p["cafe"])
    assert post(live, "/duplicates/undo", {"undo": answer["undo"]})[1]["restored"] == 1
    assert p["cafe"].exists() and found(live, p["hubble"], p["cafe"])


def test_a_keeper_linked_to_its_other_keeps_both(live):
    p = live.paths
    sym = p["motor"].parent / "linked" / "motor.jpg"
    sym.parent.mkdir(exist_ok=True)
    sym.symlink_to(p["motor"])
    status, job = live.get("/add", image=str(sym.parent))
    live.wait_job(job["job"])
    for keep, other in ((sym, p["motor"]), (p["motor"], sym)):
        status, answer = resolve(live, [(keep, [other])], "trash")
        assert (status, answer["done"], answer["undo"]) == (200, 0, None), answer
        assert f"is the same file as its keeper {keep} (a link)" in answer["files"][0]["reason"]
    assert p["motor"].exists() and sym.exists()


def test_an_undo_that_skips_a_file_can_be_tried_again(live):
    p = live.paths
    status, answer = resolve(live, [(p["motor"], [p["motor_copy"]])], "trash")
    assert (status, answer["done"]) == (200, 1), answer
    rid, original = answer["undo"], live.root / "xdg" / "Trash" / "files" / "motor2.jpg"
    p["motor_copy"].write_bytes(b"a new file at its path")
    status, undone = post(live, "/duplicates/undo", {"undo": rid})
    assert (status, undone["restored"], undone["skipped"]) == (200, 0, 1), undone
    status, listed, _ = live.request("GET", "/duplicates/resolutions")
    OPENAPI.check("GET", "/duplicates/resolutions", status, listed)
    row = next(r for r in listed["resolutions"] if r["undo"] == rid)
    assert (row["state"], row["files"], row["done"]) == ("partly undone", 1, 1)
    p["motor_copy"].unlink()
    status, undone = post(live, "/duplicates/undo", {"undo": rid})
    assert (status, undone["restored"], [f["image"] for f in undone["files"]]) == (200, 1, [str(p["motor_copy"])])
    assert not original.exists() and found(live, p["motor"], p["motor_copy"])
    status, gone = post(live, "/duplicates/undo", {"undo": rid})
    assert status == 409 and "no file of it is left" in gone["error"]
