"""``ThreadQueue``: OS threads <-> green threads, in both directions, bounded and not.

Streams are checked with sequence numbers: each producer puts ``(producer, seq)`` for seq
0, 1, 2, ...; the test checks that every item arrived exactly once and that each consumer saw
each producer's items in increasing order.  Where a test must know that an OS thread is blocked
in the queue, it waits (green) for the queue's own count of blocked callers.
"""

from __future__ import annotations

import functools
import queue
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from typing import Any, cast

import pytest
from twisted.internet import reactor

import txgreen
from threads_support import OSThread, wait_until
from txgreen import GreenletExit, ThreadQueue

R: Any = reactor
Item = tuple[int, int]


@pytest.fixture
def threads_before() -> Iterator[set[threading.Thread]]:
    """Fail the test if it leaves OS threads of its own behind (pools' workers aside)."""
    before = set(threading.enumerate())
    yield before
    left = [
        t
        for t in set(threading.enumerate()) - before
        if t.is_alive() and not t.name.startswith("PoolThread-")
    ]
    assert left == []


def check_stream(received: Iterable[list[Item]], producers: int, per_producer: int) -> None:
    """Every (producer, seq) exactly once; each consumer saw each producer's seqs in order."""
    everything = Counter(item for items in received for item in items)
    expected = {(p, s) for p in range(producers) for s in range(per_producer)}
    assert set(everything) == expected, "lost items"
    assert set(everything.values()) == {1}, "duplicated items"
    for items in received:
        for p in range(producers):
            seqs = [s for q, s in items if q == p]
            assert seqs == sorted(seqs), f"producer {p}'s items were reordered"


# -- OS threads -> green threads -------------------------------------------------------------


@pytest.mark.parametrize("maxsize", [0, 8])
def test_os_producers_to_green_consumers(maxsize: int, threads_before: object) -> None:
    producers, per_producer, consumers = 4, 500, 4
    q: ThreadQueue[Item] = ThreadQueue(maxsize)

    def produce(p: int) -> None:
        for s in range(per_producer):
            q.put((p, s))

    dequeued: list[Item] = []  # the global order of get() returns (no switch in between)
    received: list[list[Item]] = [[] for _ in range(consumers)]

    def consume(c: int) -> int:
        for item in q:
            dequeued.append(item)
            received[c].append(item)
        return len(received[c])

    green = [txgreen.spawn(consume, c) for c in range(consumers)]
    workers = [OSThread(functools.partial(produce, p), f"producer {p}") for p in range(producers)]
    for w in workers:
        assert w.result() is None
    q.close()
    counts = [g.get(timeout=10) for g in green]
    assert sum(counts) == producers * per_producer
    check_stream([dequeued], producers, per_producer)
    check_stream(received, producers, per_producer)
    assert (q.qsize(), q.getters_waiting, q.putters_waiting) == (0, 0, 0)


def test_bounded_queue_blocks_the_os_producer(threads_before: object) -> None:
    q: ThreadQueue[int] = ThreadQueue(maxsize=3)
    produced: list[int] = []

    def produce() -> str:
        for i in range(6):
            q.put(i)
            produced.append(i)
        return "producer done"

    producer = OSThread(produce)
    wait_until(lambda: q.putters_waiting == 1, "the producer blocks on the full queue")
    # No consumer has read: the producer got exactly maxsize items in, and no further.
    assert produced == [0, 1, 2]
    assert (q.qsize(), q.full()) == (3, True)
    txgreen.sleep(0.05)
    assert produced == [0, 1, 2]
    # Each item taken lets exactly one more in.
    assert q.get() == 0
    wait_until(lambda: len(produced) == 4 and q.putters_waiting == 1, "one more put")
    assert produced == [0, 1, 2, 3]
    assert [q.get() for _ in range(5)] == [1, 2, 3, 4, 5]
    assert producer.result() == "producer done"
    assert produced == list(range(6))


# -- green threads -> OS threads -------------------------------------------------------------


@pytest.mark.parametrize("maxsize", [0, 4])
def test_green_producers_to_os_consumers(maxsize: int, threads_before: object) -> None:
    producers, per_producer, consumers = 3, 300, 3
    q: ThreadQueue[Item] = ThreadQueue(maxsize)
    received: list[list[Item]] = [[] for _ in range(consumers)]

    def consume(c: int) -> int:
        for item in q:  # an OS thread iterating: blocks its own thread
            received[c].append(item)
        return len(received[c])

    def produce(p: int) -> None:
        for s in range(per_producer):
            q.put((p, s))  # bounded: blocks only this green thread when full

    workers = [OSThread(functools.partial(consume, c), f"consumer {c}") for c in range(consumers)]
    green = [txgreen.spawn(produce, p) for p in range(producers)]
    for g in green:
        g.get(timeout=10)
    q.close()
    assert sum(w.result() for w in workers) == producers * per_producer
    check_stream(received, producers, per_producer)


def test_full_queue_blocks_only_the_green_producer(threads_before: object) -> None:
    q: ThreadQueue[str] = ThreadQueue(maxsize=1)
    q.put("first")
    putter = txgreen.spawn(q.put, "second")
    wait_until(lambda: q.putters_waiting == 1, "the green producer blocks")
    assert not putter.dead
    # The reactor and this green thread run on meanwhile.
    assert txgreen.block_on(txgreen.defer_to_green(lambda: "still running")) == "still running"
    consumer = OSThread(lambda: [q.get(), q.get()])
    assert consumer.result() == ["first", "second"]
    putter.get(timeout=10)
    assert putter.successful()


def test_os_getter_blocks_until_a_green_put(threads_before: object) -> None:
    q: ThreadQueue[str] = ThreadQueue()
    consumer = OSThread(q.get)
    wait_until(lambda: q.getters_waiting == 1, "the OS getter blocks")
    q.put("hello")
    assert consumer.result() == "hello"


# -- timeouts ----------------------------------------------------------------------------------


def test_green_get_timeout() -> None:
    q: ThreadQueue[int] = ThreadQueue()
    with pytest.raises(txgreen.Timeout, match=r"^timed out after 0\.02 seconds$"):
        q.get(timeout=0.02)
    assert q.getters_waiting == 0
    q.put(1)  # nobody stale is woken for it: the next get has it
    assert q.get(timeout=0.02) == 1


def test_green_put_timeout() -> None:
    q: ThreadQueue[int] = ThreadQueue(maxsize=1)
    q.put(1)
    with pytest.raises(txgreen.Timeout, match=r"0\.02 seconds"):
        q.put(2, timeout=0.02)
    assert (q.putters_waiting, q.qsize()) == (0, 1)
    assert q.get() == 1


def test_os_thread_timeouts(threads_before: object) -> None:
    q: ThreadQueue[int] = ThreadQueue(maxsize=1)

    def in_thread() -> list[str]:
        out = []
        for call in (lambda: q.get(timeout=0.02), lambda: q.put(1), lambda: q.put(2, 0.02)):
            try:
                out.append(repr(call()))
            except txgreen.Timeout as e:
                out.append(f"Timeout: {e}")
        return out

    assert OSThread(in_thread).result() == [
        "Timeout: timed out after 0.02 seconds",
        "None",
        "Timeout: timed out after 0.02 seconds",
    ]
    assert (q.qsize(), q.getters_waiting, q.putters_waiting) == (1, 0, 0)


def test_enclosing_timeout_block_and_zero_timeout() -> None:
    q: ThreadQueue[int] = ThreadQueue()
    outer = txgreen.Timeout(0.02)
    with pytest.raises(txgreen.Timeout) as info, outer:
        q.get()
    assert info.value is outer
    with pytest.raises(txgreen.Timeout, match="after 0 seconds"):
        q.get(timeout=0)
    assert q.getters_waiting == 0


# -- nowait, close, iteration ------------------------------------------------------------------


def test_nowait_errors_are_named_and_queue_compatible() -> None:
    q: ThreadQueue[int] = ThreadQueue(maxsize=1)
    with pytest.raises(txgreen.Empty, match=r"^the ThreadQueue is empty$") as empty:
        q.get_nowait()
    assert isinstance(empty.value, queue.Empty)
    assert isinstance(empty.value, txgreen.TxgreenError)
    q.put_nowait(1)
    with pytest.raises(txgreen.Full, match=r"^the ThreadQueue is full \(1 items\)$") as full:
        q.put_nowait(2)
    assert isinstance(full.value, queue.Full)
    assert q.get_nowait() == 1


def test_close_drains_then_ends() -> None:
    q: ThreadQueue[int] = ThreadQueue()
    for i in range(3):
        q.put(i)
    q.close()
    q.close()  # idempotent
    assert q.closed
    with pytest.raises(txgreen.QueueClosed, match=r"^put\(\) on a closed ThreadQueue$"):
        q.put(3)
    with pytest.raises(txgreen.QueueClosed, match=r"^put_nowait\(\) on a closed ThreadQueue$"):
        q.put_nowait(3)
    assert q.get() == 0
    assert list(q) == [1, 2]  # iteration drains, then ends
    with pytest.raises(txgreen.QueueClosed, match=r"^the ThreadQueue is closed and empty$"):
        q.get()
    with pytest.raises(txgreen.QueueClosed):
        q.get_nowait()
    assert list(q) == []


def test_close_wakes_every_blocked_caller(threads_before: object) -> None:
    q: ThreadQueue[int] = ThreadQueue()
    full: ThreadQueue[int] = ThreadQueue(maxsize=1)
    full.put(0)

    def error_of(fn: Callable[[], object]) -> str:
        try:
            fn()
        except txgreen.QueueClosed as e:
            return f"QueueClosed: {e}"
        return "returned"

    green_get = txgreen.spawn(error_of, q.get)
    green_iter = txgreen.spawn(list, q)
    green_put = txgreen.spawn(error_of, lambda: full.put(1))
    os_get = OSThread(lambda: error_of(q.get))
    os_iter = OSThread(lambda: list(q))
    os_put = OSThread(lambda: error_of(lambda: full.put(2)))
    wait_until(lambda: (q.getters_waiting, full.putters_waiting) == (4, 2), "all blocked")
    closer = OSThread(q.close)  # from an OS thread: green getters are woken via the reactor
    closer.result()
    full.close()  # from a green thread
    closed_empty = "QueueClosed: the ThreadQueue is closed and empty"
    closed_put = "QueueClosed: put() on a closed ThreadQueue"
    assert green_get.get(timeout=10) == closed_empty
    assert green_iter.get(timeout=10) == []
    assert os_get.result() == closed_empty
    assert os_iter.result() == []
    assert green_put.get(timeout=10) == closed_put
    assert os_put.result() == closed_put
    assert full.get() == 0  # what was queued before the close can still be taken


def test_iteration_in_both_directions_ends_with_close(threads_before: object) -> None:
    to_green: ThreadQueue[int] = ThreadQueue()
    to_os: ThreadQueue[int] = ThreadQueue()

    def os_side() -> list[int]:
        for i in range(5):
            to_green.put(i)
        to_green.close()
        return list(to_os)

    worker = OSThread(os_side)
    got = list(to_green)
    for i in got:
        to_os.put(i * 10)
    to_os.close()
    assert got == [0, 1, 2, 3, 4]
    assert worker.result() == [0, 10, 20, 30, 40]


# -- the hub, kills, wake-ups ------------------------------------------------------------------


@pytest.mark.in_hub
def test_blocking_calls_from_the_hub_raise_nowait_calls_work() -> None:
    q: ThreadQueue[int] = ThreadQueue(maxsize=1)
    with pytest.raises(txgreen.BlockingInHubError, match=r"^ThreadQueue\.get\(\) was called"):
        q.get()
    q.put_nowait(1)
    with pytest.raises(txgreen.BlockingInHubError, match=r"^ThreadQueue\.put\(\) was called"):
        q.put(2)
    with pytest.raises(txgreen.BlockingInHubError):
        q.get()  # even with an item there: a blocking call from the hub is always an error
    assert q.get_nowait() == 1
    q.close()


def test_put_nowait_from_a_reactor_callback_wakes_a_green_getter() -> None:
    q: ThreadQueue[str] = ThreadQueue()
    R.callLater(0.001, q.put_nowait, "from the hub")
    assert q.get(timeout=10) == "from the hub"


def test_killed_getter_leaves_no_stale_waiter() -> None:
    q: ThreadQueue[int] = ThreadQueue()
    getter = txgreen.spawn(q.get)
    wait_until(lambda: q.getters_waiting == 1, "getter blocks")
    getter.kill()
    assert getter.dead
    assert isinstance(getter.value, GreenletExit)
    assert q.getters_waiting == 0
    q.put(7)
    assert q.get_nowait() == 7  # the item was not handed to the dead getter


def test_wake_up_for_a_killed_getter_is_passed_on() -> None:
    q: ThreadQueue[str] = ThreadQueue()
    first = txgreen.spawn(q.get)
    second = txgreen.spawn(q.get)
    wait_until(lambda: q.getters_waiting == 2, "both getters block")
    # Kill the first getter without waiting (its wait completes with the kill, not run yet),
    # then put: the put wakes the first getter, which is dying: it must pass the item's
    # wake-up on to the second.
    first.kill(block=False)
    q.put_nowait("for whoever waits")
    assert second.get(timeout=10) == "for whoever waits"
    first.join(timeout=10)
    assert isinstance(first.value, GreenletExit)
    assert q.getters_waiting == 0


def test_fifo_among_green_getters() -> None:
    q: ThreadQueue[int] = ThreadQueue()
    order: list[tuple[int, int]] = []

    def getter(g: int) -> None:
        order.append((g, q.get()))

    getters = []
    for g in range(5):
        getters.append(txgreen.spawn(getter, g))
        wait_until(functools.partial(lambda n: q.getters_waiting == n, g + 1), "getter blocks")
    for i in range(5):
        q.put(i * 100)
    for gt in getters:
        gt.get(timeout=10)
    assert order == [(g, g * 100) for g in range(5)]


# -- misc --------------------------------------------------------------------------------------


@pytest.mark.parametrize("bad", [-1, 1.5, "3"])
def test_maxsize_must_be_a_non_negative_int(bad: object) -> None:
    with pytest.raises(ValueError, match=r"^maxsize must be an int >= 0 \(0: unbounded\), not"):
        ThreadQueue(cast(int, bad))


def test_state_and_repr() -> None:
    q: ThreadQueue[int] = ThreadQueue(maxsize=2)
    assert (q.maxsize, q.closed, q.empty(), q.full(), q.qsize()) == (2, False, True, False, 0)
    q.put(1)
    q.put(2)
    assert (q.empty(), q.full(), q.qsize()) == (False, True, 2)
    assert repr(q) == "<txgreen.ThreadQueue open 2/2 items, 0 getters, 0 putters waiting>"
    q.close()
    assert repr(q) == "<txgreen.ThreadQueue closed 2/2 items, 0 getters, 0 putters waiting>"
    unbounded: ThreadQueue[int] = ThreadQueue()
    assert repr(unbounded) == "<txgreen.ThreadQueue open 0 items, 0 getters, 0 putters waiting>"
    assert not unbounded.full()


def test_items_already_queued_can_be_taken_from_an_os_thread() -> None:
    q: ThreadQueue[int] = ThreadQueue()
    q.put(1)
    q.put(2)
    assert OSThread(lambda: [q.get(), q.get_nowait()]).result() == [1, 2]
