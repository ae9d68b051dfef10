"""``Event`` and ``AsyncResult``: waking, timeouts, kills, the hub, misuse, ``to_deferred``."""

from __future__ import annotations

from typing import Any

import pytest
from twisted.internet import reactor
from twisted.internet.defer import CancelledError, Deferred
from twisted.python.failure import Failure

import txgreen
from primitives_support import all_of, assert_in_hub, settle, then_in_hub
from support import Boom, freed_without_gc
from txgreen import GreenletExit
from txgreen._event import AsyncResult, Event

R: Any = reactor

HUB_MESSAGE = "was called from the hub (the greenlet running the reactor)"

# -- Event -------------------------------------------------------------------------------------


def test_event_flag() -> None:
    ev = Event()
    assert not ev.is_set()
    assert repr(ev) == "<txgreen.Event unset, 0 waiting>"
    ev.set()
    assert ev.is_set()
    assert repr(ev) == "<txgreen.Event set, 0 waiting>"
    ev.set()  # setting twice is fine
    assert ev.is_set()
    ev.clear()
    assert not ev.is_set()


def test_wait_on_a_set_event_returns_at_once_without_switching() -> None:
    ev = Event()
    ev.set()
    ran: list[str] = []
    t = txgreen.spawn(ran.append, "other")
    assert ev.wait() is True
    assert ev.wait(timeout=0) is True
    assert ran == []  # no switch: the spawned thread has not started
    t.join()
    assert ran == ["other"]


def test_set_wakes_every_waiter_in_fifo_order() -> None:
    ev = Event()
    order: list[tuple[int, bool]] = []

    def waiter(i: int) -> None:
        order.append((i, ev.wait()))

    threads = [txgreen.spawn(waiter, i) for i in range(5)]
    settle()
    assert order == []
    assert repr(ev) == "<txgreen.Event unset, 5 waiting>"
    ev.set()
    assert order == []  # set() never switches
    for t in threads:
        t.join()
    assert order == [(i, True) for i in range(5)]
    assert repr(ev) == "<txgreen.Event set, 0 waiting>"


def test_waiters_of_a_set_then_cleared_event_still_return_true() -> None:
    ev = Event()
    got: list[bool] = []
    t = txgreen.spawn(lambda: got.append(ev.wait()))
    settle()
    ev.set()
    ev.clear()  # before the waiter ran
    t.join()
    assert got == [True]
    # A new wait blocks again.
    assert ev.wait(timeout=0.01) is False


def test_wait_timeout_returns_false_and_leaves_no_waiter() -> None:
    ev = Event()
    assert ev.wait(timeout=0.01) is False
    assert repr(ev) == "<txgreen.Event unset, 0 waiting>"
    assert ev._waiters == type(ev._waiters)()
    # A later set still works for later waiters.
    t = txgreen.spawn(ev.wait)
    settle()
    ev.set()
    assert t.get() is True


def test_wait_set_before_the_timeout_returns_true() -> None:
    ev = Event()
    R.callLater(0.001, ev.set)
    assert ev.wait(timeout=5) is True  # the leak check sees the 5 s timer cancelled


def test_wait_inside_timeout_block_raises_that_timeout() -> None:
    ev = Event()
    with pytest.raises(txgreen.Timeout) as excinfo, txgreen.Timeout(0.01) as deadline:
        ev.wait(timeout=10)  # the enclosing deadline wins, and raises (not False)
    assert excinfo.value is deadline
    assert ev._waiters == type(ev._waiters)()


def test_wait_negative_timeout_is_refused() -> None:
    ev = Event()
    with pytest.raises(ValueError) as excinfo:
        ev.wait(timeout=-1)
    assert str(excinfo.value) == "timeout must be a non-negative number of seconds or None, not -1"


def test_killed_waiter_is_removed_and_others_still_wake() -> None:
    ev = Event()
    got: list[int] = []
    a = txgreen.spawn(lambda: got.append(1) if ev.wait() else None)
    b = txgreen.spawn(lambda: got.append(2) if ev.wait() else None)
    settle()
    a.kill()
    assert isinstance(a.value, GreenletExit)
    assert repr(ev) == "<txgreen.Event unset, 1 waiting>"
    ev.set()
    b.join()
    assert got == [2]


@pytest.mark.in_hub
def test_event_wait_in_the_hub() -> None:
    ev = Event()
    with pytest.raises(txgreen.BlockingInHubError) as excinfo:
        ev.wait()
    assert str(excinfo.value).startswith(f"Event.wait() on an unset Event {HUB_MESSAGE}")
    with pytest.raises(txgreen.BlockingInHubError):
        ev.wait(timeout=1)
    ev.set()
    assert ev.wait() is True  # nothing to wait for: fine in the hub


@pytest.mark.in_hub
def test_event_set_in_the_hub_does_not_run_the_waiters() -> Deferred[Any]:
    ev = Event()
    ran: list[int] = []

    def waiter(i: int) -> None:
        if ev.wait():
            ran.append(i)

    threads = [txgreen.spawn(waiter, i) for i in range(3)]

    def fire() -> Deferred[Any]:
        assert_in_hub()
        ev.set()
        assert ran == []  # the woken threads have not run yet
        return all_of(threads).addCallback(lambda _: check())

    def check() -> None:
        assert ran == [0, 1, 2]

    return then_in_hub(fire)


# -- AsyncResult -------------------------------------------------------------------------------


def test_async_result_value() -> None:
    ar: AsyncResult[int] = AsyncResult()
    assert not ar.ready()
    assert not ar.successful()
    assert ar.value is None
    assert ar.exception is None
    assert repr(ar) == "<txgreen.AsyncResult unset, 0 waiting>"
    getters = [txgreen.spawn(ar.get) for _ in range(3)]
    waiters = [txgreen.spawn(ar.wait) for _ in range(2)]
    settle()
    assert repr(ar) == "<txgreen.AsyncResult unset, 5 waiting>"
    ar.set(7)
    assert ar.ready()
    assert ar.successful()
    assert ar.value == 7
    assert ar.exception is None
    assert repr(ar) == "<txgreen.AsyncResult value=7>"
    assert [g.get() for g in getters] == [7, 7, 7]
    assert [w.get() for w in waiters] == [True, True]
    assert ar.get() == 7
    assert ar.get(block=False) == 7
    assert ar.get_nowait() == 7
    assert ar.wait() is True


def test_async_result_set_without_value_is_none() -> None:
    ar: AsyncResult[None] = AsyncResult()
    ar.set()
    assert ar.successful()
    assert ar.get() is None


def test_async_result_exception() -> None:
    ar: AsyncResult[int] = AsyncResult()
    boom = Boom("bad")
    getters = [txgreen.spawn(ar.get) for _ in range(2)]
    waiter = txgreen.spawn(ar.wait)
    settle()
    ar.set_exception(boom)
    assert ar.ready()
    assert not ar.successful()
    assert ar.value is None
    assert ar.exception is boom
    assert repr(ar) == "<txgreen.AsyncResult exception=Boom('bad')>"
    for g in getters:
        with pytest.raises(Boom) as excinfo:
            g.get()
        assert excinfo.value is boom
    assert waiter.get() is True  # wait() does not raise the exception
    with pytest.raises(Boom):
        ar.get()
    with pytest.raises(Boom):
        ar.get_nowait()


def test_async_result_exception_class_is_instantiated() -> None:
    ar: AsyncResult[int] = AsyncResult()
    ar.set_exception(Boom)
    assert type(ar.exception) is Boom
    with pytest.raises(Boom):
        ar.get()


def test_async_result_set_exception_refuses_non_exceptions() -> None:
    ar: AsyncResult[int] = AsyncResult()
    with pytest.raises(TypeError) as excinfo:
        ar.set_exception("oops")  # type: ignore[arg-type]
    assert str(excinfo.value) == (
        "AsyncResult.set_exception() takes an exception instance or class, not 'str'"
    )
    assert not ar.ready()


def test_async_result_is_set_once() -> None:
    ar: AsyncResult[int] = AsyncResult()
    ar.set(1)
    with pytest.raises(RuntimeError) as excinfo:
        ar.set(2)
    assert str(excinfo.value) == (
        "AsyncResult.set() called on an AsyncResult that already has a value; an AsyncResult "
        "is set once (create a new one for the next result)"
    )
    with pytest.raises(RuntimeError) as excinfo:
        ar.set_exception(Boom())
    assert str(excinfo.value).startswith(
        "AsyncResult.set_exception() called on an AsyncResult that already has a value;"
    )
    assert ar.get() == 1
    failed: AsyncResult[int] = AsyncResult()
    failed.set_exception(Boom())
    with pytest.raises(RuntimeError) as excinfo:
        failed.set(3)
    assert str(excinfo.value).startswith(
        "AsyncResult.set() called on an AsyncResult that already has an exception;"
    )


def test_async_result_not_ready_non_blocking_and_timeouts() -> None:
    ar: AsyncResult[int] = AsyncResult()
    with pytest.raises(txgreen.Timeout) as excinfo:
        ar.get(block=False)
    assert str(excinfo.value) == "timed out after 0 seconds"
    with pytest.raises(txgreen.Timeout):
        ar.get_nowait()
    with pytest.raises(txgreen.Timeout) as excinfo:
        ar.get(timeout=0.01)
    assert str(excinfo.value) == "timed out after 0.01 seconds"
    assert ar.wait(timeout=0.01) is False
    with pytest.raises(ValueError):
        ar.get(timeout=-1)
    with pytest.raises(ValueError):
        ar.wait(timeout=-0.5)
    assert repr(ar) == "<txgreen.AsyncResult unset, 0 waiting>"
    with pytest.raises(txgreen.Timeout) as excinfo, txgreen.Timeout(0.01) as deadline:
        ar.wait(timeout=10)
    assert excinfo.value is deadline
    with pytest.raises(txgreen.Timeout) as excinfo, txgreen.Timeout(0.01) as deadline:
        ar.get()
    assert excinfo.value is deadline
    assert repr(ar) == "<txgreen.AsyncResult unset, 0 waiting>"


def test_async_result_killed_getter_is_removed() -> None:
    ar: AsyncResult[int] = AsyncResult()
    a = txgreen.spawn(ar.get)
    b = txgreen.spawn(ar.get)
    settle()
    a.kill()
    assert repr(ar) == "<txgreen.AsyncResult unset, 1 waiting>"
    ar.set(3)
    assert b.get() == 3
    assert isinstance(a.value, GreenletExit)


def test_async_result_getter_killed_after_set_still_gets_the_value() -> None:
    ar: AsyncResult[int] = AsyncResult()
    got: list[int] = []

    def getter() -> None:
        got.append(ar.get())
        txgreen.sleep(0)  # the kill is raised here
        got.append(-1)

    g = txgreen.spawn(getter)
    settle()
    ar.set(9)
    g.kill()  # before g ran again
    assert got == [9]
    assert isinstance(g.value, GreenletExit)


def test_to_deferred_before_and_after() -> None:
    ar: AsyncResult[str] = AsyncResult()
    early = ar.to_deferred()
    results: list[object] = []
    early.addCallback(results.append)
    assert results == []
    ar.set("v")
    assert results == ["v"]
    late = ar.to_deferred()
    late.addCallback(results.append)
    assert results == ["v", "v"]
    assert txgreen.block_on(ar.to_deferred()) == "v"


def test_to_deferred_of_an_exception() -> None:
    ar: AsyncResult[str] = AsyncResult()
    boom = Boom()
    early = ar.to_deferred()
    ar.set_exception(boom)
    with pytest.raises(Boom) as excinfo:
        txgreen.block_on(early)
    assert excinfo.value is boom
    failures: list[Failure] = []
    ar.to_deferred().addErrback(failures.append)
    assert [f.value for f in failures] == [boom]


def test_to_deferred_cancel_detaches_only_that_deferred() -> None:
    ar: AsyncResult[int] = AsyncResult()
    d1 = ar.to_deferred()
    d2 = ar.to_deferred()
    d1.cancel()
    with pytest.raises(CancelledError):
        txgreen.block_on(d1)
    assert not ar.ready()
    ar.set(4)
    assert txgreen.block_on(d2) == 4
    assert ar.get() == 4


@pytest.mark.in_hub
def test_async_result_in_the_hub() -> Deferred[Any]:
    ar: AsyncResult[int] = AsyncResult()
    with pytest.raises(txgreen.BlockingInHubError) as excinfo:
        ar.get()
    assert str(excinfo.value).startswith(f"AsyncResult.get() on an unset AsyncResult {HUB_MESSAGE}")
    with pytest.raises(txgreen.BlockingInHubError) as excinfo:
        ar.wait()
    assert str(excinfo.value).startswith(
        f"AsyncResult.wait() on an unset AsyncResult {HUB_MESSAGE}"
    )
    ran: list[int] = []
    threads = [txgreen.spawn(lambda: ran.append(ar.get())) for _ in range(2)]

    def fire() -> Deferred[Any]:
        assert_in_hub()
        ar.set(5)
        assert ran == []  # set() in the hub did not switch into the getters
        assert ar.get() == 5  # ready: fine in the hub
        assert ar.wait() is True
        return all_of(threads).addCallback(lambda _: check())

    def check() -> None:
        assert ran == [5, 5]

    return then_in_hub(fire)


# -- weak references ------------------------------------------------------------------------------


@pytest.mark.parametrize("cls", [Event, AsyncResult])
def test_event_and_async_result_accept_weak_references(cls: type[Any]) -> None:
    # gevent's test__event.py test_weakref; threading.Event allows them too
    assert freed_without_gc(cls)  # weakref.ref() works, and nothing keeps it
