"""``Lock``, ``RLock``, ``Semaphore``, ``BoundedSemaphore``: ownership, FIFO hand-over,
timeouts, kills, the hub and misuse."""

from __future__ import annotations

from typing import Any

import pytest
from twisted.internet.defer import Deferred

import txgreen
from primitives_support import all_of, assert_in_hub, settle, then_in_hub
from support import Boom, freed_without_gc
from txgreen import GreenletExit, GreenThread
from txgreen._lock import BoundedSemaphore, Lock, RLock, Semaphore

HUB_MESSAGE = "was called from the hub (the greenlet running the reactor)"

AnyLock = Lock | RLock | Semaphore


def acquirers(
    lock: AnyLock, n: int, order: list[int], hold: bool = False
) -> list[GreenThread[None]]:
    """n threads that acquire ``lock`` (in spawn order), record their index, release."""

    def one(i: int) -> None:
        with lock:
            order.append(i)
            if hold:
                txgreen.sleep(0)

    return [txgreen.spawn(one, i) for i in range(n)]


def killed_after_hand_over(
    lock: AnyLock, exception: type[BaseException] | BaseException = GreenletExit
) -> tuple[GreenThread[None], list[str]]:
    """Hold ``lock``, queue a waiter on it, release (which hands ``lock`` to the waiter) and
    kill the waiter with ``exception`` before it ran: it still gets ``lock``, logs "got it",
    then dies at its next wait, inside its ``with`` block.  The waiter and its log."""
    log: list[str] = []

    def waiter() -> None:
        with lock:
            log.append("got it")
            txgreen.sleep(0)  # the kill is raised here, inside the with block
            log.append("not reached")

    lock.acquire()
    t = txgreen.spawn(waiter)
    settle()
    lock.release()  # hands the lock to t
    t.kill(exception)
    return t, log


# -- Lock --------------------------------------------------------------------------------------


def test_lock_basics() -> None:
    lock = Lock()
    assert not lock.locked()
    assert repr(lock) == "<txgreen.Lock unlocked, 0 waiting>"
    assert lock.acquire() is True
    assert lock.locked()
    assert repr(lock).startswith("<txgreen.Lock locked by <GreenThread ")
    assert lock.acquire(blocking=False) is False  # held (by us)
    lock.release()
    assert not lock.locked()
    with lock as got:
        assert got is True
        assert lock.locked()
    assert not lock.locked()
    assert lock.acquire(timeout=-1) is True  # threading's "no timeout"
    lock.release()


def test_lock_misuse() -> None:
    lock = Lock()
    with pytest.raises(RuntimeError) as excinfo:
        lock.release()
    assert str(excinfo.value) == "Lock.release(): release unlocked lock"
    with pytest.raises(ValueError) as excinfo2:
        lock.acquire(blocking=False, timeout=1)
    assert str(excinfo2.value) == "can't specify a timeout for a non-blocking call"
    with pytest.raises(ValueError) as excinfo2:
        lock.acquire(timeout=-2)
    assert str(excinfo2.value) == (
        "timeout must be a non-negative number of seconds or None, not -2"
    )
    lock.acquire()
    with pytest.raises(RuntimeError) as excinfo:
        lock.acquire()
    assert str(excinfo.value) == (
        "Lock.acquire(): this green thread already holds the lock, so it would wait forever; "
        "use an RLock for re-entrant locking"
    )
    lock.release()
    assert not lock.locked()


def test_lock_release_by_non_owner_is_refused() -> None:
    lock = Lock()
    lock.acquire()
    other = txgreen.spawn(lock.release)
    with pytest.raises(RuntimeError) as excinfo:
        other.get()
    assert str(excinfo.value).startswith("Lock.release(): the lock is held by <GreenThread ")
    assert str(excinfo.value).endswith(
        ", not by the calling green thread; only the owner may release it"
    )
    assert lock.locked()
    lock.release()


def test_lock_fifo_hand_over() -> None:
    lock = Lock()
    order: list[int] = []
    lock.acquire()
    threads = acquirers(lock, 5, order)
    settle()
    assert lock.waiting == 5
    lock.release()
    # The lock went straight to the first waiter: no barging by the releaser.
    assert lock.locked()
    assert lock.acquire(blocking=False) is False
    for t in threads:
        t.join()
    assert order == [0, 1, 2, 3, 4]
    assert not lock.locked()
    assert lock.waiting == 0


def test_lock_fifo_with_contention() -> None:
    # Each holder yields while holding: everyone queues, and the lock still goes in order.
    lock = Lock()
    order: list[int] = []
    threads = acquirers(lock, 6, order, hold=True)
    for t in threads:
        t.join()
    assert order == list(range(6))


def test_lock_acquire_timeout() -> None:
    lock = Lock()
    lock.acquire()
    t = txgreen.spawn(lock.acquire, timeout=0.01)
    assert t.get() is False
    assert lock.waiting == 0
    lock.release()
    assert not lock.locked()


def test_lock_acquire_inside_timeout_block_raises() -> None:
    lock = Lock()
    lock.acquire()

    def waiter() -> bool:
        with txgreen.Timeout(0.01):
            lock.acquire(timeout=10)
        return True

    t = txgreen.spawn(waiter)
    with pytest.raises(txgreen.Timeout):
        t.get()
    assert lock.waiting == 0
    lock.release()
    assert not lock.locked()


def test_lock_killed_waiter_is_skipped() -> None:
    lock = Lock()
    order: list[int] = []
    lock.acquire()
    a, b = acquirers(lock, 2, order)
    settle()
    a.kill()
    assert lock.waiting == 1
    lock.release()
    b.join()
    assert order == [1]
    assert not lock.locked()


def test_lock_waiter_killed_after_hand_over_releases_on_its_way_out() -> None:
    lock = Lock()
    t, log = killed_after_hand_over(lock)
    assert log == ["got it"]
    assert isinstance(t.value, GreenletExit)
    assert not lock.locked()
    assert lock.acquire(blocking=False) is True
    lock.release()


@pytest.mark.in_hub
def test_lock_in_the_hub() -> Deferred[Any]:
    lock = Lock()
    assert lock.acquire(blocking=False) is True  # owned by the hub greenlet
    with pytest.raises(RuntimeError) as excinfo0:
        lock.acquire(timeout=1)
    assert str(excinfo0.value).startswith("Lock.acquire(): this green thread already holds")
    order: list[int] = []
    threads = acquirers(lock, 3, order)

    def fire() -> Deferred[Any]:
        assert_in_hub()
        lock.release()  # hands over without switching
        assert order == []
        assert lock.locked()
        assert lock.acquire(blocking=False) is False
        with pytest.raises(txgreen.BlockingInHubError) as excinfo:
            lock.acquire(timeout=1)  # held by threads[0] now
        assert str(excinfo.value).startswith(f"Lock.acquire() on a held lock {HUB_MESSAGE}")
        return all_of(threads).addCallback(lambda _: check())

    def check() -> None:
        assert order == [0, 1, 2]
        assert not lock.locked()

    return then_in_hub(fire)


# -- RLock -------------------------------------------------------------------------------------


def test_rlock_is_reentrant() -> None:
    lock = RLock()
    assert repr(lock) == "<txgreen.RLock unlocked, 0 waiting>"
    with lock, lock:
        assert lock.acquire(blocking=False) is True
        assert repr(lock).endswith("(count 3), 0 waiting>")
        lock.release()
        other = txgreen.spawn(lock.acquire, blocking=False)
        assert other.get() is False
    assert not lock.locked()


def test_rlock_misuse() -> None:
    lock = RLock()
    with pytest.raises(RuntimeError) as excinfo:
        lock.release()
    assert str(excinfo.value) == (
        "RLock.release(): cannot release un-acquired lock (it is held by nobody, not by the "
        "calling green thread)"
    )
    lock.acquire()
    other = txgreen.spawn(lock.release)
    with pytest.raises(RuntimeError) as excinfo:
        other.get()
    assert str(excinfo.value).startswith(
        "RLock.release(): cannot release un-acquired lock (it is held by <GreenThread "
    )
    assert lock.locked()
    with pytest.raises(ValueError) as excinfo2:
        lock.acquire(blocking=False, timeout=0)
    assert str(excinfo2.value) == "can't specify a timeout for a non-blocking call"
    lock.release()


def test_rlock_fifo_hand_over_and_timeouts_and_kills() -> None:
    lock = RLock()
    order: list[int] = []
    lock.acquire()
    lock.acquire()
    threads = acquirers(lock, 4, order)
    late = txgreen.spawn(lock.acquire, timeout=0.01)
    assert late.get() is False
    settle()
    threads[1].kill()
    assert lock.waiting == 3
    lock.release()
    assert order == []  # still held once
    lock.release()
    assert lock.acquire(blocking=False) is False  # handed over to threads[0]
    for t in threads:
        t.join()
    assert order == [0, 2, 3]
    assert not lock.locked()


def test_rlock_waiter_killed_after_hand_over() -> None:
    lock = RLock()
    _, log = killed_after_hand_over(lock)
    assert log == ["got it"]
    assert not lock.locked()


@pytest.mark.in_hub
def test_rlock_in_the_hub() -> Deferred[Any]:
    lock = RLock()
    lock.acquire()
    lock.acquire()  # the hub owns it, re-entrantly
    lock.release()
    lock.release()
    assert not lock.locked()

    def hold() -> None:
        with lock:
            txgreen.block_on(Deferred())

    holder = txgreen.spawn(hold)

    def check() -> Deferred[Any]:
        assert_in_hub()
        assert lock.locked()
        with pytest.raises(txgreen.BlockingInHubError) as excinfo:
            lock.acquire()
        assert str(excinfo.value).startswith(
            f"RLock.acquire() on a lock held by another green thread {HUB_MESSAGE}"
        )
        assert lock.acquire(blocking=False) is False
        holder.kill()  # from the hub: does not wait
        return holder.to_deferred().addCallback(lambda _: after())

    def after() -> None:
        assert not lock.locked()

    return then_in_hub(check)


# -- Semaphore ---------------------------------------------------------------------------------


def test_semaphore_counts() -> None:
    sem = Semaphore(2)
    assert sem.value == 2
    assert not sem.locked()
    assert repr(sem) == "<txgreen.Semaphore value=2, 0 waiting>"
    assert sem.acquire() is True
    assert sem.acquire() is True
    assert sem.locked()
    assert sem.acquire(blocking=False) is False
    assert sem.acquire(timeout=0.01) is False
    sem.release()
    assert sem.value == 1
    with sem:
        assert sem.value == 0
    assert sem.value == 1
    sem.release(3)
    assert sem.value == 4
    assert Semaphore().value == 1
    assert Semaphore(0).locked()


def test_semaphore_misuse() -> None:
    with pytest.raises(ValueError) as excinfo:
        Semaphore(-1)
    assert str(excinfo.value) == "semaphore initial value must be >= 0, not -1"
    sem = Semaphore(1)
    with pytest.raises(ValueError) as excinfo:
        sem.release(0)
    assert str(excinfo.value) == "Semaphore.release(): n must be one or more, not 0"
    with pytest.raises(ValueError) as excinfo:
        sem.acquire(False, 1)
    assert str(excinfo.value) == "can't specify a timeout for a non-blocking call"
    assert sem.value == 1


def test_semaphore_fifo_and_release_n() -> None:
    sem = Semaphore(0)
    order: list[int] = []

    def one(i: int) -> None:
        sem.acquire()
        order.append(i)

    threads = [txgreen.spawn(one, i) for i in range(5)]
    settle()
    assert sem.waiting == 5
    sem.release(3)
    assert sem.value == 0  # the permits were handed over, not freed
    assert sem.acquire(blocking=False) is False  # no barging
    settle()
    assert order == [0, 1, 2]
    sem.release(3)
    for t in threads:
        t.join()
    assert order == [0, 1, 2, 3, 4]
    assert sem.value == 1


def test_semaphore_killed_waiter_keeps_the_count_right() -> None:
    sem = Semaphore(0)
    a = txgreen.spawn(sem.acquire)
    b = txgreen.spawn(sem.acquire, timeout=0.01)
    c = txgreen.spawn(sem.acquire)
    settle()
    a.kill()
    assert b.get() is False
    assert sem.waiting == 1
    sem.release()  # to c, the only one still waiting
    assert c.get() is True
    assert sem.value == 0
    sem.release()
    assert sem.value == 1  # no permit leaked to the dead


def test_semaphore_waiter_killed_after_hand_over_gives_the_permit_back() -> None:
    sem = BoundedSemaphore(1)
    t, log = killed_after_hand_over(sem, Boom("late"))
    with pytest.raises(Boom):
        t.get()
    assert log == ["got it"]
    assert sem.value == 1


def test_semaphore_inside_timeout_block() -> None:
    sem = Semaphore(0)
    with pytest.raises(txgreen.Timeout) as excinfo, txgreen.Timeout(0.01) as deadline:
        sem.acquire(timeout=10)
    assert excinfo.value is deadline
    assert sem.waiting == 0
    assert sem.value == 0


def test_bounded_semaphore_over_release() -> None:
    sem = BoundedSemaphore(2)
    assert repr(sem) == "<txgreen.BoundedSemaphore value=2, 0 waiting>"
    with pytest.raises(ValueError) as excinfo:
        sem.release()
    assert str(excinfo.value) == (
        "BoundedSemaphore.release(): semaphore released too many times (it would hold 3 "
        "permits, its initial value is 2)"
    )
    sem.acquire()
    with pytest.raises(ValueError):
        sem.release(2)  # all or nothing
    assert sem.value == 1
    sem.release()
    assert sem.value == 2
    with pytest.raises(ValueError) as excinfo:
        sem.release(0)
    assert str(excinfo.value) == "BoundedSemaphore.release(): n must be one or more, not 0"


def test_bounded_semaphore_hands_over_to_waiters() -> None:
    sem = BoundedSemaphore(1)
    sem.acquire()
    t = txgreen.spawn(sem.acquire)
    settle()
    sem.release()  # handed to t: the bound is respected (value stays 0)
    assert t.get() is True
    assert sem.value == 0
    sem.release()
    assert sem.value == 1


@pytest.mark.in_hub
def test_semaphore_in_the_hub() -> Deferred[Any]:
    sem = Semaphore(0)
    with pytest.raises(txgreen.BlockingInHubError) as excinfo:
        sem.acquire()
    assert str(excinfo.value).startswith(f"Semaphore.acquire() with no permit free {HUB_MESSAGE}")
    assert sem.acquire(blocking=False) is False
    order: list[int] = []

    def one(i: int) -> None:
        sem.acquire()
        order.append(i)

    threads = [txgreen.spawn(one, i) for i in range(2)]

    def fire() -> Deferred[Any]:
        assert_in_hub()
        sem.release(2)
        assert order == []  # release never switches
        return all_of(threads).addCallback(lambda _: check())

    def check() -> None:
        assert order == [0, 1]
        assert sem.value == 0

    return then_in_hub(fire)


@pytest.mark.parametrize("kind", ["Lock", "RLock", "Semaphore"])
def test_release_skips_a_waiter_killed_but_not_yet_run(kind: str) -> None:
    lock: AnyLock = Lock() if kind == "Lock" else RLock() if kind == "RLock" else Semaphore(1)
    lock.acquire()
    a = txgreen.spawn(lock.acquire)
    b = txgreen.spawn(lock.acquire)
    settle()
    a.kill(block=False)  # a's wait is over, but a has not run: its entry is still queued
    assert lock.waiting == 1
    lock.release()  # must go to b
    assert b.get() is True
    a.join()
    assert lock.locked()
    assert lock.acquire(blocking=False) is False


# -- weak references ------------------------------------------------------------------------------


@pytest.mark.parametrize("cls", [Lock, RLock, Semaphore, BoundedSemaphore])
def test_locks_and_semaphores_accept_weak_references(cls: type[Any]) -> None:
    # gevent's test__semaphore.py test_semaphore_weakref; threading's locks allow them too
    assert freed_without_gc(cls)  # weakref.ref() works, and nothing keeps it
