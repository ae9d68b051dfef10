"""Timeouts: ``block_on(..., timeout=)`` and the ``with txgreen.Timeout(seconds)`` block.

Deadlines run on the real reactor, so the tests use deadlines of 10-100 ms against waits that
never end (or end much later), never two real times that are close to each other.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, cast

import pytest
from twisted.internet import defer, reactor, task
from twisted.internet.defer import CancelledError, Deferred
from twisted.logger import LogEvent
from twisted.python.failure import Failure

import txgreen
from support import later
from txgreen import Timeout

R: Any = reactor

SHORT = 0.01  # a deadline that passes almost at once
LONG = 30.0  # a deadline that never passes during a test


def never() -> Deferred[Any]:
    """A Deferred that nobody fires."""
    return Deferred()


def long_timers() -> set[Any]:
    """Active reactor DelayedCalls more than a second away (such as an armed LONG deadline)."""
    now = R.seconds()
    return {c for c in R.getDelayedCalls() if c.active() and c.getTime() - now > 1}


def active_timers() -> set[Any]:
    return {c for c in R.getDelayedCalls() if c.active()}


def failure_of(d: Deferred[Any]) -> Failure:
    """The Failure ``d`` holds (consuming it, so it is not logged as unhandled)."""
    seen: list[Failure] = []
    d.addErrback(seen.append)
    assert len(seen) == 1, f"{d!r} has not failed"
    return seen[0]


async def await_forever() -> None:
    await never()


def timeout_raised_by(body: Callable[[], object]) -> Timeout:
    """The Timeout ``body()`` raises (the test fails if it raises none)."""
    with pytest.raises(Timeout) as info:
        body()
    return info.value


@contextmanager
def stuck_thread() -> Iterator[txgreen.GreenThread[None]]:
    """A green thread that sleeps for good (killed at the end of the block)."""
    stuck = txgreen.spawn(txgreen.sleep, LONG)
    try:
        yield stuck
    finally:
        stuck.kill()


# -- the exception ---------------------------------------------------------------------------


def test_timeout_is_a_timeout_error() -> None:
    assert issubclass(Timeout, TimeoutError)
    t = Timeout(2.5)
    assert isinstance(t, TimeoutError)
    assert str(t) == "timed out after 2.5 seconds"
    assert t.seconds == 2.5
    assert not t.silent
    assert not t.expired
    assert not t.pending
    assert repr(t) == "<txgreen.Timeout seconds=2.5 idle>"


def test_timeout_state_in_repr() -> None:
    t = Timeout(LONG)
    with t:
        assert t.pending
        assert repr(t) == f"<txgreen.Timeout seconds={LONG} active>"
    assert repr(t) == f"<txgreen.Timeout seconds={LONG} idle>"
    expired = Timeout(SHORT, silent=True)
    with expired:
        txgreen.block_on(never())
    assert expired.expired
    assert repr(expired) == f"<txgreen.Timeout seconds={SHORT} expired>"


# -- block_on(timeout=) ----------------------------------------------------------------------


def test_block_on_timeout_cancels_the_deferred_and_raises() -> None:
    cancelled: list[Deferred[None]] = []
    d: Deferred[None] = Deferred(cancelled.append)
    with pytest.raises(Timeout, match=r"^timed out after 0\.01 seconds$") as info:
        txgreen.block_on(d, timeout=SHORT)
    assert isinstance(info.value, TimeoutError)
    assert info.value.seconds == SHORT
    assert cancelled == [d]
    assert isinstance(failure_of(d).value, CancelledError)


def test_block_on_timeout_is_caught_as_builtin_timeout_error() -> None:
    with pytest.raises(TimeoutError):
        txgreen.block_on(never(), timeout=SHORT)


def test_block_on_timeout_cancellation_is_not_logged_as_unhandled(
    unhandled: list[LogEvent],
) -> None:
    d: Deferred[None] = Deferred()
    with pytest.raises(Timeout):
        txgreen.block_on(d, timeout=SHORT)
    assert d.called
    del d
    txgreen.sleep(0)
    gc.collect()
    assert unhandled == []


def test_canceller_that_does_not_fire_still_times_out() -> None:
    calls: list[str] = []
    d: Deferred[None] = Deferred(lambda _: calls.append("canceller ran"))
    with pytest.raises(Timeout):
        txgreen.block_on(d, timeout=SHORT)
    assert calls == ["canceller ran"]
    # Twisted fires a Deferred whose canceller did not, with CancelledError.
    assert isinstance(failure_of(d).value, CancelledError)


def test_canceller_that_fires_a_value_still_times_out() -> None:
    # The deadline came first: the caller gets Timeout, and the late value passes through.
    d: Deferred[str] = Deferred(lambda d: d.callback("late value"))
    with pytest.raises(Timeout):
        txgreen.block_on(d, timeout=SHORT)
    seen: list[str] = []
    d.addCallback(seen.append)
    assert seen == ["late value"]


def test_block_on_timeout_cancels_a_coroutine() -> None:
    cancelled: list[Deferred[None]] = []
    seen: list[str] = []

    async def slow() -> None:
        try:
            await Deferred(cancelled.append)
        except CancelledError:
            seen.append("coroutine saw CancelledError")
            raise

    with pytest.raises(Timeout):
        txgreen.block_on(slow(), timeout=SHORT)
    assert seen == ["coroutine saw CancelledError"]
    assert len(cancelled) == 1


def test_timeout_zero_on_an_unfired_deferred_times_out() -> None:
    d: Deferred[None] = Deferred()
    with pytest.raises(Timeout, match=r"^timed out after 0 seconds$"):
        txgreen.block_on(d, timeout=0)
    assert isinstance(failure_of(d).value, CancelledError)


def test_timeout_zero_on_a_fired_deferred_returns_its_result() -> None:
    assert txgreen.block_on(defer.succeed("ready"), timeout=0) == "ready"
    with pytest.raises(KeyError):
        txgreen.block_on(defer.fail(KeyError("failed")), timeout=0)


def test_result_in_time_returns_and_disarms_the_timer() -> None:
    before = long_timers()
    assert txgreen.block_on(later("in time"), timeout=LONG) == "in time"
    assert long_timers() == before


def test_failure_in_time_raises_it_not_timeout() -> None:
    before = long_timers()
    d: Deferred[None] = Deferred()
    R.callLater(0, d.errback, KeyError("real failure"))
    with pytest.raises(KeyError, match="real failure"):
        txgreen.block_on(d, timeout=LONG)
    assert long_timers() == before


def test_clock_driven_deferred_is_not_bound_by_simulated_time() -> None:
    # timeout= is real time on the reactor: an hour on a Clock is nothing.
    clock = task.Clock()
    d = task.deferLater(cast(Any, clock), 3600, lambda: "an hour later")
    R.callLater(0, clock.advance, 3600)
    assert txgreen.block_on(d, timeout=LONG) == "an hour later"


# -- with Timeout(seconds) -------------------------------------------------------------------


def test_with_timeout_raises_its_own_instance_and_cancels() -> None:
    cancelled: list[Deferred[None]] = []
    d: Deferred[None] = Deferred(cancelled.append)
    t = Timeout(SHORT)

    def body() -> None:
        with t:
            txgreen.block_on(d)

    assert timeout_raised_by(body) is t
    assert t.expired
    assert not t.pending
    assert cancelled == [d]
    assert isinstance(failure_of(d).value, CancelledError)


def test_with_timeout_enter_returns_the_timeout() -> None:
    t = Timeout(LONG)
    with t as entered:
        assert entered is t


@pytest.mark.parametrize(
    "kind",
    [
        "block_on",
        "block_on-coroutine",
        "block_on-own-longer-timeout",
        "sleep",
        "join",
        "join-own-longer-timeout",
        "get",
    ],
)
def test_with_timeout_bounds_every_kind_of_blocking_call(kind: str) -> None:
    t = Timeout(SHORT)
    after: list[str] = []
    with stuck_thread() as stuck:
        calls: dict[str, Callable[[], object]] = {
            "block_on": lambda: txgreen.block_on(never()),
            "block_on-coroutine": lambda: txgreen.block_on(await_forever()),
            "block_on-own-longer-timeout": lambda: txgreen.block_on(never(), timeout=LONG),
            "sleep": lambda: txgreen.sleep(LONG),
            "join": lambda: stuck.join(),
            "join-own-longer-timeout": lambda: stuck.join(timeout=LONG),
            "get": lambda: stuck.get(),
        }

        def body() -> None:
            with t:
                calls[kind]()
                after.append("not reached")

        raised = timeout_raised_by(body)
    assert raised is t
    assert after == []


def test_with_timeout_bounds_the_block_as_a_whole() -> None:
    # Each wait is shorter than the deadline; together they are not.
    t = Timeout(0.1)
    done: list[int] = []

    def body() -> None:
        with t:
            txgreen.sleep(0.06)
            done.append(1)
            txgreen.sleep(0.06)
            done.append(2)

    assert timeout_raised_by(body) is t
    assert done == [1]


def test_with_timeout_lets_a_quick_block_finish() -> None:
    before = long_timers()
    with Timeout(LONG) as t:
        assert txgreen.block_on(later("a")) == "a"
        txgreen.sleep(0)
        assert txgreen.block_on(later("b")) == "b"
    assert not t.expired
    assert not t.pending
    assert long_timers() == before


def test_with_timeout_only_bounds_its_own_green_thread() -> None:
    other: Deferred[str] = Deferred()
    t = Timeout(SHORT)
    helper: list[txgreen.GreenThread[str]] = []

    def body() -> None:
        with t:
            helper.append(txgreen.spawn(txgreen.block_on, other))
            txgreen.block_on(never())

    assert timeout_raised_by(body) is t
    (gt,) = helper
    assert not gt.dead  # the thread spawned inside the block was not interrupted
    other.callback("still fine")
    assert gt.get() == "still fine"


def test_timeout_inside_a_spawned_thread_does_not_reach_the_spawner() -> None:
    t = Timeout(SHORT)

    def body() -> None:
        with t:
            txgreen.block_on(never())

    gt = txgreen.spawn(body)
    with pytest.raises(Timeout) as info:
        gt.get()
    assert info.value is t
    # this green thread was never interrupted and can still block
    assert txgreen.block_on(later("ok")) == "ok"


# -- exit and cleanup ------------------------------------------------------------------------


def test_exit_cancels_the_deadline_and_leaves_no_delayed_call() -> None:
    before = active_timers()
    t = Timeout(LONG)
    with t:
        assert t.pending
        assert len(active_timers() - before) == 1
    assert not t.pending
    assert not t.expired
    assert active_timers() <= before


def test_exit_by_exception_cancels_the_deadline() -> None:
    before = long_timers()
    t = Timeout(LONG)

    def body() -> None:
        with t:
            raise KeyError("out")

    with pytest.raises(KeyError):
        body()
    assert not t.pending
    assert long_timers() == before


def test_no_block_on_after_exit_is_interrupted() -> None:
    with Timeout(SHORT) as t:
        pass
    assert txgreen.block_on(later("after", 0.05)) == "after"
    assert not t.expired


def test_seconds_none_means_no_deadline() -> None:
    before = active_timers()
    for t in (Timeout(None), Timeout(), Timeout(None, silent=True)):
        with t:
            assert active_timers() == before  # nothing armed
            assert not t.pending
            assert txgreen.block_on(later("x", 0.02)) == "x"
        assert not t.expired


def test_reusing_a_started_timeout_raises() -> None:
    t = Timeout(LONG)
    with t, pytest.raises(RuntimeError, match="already started"):
        t.start()
    with pytest.raises(RuntimeError, match=r"^this Timeout is already started; create a new one"):
        t.__enter__()
    assert not t.pending


def test_start_and_cancel_without_with() -> None:
    t = Timeout(SHORT)
    assert t.start() is t
    with pytest.raises(Timeout) as info:
        txgreen.block_on(never())
    assert info.value is t
    t.cancel()
    assert not t.pending


def test_cancel_before_expiry_disarms() -> None:
    t = Timeout(0.02).start()
    t.cancel()
    assert not t.pending
    assert txgreen.block_on(later("not interrupted", 0.05)) == "not interrupted"
    assert not t.expired


# -- silent ----------------------------------------------------------------------------------


def test_silent_timeout_ends_the_block_quietly() -> None:
    steps: list[str] = []
    with Timeout(SHORT, silent=True) as t:
        steps.append("blocking")
        txgreen.block_on(never())
        steps.append("not reached")
    steps.append("after the block")
    assert steps == ["blocking", "after the block"]
    assert t.expired


def test_silent_timeout_does_not_swallow_other_exceptions() -> None:
    def raise_inside(exc: BaseException) -> None:
        with Timeout(LONG, silent=True):
            raise exc

    with pytest.raises(KeyError):
        raise_inside(KeyError("other"))
    foreign = Timeout(1)
    with pytest.raises(Timeout) as info:
        raise_inside(foreign)  # some other Timeout, not this block's own
    assert info.value is foreign


# -- nesting ---------------------------------------------------------------------------------


def test_nested_inner_firing_first_wins() -> None:
    outer, inner = Timeout(LONG), Timeout(SHORT)
    caught: list[BaseException] = []
    with outer:
        try:
            with inner:
                txgreen.block_on(never())
        except Timeout as e:
            caught.append(e)
        assert outer.pending  # the outer deadline is untouched
        assert txgreen.block_on(later("outer still works")) == "outer still works"
    assert caught == [inner]
    assert caught[0] is inner
    assert inner.expired
    assert not outer.expired
    assert not outer.pending


def test_nested_silent_inner_firing_first_continues_in_outer() -> None:
    outer, inner = Timeout(LONG), Timeout(SHORT, silent=True)
    steps: list[str] = []
    with outer:
        with inner:
            txgreen.block_on(never())
            steps.append("not reached")
        steps.append("after inner")
        assert outer.pending
    assert steps == ["after inner"]
    assert inner.expired
    assert not outer.expired


def test_nested_outer_firing_inside_inner_propagates() -> None:
    outer, inner = Timeout(SHORT), Timeout(LONG)

    def body() -> None:
        with outer, inner:
            txgreen.block_on(never())

    assert timeout_raised_by(body) is outer
    assert outer.expired
    assert not inner.expired
    assert not inner.pending


def test_nested_outer_is_not_swallowed_by_silent_inner() -> None:
    outer, inner = Timeout(SHORT), Timeout(LONG, silent=True)
    steps: list[str] = []

    def body() -> None:
        with outer:
            with inner:
                txgreen.block_on(never())
            steps.append("not reached: the inner block must not swallow the outer deadline")

    assert timeout_raised_by(body) is outer
    assert steps == []
    assert not inner.pending


def test_nested_handler_for_the_inner_one_lets_the_outer_through() -> None:
    outer, inner = Timeout(SHORT), Timeout(LONG)

    def body() -> None:
        with outer:
            try:
                with inner:
                    txgreen.block_on(never())
            except Timeout as e:
                if e is not inner:
                    raise

    assert timeout_raised_by(body) is outer


def test_block_on_own_timeout_inside_an_outer_block_raises_its_own() -> None:
    with Timeout(LONG) as outer:
        with pytest.raises(Timeout) as info:
            txgreen.block_on(never(), timeout=SHORT)
        assert info.value is not outer
        assert info.value.seconds == SHORT
        assert outer.pending


def test_outer_block_beats_a_longer_block_on_timeout() -> None:
    outer = Timeout(SHORT)

    def body() -> None:
        with outer:
            txgreen.block_on(never(), timeout=LONG)

    assert timeout_raised_by(body) is outer


def test_outer_block_is_not_taken_for_join_own_timeout() -> None:
    # join(timeout=) returns False for its own deadline; an enclosing one must still raise.
    outer = Timeout(SHORT)
    joined: list[bool] = []
    with stuck_thread() as stuck:

        def body() -> None:
            with outer:
                joined.append(stuck.join(timeout=LONG))

        raised = timeout_raised_by(body)
    assert raised is outer
    assert joined == []


def test_nested_both_expire_inner_then_outer() -> None:
    outer, inner = Timeout(0.1), Timeout(SHORT)
    caught: list[BaseException] = []

    def body() -> None:
        with outer:
            try:
                with inner:
                    txgreen.block_on(never())
            except Timeout as e:
                caught.append(e)
            txgreen.block_on(never())

    with pytest.raises(Timeout) as info:
        body()
    assert caught == [inner]
    assert info.value is outer


# -- a deadline that passes while the green thread is busy -----------------------------------


def test_expiry_while_busy_is_raised_at_the_next_blocking_call() -> None:
    t = Timeout(SHORT)
    steps: list[object] = []
    cancelled: list[str] = []

    def body() -> None:
        with t:
            time.sleep(3 * SHORT)  # busy: the reactor cannot run, the deadline passes
            steps.append(t.expired)  # nothing could deliver it yet
            fired: Deferred[int] = Deferred()
            fired.callback(1)  # non-blocking work is not interrupted
            steps.append("non-blocking code ran")
            d = later("too late", 0)
            d.addErrback(lambda f: cancelled.append(type(f.value).__name__))
            txgreen.block_on(d)
            steps.append("not reached")

    assert timeout_raised_by(body) is t
    assert steps == [False, "non-blocking code ran"]
    assert cancelled == ["CancelledError"]


def _fire_after_overrunning(d: Deferred[str], value: str) -> None:
    time.sleep(3 * SHORT)  # hog the OS thread past the deadline, then fire d
    d.callback(value)


def test_expiry_after_the_result_arrived_is_raised_at_the_next_blocking_call() -> None:
    # The result reaches the waiter first (another green thread fires d), then the deadline
    # passes before the waiter runs again: block_on returns the result, and the Timeout is
    # raised at the next blocking call in the block.
    t = Timeout(SHORT)
    d: Deferred[str] = Deferred()
    steps: list[object] = []

    def body() -> None:
        with t:
            firer = txgreen.spawn(_fire_after_overrunning, d, "result")
            steps.append(txgreen.block_on(d))
            steps.append(t.expired)
            steps.append(firer.dead)
            txgreen.sleep(0)
            steps.append("not reached")

    assert timeout_raised_by(body) is t
    assert steps == ["result", True, True]


def test_expiry_not_yet_delivered_is_dropped_at_exit() -> None:
    t = Timeout(SHORT)
    d: Deferred[str] = Deferred()
    with t:
        firer = txgreen.spawn(_fire_after_overrunning, d, "result")
        assert txgreen.block_on(d) == "result"
        assert t.expired
    # the block is over: its undelivered expiry must not hit later blocking calls
    firer.join()
    assert txgreen.block_on(later("fine")) == "fine"
    txgreen.sleep(0)
