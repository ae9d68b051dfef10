"""txgreen.green.threading: thread-aware locks shared by green and OS threads; green Threads.

Every test runs as a green thread (the plugin's ``txgreen_mode = auto``).  OS threads come from
``txgreen.call_in_thread`` (Twisted's thread pool) or plain ``threading`` threads started
before anything is patched.
"""

from __future__ import annotations

import _thread
import gc
import itertools
import logging
import math
import threading as std_threading
import time
import warnings
import weakref
from collections.abc import Callable, Iterator
from typing import Any

import greenlet
import pytest
from twisted.internet import reactor, threads
from twisted.internet.defer import succeed
from twisted.python import threadable

import txgreen
from support import in_reactor_callback
from txgreen.green import _originals
from txgreen.green import queue as gqueue
from txgreen.green import threading as gthreading

R: Any = reactor
DEADLINE = 10.0  # seconds any wait of these tests may take before it is a hang


@pytest.fixture
def patched() -> Iterator[None]:
    """The full default patch() for the test, then unpatch()."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", txgreen.PatchWarning)
        txgreen.patch()
    try:
        yield
    finally:
        txgreen.unpatch()


def ticking(period: float = 0.01) -> tuple[txgreen.Event, list[float], txgreen.GreenThread[None]]:
    """A ticker green thread: (stop event, tick times, the thread)."""
    stop = txgreen.Event()
    ticks: list[float] = []

    def tick() -> None:
        while not stop.wait(period):
            ticks.append(time.monotonic())

    return stop, ticks, txgreen.spawn(tick)


def in_os_thread(fn: Callable[[], Any]) -> txgreen.GreenThread[Any]:
    """Run ``fn`` in an OS thread of the reactor's pool; a green thread waiting for its result."""
    return txgreen.spawn(txgreen.call_in_thread, fn)


def eventually(check: Callable[[], bool], timeout: float = DEADLINE) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "the condition never became true"
        txgreen.sleep(0.005)


# -- the module ----------------------------------------------------------------------------------


def test_the_module_mirrors_the_stdlib() -> None:
    assert set(gthreading.__patched__) == {
        "Lock",
        "RLock",
        "Condition",
        "Semaphore",
        "BoundedSemaphore",
        "Event",
        "Barrier",
        "Timer",
        "Thread",
        "local",
        "current_thread",
        "get_ident",
    }
    for name in std_threading.__all__:
        if name not in gthreading.__patched__ and name != "TIMEOUT_MAX":
            assert getattr(gthreading, name) is getattr(std_threading, name), name
    for name in gthreading.__patched__:
        green = getattr(gthreading, name)
        assert green is not getattr(std_threading, name)
        assert green.__doc__, name
    assert gthreading.BrokenBarrierError is std_threading.BrokenBarrierError
    assert issubclass(gthreading.Thread, std_threading.Thread)


# -- Lock ------------------------------------------------------------------------------------------


def test_lock_parks_only_the_green_thread_while_a_ticker_ticks() -> None:
    lock = gthreading.Lock()
    stop, ticks, ticker = ticking()
    order: list[int] = []

    def holder() -> None:
        with lock:
            txgreen.sleep(0.2)
            order.append(0)

    def waiter(i: int) -> None:
        with lock:
            order.append(i)

    h = txgreen.spawn(holder)
    txgreen.sleep(0.01)
    assert lock.locked()
    start = time.monotonic()
    waiters = [txgreen.spawn(waiter, i) for i in range(1, 6)]
    assert txgreen.joinall([h, *waiters], timeout=DEADLINE)
    stop.set()
    assert ticker.join(DEADLINE)
    assert order == [0, 1, 2, 3, 4, 5]  # first come, first served
    assert len([t for t in ticks if start <= t <= start + 0.18]) >= 5
    assert not lock.locked()


def test_lock_nonblocking_and_timeout() -> None:
    lock = gthreading.Lock()
    assert lock.acquire()
    assert lock.acquire(False) is False
    start = time.monotonic()
    assert lock.acquire(timeout=0.05) is False
    assert 0.04 <= time.monotonic() - start < 1
    assert "locked" in repr(lock)
    lock.release()
    assert lock.acquire(timeout=0.05) is True
    lock.release()
    assert not lock._waiters


def test_release_of_an_unlocked_lock_is_a_runtime_error_as_the_stdlib() -> None:
    with pytest.raises(RuntimeError, match="release unlocked lock"):
        gthreading.Lock().release()
    with pytest.raises(RuntimeError, match="release unlocked lock"):
        std_threading.Lock().release()


@pytest.mark.parametrize(
    ("args", "error"),
    [
        ((False, 1), ValueError),
        ((True, -2), ValueError),
        ((True, 1e10), OverflowError),
        ((True, "x"), TypeError),
        ((True, math.nan), ValueError),
    ],
    ids=["timeout without blocking", "negative", "too large", "str", "nan"],
)
def test_bad_acquire_arguments_raise_as_the_stdlib(
    args: tuple[bool, Any], error: type[Exception]
) -> None:
    for lock in (std_threading.Lock(), gthreading.Lock(), gthreading.RLock()):
        with pytest.raises(error):
            lock.acquire(*args)
    assert not gthreading.Lock().locked()


def test_an_os_thread_blocks_on_a_lock_a_green_thread_holds_and_is_woken_by_its_release() -> None:
    lock = gthreading.Lock()
    lock.acquire()
    got: list[float] = []

    def job() -> bool:
        ok = lock.acquire(timeout=DEADLINE)
        got.append(time.monotonic())
        lock.release()
        return ok

    os_side = in_os_thread(job)
    txgreen.sleep(0.1)
    assert not got  # still blocked (the OS thread, not the reactor)
    released = time.monotonic()
    lock.release()
    assert os_side.get(timeout=DEADLINE) is True
    assert got[0] - released < 1
    assert not lock.locked()


def test_a_green_thread_waits_for_a_lock_an_os_thread_holds_and_the_reactor_runs_on() -> None:
    lock = gthreading.Lock()
    holding = std_threading.Event()
    release = std_threading.Event()

    def job() -> None:
        with lock:
            holding.set()
            release.wait(DEADLINE)

    os_side = in_os_thread(job)
    eventually(holding.is_set)
    stop, ticks, ticker = ticking()
    waiter = txgreen.spawn(lock.acquire)
    start = time.monotonic()
    txgreen.sleep(0.2)
    assert not waiter.dead
    release.set()
    assert waiter.get(timeout=DEADLINE) is True
    os_side.get(timeout=DEADLINE)
    stop.set()
    assert ticker.join(DEADLINE)
    assert len([t for t in ticks if start <= t <= start + 0.18]) >= 5
    lock.release()


def test_a_green_waiter_killed_or_timed_out_leaves_the_lock_usable() -> None:
    lock = gthreading.Lock()
    lock.acquire()
    victim = txgreen.spawn(lock.acquire)
    txgreen.sleep(0.01)
    victim.kill()
    assert victim.dead
    assert lock.acquire(timeout=0.01) is False
    lock.release()
    assert lock.acquire(False)
    lock.release()
    assert not lock._waiters


# -- RLock -----------------------------------------------------------------------------------------


def test_rlock_is_reentrant_and_owned_by_one_green_thread() -> None:
    rlock = gthreading.RLock()
    with rlock, rlock:
        assert rlock._is_owned()
        assert rlock._recursion_count() == 2
        other = txgreen.spawn(rlock.acquire, timeout=0.05)
        assert other.get(timeout=DEADLINE) is False  # another green thread is another owner
        bad = txgreen.spawn(rlock.release)
        with pytest.raises(RuntimeError, match="un-acquired"):
            bad.get(timeout=DEADLINE)
    assert not rlock.locked()
    with pytest.raises(RuntimeError, match="cannot release un-acquired lock"):
        rlock.release()
    assert "unlocked" in repr(rlock)


def test_rlock_shared_with_an_os_thread() -> None:
    rlock = gthreading.RLock()
    rlock.acquire()

    def job() -> int:
        with rlock, rlock:
            return rlock._recursion_count()

    os_side = in_os_thread(job)
    txgreen.sleep(0.05)
    assert not os_side.dead
    rlock.release()
    assert os_side.get(timeout=DEADLINE) == 2
    assert not rlock.locked()


# -- Condition, Semaphore, Event, Barrier ----------------------------------------------------------


def test_condition_green_waiters_notified_from_an_os_thread() -> None:
    cond = gthreading.Condition()
    items: list[int] = []

    def consumer() -> int:
        with cond:
            assert cond.wait_for(lambda: items, timeout=DEADLINE)
            return items.pop()

    consumers = [txgreen.spawn(consumer) for _ in range(3)]
    txgreen.sleep(0.01)

    def producer() -> None:
        for i in range(3):
            with cond:
                items.append(i)
                cond.notify()

    in_os_thread(producer).get(timeout=DEADLINE)
    assert sorted(c.get(timeout=DEADLINE) for c in consumers) == [0, 1, 2]
    with cond:
        assert cond.wait(0.01) is False
        assert cond.wait_for(lambda: False, timeout=0.01) is False
        cond.notify_all()
        assert "Condition" in repr(cond)


def test_condition_misuse_raises_as_the_stdlib() -> None:
    cond = gthreading.Condition(gthreading.Lock())
    with pytest.raises(RuntimeError, match="cannot wait on un-acquired lock"):
        cond.wait()
    with pytest.raises(RuntimeError, match="cannot notify on un-acquired lock"):
        cond.notify()
    with pytest.warns(DeprecationWarning, match="notifyAll"), cond:
        cond.notifyAll()


def test_semaphores() -> None:
    sem = gthreading.Semaphore(2)
    assert sem.acquire()
    assert sem.acquire()
    assert sem.acquire(False) is False
    assert sem.acquire(timeout=0.02) is False
    waiter = txgreen.spawn(sem.acquire)
    in_os_thread(sem.release).get(timeout=DEADLINE)
    assert waiter.get(timeout=DEADLINE) is True
    sem.release(2)
    assert "value=2" in repr(sem)
    bounded = gthreading.BoundedSemaphore(1)
    with bounded:
        pass
    with pytest.raises(ValueError, match="released too many times"):
        bounded.release()
    assert "value=1/1" in repr(bounded)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: gthreading.Semaphore(-1), "initial value must be >= 0"),
        (lambda: gthreading.Semaphore().release(0), "n must be one or more"),
        (lambda: gthreading.BoundedSemaphore().release(0), "n must be one or more"),
        (lambda: gthreading.Semaphore().acquire(False, 1), "can't specify timeout"),
        (lambda: gthreading.Barrier(0), "parties must be > 0"),
    ],
    ids=["negative", "release 0", "bounded release 0", "timeout without blocking", "barrier 0"],
)
def test_bad_values_raise_value_error(call: Callable[[], object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        call()


def test_event_set_from_an_os_thread_wakes_green_waiters() -> None:
    ev = gthreading.Event()
    assert ev.wait(0.01) is False
    waiters = [txgreen.spawn(ev.wait, DEADLINE) for _ in range(5)]
    os_waiter = in_os_thread(lambda: ev.wait(DEADLINE))
    txgreen.sleep(0.02)
    in_os_thread(ev.set).get(timeout=DEADLINE)
    assert [w.get(timeout=DEADLINE) for w in waiters] == [True] * 5
    assert os_waiter.get(timeout=DEADLINE) is True
    assert ev.is_set()
    assert "set" in repr(ev)
    with pytest.warns(DeprecationWarning, match="isSet"):
        assert ev.isSet()
    ev.clear()
    assert not ev.is_set()


def test_barrier_between_green_threads_and_an_os_thread() -> None:
    actions: list[int] = []
    barrier = gthreading.Barrier(3, action=lambda: actions.append(1))
    greens = [txgreen.spawn(barrier.wait, DEADLINE) for _ in range(2)]
    os_side = in_os_thread(lambda: barrier.wait(DEADLINE))
    indexes = [g.get(timeout=DEADLINE) for g in greens] + [os_side.get(timeout=DEADLINE)]
    assert sorted(indexes) == [0, 1, 2]
    assert actions == [1]
    assert barrier.n_waiting == 0
    assert barrier.parties == 3
    assert not barrier.broken
    # A timeout breaks it for everybody.
    other = txgreen.spawn(barrier.wait)
    with pytest.raises(gthreading.BrokenBarrierError):
        barrier.wait(0.05)
    with pytest.raises(std_threading.BrokenBarrierError):
        other.get(timeout=DEADLINE)
    assert barrier.broken
    assert "broken" in repr(barrier)
    barrier.reset()
    assert not barrier.broken
    barrier.abort()
    with pytest.raises(std_threading.BrokenBarrierError):
        barrier.wait()


# -- Thread ----------------------------------------------------------------------------------------


class Worker(gthreading.Thread):
    def __init__(self, n: int) -> None:
        super().__init__(name=f"worker-{n}", daemon=True)
        self.n = n
        self.seen: list[Any] = []

    def run(self) -> None:
        me = gthreading.current_thread()
        self.seen = [me, gthreading.get_ident(), greenlet.getcurrent()]
        time.sleep(0.01)  # (the stdlib's time: blocks the reactor for 10 ms, no more)
        txgreen.sleep(0.1)


def test_thread_runs_as_a_green_thread() -> None:
    workers = [Worker(n) for n in range(10)]
    assert all(not w.is_alive() and w.ident is None for w in workers)
    start = time.monotonic()
    for w in workers:
        w.start()
    assert all(w.is_alive() for w in workers)
    assert all(w in std_threading.enumerate() for w in workers)
    for w in workers:
        w.join(DEADLINE)
    assert time.monotonic() - start < 1.2  # concurrently: 10 x 0.1 s of green sleep
    for w in workers:
        assert not w.is_alive()
        assert w.seen[0] is w
        assert w.seen[1] == w.ident == id(w.seen[2])
        assert isinstance(w.seen[2], txgreen.GreenThread)
        assert w.name.startswith("worker-")
        assert w.daemon
        assert w not in std_threading.enumerate()
        assert "stopped" in repr(w)
    assert len({w.ident for w in workers}) == 10
    assert gthreading.get_ident() != _thread.get_ident()  # this test is a green thread too


def test_thread_target_join_timeout_and_errors() -> None:
    ev = gthreading.Event()
    t = gthreading.Thread(target=ev.wait, args=(DEADLINE,))
    assert not t.daemon  # inherited from the test's green thread (its dummy is no daemon)
    with pytest.raises(RuntimeError, match="cannot join thread before it is started"):
        t.join()
    t.start()
    with pytest.raises(RuntimeError, match="threads can only be started once"):
        t.start()
    with pytest.raises(RuntimeError, match="cannot set daemon status of active thread"):
        t.daemon = True
    start = time.monotonic()
    t.join(0.05)
    assert 0.04 <= time.monotonic() - start < 1
    assert t.is_alive()
    t.join(-1)  # a negative timeout is 0, as the stdlib's
    ev.set()
    t.join(DEADLINE)
    assert not t.is_alive()

    def join_self() -> None:
        gthreading.current_thread().join()

    errors: list[Any] = []
    me = gthreading.Thread(target=join_self)
    old = std_threading.excepthook
    std_threading.excepthook = errors.append
    try:
        me.start()
        me.join(DEADLINE)
    finally:
        std_threading.excepthook = old
    assert len(errors) == 1
    assert errors[0].exc_type is RuntimeError
    assert str(errors[0].exc_value) == "cannot join current thread"
    assert errors[0].thread is me


def test_a_thread_not_initialised_and_a_bad_target() -> None:
    class NoInit(gthreading.Thread):
        def __init__(self) -> None:
            pass

    with pytest.raises(RuntimeError):
        NoInit().start()
    with pytest.raises(AssertionError):
        gthreading.Thread(group=object())  # type: ignore[arg-type]
    errors: list[Any] = []
    old = std_threading.excepthook
    std_threading.excepthook = errors.append
    try:
        t = gthreading.Thread(target=1)  # type: ignore[arg-type]
        t.start()
        t.join(DEADLINE)
    finally:
        std_threading.excepthook = old
    assert errors
    assert errors[0].exc_type is TypeError


def test_current_thread_in_a_plain_green_thread_and_in_the_hub() -> None:
    dummy = gthreading.current_thread()
    assert isinstance(dummy, std_threading.Thread)
    assert dummy is gthreading.current_thread()  # one per green thread
    assert dummy.ident == gthreading.get_ident()
    assert dummy.is_alive()
    assert not dummy.daemon  # so that Threads it starts are not daemons, as the main thread's
    with pytest.raises(RuntimeError, match="cannot join a dummy thread"):
        dummy.join()
    hub_side = txgreen.block_on(
        in_reactor_callback(lambda: succeed((gthreading.current_thread(), gthreading.get_ident())))
    )
    assert hub_side == (std_threading.main_thread(), _thread.get_ident())


def test_a_thread_started_in_an_os_thread_is_a_real_os_thread() -> None:
    def job() -> tuple[int | None, int, bool]:
        t = gthreading.Thread(target=lambda: None)
        t.start()
        t.join(DEADLINE)
        return t.ident, _thread.get_ident(), t._os_thread

    ident, job_ident, os_thread = txgreen.call_in_thread(job)
    assert os_thread
    assert ident not in (None, job_ident)


def test_timer_fires_and_cancel_stops_it() -> None:
    fired: list[float] = []
    start = time.monotonic()
    t = gthreading.Timer(0.05, fired.append, args=[1.0])
    t.start()
    cancelled = gthreading.Timer(0.05, fired.append, kwargs={"object": 2.0})
    cancelled.start()
    cancelled.cancel()
    t.join(DEADLINE)
    cancelled.join(DEADLINE)
    assert fired == [1.0]
    assert time.monotonic() - start >= 0.045


# -- local -----------------------------------------------------------------------------------------


class Counter(gthreading.local):
    def __init__(self, start: int) -> None:
        self.value = start


def test_local_is_per_green_thread_and_os_thread() -> None:
    data = gthreading.local()
    data.x = "main"

    def green(i: int) -> tuple[bool, int]:
        had = hasattr(data, "x")
        data.x = i
        txgreen.sleep(0.01)
        return had, data.x

    results = [txgreen.spawn(green, i) for i in range(5)]
    assert [r.get(timeout=DEADLINE) for r in results] == [(False, i) for i in range(5)]
    assert txgreen.call_in_thread(lambda: hasattr(data, "x")) is False
    assert data.x == "main"
    del data.x
    with pytest.raises(AttributeError):
        data.x  # noqa: B018
    with pytest.raises(AttributeError, match="read-only"):
        data.__dict__ = {}


def test_local_subclass_init_runs_per_thread_and_data_goes_with_the_thread() -> None:
    counter = Counter(5)
    counter.value += 1

    def green() -> int:
        counter.value += 10
        return counter.value

    gt = txgreen.spawn(green)
    assert gt.get(timeout=DEADLINE) == 15
    assert counter.value == 6
    ref = weakref.ref(gt)
    del gt
    gc.collect()
    assert ref() is None
    eventually(lambda: len(counter._local__data.dicts) == 1)
    with pytest.raises(TypeError, match="Initialization arguments are not supported"):
        gthreading.local(1)


# -- patched ---------------------------------------------------------------------------------------


@pytest.mark.usefixtures("patched")
def test_patch_replaces_the_names_and_twisted_keeps_real_threads_and_locks() -> None:
    import queue
    import threading

    import twisted._threads._pool as twisted_pool
    import twisted.python.threadpool as twisted_threadpool

    assert txgreen.patched() >= {"threading", "queue"}
    for name in gthreading.__patched__:
        assert getattr(threading, name) is getattr(gthreading, name)
    for name in gqueue.__patched__:
        assert getattr(queue, name) is getattr(gqueue, name)
    # Twisted's pool builds real queues with real locks, and real threads.
    copy = _originals.original("queue")
    assert twisted_pool.Queue is copy.Queue  # type: ignore[attr-defined]
    assert type(twisted_pool.Queue().mutex) is type(_thread.allocate_lock())  # type: ignore[attr-defined]
    assert twisted_pool.Thread is gthreading._StdThread  # type: ignore[attr-defined]
    assert twisted_threadpool.current_thread is _originals.original("threading").current_thread  # type: ignore[attr-defined]
    # Twisted still knows the reactor's thread from inside a green thread.
    assert threadable.isInIOThread()  # type: ignore[no-untyped-call]
    assert threading.current_thread() is not std_threading.main_thread()  # (a green dummy)


@pytest.mark.usefixtures("patched")
def test_defer_to_thread_and_call_in_thread_run_in_parallel_os_threads_after_patch() -> None:
    txgreen.set_thread_pool_size(0, 8)
    R.getThreadPool().adjustPoolsize(0, 8)
    barrier = std_threading.Barrier(4, timeout=DEADLINE)  # real: only OS threads can pass it

    def job() -> int:
        barrier.wait()  # all four at once, or BrokenBarrierError
        time.sleep(0.1)  # patched: blocks this OS thread (thread-aware)
        return _thread.get_ident()

    start = time.monotonic()
    deferred = [threads.deferToThread(job) for _ in range(2)]
    green = [txgreen.spawn(txgreen.call_in_thread, job) for _ in range(2)]
    idents = [txgreen.block_on(d) for d in deferred] + [g.get(timeout=DEADLINE) for g in green]
    assert len(set(idents)) == 4
    assert _thread.get_ident() not in idents
    assert time.monotonic() - start < 1


@pytest.mark.usefixtures("patched")
def test_a_patched_worker_pool_program_runs_green() -> None:
    import queue
    import threading

    jobs: queue.Queue[int | None] = queue.Queue(maxsize=5)
    results: queue.Queue[tuple[str, int]] = queue.Queue()
    done = threading.Event()
    stop, ticks, ticker = ticking()

    def work() -> None:
        while (n := jobs.get()) is not None:
            time.sleep(0.05)  # a slow job: a green sleep
            results.put((threading.current_thread().name, n * n))
            jobs.task_done()
        jobs.task_done()

    pool = [threading.Thread(target=work, name=f"w{i}") for i in range(20)]
    start = time.monotonic()
    for t in pool:
        t.start()
    for n in range(100):
        jobs.put(n)
    for _ in pool:
        jobs.put(None)
    jobs.join()
    done.set()
    for t in pool:
        t.join(DEADLINE)
    elapsed = time.monotonic() - start
    stop.set()
    assert ticker.join(DEADLINE)
    got = [results.get_nowait() for _ in range(100)]
    assert sorted(v for _, v in got) == [n * n for n in range(100)]
    assert len({name for name, _ in got}) == 20
    assert elapsed < 100 * 0.05 / 4  # 20 workers at once, not one after another
    gaps = [b - a for a, b in itertools.pairwise(ticks)]
    assert gaps
    assert max(gaps) < 0.2
    assert all(isinstance(t, gthreading.Thread) and not t.is_alive() for t in pool)


class SlowHandler(logging.Handler):
    """A handler whose emit yields while it holds its lock (a green sleep or an OS one)."""

    def __init__(self) -> None:
        super().__init__()
        self.records: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        time.sleep(0)  # patched: a green yield in green threads, an OS yield in OS threads
        self.records.append(record.getMessage())


@pytest.mark.usefixtures("patched")
def test_stress_green_threads_os_threads_and_logging_never_deadlock() -> None:
    """gevent 863/1484's class: one lock shared by green and OS threads, logging on both sides."""
    import queue
    import threading

    txgreen.set_thread_pool_size(0, 8)
    handler = SlowHandler()  # made after patch(): its lock is a green RLock
    assert isinstance(handler.lock, gthreading.RLock)
    logger = logging.getLogger("txgreen.test.stress")
    logger.propagate = False
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    shared = threading.Lock()
    counter = [0]
    to_os: queue.Queue[int] = queue.Queue(maxsize=3)
    to_green: queue.Queue[int] = queue.Queue(maxsize=3)
    rounds = 60
    try:

        def green_side(i: int) -> None:
            for n in range(rounds):
                with shared:
                    counter[0] += 1
                    if n % 7 == 0:
                        time.sleep(0)  # switch while holding the shared lock
                logger.info("green %d %d", i, n)
                if i == 0:
                    to_os.put(n)
                    to_green.get(timeout=DEADLINE)

        def os_side(i: int) -> None:
            for n in range(rounds):
                with shared:
                    counter[0] += 1
                logger.info("os %d %d", i, n)
                if i == 0:
                    to_green.put(to_os.get(timeout=DEADLINE))

        greens = [threading.Thread(target=green_side, args=(i,)) for i in range(8)]
        for t in greens:
            t.start()
        oses = [txgreen.spawn(txgreen.call_in_thread, os_side, i) for i in range(4)]
        for g in oses:
            g.get(timeout=20)
        for t in greens:
            t.join(20)
            assert not t.is_alive()
    finally:
        logger.removeHandler(handler)
    assert counter[0] == 12 * rounds
    assert len(handler.records) == 12 * rounds
    assert not shared.locked()
    assert not handler.lock.locked()


# -- programs under ``python -m txgreen run`` --------------------------------------------------

WORKER_POOL = """
    import queue, sys, threading, time

    assert threading.current_thread() is threading.main_thread()
    assert threading.get_ident() == threading.main_thread().ident
    jobs = queue.Queue()
    results = queue.Queue()
    go = threading.Event()

    def work():
        go.wait()
        while (n := jobs.get()) is not None:
            time.sleep(0.2)  # slow: green
            results.put((threading.current_thread().name, n))

    workers = [threading.Thread(target=work, name=f"w{i}") for i in range(50)]
    for w in workers:
        w.start()
    for n in range(50):
        jobs.put(n)
    for _ in workers:
        jobs.put(None)
    start = time.monotonic()
    go.set()
    # The top level ends here: the workers are not daemons, so the program waits for them.
    import atexit

    @atexit.register
    def done():
        got = [results.get_nowait() for _ in range(50)]
        names = {name for name, _ in got}
        print(len(got), len(names), round(time.monotonic() - start, 1) < 2.0, flush=True)
"""

CTRL_C = """
    import threading, time
    import txgreen

    lock = threading.Lock()
    holding = threading.Event()

    def forever():
        with lock:
            holding.set()
            while True:
                time.sleep(0.05)

    t = threading.Thread(target=forever)  # not a daemon
    t.start()
    holding.wait()
    # An OS thread of Twisted's pool blocks on the lock the green thread holds: at Ctrl-C the
    # green thread ends (ReactorStopped), its release wakes the OS thread, and the shutdown,
    # which waits for thread jobs, completes.
    job = txgreen.spawn(txgreen.call_in_thread, lock.acquire)
    time.sleep(0.1)
    print("ready", flush=True)
    t.join()
"""


def _run_program(
    tmp_path: Any, code: str, interrupt_after: str | None = None
) -> tuple[int | None, str, str]:
    import os
    import signal
    import subprocess
    import sys
    import textwrap

    script = tmp_path / "program.py"
    script.write_text(textwrap.dedent(code))
    proc = subprocess.Popen(
        [sys.executable, "-m", "txgreen", "run", str(script)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        if interrupt_after is not None:
            assert proc.stdout is not None
            line = proc.stdout.readline()
            assert line.strip() == interrupt_after, proc.stderr.read() if proc.stderr else ""
            os.kill(proc.pid, signal.SIGINT)
        out, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    return proc.returncode, out, err


@pytest.mark.single_reactor
@pytest.mark.timeout(40)
def test_a_thread_pool_program_runs_green_and_its_end_waits_for_its_threads(
    tmp_path: Any,
) -> None:
    code, out, err = txgreen.call_in_thread(_run_program, tmp_path, WORKER_POOL)
    assert code == 0, err
    assert out.split() == ["50", "50", "True"]  # 50 jobs of 0.2 s at once, by 50 threads


@pytest.mark.single_reactor
@pytest.mark.timeout(40)
def test_ctrl_c_ends_a_program_with_patched_threading_without_hanging(tmp_path: Any) -> None:
    start = time.monotonic()
    code, _out, err = txgreen.call_in_thread(_run_program, tmp_path, CTRL_C, "ready")
    assert code == 130, err
    assert "KeyboardInterrupt" in err
    assert time.monotonic() - start < 15


@pytest.mark.usefixtures("patched")
def test_an_os_thread_threading_did_not_start_gets_the_stdlib_dummy_thread() -> None:
    import threading

    done = threading.Event()
    seen: list[Any] = []

    def f() -> None:
        me = threading.current_thread()  # the stdlib's _DummyThread, made after patch()
        seen.extend([me, threading.get_ident()])
        done.set()  # wakes the green thread below through the reactor

    ident = _thread.start_new_thread(f, ())
    assert done.wait(DEADLINE)
    dummy, got = seen
    try:
        assert type(dummy) is std_threading._DummyThread
        assert dummy.ident == got == ident
    finally:
        with std_threading._active_limbo_lock:  # type: ignore[attr-defined]
            std_threading._active.pop(ident, None)  # type: ignore[attr-defined]


EXECUTOR = """
    import concurrent.futures, threading, time

    pool = concurrent.futures.ThreadPoolExecutor(8)  # never shut down: the program's end does
    start = time.monotonic()
    results = list(pool.map(lambda n: time.sleep(0.2) or n, range(8)))
    workers = {type(t).__module__ for t in pool._threads}
    print(results == list(range(8)), time.monotonic() - start < 1.0, sorted(workers))
"""


@pytest.mark.single_reactor
@pytest.mark.timeout(40)
def test_a_thread_pool_executor_left_open_runs_green_and_the_program_still_ends(
    tmp_path: Any,
) -> None:
    code, out, err = txgreen.call_in_thread(_run_program, tmp_path, EXECUTOR)
    assert code == 0, err
    assert out.split() == ["True", "True", "['txgreen.green.threading']"]
    assert "Exception" not in err
