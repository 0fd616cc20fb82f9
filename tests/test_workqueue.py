"""workqueue: de-duplication, newest intent wins, moves kept in order, offline folders."""

from __future__ import annotations

import threading

import pytest

from imgsearchd.workqueue import Intent, Work, WorkQueue


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
