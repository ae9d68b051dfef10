"""``spawn``, ``spawn_later`` and ``sleep``: when green threads start, in which order, and how
they give way to each other; plus the contextvars copy a new thread starts with.

Joining, killing, links and Deferreds are in test_greenthread.py; ``defer_to_green`` and
``@green`` in test_defer_to_green.py.
"""

from __future__ import annotations

import contextvars
import time
from typing import Any

import pytest
from twisted.internet import defer, reactor, threads
from twisted.internet.base import DelayedCall
from twisted.internet.defer import Deferred

import txgreen
from txgreen import GreenletExit

R: Any = reactor  # the installed reactor, untyped (its module is typed as a plain module)


def active_calls() -> set[DelayedCall]:
    return {c for c in R.getDelayedCalls() if c.active()}


def new_call_after(before: set[DelayedCall], at_least: float) -> DelayedCall:
    """The one DelayedCall that appeared since ``before`` and is due ``at_least`` s from now."""
    due = R.seconds() + at_least
    found = [c for c in active_calls() - before if c.getTime() >= due]
    assert len(found) == 1, found
    return found[0]


# -- spawn -------------------------------------------------------------------------------------


def test_spawn_returns_green_thread_with_result() -> None:
    def add(a: int, b: int, *, scale: int = 1) -> int:
        return (a + b) * scale

    gt = txgreen.spawn(add, 2, 3, scale=10)
    assert isinstance(gt, txgreen.GreenThread)
    assert gt.get() == 50


def test_spawn_passes_kwargs_named_like_its_own_parameters() -> None:
    # ``fn`` is positional-only, so the target may take a keyword argument of that name.
    def target(fn: str, seconds: int) -> tuple[str, int]:
        return fn, seconds

    assert txgreen.spawn(target, fn="f", seconds=3).get() == ("f", 3)


def test_spawn_never_switches() -> None:
    ran: list[str] = []
    gt = txgreen.spawn(ran.append, "child")
    # The spawner keeps running: neither busy work nor a non-blocking call lets the child in.
    total = sum(range(10_000))
    assert txgreen.block_on(defer.succeed(total)) == total  # fired Deferred: no switch
    assert ran == []
    assert not gt.dead
    ran.append("parent")
    txgreen.sleep(0)  # the spawner blocks: now the child runs
    assert ran == ["parent", "child"]
    assert gt.dead


def test_spawned_threads_start_in_fifo_order() -> None:
    order: list[int] = []
    gts = [txgreen.spawn(order.append, i) for i in range(20)]
    txgreen.sleep(0)
    assert order == list(range(20))
    for gt in gts:
        assert gt.join() is True


def test_spawn_from_a_green_thread() -> None:
    def outer() -> int:
        inner = txgreen.spawn(lambda: 21)
        return inner.get() * 2

    assert txgreen.spawn(outer).get() == 42


@pytest.mark.in_hub
def test_spawn_from_the_hub_does_not_run_the_thread_synchronously() -> Deferred[None]:
    ran: list[str] = []

    def work() -> str:
        ran.append("child")
        return txgreen.block_on(txgreen.spawn(lambda: "nested").to_deferred())

    gt = txgreen.spawn(work)
    assert ran == []  # spawn from a reactor callback returns first
    assert txgreen.get_hub().in_hub()

    def check(value: str) -> None:
        assert value == "nested"
        assert ran == ["child"]

    return gt.to_deferred().addCallback(check)


# -- spawn_later -------------------------------------------------------------------------------


def test_spawn_later_starts_after_the_delay() -> None:
    start = R.seconds()
    gt = txgreen.spawn_later(0.05, R.seconds)
    txgreen.sleep(0)
    assert not gt.dead
    assert " scheduled " in repr(gt)
    started_at = gt.get()
    assert started_at >= start + 0.05


def test_spawn_later_runs_after_threads_spawned_for_now() -> None:
    order: list[str] = []
    late = txgreen.spawn_later(0.02, order.append, "later")
    soon = txgreen.spawn(order.append, "soon")
    late.join()
    soon.join()
    assert order == ["soon", "later"]


def test_spawn_later_zero_and_kwargs() -> None:
    def target(fn: str, seconds: float) -> tuple[str, float]:
        return fn, seconds

    gt = txgreen.spawn_later(0, target, fn="x", seconds=1.5)
    assert isinstance(gt, txgreen.GreenThread)
    assert gt.get() == ("x", 1.5)


@pytest.mark.parametrize("seconds", [-1, -0.5])
def test_spawn_later_negative_delay_is_a_value_error(seconds: float) -> None:
    ran: list[int] = []
    before = active_calls()
    with pytest.raises(ValueError, match=rf"^seconds must be >= 0, not {seconds}$"):
        txgreen.spawn_later(seconds, ran.append, 1)
    assert active_calls() - before == set()
    txgreen.sleep(0)
    assert ran == []


def test_killing_a_spawn_later_thread_before_it_starts_cancels_its_call() -> None:
    ran: list[int] = []
    before = active_calls()
    gt = txgreen.spawn_later(30, ran.append, 1)
    call = new_call_after(before, 29)
    gt.kill(block=False)
    # Dead at once, without running; the DelayedCall is gone (the leak check agrees).
    assert gt.dead
    assert not call.active()
    assert gt.successful()
    assert isinstance(gt.value, GreenletExit)
    txgreen.sleep(0)
    assert ran == []


# -- sleep -------------------------------------------------------------------------------------


def test_sleep_zero_yields_in_fifo_order() -> None:
    order: list[tuple[str, int]] = []

    def worker(name: str) -> None:
        for i in range(3):
            order.append((name, i))
            txgreen.sleep(0)

    gts = [txgreen.spawn(worker, name) for name in "abc"]
    for gt in gts:
        gt.join()
    assert order == [(name, i) for i in range(3) for name in "abc"]


def test_sleep_zero_puts_the_caller_behind_runnable_threads() -> None:
    order: list[str] = []
    a = txgreen.spawn(order.append, "a")
    b = txgreen.spawn(order.append, "b")
    order.append("main")
    txgreen.sleep(0)
    order.append("main again")
    assert order == ["main", "a", "b", "main again"]
    assert a.dead
    assert b.dead


def test_sleep_without_argument_is_sleep_zero() -> None:
    order: list[str] = []
    gt = txgreen.spawn(order.append, "child")
    txgreen.sleep()
    order.append("main")
    assert order == ["child", "main"]
    assert gt.dead


def test_sleep_zero_lets_the_reactor_run_within_the_switch_interval() -> None:
    # sleep(0) is a yield, as in gevent: the reactor is not polled at every one, but a thread
    # that only yields still lets a due timer run within about one switch interval.
    fired: list[bool] = []
    call = R.callLater(0, fired.append, True)
    start = time.monotonic()
    yields = 0
    while not fired:
        txgreen.sleep(0)
        yields += 1
    assert time.monotonic() - start < txgreen.get_hub().switch_interval + 0.05
    assert yields >= 1
    assert not call.active()


def test_sleep_zero_yields_within_the_turn_without_a_reactor_iteration() -> None:
    # With a long switch interval, a thread that only yields stays in the same hub turn: a
    # timer due now does not run until the turn ends.
    hub = txgreen.get_hub()
    saved = hub.switch_interval
    fired: list[bool] = []
    order: list[str] = []

    def yielder() -> None:
        for _ in range(3):
            order.append("other")
            txgreen.sleep(0)

    other = txgreen.spawn(yielder)
    txgreen.sleep(0)  # start a fresh turn with the new interval below
    hub.switch_interval = 60.0
    try:
        call = R.callLater(0, fired.append, True)
        for _ in range(100):
            order.append("me")
            txgreen.sleep(0)
        assert fired == []
        assert call.active()
    finally:
        hub.switch_interval = saved
    other.join()
    assert order.count("other") == 3
    txgreen.sleep(0.01)
    assert fired == [True]


def test_sleep_zero_loop_does_not_starve_the_reactor() -> None:
    # A thread that keeps yielding with sleep(0) must still let reactor timers run: the timer
    # below is what ends the loop (if it never fired, the test would hit its deadline).
    stop: list[bool] = []
    spins = 0

    def spinner() -> int:
        nonlocal spins
        while not stop:
            spins += 1
            txgreen.sleep(0)
        return spins

    gt = txgreen.spawn(spinner)
    R.callLater(0.01, stop.append, True)
    assert gt.get() >= 1
    assert stop == [True]


def test_sleep_waits_at_least_the_given_time() -> None:
    start = R.seconds()
    txgreen.sleep(0.03)
    assert R.seconds() >= start + 0.03


def test_sleep_lets_other_threads_run_meanwhile() -> None:
    order: list[str] = []

    def slow() -> None:
        txgreen.sleep(0.03)
        order.append("slow")

    def fast() -> None:
        txgreen.sleep(0)
        order.append("fast")

    a = txgreen.spawn(slow)
    b = txgreen.spawn(fast)
    b.join()
    assert order == ["fast"]
    a.join()
    assert order == ["fast", "slow"]


def test_kill_during_sleep_cancels_the_delayed_call() -> None:
    after: list[str] = []
    cleaned: list[str] = []

    def sleeper() -> None:
        try:
            txgreen.sleep(30)
            after.append("woke")
        finally:
            cleaned.append("finally")

    before = active_calls()
    gt = txgreen.spawn(sleeper)
    txgreen.sleep(0)  # let it start and park in sleep(30)
    call = new_call_after(before, 29)
    gt.kill()
    assert gt.dead
    assert not call.active()
    assert after == []
    assert cleaned == ["finally"]
    assert isinstance(gt.value, GreenletExit)


def test_kill_during_sleep_zero() -> None:
    after: list[str] = []

    def sleeper() -> None:
        txgreen.sleep(0)
        after.append("woke")

    gt = txgreen.spawn(sleeper)
    txgreen.sleep(0)  # it starts and parks in sleep(0), its wake-up queued behind ours
    gt.kill(ValueError("stop"))
    assert gt.dead
    with pytest.raises(ValueError, match=r"^stop$"):
        gt.get()
    txgreen.sleep(0)
    assert after == []


@pytest.mark.in_hub
def test_sleep_in_the_hub_raises() -> None:
    with pytest.raises(txgreen.BlockingInHubError) as excinfo:
        txgreen.sleep(0)
    assert str(excinfo.value).startswith("txgreen.sleep() was called from the hub")
    assert "txgreen.spawn(fn, ...)" in str(excinfo.value)


def test_sleep_in_another_os_thread_raises() -> None:
    with pytest.raises(txgreen.NotInReactorThreadError) as excinfo:
        txgreen.block_on(threads.deferToThread(txgreen.sleep, 0))
    assert str(excinfo.value).startswith(
        "txgreen.sleep() was called from an OS thread that is not the reactor's"
    )


@pytest.mark.parametrize("how", ["spawn", "spawn_later"])
def test_spawn_in_another_os_thread_raises(how: str) -> None:
    ran: list[int] = []

    def in_worker() -> object:
        if how == "spawn":
            return txgreen.spawn(ran.append, 1)
        return txgreen.spawn_later(0, ran.append, 1)

    with pytest.raises(txgreen.NotInReactorThreadError) as excinfo:
        txgreen.block_on(threads.deferToThread(in_worker))
    assert str(excinfo.value).startswith(
        "green threads can only be spawned from the reactor's OS thread"
    )
    assert "reactor.callFromThread(txgreen.spawn, fn, ...)" in str(excinfo.value)
    txgreen.sleep(0)
    assert ran == []


# -- many threads ------------------------------------------------------------------------------


def test_ten_thousand_threads_sleep_and_join() -> None:
    count = 10_000
    steps: list[int] = []

    def worker(i: int) -> int:
        txgreen.sleep(0)
        steps.append(i)
        return i * 2

    gts = [txgreen.spawn(worker, i) for i in range(count)]
    assert steps == []
    for gt in gts:
        assert gt.join() is True
    assert steps == list(range(count))  # FIFO all the way
    assert all(gt.dead and gt.successful() for gt in gts)
    assert sum(gt.get() for gt in gts) == count * (count - 1)
    assert not any(gt in txgreen.get_hub().threads for gt in gts)


# -- contextvars -------------------------------------------------------------------------------

var: contextvars.ContextVar[str] = contextvars.ContextVar("txgreen_test_var", default="unset")


def test_spawned_thread_starts_with_a_copy_of_the_spawners_context() -> None:
    token = var.set("parent")
    try:

        def child() -> tuple[str, str]:
            seen = var.get()
            var.set("child")
            return seen, var.get()

        gt = txgreen.spawn(child)
        var.set("parent, changed after spawn")  # the copy was taken at spawn time
        assert gt.get() == ("parent", "child")
        assert var.get() == "parent, changed after spawn"  # the child's change stays its own
    finally:
        var.reset(token)


def test_parent_change_after_the_child_started_is_not_seen() -> None:
    token = var.set("before")
    try:
        gate: Deferred[None] = Deferred()

        def child() -> str:
            txgreen.block_on(gate)
            return var.get()

        gt = txgreen.spawn(child)
        txgreen.sleep(0)  # child started and waits
        var.set("after")
        gate.callback(None)
        assert gt.get() == "before"
    finally:
        var.reset(token)


def test_grandchild_copies_the_childs_context() -> None:
    def child() -> tuple[str, str]:
        var.set("child")
        grandchild = txgreen.spawn(var.get)
        var.set("child, later")
        return grandchild.get(), var.get()

    assert txgreen.spawn(child).get() == ("child", "child, later")
    assert var.get() == "unset"


def test_siblings_do_not_share_context_changes() -> None:
    def setter() -> None:
        var.set("sibling")
        txgreen.sleep(0)

    def reader() -> str:
        txgreen.sleep(0)
        txgreen.sleep(0)
        return var.get()

    a = txgreen.spawn(setter)
    b = txgreen.spawn(reader)
    a.join()
    assert b.get() == "unset"


def test_spawn_later_copies_the_context_at_spawn_time() -> None:
    token = var.set("at spawn")
    try:
        gt = txgreen.spawn_later(0.01, var.get)
        var.set("at start")
        assert gt.get() == "at spawn"
    finally:
        var.reset(token)


@pytest.mark.in_hub
def test_thread_spawned_from_the_hub_copies_the_hubs_context() -> Deferred[None]:
    token = var.set("hub value")
    try:
        gt = txgreen.spawn(var.get)
    finally:
        var.reset(token)

    def check(value: str) -> None:
        assert value == "hub value"

    return gt.to_deferred().addCallback(check)


def test_contextvars_copy_is_documented() -> None:
    assert "contextvars" in (txgreen.spawn.__doc__ or "")
    assert "contextvars" in (txgreen.GreenThread.__doc__ or "")


# -- a function that cannot be called ---------------------------------------------------------


@pytest.mark.parametrize("how", ["spawn", "spawn_later", "Group.spawn", "Pool.spawn full"])
def test_spawn_of_a_non_callable_raises_type_error_at_once(how: str) -> None:
    # gevent's Greenlet.__init__ raises TypeError in the caller; nothing starts, nothing leaks
    before = active_calls()
    pool = txgreen.Pool(1)
    blocker = pool.spawn(txgreen.sleep, 10)
    spawners: dict[str, Any] = {
        "spawn": txgreen.spawn,
        "spawn_later": lambda x: txgreen.spawn_later(0, x),
        "Group.spawn": txgreen.Group().spawn,
        "Pool.spawn full": pool.spawn,  # raises before waiting for a slot
    }
    with pytest.raises(TypeError, match=r"needs a callable, not int"):
        spawners[how](42)
    blocker.kill()
    assert active_calls() - before == set()
