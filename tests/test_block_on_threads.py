"""``block_on`` from OS threads other than the reactor's (``deferToThread`` workers and the like).

There it waits like ``blockingCallFromThread``: the Deferred is set up and waited for in the
reactor's thread, and the worker thread sleeps on a lock until the outcome is there.

Every Deferred a worker waits on is created in the reactor's thread (by the test), since
Twisted's timers are not thread-safe; coroutines may be created in the worker, they start
running in the reactor's thread.
"""

from __future__ import annotations

import gc
import threading
import traceback
from collections.abc import Callable
from typing import Any, NoReturn, TypeVar, cast

from twisted.internet import defer, reactor, task, threads
from twisted.internet.defer import CancelledError, Deferred
from twisted.logger import LogEvent
from twisted.python.failure import Failure

import txgreen
from support import Boom

R: Any = reactor
T = TypeVar("T")


def explode(message: str) -> NoReturn:
    raise Boom(message)


def in_worker(fn: Callable[[], T]) -> T:
    """Run ``fn`` in a reactor thread-pool worker and wait (green) for its outcome."""
    return txgreen.block_on(threads.deferToThread(fn))


def catching(fn: Callable[[], object]) -> Callable[[], object]:
    """Wrap ``fn`` so the worker returns the exception it raised instead of failing."""

    def wrapper() -> object:
        try:
            return fn()
        except BaseException as e:
            return e

    return wrapper


def in_os_thread(fn: Callable[[], T]) -> T:
    """Run ``fn`` in a new OS thread (not the pool) and wait (green) until the thread is gone.

    Thread-pool workers keep their last job alive until the next one, so tests that need
    everything the worker touched to be garbage use a thread of their own.
    """
    done: Deferred[tuple[bool, Any]] = Deferred()

    def run() -> None:
        try:
            outcome: tuple[bool, Any] = (True, fn())
        except BaseException as e:
            outcome = (False, e)
        R.callFromThread(done.callback, outcome)

    thread = threading.Thread(target=run, name="block_on test thread", daemon=True)
    thread.start()
    ok, value = txgreen.block_on(done)
    txgreen.block_on(threads.deferToThread(thread.join))
    if not ok:
        raise value
    return cast(T, value)


def message_of(fn: Callable[[], object]) -> Callable[[], str]:
    """Wrap ``fn`` so the thread returns ``"Type: message"`` of what it raised (no references)."""

    def wrapper() -> str:
        try:
            fn()
        except BaseException as e:
            return f"{type(e).__name__}: {e}"
        return "no exception"

    return wrapper


def test_worker_waits_for_a_deferred_fired_by_the_reactor() -> None:
    reactor_thread = threading.get_ident()
    d: Deferred[str] = Deferred()
    entered: Deferred[None] = Deferred()

    def worker() -> tuple[int, str]:
        R.callFromThread(entered.callback, None)
        return threading.get_ident(), txgreen.block_on(d)

    result = threads.deferToThread(worker)
    txgreen.block_on(entered)  # the worker is about to block
    assert not result.called
    R.callLater(0, d.callback, "fired by the reactor")
    ident, value = txgreen.block_on(result)
    assert value == "fired by the reactor"
    assert ident != reactor_thread


def test_coroutine_from_a_worker_runs_in_the_reactor_thread() -> None:
    reactor_thread = threading.get_ident()
    d: Deferred[str] = Deferred()
    started: Deferred[int] = Deferred()

    async def wait_for_d() -> str:
        started.callback(threading.get_ident())  # runs in the reactor's thread
        return "coroutine got " + await d

    result = threads.deferToThread(lambda: txgreen.block_on(wait_for_d()))
    assert txgreen.block_on(started) == reactor_thread
    # the coroutine waits on d, so the worker is blocked in block_on now
    assert not result.called
    R.callLater(0, d.callback, "x")
    assert txgreen.block_on(result) == "coroutine got x"


def test_call_in_thread_worker() -> None:
    d = task.deferLater(R, 0.01, lambda: 5)
    done: Deferred[object] = Deferred()

    def worker() -> None:
        try:
            value: object = txgreen.block_on(d) * 2
        except BaseException as e:
            value = e
        R.callFromThread(done.callback, value)

    R.callInThread(worker)
    assert txgreen.block_on(done) == 10


def test_worker_on_an_already_fired_deferred() -> None:
    d = defer.succeed("fired")
    assert in_worker(lambda: txgreen.block_on(d)) == "fired"


def test_worker_gets_the_failure_with_its_traceback() -> None:
    d = task.deferLater(R, 0, explode, "thread boom")
    err = in_worker(catching(lambda: txgreen.block_on(d)))
    assert isinstance(err, Boom)
    assert str(err) == "thread boom"
    assert [f.name for f in traceback.extract_tb(err.__traceback__)][-1] == "explode"
    seen: list[Failure] = []
    d.addErrback(seen.append)  # the failure passed through
    assert seen[0].value is err


def test_thread_failure_is_not_logged_as_unhandled(unhandled: list[LogEvent]) -> None:
    holder = [task.deferLater(R, 0, explode, "handled in the thread")]
    outcome = in_os_thread(message_of(lambda: txgreen.block_on(holder[0])))
    assert outcome == "Boom: handled in the thread"
    holder.clear()
    txgreen.sleep(0)  # the hub records that the failure was handled on its next turn
    gc.collect()
    assert unhandled == []


def test_control_thread_failure_not_raised_is_logged(unhandled: list[LogEvent]) -> None:
    # Proves the test above would see the log: the thread waits for something else.
    holder = [task.deferLater(R, 0, explode, "nobody looked")]
    other = task.deferLater(R, 0.02, lambda: "other")
    assert in_os_thread(lambda: txgreen.block_on(other)) == "other"
    assert holder[0].called
    holder.clear()
    txgreen.sleep(0)
    gc.collect()
    assert len(unhandled) == 1


def test_worker_coroutine_failure() -> None:
    async def failing() -> None:
        await task.deferLater(R, 0, lambda: None)
        explode("coroutine boom")

    err = in_worker(catching(lambda: txgreen.block_on(failing())))
    assert isinstance(err, Boom)
    assert str(err) == "coroutine boom"


def test_worker_timeout_raises_timeout_and_cancels() -> None:
    reactor_thread = threading.get_ident()
    cancelled_in: list[int] = []
    d: Deferred[None] = Deferred(lambda _: cancelled_in.append(threading.get_ident()))
    err = in_worker(catching(lambda: txgreen.block_on(d, timeout=0.01)))
    assert isinstance(err, txgreen.Timeout)
    assert isinstance(err, TimeoutError)
    assert str(err) == "timed out after 0.01 seconds"
    assert cancelled_in == [reactor_thread]  # cancelled by the reactor, not the worker
    seen: list[Failure] = []
    d.addErrback(seen.append)
    assert isinstance(seen[0].value, CancelledError)


def test_thread_timeout_cancellation_is_not_logged_as_unhandled(
    unhandled: list[LogEvent],
) -> None:
    holder: list[Deferred[None]] = [Deferred()]
    outcome = in_os_thread(message_of(lambda: txgreen.block_on(holder[0], timeout=0.01)))
    assert outcome == "Timeout: timed out after 0.01 seconds"
    assert holder[0].called
    holder.clear()
    txgreen.sleep(0)
    gc.collect()
    assert unhandled == []


def test_plain_os_thread_waits_too() -> None:
    d = task.deferLater(R, 0.01, lambda: "plain thread")
    assert in_os_thread(lambda: txgreen.block_on(d)) == "plain thread"


def test_worker_result_in_time_leaves_no_timer() -> None:
    now = R.seconds()
    d = task.deferLater(R, 0.01, lambda: "in time")
    assert in_worker(lambda: txgreen.block_on(d, timeout=1000)) == "in time"
    assert [c for c in R.getDelayedCalls() if c.active() and c.getTime() > now + 500] == []


def test_worker_other_objects_are_a_type_error() -> None:
    err = in_worker(catching(lambda: txgreen.block_on(cast(Any, 42))))
    assert isinstance(err, TypeError)
    assert str(err).startswith(
        "block_on() takes a Deferred, a coroutine or an asyncio Future, not 'int'"
    )


def test_many_workers_wait_at_once() -> None:
    ds: list[Deferred[int]] = [Deferred() for _ in range(4)]
    entered: list[Deferred[None]] = [Deferred() for _ in ds]

    def worker(i: int) -> int:
        R.callFromThread(entered[i].callback, None)
        return txgreen.block_on(ds[i]) * 10

    results = [threads.deferToThread(worker, i) for i in range(len(ds))]
    for e in entered:
        txgreen.block_on(e)
    for i in reversed(range(len(ds))):  # fire in the opposite order
        ds[i].callback(i)
    assert [txgreen.block_on(r) for r in results] == [0, 10, 20, 30]


def test_green_thread_keeps_running_while_a_worker_waits() -> None:
    d: Deferred[str] = Deferred()
    entered: Deferred[None] = Deferred()

    def worker() -> str:
        R.callFromThread(entered.callback, None)
        return txgreen.block_on(d)

    result = threads.deferToThread(worker)
    txgreen.block_on(entered)
    # the reactor and green threads are not held up by the waiting worker
    assert txgreen.block_on(task.deferLater(R, 0, lambda: "green")) == "green"
    assert txgreen.spawn(lambda: "spawned").get() == "spawned"
    d.callback("done")
    assert txgreen.block_on(result) == "done"


def test_with_timeout_in_a_worker_is_a_clear_error() -> None:
    # A ``with Timeout`` deadline interrupts green threads; a worker must use timeout= instead.
    d: Deferred[None] = Deferred()

    def worker() -> None:
        with txgreen.Timeout(30):
            txgreen.block_on(d)

    outcome = in_worker(message_of(worker))
    assert outcome.startswith(
        "NotInReactorThreadError: txgreen.Timeout was called from an OS thread that is not the "
        "reactor's"
    )
    assert "txgreen.block_on()" in outcome
    assert not d.called  # the error came before any wait
