"""workqueue: de-duplication, newest intent wins, moves kept in order, offline folders."""

from __future__ import annotations

import threading

import pytest
from hypothesis import given
from hypothesis import strategies as st

from imgsearchd.ingest.workqueue import Intent, Work, WorkQueue


def test_queue_deduplicates_and_latest_intent_wins():
    queue = WorkQueue()
    queue.put("/p/a.jpg")
    queue.put("/p/b.jpg")
    queue.put("/p/./a.jpg", Intent.REMOVE)
    queue.put_many(["/p/c.jpg", "/p/b.jpg"])
    assert len(queue) == 3
    assert queue.take(10) == [
        Work("/p/a.jpg", Intent.REMOVE),
        Work("/p/c.jpg", Intent.ADD),
        Work("/p/b.jpg", Intent.ADD),
    ]
    assert queue.take(10, timeout=0.01) == []


def test_queue_wakes_a_waiting_taker():
    queue = WorkQueue()
    got: list = []
    taker = threading.Thread(target=lambda: got.extend(queue.take(5, timeout=5)))
    taker.start()
    queue.put("/p/x.jpg")
    taker.join(5)
    assert got == [Work("/p/x.jpg", Intent.ADD)]


def test_queue_keeps_moves_in_order_and_offline_drops_adds_below_the_folder():
    queue = WorkQueue()
    queue.put("/w/a.jpg")
    queue.put_move("/w/a.jpg", "/w/b.jpg")
    queue.put("/w/b.jpg")
    queue.put("/w/gone.jpg", Intent.REMOVE)
    queue.put("/w/back.jpg", Intent.RESTORE)
    queue.put("/elsewhere/c.jpg")
    queue.put_offline("/w")
    assert queue.take(10) == [
        Work("/w/b.jpg", Intent.MOVE, "/w/a.jpg"),
        Work("/w/gone.jpg", Intent.REMOVE),
        Work("/elsewhere/c.jpg", Intent.ADD),
        Work("/w", Intent.MARK_OFFLINE),
    ]
    assert not queue.join(0)  # taken, not yet done
    queue.task_done(4)
    assert queue.join(0)
    with pytest.raises(ValueError):
        queue.put("/w", Intent.MARK_OFFLINE)


# -- properties --------------------------------------------------------------------------------

PATH = st.sampled_from(["/p/a", "/p/b", "/p/c", "/q/d"])
INTENT = st.sampled_from([Intent.ADD, Intent.RECHECK, Intent.REMOVE, Intent.RESTORE])
OPS = st.lists(st.tuples(PATH, INTENT), min_size=1, max_size=30)


@given(OPS)
def test_the_newest_intent_for_each_path_wins_and_each_path_is_queued_once(ops):
    queue = WorkQueue()
    for path, intent in ops:
        queue.put(path, intent)
    taken = queue.take(100)
    newest = {path: intent for path, intent in ops}
    assert {w.path: w.intent for w in taken} == newest
    assert len(taken) == len(newest)
    last_put = {path: i for i, (path, _) in enumerate(ops)}
    assert [w.path for w in taken] == sorted(newest, key=last_put.__getitem__)  # in order of their last put


@given(OPS, OPS, st.integers(min_value=0, max_value=30))
def test_given_back_work_goes_first_and_never_overrides_newer_work(first, later, take_count):
    queue = WorkQueue()
    for path, intent in first:
        queue.put(path, intent)
    queue.put_move("/m/old", "/m/new")
    taken = queue.take(take_count)
    for path, intent in later:
        queue.put(path, intent)
    queue.give_back(taken)
    queue.task_done(len(taken))
    after = queue.take(1000)
    newer = {path: intent for path, intent in later}
    by_path = {w.path: w.intent for w in after if w.intent != Intent.MOVE}
    for work in taken:  # a path queued again since it was taken keeps the newer intent
        if work.intent != Intent.MOVE:
            assert by_path[work.path] == newer.get(work.path, work.intent)
    returned = [w for w in taken if w.intent == Intent.MOVE or w.path not in newer]
    assert after[: len(returned)] == returned  # back at the front, in their order
    assert sum(w.intent == Intent.MOVE for w in after) == 1
    queue.task_done(len(after))
    assert queue.join(0)


def test_take_while_takes_the_front_of_one_kind_and_never_waits():
    queue = WorkQueue()
    queue.put_many(["/p/a.jpg", "/p/b.jpg", "/p/c.jpg"])
    queue.put("/p/d.jpg", Intent.RECHECK)
    assert queue.take_while(Intent.RECHECK, 5) == []
    assert queue.take_while(Intent.ADD, 5, unless={"/p/b.jpg"}) == [Work("/p/a.jpg", Intent.ADD)]
    assert queue.take_while(Intent.ADD, 1) == [Work("/p/b.jpg", Intent.ADD)]
    assert queue.take_while(Intent.ADD, 5) == [Work("/p/c.jpg", Intent.ADD)]
    assert queue.take(5) == [Work("/p/d.jpg", Intent.RECHECK)]
    queue.task_done(3)
    assert not queue.join(0)  # every item taken counts until reported done
    queue.task_done(1)
    assert queue.join(0)


def test_an_offline_mark_given_back_keeps_its_folder_key():
    """Keyed like a move, a mark given back was not replaced by the next mark of its folder."""
    queue = WorkQueue()
    queue.put_offline("/p/gone")
    assert queue.give_back(queue.take(1)) == 1
    queue.put_offline("/p/gone")
    assert queue.take(10) == [Work("/p/gone", Intent.MARK_OFFLINE)]
    queue.put_offline("/p/gone")
    taken = queue.take(1)
    queue.put_offline("/p/gone")  # a newer mark stands: the one given back is not needed
    assert queue.give_back(taken) == 0
    assert len(queue) == 1
