"""``call_in_thread``, ``@threaded``, ``call_in_green``, thread pools (sizing, dedicated, daemon).

Jobs that must stay "running" while the test looks block on a ``threading.Event`` that the test
sets; the test learns that a job has started from a Deferred the job fires through
``reactor.callFromThread``.  ThreadQueue is in test_thread_queue.py; shutdown, Ctrl-C and
leftover threads at exit are in test_threads_shutdown.py (subprocesses).
"""

from __future__ import annotations

import contextvars
import functools
import gc
import threading
import traceback
import weakref
from collections.abc import Callable, Iterator
from typing import Any, NoReturn, TypeVar, cast

import pytest
from greenlet import getcurrent
from twisted.internet import reactor, task
from twisted.internet.defer import Deferred
from twisted.logger import LogEvent
from twisted.python.threadpool import ThreadPool

import txgreen
from support import Boom, log_events
from threads_support import in_os_thread

R: Any = reactor  # the installed reactor, untyped
T = TypeVar("T")


def tb_names(exc: BaseException) -> list[str]:
    return [frame.name for frame in traceback.extract_tb(exc.__traceback__)]


@pytest.fixture
def make_pool() -> Iterator[Callable[..., ThreadPool]]:
    """Start dedicated pools for a test; stop them (joining their workers) afterwards."""
    pools: list[ThreadPool] = []

    def make(minthreads: int, maxthreads: int, name: str, daemon: bool = False) -> ThreadPool:
        pool = (
            txgreen.DaemonThreadPool(minthreads, maxthreads, name, stop_timeout=0.05)
            if daemon
            else ThreadPool(minthreads, maxthreads, name)
        )
        pool.start()
        pools.append(pool)
        return pool

    yield make
    for pool in pools:
        if pool.started:
            pool.stop()


@pytest.fixture
def logged_errors() -> Iterator[list[LogEvent]]:
    """Every error Twisted logs during the test (unhandled Deferred errors included)."""
    with log_events(lambda e: bool(e.get("isError")) or "log_failure" in e) as events:
        yield events
        gc.collect()  # an unhandled Deferred error is logged when the Deferred is collected


class Gate:
    """A job that tells the reactor thread it started, then blocks until the test opens it."""

    def __init__(self) -> None:
        self.started: Deferred[str] = Deferred()
        self.event = threading.Event()

    def job(self, result: Any = "job done") -> Any:
        R.callFromThread(self.started.callback, threading.current_thread().name)
        if not self.event.wait(10):
            raise RuntimeError("the test never opened the gate")
        if isinstance(result, BaseException):
            raise result
        return result

    def wait_started(self) -> str:
        return txgreen.block_on(self.started, timeout=10)

    def open(self) -> None:
        self.event.set()


# -- call_in_thread: results, errors, arguments ----------------------------------------------


def test_runs_in_a_reactor_pool_thread_and_returns_the_result() -> None:
    reactor_thread = threading.get_ident()

    def where(a: int, b: int, *, scale: int) -> tuple[int, int, str]:
        return (a + b) * scale, threading.get_ident(), threading.current_thread().name

    value, ident, name = txgreen.call_in_thread(where, 1, 2, scale=10)
    assert value == 30
    assert ident != reactor_thread
    assert name.startswith("PoolThread-twisted.internet.reactor-")


def test_only_the_calling_green_thread_waits() -> None:
    gate = Gate()
    caller = txgreen.spawn(txgreen.call_in_thread, gate.job, "released")
    name = gate.wait_started()
    assert name.startswith("PoolThread-")
    # The job blocks its OS thread; the reactor and this green thread run on.
    ticks = [txgreen.block_on(task.deferLater(R, 0.001, lambda i=i: i)) for i in range(3)]
    assert ticks == [0, 1, 2]
    assert not caller.dead
    gate.open()
    assert caller.get(timeout=10) == "released"


def test_exception_is_raised_with_the_worker_traceback() -> None:
    def inner() -> NoReturn:
        raise Boom("deep in the worker")

    def outer() -> None:
        inner()

    with pytest.raises(Boom, match=r"^deep in the worker$") as info:
        txgreen.call_in_thread(outer)
    names = tb_names(info.value)
    assert names[0] == "test_exception_is_raised_with_the_worker_traceback"
    assert names[1] == "call_in_thread"
    assert names[-2:] == ["outer", "inner"]


def test_base_exceptions_come_back_too() -> None:
    def exit_in_worker() -> NoReturn:
        raise SystemExit(7)

    with pytest.raises(SystemExit) as info:
        txgreen.call_in_thread(exit_in_worker)
    assert info.value.code == 7


def test_timeout_and_pool_are_reserved_keywords_partial_passes_them_on() -> None:
    def takes_reserved(*, timeout: float, pool: str) -> tuple[float, str]:
        return timeout, pool

    # Given to call_in_thread directly, they configure the call, not fn:
    with pytest.raises(TypeError, match="missing 2 required keyword-only arguments"):
        txgreen.call_in_thread(takes_reserved, timeout=5)
    bound = functools.partial(takes_reserved, timeout=1.5, pool="mine")
    assert txgreen.call_in_thread(bound, timeout=5) == (1.5, "mine")


def test_fn_runs_in_a_copy_of_the_callers_context() -> None:
    var: contextvars.ContextVar[str] = contextvars.ContextVar("var", default="unset")
    var.set("green value")

    def read_and_change() -> str:
        seen = var.get()
        var.set("changed in the worker")
        return seen

    assert txgreen.call_in_thread(read_and_change) == "green value"
    assert var.get() == "green value"


# -- many calls --------------------------------------------------------------------------------


def test_two_thousand_concurrent_calls_from_many_green_threads() -> None:
    n = 2000
    pending = 0
    most_pending = 0
    workers: set[str] = set()
    lock = threading.Lock()

    def square(i: int) -> int:
        with lock:
            workers.add(threading.current_thread().name)
        return i * i

    def caller(i: int) -> int:
        nonlocal pending, most_pending
        pending += 1
        most_pending = max(most_pending, pending)
        try:
            return txgreen.call_in_thread(square, i)
        finally:
            pending -= 1

    threads = [txgreen.spawn(caller, i) for i in range(n)]
    assert [t.get(timeout=20) for t in threads] == [i * i for i in range(n)]
    # Many more calls were pending at once than the pool has threads: the green threads waited
    # concurrently while only the pool's threads ran the calls.
    pool_max = R.getThreadPool().max
    assert most_pending > pool_max
    assert pending == 0
    assert 1 <= len(workers) <= pool_max
    assert all(w.startswith("PoolThread-twisted.internet.reactor-") for w in workers)


def test_dedicated_pool_bounds_concurrency(make_pool: Callable[..., ThreadPool]) -> None:
    pool = make_pool(0, 3, "bounded")
    running = 0
    peak = 0
    names: set[str] = set()
    lock = threading.Lock()
    three_in = threading.Barrier(3, timeout=10)

    def job(i: int) -> int:
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
            names.add(threading.current_thread().name)
        if i < 3:
            three_in.wait()  # the first three jobs meet: three really ran at once
        with lock:
            running -= 1
        return i

    threads = [txgreen.spawn(txgreen.call_in_thread, job, i, pool=pool) for i in range(30)]
    assert [t.get(timeout=10) for t in threads] == list(range(30))
    assert peak == 3
    assert names == {f"PoolThread-bounded-{i}" for i in range(3)}


# -- timeouts, kills, late results -------------------------------------------------------------


def test_timeout_raises_and_the_late_result_is_dropped(
    make_pool: Callable[..., ThreadPool], logged_errors: list[LogEvent]
) -> None:
    pool = make_pool(1, 1, "late")
    gate = Gate()

    class Result:
        pass

    refs: list[weakref.ref[Result]] = []

    def slow() -> Result:
        gate.job()
        result = Result()
        refs.append(weakref.ref(result))
        return result

    with pytest.raises(txgreen.Timeout, match=r"^timed out after 0\.05 seconds$") as info:
        txgreen.call_in_thread(slow, pool=pool, timeout=0.05)
    assert isinstance(info.value, TimeoutError)
    assert gate.started.called  # the job runs on
    gate.open()
    # Same single worker: once this returns, the late result has been delivered and dropped.
    assert txgreen.call_in_thread(lambda: "next", pool=pool) == "next"
    # Both results may have come in one batch of reactor.callFromThread calls, which the
    # reactor lets go of once the whole batch has run: let it finish its turn.
    txgreen.sleep(0)
    gc.collect()
    assert len(refs) == 1
    assert refs[0]() is None
    assert logged_errors == []


def test_late_exception_is_not_logged(
    make_pool: Callable[..., ThreadPool], logged_errors: list[LogEvent]
) -> None:
    pool = make_pool(1, 1, "late-error")
    gate = Gate()
    with pytest.raises(txgreen.Timeout):
        txgreen.call_in_thread(gate.job, Boom("too late"), pool=pool, timeout=0.02)
    gate.open()
    assert txgreen.call_in_thread(lambda: "next", pool=pool) == "next"
    gc.collect()
    assert logged_errors == []


def test_a_call_not_started_when_the_wait_ends_never_runs(
    make_pool: Callable[..., ThreadPool],
) -> None:
    pool = make_pool(1, 1, "single")
    gate = Gate()
    first = txgreen.spawn(txgreen.call_in_thread, gate.job, pool=pool)
    gate.wait_started()  # the only worker is busy
    ran: list[str] = []
    with pytest.raises(txgreen.Timeout):
        txgreen.call_in_thread(ran.append, "queued", pool=pool, timeout=0.02)
    gate.open()
    assert first.get(timeout=10) == "job done"
    assert txgreen.call_in_thread(ran.append, "after", pool=pool) is None
    assert ran == ["after"]


def test_enclosing_timeout_block_ends_the_wait() -> None:
    gate = Gate()
    deadline = txgreen.Timeout(0.02)
    try:
        with pytest.raises(txgreen.Timeout) as info, deadline:
            txgreen.call_in_thread(gate.job)
        assert info.value is deadline
    finally:
        gate.open()


def test_kill_while_waiting(
    make_pool: Callable[..., ThreadPool], logged_errors: list[LogEvent]
) -> None:
    pool = make_pool(1, 1, "killed")
    gate = Gate()
    caller = txgreen.spawn(txgreen.call_in_thread, gate.job, Boom("after the kill"), pool=pool)
    gate.wait_started()
    caller.kill(Boom("killed"))
    assert caller.dead
    exc = caller.exception
    assert isinstance(exc, Boom)
    assert str(exc) == "killed"
    gate.open()
    # The job still ends (same single worker: it has once this returns); its exception goes
    # nowhere.
    assert txgreen.call_in_thread(lambda: "next", pool=pool) == "next"
    gc.collect()
    assert logged_errors == []


# -- pools ------------------------------------------------------------------------------------


def test_pool_not_started_or_stopped_raises() -> None:
    pool = ThreadPool(0, 1, "idle")
    with pytest.raises(txgreen.ThreadPoolNotRunning, match="'idle' has not been started"):
        txgreen.call_in_thread(lambda: None, pool=pool)
    pool.start()
    pool.stop()
    with pytest.raises(txgreen.ThreadPoolNotRunning, match="'idle' has been stopped") as info:
        txgreen.call_in_thread(lambda: None, pool=pool)
    assert isinstance(info.value, txgreen.TxgreenError)
    assert "pool.start()" in str(info.value)


def test_set_thread_pool_size() -> None:
    pool = R.getThreadPool()
    before = (pool.min, pool.max)
    try:
        txgreen.set_thread_pool_size(2, 7)
        assert (pool.min, pool.max) == (2, 7)
        assert pool.workers >= 2  # the minimum is started at once
    finally:
        txgreen.set_thread_pool_size(*before)
    assert (pool.min, pool.max) == before


@pytest.mark.parametrize(
    ("sizes", "error", "message"),
    [
        ((-1, 4), ValueError, r"needs 0 <= minthreads <= maxthreads and maxthreads >= 1, not"),
        ((5, 4), ValueError, r"not \(5, 4\)"),
        ((0, 0), ValueError, r"not \(0, 0\)"),
        ((0, 2.5), TypeError, r"takes two ints"),
    ],
)
def test_set_thread_pool_size_rejects_bad_sizes(
    sizes: tuple[Any, Any], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        txgreen.set_thread_pool_size(*sizes)


def test_set_thread_pool_size_from_another_os_thread() -> None:
    def resize() -> str:
        try:
            txgreen.set_thread_pool_size(1, 3)
        except txgreen.NotInReactorThreadError as e:
            return str(e)
        return "no error"

    assert "must be called from the reactor's thread" in in_os_thread(resize)


def test_dedicated_pool_threads_are_gone_after_stop(
    make_pool: Callable[..., ThreadPool],
) -> None:
    before = set(threading.enumerate())
    pool = make_pool(0, 4, "leak-check")
    threads = [txgreen.spawn(txgreen.call_in_thread, lambda: 1, pool=pool) for _ in range(20)]
    assert [t.get(timeout=10) for t in threads] == [1] * 20
    assert {t.name for t in set(threading.enumerate()) - before} <= {
        f"PoolThread-leak-check-{i}" for i in range(4)
    }
    pool.stop()
    assert set(threading.enumerate()) == before


def test_daemon_pool_stop_does_not_wait_for_a_stuck_job(
    make_pool: Callable[..., ThreadPool],
) -> None:
    pool = make_pool(0, 2, "stuck", daemon=True)
    assert isinstance(pool, txgreen.DaemonThreadPool)
    gate = Gate()
    caller = txgreen.spawn(txgreen.call_in_thread, gate.job, "finished anyway", pool=pool)
    name = gate.wait_started()
    (worker,) = [t for t in threading.enumerate() if t.name == name]
    assert worker.daemon
    pool.stop()  # waits stop_timeout (0.05 s), not for the job
    assert worker.is_alive()
    assert not pool.started
    with pytest.raises(txgreen.ThreadPoolNotRunning):
        txgreen.call_in_thread(lambda: None, pool=pool)
    gate.open()
    # The abandoned job still ends, and its caller still gets the result.
    assert caller.get(timeout=10) == "finished anyway"
    txgreen.call_in_thread(worker.join, 10)
    assert not worker.is_alive()


# -- where it may be called from ---------------------------------------------------------------


@pytest.mark.in_hub
def test_call_in_thread_from_the_hub_raises() -> None:
    ran: list[int] = []
    with pytest.raises(txgreen.BlockingInHubError, match=r"^call_in_thread\(\) was called from"):
        txgreen.call_in_thread(ran.append, 1)
    assert ran == []


def test_call_in_thread_from_another_os_thread() -> None:
    reactor_thread = threading.get_ident()
    caller_thread: list[int] = []

    def from_thread() -> tuple[int, bool]:
        caller_thread.append(threading.get_ident())
        value = txgreen.call_in_thread(lambda: threading.get_ident())
        return value, value not in (reactor_thread, caller_thread[0])

    _, elsewhere = in_os_thread(from_thread)
    assert elsewhere


def test_call_in_thread_from_another_os_thread_with_timeout() -> None:
    gate = Gate()

    def from_thread() -> str:
        try:
            txgreen.call_in_thread(gate.job, timeout=0.02)
        except txgreen.Timeout as e:
            return f"Timeout: {e}"
        return "no timeout"

    try:
        assert in_os_thread(from_thread) == "Timeout: timed out after 0.02 seconds"
    finally:
        gate.open()


# -- @threaded ---------------------------------------------------------------------------------


@txgreen.threaded
def where_am_i(tag: str, *, timeout: float = 0.0, pool: str = "") -> tuple[str, str, float, str]:
    """Report the thread and the arguments."""
    return tag, threading.current_thread().name, timeout, pool


def test_threaded_runs_in_the_reactor_pool_and_passes_every_argument() -> None:
    tag, name, timeout, pool = where_am_i("x", timeout=2.5, pool="not a pool")
    assert (tag, timeout, pool) == ("x", 2.5, "not a pool")
    assert name.startswith("PoolThread-twisted.internet.reactor-")
    assert where_am_i.__name__ == "where_am_i"
    assert where_am_i.__doc__ == "Report the thread and the arguments."
    assert where_am_i.__wrapped__("direct")[1] == threading.current_thread().name  # type: ignore[attr-defined]


def test_threaded_with_pool_and_timeout(make_pool: Callable[..., ThreadPool]) -> None:
    pool = make_pool(0, 1, "decorated")
    gate = Gate()

    @txgreen.threaded(pool=pool, timeout=0.02)
    def blocked() -> str:
        return cast(str, gate.job())

    @txgreen.threaded(pool=pool)
    def name() -> str:
        return threading.current_thread().name

    with pytest.raises(txgreen.Timeout, match=r"0\.02 seconds"):
        blocked()
    gate.open()
    assert name() == "PoolThread-decorated-0"


def test_threaded_method_and_exception() -> None:
    class Store:
        def __init__(self) -> None:
            self.rows = {"a": 1}

        @txgreen.threaded
        def lookup(self, key: str) -> int:
            return self.rows[key]

    store = Store()
    assert store.lookup("a") == 1
    with pytest.raises(KeyError, match="'missing'") as info:
        store.lookup("missing")
    assert tb_names(info.value)[-1] == "lookup"


# -- call_in_green --------------------------------------------------------------------------------


def test_call_in_green_runs_a_green_thread_and_returns() -> None:
    def sync_style(n: int) -> tuple[bool, int]:
        is_green = type(getcurrent()) is txgreen.GreenThread
        txgreen.sleep(0.001)
        value = txgreen.block_on(task.deferLater(R, 0, lambda: n * 2))
        return is_green, value

    def from_thread() -> tuple[bool, int]:
        return txgreen.call_in_green(sync_style, 21)

    assert in_os_thread(from_thread) == (True, 42)


def test_run_in_hub_is_a_deprecated_alias_of_call_in_green() -> None:
    def from_thread() -> tuple[int, list[str]]:
        import warnings

        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            value = txgreen.run_in_hub(pow, 2, 10)
        return value, [f"{w.category.__name__}: {w.message}" for w in caught]

    value, warned = in_os_thread(from_thread)
    assert value == 1024
    assert warned == [
        "DeprecationWarning: txgreen.run_in_hub() is now txgreen.call_in_green() (it runs fn in "
        "a new green thread, not in the hub); the old name will be removed in a later version"
    ]


def test_call_in_green_raises_with_traceback(logged_errors: list[LogEvent]) -> None:
    def failing() -> NoReturn:
        txgreen.sleep(0)
        raise Boom("from the green thread")

    def from_thread() -> list[str]:
        try:
            txgreen.call_in_green(failing)
        except Boom as e:
            return [str(e), *tb_names(e)]
        return ["no exception"]

    got = in_os_thread(from_thread)
    assert got[0] == "from the green thread"
    assert got[1] == "from_thread"
    assert got[-1] == "failing"
    gc.collect()
    assert logged_errors == []  # raised in the OS thread: not an unretrieved green error


def test_call_in_green_from_many_os_threads_at_once() -> None:
    gate: Deferred[None] = Deferred()
    arrived = 0

    def green_part(i: int) -> int:
        nonlocal arrived
        arrived += 1
        if arrived == 8:
            gate.callback(None)
        txgreen.block_on(gate)  # all eight wait for each other: they really overlap
        return i * 10

    results: list[int] = []
    lock = threading.Lock()

    def os_thread(i: int) -> None:
        value = txgreen.call_in_green(green_part, i)
        with lock:
            results.append(value)

    threads = [threading.Thread(target=os_thread, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        txgreen.call_in_thread(t.join, 10)
    assert sorted(results) == [i * 10 for i in range(8)]


def test_call_in_green_from_a_green_thread_raises() -> None:
    with pytest.raises(txgreen.InReactorThreadError, match="from the reactor's thread"):
        txgreen.call_in_green(lambda: None)


@pytest.mark.in_hub
def test_call_in_green_from_the_hub_raises() -> None:
    with pytest.raises(txgreen.InReactorThreadError, match="defer_to_green"):
        txgreen.call_in_green(lambda: None)
