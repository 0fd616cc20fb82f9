"""settling: when a written file is complete. Times are given, so nothing here sleeps
except where a real file's size and mtime are looked at."""

from __future__ import annotations

from pathlib import Path

from imgsearchd.ingest.settling import Settler, look

DEBOUNCE, SETTLE = 0.25, 2.0


def ready_at(settler: Settler, now: float, looked: dict[str, tuple[int, int] | None] | None = None) -> list[str]:
    """One round of the watcher's control loop at time ``now``."""
    due = settler.due(now)
    return settler.decide(due, looked or {d.path: None for d in due if not d.complete}, now)


def test_a_closed_file_is_ready_after_the_debounce_and_a_burst_is_one_entry():
    settler = Settler(DEBOUNCE, SETTLE)
    for i in range(50):  # 50 writes in half a second, then the close
        settler.touch("/w/a.jpg", complete=False, now=i / 100)
    settler.touch("/w/a.jpg", complete=True, now=0.5)
    assert len(settler) == 1
    assert ready_at(settler, 0.6) == []  # still inside the debounce
    assert ready_at(settler, 0.5 + DEBOUNCE) == ["/w/a.jpg"]
    assert len(settler) == 0 and ready_at(settler, 10) == []


def test_a_file_never_seen_closed_waits_for_its_size_and_mtime_to_hold_still():
    settler = Settler(DEBOUNCE, SETTLE)
    settler.touch("/w/a.jpg", complete=False, now=0.0)
    assert ready_at(settler, 1.0, {"/w/a.jpg": (100, 1)}) == []  # first look
    assert ready_at(settler, 1.6, {"/w/a.jpg": (200, 2)}) == []  # grew: starts again
    assert ready_at(settler, 3.0, {"/w/a.jpg": (200, 2)}) == []  # still for 1.4 s only
    assert ready_at(settler, 3.6, {"/w/a.jpg": (200, 2)}) == ["/w/a.jpg"]  # still for 2 s


def test_an_attribute_change_keeps_what_was_known_and_a_new_write_resets_it():
    settler = Settler(DEBOUNCE, SETTLE)
    settler.touch("/w/a.jpg", complete=True, now=0.0)
    settler.touch("/w/a.jpg", complete=None, now=0.1)  # chmod after the close: still complete
    assert ready_at(settler, 0.11 + DEBOUNCE) == ["/w/a.jpg"]
    settler.touch("/w/b.jpg", complete=True, now=0.0)
    settler.touch("/w/b.jpg", complete=False, now=0.1)  # written again: not complete any more
    assert ready_at(settler, 1.0, {"/w/b.jpg": (5, 5)}) == []


def test_a_file_written_again_while_it_was_looked_at_is_left_alone():
    settler = Settler(DEBOUNCE, SETTLE)
    settler.touch("/w/a.jpg", complete=True, now=0.0)
    due = settler.due(1.0)
    settler.touch("/w/a.jpg", complete=False, now=1.1)  # an event between due and decide
    assert settler.decide(due, {}, 1.2) == []
    assert "/w/a.jpg" in settler


def test_renames_carry_pending_files_along_and_deletions_forget_them():
    settler = Settler(DEBOUNCE, SETTLE)
    settler.touch("/w/a.jpg.part", complete=False, now=0.0)
    assert settler.rename("/w/a.jpg.part", "/w/a.jpg", now=0.1)
    assert not settler.rename("/w/never.jpg", "/w/x.jpg", now=0.1)
    settler.touch("/w/sub/b.jpg", complete=True, now=0.0)
    settler.touch("/w/sub/c.jpg", complete=True, now=0.0)
    settler.rename_folder("/w/sub", "/w/moved")
    assert sorted(p for p in ("/w/a.jpg", "/w/moved/b.jpg", "/w/moved/c.jpg") if p in settler) == [
        "/w/a.jpg",
        "/w/moved/b.jpg",
        "/w/moved/c.jpg",
    ]
    assert settler.count_under("/w/moved") == 2
    settler.rename_folder("/w/moved", None)  # moved out of sight
    assert settler.count_under("/w/moved") == 0
    assert settler.discard("/w/a.jpg") and not settler.discard("/w/a.jpg")
    settler.touch("/x/1.jpg", complete=True, now=0.0)
    settler.forget_under("/x")
    assert len(settler) == 0


def test_a_file_gone_before_it_settled_is_dropped(tmp_path: Path):
    settler = Settler(DEBOUNCE, SETTLE)
    path = tmp_path / "a.jpg"
    path.write_bytes(b"half")
    settler.touch(str(path), complete=False, now=0.0)
    due = settler.due(1.0)
    first = look(due)
    assert first == {str(path): (4, path.stat().st_mtime_ns)}
    settler.decide(due, first, 1.0)
    path.unlink()
    due = settler.due(1.6)
    assert settler.decide(due, look(due), 1.6) == [] and len(settler) == 0
