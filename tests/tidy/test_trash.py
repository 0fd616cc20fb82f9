"""The freedesktop.org Trash on real folders: names and collisions, ``Path=`` percent-encoded, the
home trash and a topdir trash (on a small tmpfs mounted for the test), reservations with O_EXCL."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from imgsearchd.ingest.folders import walk_images
from imgsearchd.tidy import trash
from imgsearchd.tidy.actions import dry_target
from mounts import tmpfs


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A home trash under ``tmp_path`` (``XDG_DATA_HOME``), on the same file system as the files."""
    data = tmp_path / "xdg"
    monkeypatch.setenv("XDG_DATA_HOME", str(data))
    return data / "Trash"


@pytest.fixture
def mounted(tmp_path: Path) -> Iterator[Path]:
    """A 16 MiB tmpfs: another file system than the home trash's (root only)."""
    with tmpfs(tmp_path / "mnt", "16m", "a topdir trash needs a second file system") as point:
        yield point


def put(where: trash.TrashDir, path: Path) -> str:
    """Reserve a name for ``path`` and move it in, as ``actions`` does."""
    name = trash.free_name(where, path.name)
    assert trash.reserve(where, str(path), name)
    os.rename(path, where.files / name)
    return name


def test_the_home_trash_takes_a_file_on_its_file_system_with_an_absolute_path(tmp_path, home):
    photo = tmp_path / "photos" / "a b%c.jpg"
    photo.parent.mkdir()
    photo.write_bytes(b"one")
    where = trash.trash_for(str(photo))
    assert where == trash.TrashDir(home, None)
    assert stat.S_IMODE(os.stat(home).st_mode) == 0o700
    name = put(where, photo)
    info = (home / "info" / f"{name}.trashinfo").read_text()
    lines = info.splitlines()
    assert lines[0] == "[Trash Info]"
    assert lines[1] == "Path=" + str(photo.parent).replace(" ", "%20") + "/a%20b%25c.jpg"
    assert len(lines[2]) == len("DeletionDate=2026-12-07T02:30:00") and lines[2][13:17].isdigit()
    assert trash.original_path(info, where) == str(photo)
    assert (home / "files" / name).read_bytes() == b"one"


def test_a_second_file_of_the_same_name_gets_another_name(tmp_path, home):
    names = []
    for folder in ("x", "y", "z"):
        photo = tmp_path / folder / "a.jpg"
        photo.parent.mkdir()
        photo.write_bytes(folder.encode())
        names.append(put(trash.trash_for(str(photo)), photo))
    assert names == ["a.jpg", "a.2.jpg", "a.3.jpg"]
    for folder, name in zip(("x", "y", "z"), names):
        assert (home / "files" / name).read_bytes() == folder.encode()
        assert trash.original_path(
            (home / "info" / f"{name}.trashinfo").read_text(), trash.TrashDir(home, None)
        ) == str(tmp_path / folder / "a.jpg")


def test_a_name_reserved_by_another_program_is_not_taken(tmp_path, home):
    where = trash.trash_for(str(tmp_path / "a.jpg"))
    (where.info / "a.jpg.trashinfo").write_text("[Trash Info]\nPath=/elsewhere/a.jpg\n")  # a file manager's
    assert not trash.reserve(where, str(tmp_path / "a.jpg"), "a.jpg")
    assert trash.free_name(where, "a.jpg") == "a.2.jpg"
    trash.release(where, "a.jpg", str(tmp_path / "a.jpg"))  # not ours: stays
    assert (where.info / "a.jpg.trashinfo").exists()
    assert trash.reserve(where, str(tmp_path / "a.jpg"), "a.2.jpg")
    trash.release(where, "a.2.jpg", str(tmp_path / "a.jpg"))  # ours, and no files/a.2.jpg: goes
    assert not (where.info / "a.2.jpg.trashinfo").exists()


def test_a_name_that_is_not_utf8_round_trips(tmp_path, home):
    photo = Path(os.fsdecode(bytes(tmp_path / "caf") + b"\xe9.jpg"))
    photo.write_bytes(b"x")
    where = trash.trash_for(str(photo))
    name = put(where, photo)
    info = (where.info / f"{name}.trashinfo").read_bytes()
    assert b"caf%E9.jpg" in info and info.isascii()
    assert trash.original_path(info.decode(), where) == str(photo)


def test_a_file_on_another_file_system_goes_to_its_topdir_trash(mounted, home):
    photo = mounted / "sub dir" / "a.jpg"
    photo.parent.mkdir()
    photo.write_bytes(b"on tmpfs")
    where = trash.trash_for(str(photo))
    own = mounted / f".Trash-{os.getuid()}"
    assert where == trash.TrashDir(own, mounted)
    assert stat.S_IMODE(os.stat(own).st_mode) == 0o700
    name = put(where, photo)
    info = (own / "info" / f"{name}.trashinfo").read_text()
    assert "Path=sub%20dir/a.jpg\n" in info  # relative to $topdir
    assert trash.original_path(info, where) == str(photo)
    assert trash.locate(str(own / "files" / name)) == (where, name)
    assert not home.exists()  # nothing was copied across file systems
    # hidden: a walk of the mount (a watched folder there) never yields what is in its Trash
    assert list(walk_images(str(mounted), [".jpg"])) == []


def test_a_sticky_shared_trash_is_used_and_a_link_or_plain_one_is_not(mounted, home, tmp_path):
    shared = mounted / ".Trash"
    shared.mkdir()
    photo = mounted / "a.jpg"
    photo.write_bytes(b"x")
    assert trash.trash_for(str(photo)).root == mounted / f".Trash-{os.getuid()}"  # not sticky: not used
    os.chmod(shared, 0o1777)
    where = trash.trash_for(str(photo))
    assert where == trash.TrashDir(shared / str(os.getuid()), mounted)
    assert trash.locate(str(where.files / "a.jpg")) == (where, "a.jpg")
    for folder in (where.files, where.info, where.root, shared):
        os.rmdir(folder)
    os.symlink(tmp_path, shared)  # a link is never a shared trash
    assert trash.trash_for(str(photo)).root == mounted / f".Trash-{os.getuid()}"


def test_a_dry_run_names_a_free_name_and_reserves_nothing(tmp_path, home):
    photo = tmp_path / "a.jpg"
    photo.write_bytes(b"x")
    assert dry_target(str(photo)) == str(home / "files" / "a.jpg")
    assert not home.exists()  # not even made
