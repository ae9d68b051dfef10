"""``Queue``, ``PriorityQueue``, ``LifoQueue``: order, bounds, hand-over, timeouts, kills,
tasks, iteration, the hub and misuse."""

from __future__ import annotations

import queue as stdlib_queue
from typing import Any

import pytest
from twisted.internet.defer import Deferred

import txgreen
from primitives_support import all_of, assert_in_hub, settle, then_in_hub
from support import Boom
from txgreen import GreenletExit, GreenThread
from txgreen._queue import Empty, Full, LifoQueue, PriorityQueue, Queue

HUB_MESSAGE = "was called from the hub (the greenlet running the reactor)"


def drain(q: Queue[Any]) -> list[Any]:
    out = []
    while not q.empty():
        out.append(q.get_nowait())
    return out


def test_fifo_and_state() -> None:
    q: Queue[int] = Queue()
    assert q.maxsize == 0
    assert q.empty()
    assert not q.full()
    assert repr(q) == "<txgreen.Queue 0 items, 0 getters, 0 putters waiting>"
    for i in range(5):
        q.put(i)
    q.put_nowait(5)
    assert q.qsize() == 6
    assert not q.empty()
    assert not q.full()  # unbounded
    assert q.unfinished_tasks == 6
    assert q.get() == 0
    assert q.get_nowait() == 1
    assert q.get(block=False) == 2
    assert drain(q) == [3, 4, 5]
    assert Queue(None).maxsize == 0
    assert Queue(-3).maxsize == 0


def test_bounded_queue_state() -> None:
    q: Queue[str] = Queue(2)
    assert q.maxsize == 2
    q.put("a")
    q.put("b")
    assert q.full()
    assert repr(q) == "<txgreen.Queue 2/2 items, 0 getters, 0 putters waiting>"


def test_empty_and_full_errors() -> None:
    q: Queue[int] = Queue(1)
    with pytest.raises(Empty) as excinfo:
        q.get_nowait()
    assert str(excinfo.value) == "Queue.get(): the queue is empty"
    assert isinstance(excinfo.value, stdlib_queue.Empty)
    assert isinstance(excinfo.value, txgreen.TxgreenError)
    with pytest.raises(Empty):
        q.get(block=False)
    q.put(1)
    with pytest.raises(Full) as excinfo2:
        q.put_nowait(2)
    assert str(excinfo2.value) == "Queue.put(): the queue is full (1 items)"
    assert isinstance(excinfo2.value, stdlib_queue.Full)
    with pytest.raises(stdlib_queue.Full):
        q.put(2, block=False)
    assert drain(q) == [1]


def test_timeouts_raise_empty_and_full() -> None:
    q: Queue[int] = Queue(1)
    with pytest.raises(Empty) as excinfo:
        q.get(timeout=0.01)
    assert str(excinfo.value) == "Queue.get(): no item arrived within 0.01 seconds"
    q.put(1)
    with pytest.raises(Full) as excinfo2:
        q.put(2, timeout=0.01)
    assert str(excinfo2.value) == "Queue.put(): the queue stayed full (1 items) for 0.01 seconds"
    assert q.getters_waiting == q.putters_waiting == 0
    assert drain(q) == [1]  # the timed-out put's item is not in
    with pytest.raises(ValueError) as excinfo3:
        q.get(timeout=-1)
    assert str(excinfo3.value) == "timeout must be a non-negative number of seconds or None, not -1"


def test_enclosing_timeout_wins_and_leaves_the_queue_clean() -> None:
    q: Queue[int] = Queue(1)
    with pytest.raises(txgreen.Timeout) as excinfo, txgreen.Timeout(0.01) as deadline:
        q.get(timeout=10)
    assert excinfo.value is deadline
    assert q.getters_waiting == 0
    q.put(1)
    assert q.qsize() == 1  # went into the queue, not to a stale getter
    with pytest.raises(txgreen.Timeout) as excinfo, txgreen.Timeout(0.01) as deadline:
        q.put(2)
    assert excinfo.value is deadline
    assert q.putters_waiting == 0
    assert drain(q) == [1]


def test_getters_are_served_fifo_by_hand_over() -> None:
    q: Queue[str] = Queue()
    getters = [txgreen.spawn(q.get) for _ in range(3)]
    settle()
    assert q.getters_waiting == 3
    q.put("a")
    q.put("b")
    assert q.qsize() == 0  # handed straight to the getters
    q.put("c")
    assert q.qsize() == 0
    assert [g.get() for g in getters] == ["a", "b", "c"]


def test_put_with_a_waiting_getter_does_not_switch() -> None:
    q: Queue[int] = Queue()
    got: list[int] = []
    g = txgreen.spawn(lambda: got.append(q.get()))
    settle()
    q.put(1)
    assert got == []
    g.join()
    assert got == [1]


def test_bounded_put_blocks_and_putters_are_served_fifo() -> None:
    q: Queue[int] = Queue(2)
    q.put(0)
    q.put(1)
    done: list[int] = []

    def putter(i: int) -> None:
        q.put(i)
        done.append(i)

    putters = [txgreen.spawn(putter, i) for i in range(2, 5)]
    settle()
    assert q.putters_waiting == 3
    assert done == []
    assert q.get() == 0  # moves putter 2's item in, at once
    assert q.full()
    assert q.putters_waiting == 2
    with pytest.raises(Full):
        q.put_nowait(99)  # no barging ahead of the waiting putters
    settle()
    assert done == [2]
    assert [q.get() for _ in range(4)] == [1, 2, 3, 4]
    for p in putters:
        p.join()
    assert done == [2, 3, 4]
    assert q.empty()


def test_killed_getter_before_hand_over_loses_nothing() -> None:
    q: Queue[str] = Queue()
    a = txgreen.spawn(q.get)
    b = txgreen.spawn(q.get)
    settle()
    a.kill()
    assert q.getters_waiting == 1
    q.put("x")
    assert b.get() == "x"
    assert isinstance(a.value, GreenletExit)


def test_getter_killed_after_hand_over_still_returns_the_item() -> None:
    q: Queue[str] = Queue()
    got: list[str] = []

    def getter() -> None:
        got.append(q.get())
        txgreen.sleep(0)  # the kill is raised here
        got.append("not reached")

    g = txgreen.spawn(getter)
    settle()
    q.put("x")  # handed over to g
    g.kill(Boom("late"))  # before g ran again
    with pytest.raises(Boom):
        g.get()
    assert got == ["x"]
    assert q.qsize() == 0


def test_killed_putter_before_hand_over_puts_nothing() -> None:
    q: Queue[str] = Queue(1)
    q.put("a")
    p1 = txgreen.spawn(q.put, "b")
    p2 = txgreen.spawn(q.put, "c")
    settle()
    p1.kill()
    assert q.putters_waiting == 1
    assert q.get() == "a"
    p2.join()
    assert drain(q) == ["c"]
    assert q.unfinished_tasks == 2  # "a" and "c": "b" was never put


def test_putter_killed_after_hand_over_has_put_its_item() -> None:
    q: Queue[str] = Queue(1)
    q.put("a")
    log: list[str] = []

    def putter() -> None:
        q.put("b")
        log.append("put")
        txgreen.sleep(0)

    p = txgreen.spawn(putter)
    settle()
    assert q.get() == "a"  # moves "b" in and wakes p
    p.kill()
    assert log == ["put"]
    assert drain(q) == ["b"]


def test_task_done_and_join() -> None:
    q: Queue[int] = Queue()
    assert q.join() is True  # nothing put
    g = txgreen.spawn(q.get)
    settle()
    q.put(1)  # handed over: still counts as a task
    q.put(2)
    assert q.unfinished_tasks == 2
    joiners = [txgreen.spawn(q.join) for _ in range(2)]
    assert q.join(timeout=0.01) is False
    assert g.get() == 1
    q.task_done()
    settle()
    assert not any(j.dead for j in joiners)
    assert q.get() == 2
    q.task_done()
    assert [j.get() for j in joiners] == [True, True]
    assert q.join() is True
    with pytest.raises(ValueError) as excinfo:
        q.task_done()
    assert str(excinfo.value) == "Queue.task_done() called too many times (more than items put)"


def test_join_inside_timeout_block() -> None:
    q: Queue[int] = Queue()
    q.put(1)
    with pytest.raises(txgreen.Timeout) as excinfo, txgreen.Timeout(0.01) as deadline:
        q.join()
    assert excinfo.value is deadline
    q.get()
    q.task_done()


def test_iteration_ends_on_stop_iteration() -> None:
    q: Queue[int] = Queue()
    consumed: list[list[int]] = [[], []]

    def consumer(i: int) -> None:
        for item in q:
            consumed[i].append(item)

    consumers = [txgreen.spawn(consumer, i) for i in range(2)]
    settle()
    for item in range(6):
        q.put(item)
        txgreen.sleep(0)
    q.put(StopIteration)
    q.put(StopIteration)
    for c in consumers:
        c.join()
    # FIFO getters: each put goes to the consumer that has waited longest, so they alternate.
    assert consumed == [[0, 2, 4], [1, 3, 5]]
    assert q.empty()
    q.put(StopIteration)
    last: object = q.get()
    assert last is StopIteration  # get() itself returns the sentinel like any item


def test_priority_queue_order() -> None:
    q: PriorityQueue[tuple[int, str]] = PriorityQueue()
    for item in [(3, "c"), (1, "a"), (2, "b")]:
        q.put(item)
    assert repr(q) == "<txgreen.PriorityQueue 3 items, 0 getters, 0 putters waiting>"
    assert [q.get() for _ in range(3)] == [(1, "a"), (2, "b"), (3, "c")]
    g = txgreen.spawn(q.get)
    settle()
    q.put((5, "e"))
    assert g.get() == (5, "e")


def test_bounded_priority_queue_moves_putters_in() -> None:
    q: PriorityQueue[int] = PriorityQueue(2)
    q.put(5)
    q.put(3)
    p = txgreen.spawn(q.put, 1)
    settle()
    assert q.get() == 3
    p.join()
    assert [q.get(), q.get()] == [1, 5]


def test_lifo_queue_order() -> None:
    q: LifoQueue[int] = LifoQueue(3)
    for i in range(3):
        q.put(i)
    assert q.full()
    p = txgreen.spawn(q.put, 3)
    settle()
    assert q.get() == 2
    p.join()
    assert drain(q) == [3, 1, 0]


@pytest.mark.in_hub
def test_queue_in_the_hub() -> Deferred[Any]:
    q: Queue[int] = Queue(1)
    with pytest.raises(txgreen.BlockingInHubError) as excinfo:
        q.get()
    assert str(excinfo.value).startswith(f"Queue.get() on an empty queue {HUB_MESSAGE}")
    with pytest.raises(Empty):
        q.get_nowait()
    q.put(1)  # room: fine in the hub
    with pytest.raises(txgreen.BlockingInHubError) as excinfo:
        q.put(2, timeout=1)
    assert str(excinfo.value).startswith(f"Queue.put() on a full queue {HUB_MESSAGE}")
    with pytest.raises(txgreen.BlockingInHubError) as excinfo:
        q.join()
    assert str(excinfo.value).startswith(f"Queue.join() with unfinished tasks {HUB_MESSAGE}")
    assert q.get() == 1  # an item is there: fine in the hub
    q.task_done()
    got: list[int] = []
    getters: list[GreenThread[None]] = [
        txgreen.spawn(lambda: got.append(q.get())) for _ in range(3)
    ]

    def fire() -> Deferred[Any]:
        assert_in_hub()
        q.put_nowait(10)
        q.put_nowait(11)
        q.put(12)
        assert got == []  # the getters have not run
        assert q.qsize() == 0
        return all_of(getters).addCallback(lambda _: check())

    def check() -> None:
        assert got == [10, 11, 12]

    return then_in_hub(fire)


def test_put_skips_a_getter_killed_but_not_yet_run() -> None:
    q: Queue[str] = Queue()
    a = txgreen.spawn(q.get)
    b = txgreen.spawn(q.get)
    settle()
    a.kill(block=False)  # a's wait is over, but a has not run: its entry is still queued
    assert q.getters_waiting == 1
    q.put("x")  # must go to b
    q.put("y")  # no getter left: into the queue
    assert b.get() == "x"
    a.join()
    assert q.get_nowait() == "y"


def test_get_skips_a_putter_killed_but_not_yet_run() -> None:
    q: Queue[str] = Queue(1)
    q.put("first")
    a = txgreen.spawn(q.put, "a")
    b = txgreen.spawn(q.put, "b")
    settle()
    a.kill(block=False)
    assert q.putters_waiting == 1
    assert q.get() == "first"  # moves b's item in, not a's
    b.join()
    a.join()
    assert drain(q) == ["b"]
    assert q.unfinished_tasks == 2
