"""txgreen.green.queue: the stdlib's queues, thread-aware, between green and OS threads."""

from __future__ import annotations

import queue as std_queue
import time
from collections.abc import Callable
from typing import Any

import pytest

import txgreen
from txgreen.green import queue as gqueue
from txgreen.green import threading as gthreading

DEADLINE = 10.0

QUEUES: list[Callable[..., Any]] = [gqueue.Queue, gqueue.LifoQueue, gqueue.PriorityQueue]


def test_the_module_mirrors_the_stdlib() -> None:
    assert gqueue.__patched__ == ["Queue", "LifoQueue", "PriorityQueue", "SimpleQueue"]
    for name in std_queue.__all__:
        if name not in gqueue.__patched__:
            assert getattr(gqueue, name) is getattr(std_queue, name), name
    assert gqueue.Empty is std_queue.Empty
    assert gqueue.Full is std_queue.Full
    for name in ("Queue", "LifoQueue", "PriorityQueue"):
        assert issubclass(getattr(gqueue, name), getattr(std_queue, name))
        assert getattr(gqueue, name).__doc__
    assert gqueue.SimpleQueue.__doc__
    assert gqueue.Queue[int] is not None
    assert gqueue.SimpleQueue[int] is not None


def test_order_of_each_kind() -> None:
    for cls, expected in zip(QUEUES, ([3, 1, 2], [2, 1, 3], [1, 2, 3]), strict=True):
        q: Any = cls()
        for item in (3, 1, 2):
            q.put(item)
        assert q.qsize() == 3
        assert not q.empty()
        assert [q.get() for _ in range(3)] == expected
        assert isinstance(q.mutex, gthreading.Lock)


@pytest.mark.parametrize("cls", QUEUES, ids=lambda c: c.__name__)
def test_get_parks_the_green_thread_and_times_out_with_empty(cls: Callable[..., Any]) -> None:
    q: Any = cls(maxsize=1)
    start = time.monotonic()
    with pytest.raises(std_queue.Empty):
        q.get(timeout=0.05)
    assert 0.04 <= time.monotonic() - start < 1
    with pytest.raises(std_queue.Empty):
        q.get_nowait()
    with pytest.raises(std_queue.Empty):
        q.get(False)
    q.put(1)
    assert q.full()
    with pytest.raises(std_queue.Full):
        q.put(2, timeout=0.02)
    with pytest.raises(std_queue.Full):
        q.put_nowait(2)
    getter = txgreen.spawn(q.get)
    putter = txgreen.spawn(q.put, 2)
    assert getter.get(timeout=DEADLINE) == 1
    putter.get(timeout=DEADLINE)
    assert q.get_nowait() == 2


def test_bad_calls_raise_value_error_as_the_stdlib() -> None:
    queues: list[std_queue.Queue[int]] = [std_queue.Queue(1), gqueue.Queue(1)]
    for q in queues:
        with pytest.raises(ValueError, match="non-negative"):
            q.get(timeout=-1)
        q.put(0)
        with pytest.raises(ValueError, match="non-negative"):
            q.put(1, timeout=-1)
        assert q.get() == 0
        q.task_done()
        with pytest.raises(ValueError, match="task_done"):
            q.task_done()


def test_simple_queue_bad_timeout_and_nonblocking() -> None:
    simple: list[Any] = [std_queue.SimpleQueue(), gqueue.SimpleQueue()]
    for q in simple:
        with pytest.raises(ValueError, match="non-negative"):
            q.get(timeout=-1)
        with pytest.raises(std_queue.Empty):
            q.get_nowait()
        with pytest.raises(std_queue.Empty):
            q.get(timeout=0.01)
        q.put_nowait(1)
        q.put(2, block=False, timeout=5)
        assert q.qsize() == 2
        assert not q.empty()
        assert [q.get(), q.get(False)] == [1, 2]
        assert q.empty()


def test_task_done_and_join_across_green_and_os_threads() -> None:
    q: gqueue.Queue[int] = gqueue.Queue()
    seen: list[int] = []

    def os_worker() -> None:
        while (n := q.get(timeout=DEADLINE)) >= 0:
            seen.append(n)
            q.task_done()
        q.task_done()

    worker = txgreen.spawn(txgreen.call_in_thread, os_worker)
    for n in range(50):
        q.put(n)
    q.put(-1)
    q.join()  # parks this green thread until the OS thread has done every item
    worker.get(timeout=DEADLINE)
    assert seen == list(range(50))
    assert q.unfinished_tasks == 0


def test_os_threads_put_and_green_threads_get_and_the_other_way_round() -> None:
    to_green: gqueue.Queue[int] = gqueue.Queue(maxsize=2)
    to_os: gqueue.SimpleQueue[int] = gqueue.SimpleQueue()
    n = 200

    def os_side() -> int:
        total = 0
        for i in range(n):
            to_green.put(i, timeout=DEADLINE)  # blocks the OS thread when full
            total += to_os.get(timeout=DEADLINE)
        return total

    os_thread = txgreen.spawn(txgreen.call_in_thread, os_side)
    for _ in range(n):
        item = to_green.get(timeout=DEADLINE)
        to_os.put(item * 2)
    assert os_thread.get(timeout=DEADLINE) == 2 * sum(range(n))


def test_a_killed_getter_leaves_the_queue_working() -> None:
    q: gqueue.Queue[int] = gqueue.Queue()
    victim = txgreen.spawn(q.get)
    txgreen.sleep(0.01)
    victim.kill()
    q.put(1)
    assert q.get(timeout=DEADLINE) == 1
    sq: gqueue.SimpleQueue[int] = gqueue.SimpleQueue()
    victim = txgreen.spawn(sq.get)
    txgreen.sleep(0.01)
    victim.kill()
    sq.put(2)
    assert sq.get(timeout=DEADLINE) == 2
    assert "SimpleQueue" in repr(sq)
