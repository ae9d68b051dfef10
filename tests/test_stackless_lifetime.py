"""When a tasklet is freed, and what a paused tasklet that nobody holds any more gets.

Stackless frees a tasklet that nothing references as soon as its reference count drops, and
kills one freed while it still has frames (``TaskletExit``).  These tests run with the cyclic
garbage collector off: what they check must happen by reference counting alone.  Each body
runs in a green thread (txgreen_mode = auto), the main tasklet of a scheduler of its own.
"""

from __future__ import annotations

import gc
import weakref
from typing import Any

import pytest
from twisted.internet.defer import Deferred

import txgreen
import txgreen.stackless as stackless
from support import Boom, freed_without_gc, log_events, no_gc
from txgreen.stackless import TaskletExit, channel, tasklet


def _reactor() -> Any:
    from twisted.internet import reactor

    return reactor


def paused_tasklet(log: list[str]) -> tasklet:
    """A tasklet that has started and paused itself with ``schedule_remove()``.

    It logs how it ends: "resumed", or the exception it got and "finally".
    """

    def body() -> None:
        try:
            stackless.schedule_remove()
            log.append("resumed")
        except BaseException as e:
            log.append(type(e).__name__)
            raise
        finally:
            log.append("finally")

    t = tasklet(body)()
    stackless.run()
    assert t.paused
    return t


# -- finished tasklets --------------------------------------------------------------------------


def test_a_finished_tasklet_is_freed_without_a_gc_pass() -> None:
    def make() -> tasklet:
        t = tasklet(lambda: None)()
        stackless.run()
        assert not t.alive
        return t

    assert freed_without_gc(make)


def test_a_tasklet_that_switched_and_finished_is_freed_without_a_gc_pass() -> None:
    def make() -> tasklet:
        ch = channel()

        def body() -> None:
            stackless.schedule()
            ch.send(stackless.getcurrent())
            stackless.schedule_remove()

        t: tasklet = tasklet(body)()
        got: tasklet = ch.receive()
        assert got is t
        del got
        stackless.schedule()
        assert t.paused
        t.insert()
        stackless.run()
        assert not t.alive
        return t

    assert freed_without_gc(make)


def test_a_tasklet_that_waited_in_txgreen_calls_is_freed_without_a_gc_pass() -> None:
    def make() -> tasklet:
        d: Deferred[int] = Deferred()

        def body() -> None:
            assert txgreen.block_on(d) == 1
            txgreen.sleep(0.001)

        t = tasklet(body)()
        _reactor().callLater(0.001, d.callback, 1)
        stackless.run()
        assert not t.alive
        return t

    assert freed_without_gc(make)


def test_a_tasklet_killed_while_paused_is_freed_without_a_gc_pass() -> None:
    log: list[str] = []

    def make() -> tasklet:
        t = paused_tasklet(log)
        t.kill()
        assert not t.alive
        return t

    assert freed_without_gc(make)
    assert log == ["TaskletExit", "finally"]


def test_a_tasklet_killed_while_runnable_is_freed_without_a_gc_pass() -> None:
    def make() -> tasklet:
        def body() -> None:
            while True:
                stackless.schedule()

        t = tasklet(body)()
        stackless.schedule()
        t.kill()
        assert not t.alive
        return t

    assert freed_without_gc(make)


def test_a_tasklet_killed_before_it_started_is_freed_without_a_gc_pass() -> None:
    def make() -> tasklet:
        t = tasklet(lambda: None)()
        t.kill()
        assert not t.alive
        return t

    assert freed_without_gc(make)


def test_a_tasklet_whose_error_was_handled_is_freed_without_a_gc_pass() -> None:
    def make() -> tasklet:
        def body() -> None:
            stackless.schedule()
            raise Boom("in a tasklet")

        t = tasklet(body)()
        with pytest.raises(Boom):
            stackless.run()
        assert not t.alive
        return t

    assert freed_without_gc(make)


def test_a_tasklet_set_up_and_never_run_is_freed_without_a_gc_pass() -> None:
    def make() -> tasklet:
        return tasklet(lambda: None).bind(None, ())

    assert freed_without_gc(make)


# -- dropped paused tasklets ----------------------------------------------------------------


def test_a_dropped_tasklet_paused_by_schedule_remove_gets_tasklet_exit_at_once() -> None:
    log: list[str] = []
    with no_gc():
        t = paused_tasklet(log)
        assert t.tempval is t  # schedule_remove()'s default retval, without holding itself
        ref = weakref.ref(t)
        del t
        log.append("dropped")
        assert ref() is None
    assert log == ["TaskletExit", "finally", "dropped"]


def test_a_tasklet_removed_after_it_started_and_dropped_gets_tasklet_exit() -> None:
    log: list[str] = []

    def body() -> None:
        try:
            while True:
                log.append("runs")
                stackless.schedule()
        finally:
            log.append("finally")

    with no_gc():
        t = tasklet(body)()
        stackless.schedule()
        assert t.scheduled
        t.remove()
        assert t.paused
        ref = weakref.ref(t)
        del t
        log.append("dropped")
        assert ref() is None
    assert log == ["runs", "finally", "dropped"]


def test_a_tasklet_paused_by_switch_and_dropped_gets_tasklet_exit() -> None:
    log: list[str] = []
    main = stackless.getcurrent()

    def body() -> None:
        try:
            main.switch()
            log.append("resumed")
        finally:
            log.append("finally")

    with no_gc():
        t = tasklet(body)()
        stackless.run()  # t runs, switches back to the main tasklet and is paused
        assert t.paused
        ref = weakref.ref(t)
        del t
        assert ref() is None
    assert log == ["finally"]


def test_a_paused_tasklet_dropped_in_a_reactor_callback_gets_tasklet_exit() -> None:
    log: list[str] = []
    holder = [paused_tasklet(log)]
    ref = weakref.ref(holder[0])
    done: Deferred[None] = Deferred()

    def drop() -> None:
        with no_gc():
            holder.clear()  # in the hub
            log.append("dropped")
        done.callback(None)

    _reactor().callLater(0, drop)
    txgreen.block_on(done)
    assert ref() is None
    assert log == ["TaskletExit", "finally", "dropped"]


def test_a_dropped_tasklet_that_waits_again_while_unwinding_is_killed_again() -> None:
    # Stackless kills a deallocated tasklet until it is dead.
    log: list[str] = []

    def body() -> None:
        try:
            stackless.schedule_remove()
        finally:
            try:
                stackless.schedule()
            except TaskletExit:
                log.append("killed again")

    with no_gc():
        t = tasklet(body)()
        stackless.run()
        ref = weakref.ref(t)
        del t
        assert ref() is None
    assert log == ["killed again"]


def test_a_dropped_tasklet_that_sleeps_while_unwinding_gets_tasklet_exit_there() -> None:
    log: list[str] = []

    def body() -> None:
        try:
            stackless.schedule_remove()
        finally:
            try:
                txgreen.sleep(1)
            except TaskletExit:
                log.append("killed again")

    with no_gc():
        t = tasklet(body)()
        stackless.run()
        ref = weakref.ref(t)
        del t
        log.append("dropped")
        assert ref() is None
    assert log == ["killed again", "dropped"]


def test_an_error_raised_by_a_dropped_tasklet_while_unwinding_is_logged() -> None:
    def body() -> None:
        try:
            stackless.schedule_remove()
        finally:
            raise Boom("while unwinding")

    wanted = "Unhandled error in tasklet"
    with log_events(lambda e: wanted in (e.get("log_format") or "")) as ev:
        t = tasklet(body)()
        stackless.run()
        del t
        stackless.run()  # nothing was raised in the main tasklet
    assert len(ev) == 1
    assert isinstance(ev[0]["log_failure"].value, Boom)


def test_a_dropped_tasklet_whose_wake_up_is_already_queued_is_killed() -> None:
    # Its wait was completed (as by an expiring txgreen.Timeout) and the hub has yet to
    # switch into it when it is dropped: it gets TaskletExit, and the queued wake-up is void.
    log: list[str] = []
    t = paused_tasklet(log)
    w = t._waiter
    assert w is not None
    w.resume_later(None, Boom("queued"))
    ref = weakref.ref(t)
    del t, w
    assert ref() is None
    assert log == ["TaskletExit", "finally"]
    txgreen.sleep(0)  # the hub runs the queued wake-up: nothing happens
    txgreen.sleep(0.001)
    assert log == ["TaskletExit", "finally"]


def test_a_dropped_tasklet_paused_under_a_timeout_is_killed_and_its_timer_cancelled() -> None:
    log: list[str] = []

    def body() -> None:
        try:
            with txgreen.Timeout(0.001):
                stackless.schedule_remove()
        except BaseException as e:
            log.append(type(e).__name__)

    t = tasklet(body)()
    stackless.run()
    del t
    assert log == ["TaskletExit"]
    txgreen.sleep(0.005)
    assert log == ["TaskletExit"]


def test_a_tasklet_nobody_holds_that_pauses_itself_gets_tasklet_exit_there() -> None:
    # As in Stackless: removed from the runnables, nothing refers to it any more.
    log: list[str] = []

    def body() -> None:
        try:
            stackless.schedule()
            log.append("pauses")
            stackless.schedule_remove()
            log.append("resumed")
        except TaskletExit:
            log.append("TaskletExit")
            raise

    ref = weakref.ref(tasklet(body)())
    with no_gc():
        stackless.run()
        assert ref() is None
    assert log == ["pauses", "TaskletExit"]


def test_a_tasklet_nobody_holds_that_switches_away_gets_tasklet_exit_there() -> None:
    log: list[str] = []
    main = stackless.getcurrent()

    def body() -> None:
        try:
            main.switch()
        except TaskletExit:
            log.append("TaskletExit")
            raise

    ref = weakref.ref(tasklet(body)())
    with no_gc():
        stackless.run()
        stackless.run()
        assert ref() is None
    assert log == ["TaskletExit"]


def test_a_paused_tasklet_in_a_cycle_of_its_own_gets_tasklet_exit_from_the_gc() -> None:
    log: list[str] = []
    with no_gc():
        t = paused_tasklet(log)
        t.tempval = [t]  # a cycle that only the garbage collector can find
        ref = weakref.ref(t)
        del t
        assert ref() is not None
        assert log == []
    gc.collect()  # (it must not switch greenlets: the hub kills the tasklet)
    txgreen.sleep(0.001)
    assert log == ["TaskletExit", "finally"]
    gc.collect()
    assert ref() is None


def test_many_dropped_paused_tasklets_leave_nothing_behind_in_the_hub() -> None:
    from txgreen._hub import get_hub

    hub = get_hub()
    log: list[str] = []
    parked_before = len(hub._parked)
    with no_gc():
        held = [paused_tasklet(log) for _ in range(50)]
        refs = [weakref.ref(t) for t in held]
        assert len(hub._parked) == parked_before + 50
        held.clear()
        assert all(r() is None for r in refs)
    assert log == ["TaskletExit", "finally"] * 50
    assert len(hub._parked) == parked_before
    assert not hub._pending


# -- what keeps a tasklet alive, as in Stackless -------------------------------------------------


def test_a_paused_tasklet_that_is_still_referenced_is_not_killed() -> None:
    log: list[str] = []
    t = paused_tasklet(log)
    ref = weakref.ref(t)
    gc.collect()
    txgreen.sleep(0.001)
    assert log == []
    t.insert()
    del t
    stackless.run()
    assert log == ["resumed", "finally"]
    assert ref() is None


def test_getcurrent_is_the_tasklet_object_its_creator_holds_across_pauses() -> None:
    seen: list[bool] = []
    holder: list[tasklet] = []

    def body() -> None:
        for _ in range(3):
            seen.append(stackless.getcurrent() is holder[0])
            stackless.schedule_remove()

    holder.append(tasklet(body)())
    for _ in range(3):
        stackless.run()
        holder[0].insert()
    stackless.run()
    assert seen == [True, True, True]
    assert not holder[0].alive


def test_a_dropped_runnable_tasklet_still_runs() -> None:
    log: list[str] = []

    def body() -> None:
        stackless.schedule()
        log.append("ran")

    t = tasklet(body)()
    stackless.schedule()
    del t
    with no_gc():
        stackless.run()
    assert log == ["ran"]


def test_a_dropped_tasklet_blocked_on_a_live_channel_still_receives() -> None:
    log: list[Any] = []
    ch = channel()

    def body() -> None:
        log.append(ch.receive())

    t = tasklet(body)()
    stackless.run()
    del t
    with no_gc():
        gc.collect()
        assert ch.balance == -1
        ch.send("value")
    assert log == ["value"]


def test_a_dropped_tasklet_waiting_in_a_txgreen_call_still_wakes_up() -> None:
    log: list[str] = []

    def body() -> None:
        txgreen.sleep(0.002)
        log.append("woke")

    t = tasklet(body)()
    stackless.schedule()
    assert t.blocked
    del t
    with no_gc():
        stackless.run()  # waits for it: it waits in a txgreen call
    assert log == ["woke"]


@pytest.mark.xfail(
    strict=True,
    reason="greenlet never collects a suspended greenlet's frames: a tasklet blocked on a "
    "channel that only its own frames hold is never freed (docs/migrating.md)",
)
def test_a_tasklet_blocked_on_a_channel_dropped_with_it_gets_tasklet_exit() -> None:
    log: list[str] = []

    def make() -> None:
        ch = channel()

        def body() -> None:
            try:
                ch.receive()
            finally:
                log.append("finally")

        tasklet(body)()
        stackless.run()
        assert ch.balance == -1

    make()
    gc.collect()
    assert log == ["finally"]


# -- green threads that were main tasklets ----------------------------------------------------


def test_a_green_thread_that_used_stackless_is_freed_without_a_gc_pass() -> None:
    def work() -> int:
        log: list[str] = []
        ch = channel()
        tasklet(lambda: log.append(ch.receive()))()
        stackless.schedule()
        ch.send("x")
        stackless.run()
        assert log == ["x"]
        return 1

    with no_gc():
        gt = txgreen.spawn(work)
        assert gt.get() == 1
        ref = weakref.ref(gt)
        del gt
        assert ref() is None


def test_a_tasklet_that_outlives_its_green_thread_still_runs_without_its_main() -> None:
    ch = channel()
    seen: list[Any] = []

    def body() -> None:
        ch.receive()
        try:
            stackless.getmain()
        except RuntimeError as e:
            seen.append(e)

    def work() -> None:
        tasklet(body)()
        stackless.schedule()  # body blocks on ch

    gt = txgreen.spawn(work)
    gt.join()
    ref = weakref.ref(gt)
    del gt
    with no_gc():
        assert ref() is None  # and with it the main tasklet of body's scheduler
        ch.send("go")
        txgreen.sleep(0)
    assert len(seen) == 1
    assert "green thread has ended" in str(seen[0])
