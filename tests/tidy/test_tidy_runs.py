"""Resolutions through the journal on real files and a real SQLite catalogue: the checks, each
action and its undo, and the recovery at start from every state a crash can leave a file in."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from imgsearchd.store.catalog import Catalog
from imgsearchd.store.resolutions import Journal, Step
from imgsearchd.tidy import runs, trash
from imgsearchd.tidy.checks import Facts, Group, plan
from imgsearchd.tidy.files import hash_file, temp_name
from mounts import tmpfs


@pytest.fixture
def journal(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Journal]:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    with Catalog(tmp_path / "catalog.db") as catalog:
        yield Journal(catalog)


@pytest.fixture
def other_fs(tmp_path: Path) -> Iterator[Path]:
    with tmpfs(tmp_path / "mnt", "16m", "a second file system for a move across them") as point:
        yield point


def files(root: Path, **contents: bytes) -> dict[str, str]:
    paths = {}
    for name, data in contents.items():
        path = root / "photos" / f"{name}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        paths[name] = str(path)
    return paths


def facts_of(paths: dict[str, str], target: Path | None = None, root: Path | None = None) -> Facts:
    """The catalogue's hashes as they are now on disk (every file was indexed as it is)."""
    hashes = {p: hash_file(p) for p in paths.values()}
    move = (lambda p: str(target / os.path.relpath(p, root))) if target is not None and root is not None else None
    return Facts(hashes.get, lambda a, b: 0.5, 0.8, move)


def test_the_checks_skip_what_may_not_be_acted_on(tmp_path, journal):
    p = files(tmp_path, keep=b"A", copy=b"A", twice=b"A", changed=b"A", other=b"B", keep2=b"C", copy2=b"C")
    facts = facts_of(p)
    Path(p["changed"]).write_bytes(b"A, edited")
    Path(p["keep2"]).write_bytes(b"C, edited")
    groups = [
        Group(
            p["keep"], [p["copy"], p["twice"], p["twice"], p["changed"], p["other"], p["keep2"], str(tmp_path / "no")]
        ),
        Group(p["keep2"], [p["copy2"]]),
    ]
    items = {(i.image, i.state, i.reason or "") for i in plan(groups, "trash", facts)}
    reasons = {image: reason for image, state, reason in items if state == "skipped"}
    assert {image for image, state, _ in items if state == "planned"} == {p["copy"], p["twice"]}
    assert "listed twice" in reasons[p["twice"]]
    assert "changed since it was indexed" in reasons[p["changed"]]
    assert "not a duplicate of its keeper" in reasons[p["other"]] and "cosine 0.500 < 0.800" in reasons[p["other"]]
    assert "kept by a group" in reasons[p["keep2"]]
    assert "not in the index" in reasons[str(tmp_path / "no")]
    assert f"the keeper {p['keep2']} is gone or changed" in reasons[p["copy2"]]
    linked = {i.image: i.reason for i in plan([Group(p["keep"], [p["copy"], p["other"]])], "link", facts_of(p))}
    assert linked[p["copy"]] is None
    assert "not a duplicate" in (linked[p["other"]] or "")


def test_trash_then_undo(tmp_path, journal):
    p = files(tmp_path, keep=b"A", a=b"A", b=b"A")
    items = plan([Group(p["keep"], [p["a"], p["b"]])], "trash", facts_of(p))
    rid = runs.resolve(journal, items, "trash", None)
    assert rid is not None and [i.state for i in items] == ["done", "done"]
    home = tmp_path / "xdg" / "Trash"
    assert sorted(os.listdir(home / "files")) == ["a.jpg", "b.jpg"]
    assert sorted(os.listdir(home / "info")) == ["a.jpg.trashinfo", "b.jpg.trashinfo"]
    assert not os.path.exists(p["a"]) and Path(p["keep"]).read_bytes() == b"A"
    assert journal.get(rid) == journal.get(rid)._replace(state="done", files=2, done=2)
    Path(p["b"]).write_bytes(b"a new file at b's path")
    action, undone, _ = runs.undo(journal, rid)
    assert (action, [(u.image, u.state) for u in undone]) == ("trash", [(p["a"], "restored"), (p["b"], "skipped")])
    assert "a file is at" in (undone[1].reason or "")
    assert Path(p["a"]).read_bytes() == b"A" and os.listdir(home / "files") == ["b.jpg"]
    assert os.listdir(home / "info") == ["b.jpg.trashinfo"]  # b stays in the Trash, restorable from there
    assert journal.get(rid)[4:] == ("partly undone", 2, 1)  # b is still done: an undo may try it again
    os.unlink(p["b"])  # the blocker cleared: the retry acts on b only
    assert [(u.image, u.state) for u in runs.undo(journal, rid)[1]] == [(p["b"], "restored")]
    assert Path(p["b"]).read_bytes() == b"A" and os.listdir(home / "files") == []
    assert journal.get(rid)[4:] == ("undone", 2, 0)
    with pytest.raises(runs.Conflict):
        runs.undo(journal, rid)
    with pytest.raises(runs.NotFound):
        runs.undo(journal, rid + 1)


def test_a_move_across_file_systems_and_its_undo(tmp_path, journal, other_fs):
    p = files(tmp_path, keep=b"A" * 100000, a=b"A" * 100000)
    os.utime(p["a"], ns=(1, 1_500_000_000_000_000_000))
    to = other_fs / "moved"
    items = plan([Group(p["keep"], [p["a"]])], "move", facts_of(p, to, tmp_path))
    rid = runs.resolve(journal, items, "move", str(to))
    target = to / "photos" / "a.jpg"
    assert items[0].state == "done" and items[0].to == str(target)
    assert not os.path.exists(p["a"]) and target.read_bytes() == b"A" * 100000
    assert target.stat().st_mtime_ns == 1_500_000_000_000_000_000
    assert [f.state for f in runs.undo(journal, rid or 0)[1]] == ["restored"]
    assert Path(p["a"]).read_bytes() == b"A" * 100000 and not target.exists()


def test_a_link_and_its_undo_an_independent_copy_with_its_mode_and_mtime(tmp_path, journal):
    p = files(tmp_path, keep=b"A", a=b"A", b=b"B")
    os.chmod(p["a"], 0o640)
    os.utime(p["a"], ns=(1, 1_400_000_000_000_000_000))
    items = plan([Group(p["keep"], [p["a"], p["b"]])], "link", facts_of(p))
    assert "not a duplicate" in (items[1].reason or "")
    rid = runs.resolve(journal, items, "link", None)
    assert os.path.samefile(p["a"], p["keep"]) and os.stat(p["keep"]).st_nlink == 2
    runs.undo(journal, rid or 0)
    st = os.stat(p["a"])
    assert not os.path.samefile(p["a"], p["keep"]) and Path(p["a"]).read_bytes() == b"A"
    assert (st.st_mode & 0o777, st.st_mtime_ns) == (0o640, 1_400_000_000_000_000_000)


def crashed(journal: Journal, action: str, steps: list[Step], state: str = "running") -> int:
    rid = journal.create(action, None, steps)
    if state != "running":
        journal.set_state(rid, state)
    return rid


def test_recovery_settles_a_trash_a_crash_interrupted(tmp_path, journal):
    p = files(tmp_path, keep=b"A", moved=b"A", reserved=b"A", planned=b"A")
    where = trash.trash_for(p["moved"])
    steps = [Step(n, p[name], p["keep"], hash_file(p[name]), "", 0o644, 0) for n, name in enumerate(p) if n]
    rid = crashed(journal, "trash", steps)
    for step in steps[:2]:  # both reserved and journaled; only the first was renamed
        name = os.path.basename(step.path)
        journal.set_target(rid, step.n, str(where.files / name))
        assert trash.reserve(where, step.path, name)
    os.rename(p["moved"], where.files / "moved.jpg")
    done, restored = runs.recover(journal)
    assert [s.path for _, s in done] == [p["moved"]] and restored == []
    assert [s.state for s in journal.steps(rid)] == ["done", "untouched", "untouched"]
    assert os.listdir(where.info) == ["moved.jpg.trashinfo"]  # the reservation that was not used went
    assert os.path.exists(p["reserved"]) and os.path.exists(p["planned"])
    assert journal.get(rid).state == "done"
    assert [u.state for u in runs.undo(journal, rid)[1]] == ["restored"]
    assert Path(p["moved"]).read_bytes() == b"A" and os.listdir(where.info) == []


def test_recovery_settles_a_move_across_file_systems_at_each_point(tmp_path, journal, other_fs):
    p = files(tmp_path, keep=b"A", copying=b"A", renamed=b"A")
    to = other_fs / "to"
    to.mkdir()
    steps = [Step(n, p[k], p["keep"], hash_file(p[k]), str(to / f"{k}.jpg"), 0o644, 0) for n, k in enumerate(p) if n]
    rid = crashed(journal, "move", steps)
    Path(temp_name(steps[0].target, f"{rid}-1")).write_bytes(b"A")  # killed while copying
    Path(steps[1].target).write_bytes(b"A")  # killed after the rename, before the unlink of the source
    runs.recover(journal)
    assert [s.state for s in journal.steps(rid)] == ["untouched", "done"]
    assert os.listdir(to) == ["renamed.jpg"]
    assert os.path.exists(p["copying"]) and not os.path.exists(p["renamed"])


def test_recovery_settles_a_link_and_finishes_an_undo(tmp_path, journal):
    p = files(tmp_path, keep=b"A", a=b"A", b=b"A")
    steps = [Step(n, p[k], p["keep"], hash_file(p[k]), p["keep"], 0o644, 5) for n, k in enumerate(p) if n]
    rid = crashed(journal, "link", steps)
    os.link(p["keep"], temp_name(p["a"], f"{rid}-1"))  # killed before the rename (a is step 1)
    runs.recover(journal)
    assert [s.state for s in journal.steps(rid)] == ["untouched", "untouched"]
    assert sorted(os.listdir(tmp_path / "photos")) == ["a.jpg", "b.jpg", "keep.jpg"]
    # an undo killed half-way: a put back, b still a link; the next start finishes it
    other = crashed(journal, "link", steps, "undoing")
    journal.set_step(other, 1, "done")
    journal.set_step(other, 2, "done")
    os.unlink(p["b"])
    os.link(p["keep"], p["b"])
    done, restored = runs.recover(journal)
    assert done == [] and sorted(s.path for _, s in restored) == [p["a"], p["b"]]
    assert not os.path.samefile(p["b"], p["keep"]) and os.stat(p["b"]).st_mtime_ns == 5
    assert journal.get(other).state == "undone"


def test_a_move_never_overwrites_and_a_link_needs_one_file_system(tmp_path, journal, other_fs):
    p = files(tmp_path, keep=b"A", a=b"A", b=b"A")
    to = tmp_path / "to"
    (to / "photos").mkdir(parents=True)
    (to / "photos" / "a.jpg").write_bytes(b"someone else's")
    items = plan([Group(p["keep"], [p["a"], p["b"]])], "move", facts_of(p, to, tmp_path))
    assert [i.state for i in items] == ["skipped", "planned"]
    assert f"the move's target {to / 'photos' / 'a.jpg'} exists already" in (items[0].reason or "")
    elsewhere = other_fs / "a.jpg"
    elsewhere.write_bytes(b"A")
    facts = facts_of({**p, "elsewhere": str(elsewhere)})
    (linked,) = plan([Group(p["keep"], [str(elsewhere)])], "link", facts)
    assert "link needs the same file system" in (linked.reason or "")
    assert [i.state for i in plan([Group(p["keep"], [p["a"]])], "link", facts)] == ["planned"]


def test_a_file_that_is_its_keeper_through_a_link_is_never_acted_on(tmp_path, journal):
    p = files(tmp_path, keep=b"A", target=b"B", keep2=b"C")
    photos = tmp_path / "photos"
    hard, sym, to_keep2 = photos / "hard.jpg", photos / "sym.jpg", photos / "to_keep2.jpg"
    os.link(p["keep"], hard)  # a hard link to the keeper: trashing it frees nothing
    sym.symlink_to("target.jpg")  # a keeper that is a symbolic link to an other: trashing it leaves it dangling
    to_keep2.symlink_to(p["keep2"])  # a link to another group's keeper
    p |= {"hard": str(hard), "sym": str(sym), "to_keep2": str(to_keep2)}
    groups = [Group(p["keep"], [p["hard"]]), Group(p["sym"], [p["target"]]), Group(p["keep2"], [p["to_keep2"]])]
    for action in ("trash", "move", "link"):
        items = plan(groups, action, facts_of(p, tmp_path / "to", tmp_path))
        reasons = {i.image: i.reason or "" for i in items if i.state == "skipped"}
        assert set(reasons) == {p["hard"], p["target"], p["to_keep2"]}, (action, reasons)
        assert f"the same file as its keeper {p['keep']} (a link)" in reasons[p["hard"]]
        assert f"the same file as its keeper {p['sym']} (a link)" in reasons[p["target"]]
        assert f"the same file as its keeper {p['keep2']}" in reasons[p["to_keep2"]]
    items = plan([Group(p["sym"], [p["keep2"]]), Group(p["keep2"], [p["target"]])], "trash", facts_of(p))
    assert "the same file as the keeper " + p["sym"] in (items[1].reason or "")  # another group's keeper
    assert runs.resolve(journal, plan(groups, "trash", facts_of(p)), "trash", None) is None
    assert Path(p["sym"]).read_bytes() == b"B" and os.stat(p["keep"]).st_nlink == 2


def test_a_link_reason_names_the_keeper_not_the_file_again(tmp_path):
    p = files(tmp_path, keep=b"A", a=b"A, re-encoded")
    facts = Facts(facts_of(p).catalogued, lambda a, b: 0.99, 0.8, None)
    (item,) = plan([Group(p["keep"], [p["a"]])], "link", facts)
    assert item.reason == f"link needs the same bytes as the keeper {p['keep']}: this file's differ"
    assert p["a"] not in item.reason


def test_an_undo_that_skips_a_link_retries_only_what_is_left(tmp_path, journal):
    p = files(tmp_path, keep=b"A", a=b"A", b=b"A")
    rid = runs.resolve(journal, plan([Group(p["keep"], [p["a"], p["b"]])], "link", facts_of(p)), "link", None) or 0
    Path(p["keep"]).write_bytes(b"A, edited")  # b and a are links to it: their bytes changed too
    assert [u.state for u in runs.undo(journal, rid)[1]] == ["skipped", "skipped"]
    assert journal.get(rid)[4:] == ("partly undone", 2, 2)
    Path(p["keep"]).write_bytes(b"A")
    assert [u.state for u in runs.undo(journal, rid)[1]] == ["restored", "restored"]
    assert not os.path.samefile(p["a"], p["keep"]) and journal.get(rid)[4:] == ("undone", 2, 0)


def test_undoing_a_move_removes_only_the_empty_folders_it_made(tmp_path, journal):
    p = files(tmp_path, keep=b"A", a=b"A", b=b"A")
    deep = tmp_path / "photos" / "x" / "y"
    deep.mkdir(parents=True)
    (deep / "c.jpg").write_bytes(b"A")
    p["c"] = str(deep / "c.jpg")
    to = tmp_path / "archive" / "dups"
    (to / "photos").mkdir(parents=True)
    (to / "photos" / "kept.txt").write_text("someone's note")  # a folder with something in it stays
    items = plan([Group(p["keep"], [p["a"], p["c"]])], "move", facts_of(p, to, tmp_path))
    to.mkdir(exist_ok=True)
    rid = runs.resolve(journal, items, "move", str(to)) or 0
    assert (to / "photos" / "x" / "y" / "c.jpg").exists()
    assert [u.state for u in runs.undo(journal, rid)[1]] == ["restored", "restored"]
    assert os.listdir(to) == ["photos"] and os.listdir(to / "photos") == ["kept.txt"]
    assert Path(p["c"]).read_bytes() == b"A"


def remount(point: Path, how: str) -> None:
    done = subprocess.run(["mount", "-o", f"remount,{how}", str(point)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot remount {point} {how}: {done.stderr.decode(errors='replace').strip()}")


def test_a_folder_the_daemon_may_not_write_says_why_and_what_to_do(tmp_path, journal, other_fs):
    read_only = other_fs  # filled, then remounted read-only: as the system service sees the photo folders
    p = files(read_only, keep=b"A", a=b"A", b=b"A")
    items = plan([Group(p["keep"], [p["a"]])], "trash", facts_of(p))
    moves = plan([Group(p["keep"], [p["b"]])], "move", facts_of(p, tmp_path / "to", read_only))
    assert [i.state for i in items + moves] == ["planned", "planned"]
    remount(read_only, "ro")
    try:
        assert "docs/duplicates.md" in (plan([Group(p["keep"], [p["a"]])], "trash", facts_of(p))[0].reason or "")
        runs.resolve(journal, items, "trash", None)  # planned while it could write: the error says why
        runs.resolve(journal, moves, "move", str(tmp_path / "to"))
        for item in items + moves:
            assert item.state == "skipped" and "the daemon may not write there" in (item.reason or ""), item
            assert "Read-only file system" in (item.reason or "") and "docs/duplicates.md" in (item.reason or "")
        assert os.path.exists(p["a"]) and os.path.exists(p["b"])
        assert not (tmp_path / "to" / "photos" / "b.jpg").exists()  # the copy made across file systems went
    finally:
        remount(read_only, "rw")
