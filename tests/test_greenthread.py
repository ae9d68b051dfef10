"""``GreenThread``: join, get, kill, state, links, ``to_deferred``, the log of unretrieved
exceptions and ``repr``.

Starting threads (``spawn``, ``spawn_later``, ``sleep``) is in test_spawn_sleep.py.
KeyboardInterrupt/SystemExit in a green thread stops the reactor, so it is tested in
subprocesses elsewhere, never here.
"""

from __future__ import annotations

import functools
import gc
import re
import subprocess
import sys
import textwrap
import traceback
import weakref
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any, NoReturn

import pytest
from twisted.internet import defer, reactor, task
from twisted.internet.defer import CancelledError, Deferred
from twisted.logger import LogEvent, formatEvent
from twisted.python.failure import Failure

import txgreen
from support import Boom, in_reactor_callback, log_events
from txgreen import GreenletExit, GreenThread

R: Any = reactor  # the installed reactor, untyped (its module is typed as a plain module)


def explode(exc: BaseException) -> NoReturn:
    raise exc


def tb_names(tb: Any) -> list[str]:
    return [frame.name for frame in traceback.extract_tb(tb)]


def exit_value(gt: GreenThread[Any]) -> bool:
    """True if ``gt`` ended by a plain GreenletExit kill: its value is that GreenletExit."""
    value: object = gt.value
    return type(value) is GreenletExit and gt.successful() and gt.exception is None


def blocker(cancelled: list[str] | None = None) -> Deferred[Any]:
    """A Deferred nobody fires; its canceller records that it was cancelled."""

    def canceller(d: Deferred[Any]) -> None:
        if cancelled is not None:
            cancelled.append("cancelled")

    return Deferred(canceller)


def spawn_blocked(cancelled: list[str], steps: list[str]) -> GreenThread[None]:
    """A thread that has started and is blocked on ``blocker(cancelled)``; it adds "after
    block_on" to ``steps`` if that wait ever returns, and "finally" when it ends."""

    def work() -> None:
        try:
            txgreen.block_on(blocker(cancelled))
            steps.append("after block_on")
        finally:
            steps.append("finally")

    gt = txgreen.spawn(work)
    txgreen.sleep(0)
    return gt


def txgreen_failures() -> AbstractContextManager[list[LogEvent]]:
    """Collect the failures txgreen logs (its namespace, with a ``log_failure``)."""
    return log_events(lambda e: e.get("log_namespace") == "txgreen" and "log_failure" in e)


def collect_garbage(ref: Callable[[], object] | None = None) -> None:
    """Collect garbage until ``ref`` is dead (a few rounds at most)."""
    for _ in range(3):
        # The hub may hold a just-finished thread in a frame until it gets its next turn.
        txgreen.sleep(0)
        gc.collect()
        if ref is None or ref() is None:
            return


def about(events: list[LogEvent], exc: BaseException) -> list[LogEvent]:
    return [e for e in events if e["log_failure"].value is exc]


# -- join --------------------------------------------------------------------------------------


def test_join_waits_for_the_end() -> None:
    gate: Deferred[None] = Deferred()
    steps: list[str] = []

    def work() -> None:
        txgreen.block_on(gate)
        steps.append("done")

    gt = txgreen.spawn(work)
    R.callLater(0, gate.callback, None)
    assert gt.join() is True
    assert steps == ["done"]
    assert gt.dead


def test_join_of_a_dead_thread_returns_at_once_without_switching() -> None:
    gt = txgreen.spawn(lambda: 1)
    gt.join()
    ran: list[str] = []
    other = txgreen.spawn(ran.append, "other")
    assert gt.join() is True
    assert gt.join(timeout=0) is True
    assert ran == []  # no switch happened
    other.join()
    assert ran == ["other"]


def test_join_timeout_returns_false_and_leaves_no_link() -> None:
    cancelled: list[str] = []
    gt = txgreen.spawn(txgreen.block_on, blocker(cancelled))
    start = R.seconds()
    assert gt.join(timeout=0.02) is False
    assert R.seconds() >= start + 0.02
    assert not gt.dead
    assert cancelled == []  # a join timeout does not touch the thread
    # The timed-out join's waiter is no longer linked to the thread.
    assert gt._links == []
    assert gt.join(timeout=0) is False
    assert gt._links == []
    gt.kill()
    assert gt.join(timeout=0.02) is True
    assert cancelled == ["cancelled"]


def test_join_timeout_true_when_the_thread_ends_in_time() -> None:
    gt = txgreen.spawn(txgreen.sleep, 0.01)
    assert gt.join(timeout=5) is True  # the leak check verifies the 5 s timer is gone
    assert gt.dead


def test_join_inside_an_enclosing_timeout_raises_that_timeout() -> None:
    gt = txgreen.spawn(txgreen.block_on, blocker())
    outer = txgreen.Timeout(0.01)
    with pytest.raises(txgreen.Timeout) as excinfo, outer:
        gt.join(timeout=5)
    assert excinfo.value is outer  # not swallowed into a False return
    assert gt._links == []
    gt.kill()
    assert gt.dead


def test_join_of_itself_raises() -> None:
    box: list[GreenThread[None]] = []

    def work() -> None:
        box[0].join()

    gt = txgreen.spawn(work)
    box.append(gt)
    with pytest.raises(RuntimeError, match=r"^a green thread cannot join itself"):
        gt.get()


@pytest.mark.in_hub
def test_join_and_get_in_the_hub_raise() -> Deferred[None]:
    gt = txgreen.spawn(lambda: 5)
    with pytest.raises(txgreen.BlockingInHubError) as excinfo:
        gt.join()
    assert str(excinfo.value).startswith("GreenThread.join() was called from the hub")
    with pytest.raises(txgreen.BlockingInHubError):
        gt.get()

    def check(value: int) -> None:
        assert value == 5
        assert gt.join() is True  # a dead thread: nothing to wait for, fine in the hub
        assert gt.get() == 5

    return gt.to_deferred().addCallback(check).addTimeout(5, R)


def test_many_joiners_all_wake() -> None:
    gate: Deferred[None] = Deferred()
    target = txgreen.spawn(txgreen.block_on, gate)
    joiners = [txgreen.spawn(target.join) for _ in range(5)]
    getters = [txgreen.spawn(target.get) for _ in range(5)]
    txgreen.sleep(0)
    gate.callback(None)
    assert [j.get() for j in joiners] == [True] * 5
    assert [g.get() for g in getters] == [None] * 5


@pytest.mark.single_reactor
def test_join_chain_does_not_recurse_in_the_hub() -> None:
    # Each thread joins the previous one: waking a long chain of joiners must not nest the
    # hub's stack.  Run in a subprocess: a RecursionError in the hub would break the reactor
    # every other test shares.
    script = textwrap.dedent(
        """
        from twisted.internet import defer
        import txgreen

        def main():
            first = defer.Deferred()

            def step(prev):
                if prev is None:
                    txgreen.block_on(first)
                    return 0
                return prev.get() + 1

            prev = None
            for _ in range(2000):
                prev = txgreen.spawn(step, prev)
            txgreen.sleep(0)
            first.callback(None)
            return prev.get(timeout=2)

        print(txgreen.run(main))
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60
    )
    assert "RecursionError" not in proc.stderr
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "1999\n"
    assert proc.stderr == ""


# -- get ---------------------------------------------------------------------------------------


def test_get_returns_the_result_every_time() -> None:
    result = object()
    gt = txgreen.spawn(lambda: result)
    assert gt.get() is result
    assert gt.get() is result
    assert gt.get(timeout=1) is result


def test_get_raises_the_exception_with_its_original_traceback() -> None:
    err = Boom("failed in the thread")
    gt = txgreen.spawn(explode, err)
    with pytest.raises(Boom) as first:
        gt.get()
    assert first.value is err
    names = tb_names(first.value.__traceback__)
    assert "explode" in names
    assert "test_get_raises_the_exception_with_its_original_traceback" in names
    with pytest.raises(Boom) as second:
        gt.get()
    assert second.value is err


def test_get_timeout_raises_txgreen_timeout() -> None:
    cancelled: list[str] = []
    gt = txgreen.spawn(txgreen.block_on, blocker(cancelled))
    with pytest.raises(txgreen.Timeout) as excinfo:
        gt.get(timeout=0.01)
    assert isinstance(excinfo.value, TimeoutError)
    assert str(excinfo.value) == "timed out after 0.01 seconds"
    assert not gt.dead
    assert cancelled == []
    assert gt._links == []
    gt.kill()
    assert cancelled == ["cancelled"]


def test_get_timeout_returns_a_result_that_arrives_in_time() -> None:
    gt = txgreen.spawn(lambda: txgreen.block_on(task.deferLater(R, 0.01, lambda: "late")))
    assert gt.get(timeout=5) == "late"


# -- kill --------------------------------------------------------------------------------------


def test_kill_a_blocked_thread() -> None:
    cancelled: list[str] = []
    steps: list[str] = []
    gt = spawn_blocked(cancelled, steps)
    assert steps == []
    gt.kill()
    # block=True: by the time kill() returns the thread is dead.
    assert gt.dead
    assert steps == ["finally"]
    assert cancelled == ["cancelled"]  # the Deferred it was waiting on is cancelled
    assert gt.successful()
    assert exit_value(gt)
    assert gt.exception is None
    assert gt.get() is gt.value


def test_kill_without_blocking_returns_before_the_thread_ends() -> None:
    steps: list[str] = []

    def work() -> None:
        try:
            txgreen.block_on(blocker())
        finally:
            steps.append("finally")

    gt = txgreen.spawn(work)
    txgreen.sleep(0)
    gt.kill(block=False)
    assert not gt.dead  # the kill is delivered by the hub, after the killer blocks
    assert steps == []
    assert gt.join() is True
    assert steps == ["finally"]
    assert isinstance(gt.value, GreenletExit)


def test_kill_a_thread_that_has_not_started() -> None:
    ran: list[str] = []
    gt = txgreen.spawn(ran.append, "ran")
    gt.kill(block=False)
    assert gt.dead  # at once, even without blocking
    assert gt.ready()
    assert gt.successful()
    assert exit_value(gt)
    txgreen.sleep(0)
    assert ran == []  # it never runs


def test_kill_a_not_started_thread_wakes_its_joiners_and_links() -> None:
    ran: list[str] = []
    target = txgreen.spawn_later(30, ran.append, "ran")
    seen: list[GreenThread[None]] = []
    target.link(seen.append)
    getter = txgreen.spawn(target.get)
    txgreen.sleep(0)  # getter waits in target.get()
    target.kill(ValueError("never started"))
    assert target.dead
    with pytest.raises(ValueError, match=r"^never started$"):
        getter.get()
    assert seen == [target]
    assert ran == []
    assert isinstance(target.exception, ValueError)


def test_kill_a_runnable_thread_is_delivered_at_its_next_blocking_call() -> None:
    first: Deferred[int] = Deferred()
    steps: list[object] = []

    def work() -> None:
        steps.append(txgreen.block_on(first))
        total = sum(range(1000))  # busy, not blocking: the kill waits
        steps.append(total)
        txgreen.sleep(0)
        steps.append("after the next blocking call")

    gt = txgreen.spawn(work)
    txgreen.sleep(0)
    first.callback(5)  # the thread is now runnable, not yet running
    gt.kill()
    assert gt.dead
    assert steps == [5, sum(range(1000))]
    assert isinstance(gt.value, GreenletExit)


def test_kill_runnable_thread_that_ends_without_blocking() -> None:
    first: Deferred[int] = Deferred()

    def work() -> str:
        txgreen.block_on(first)
        return "finished"

    gt = txgreen.spawn(work)
    txgreen.sleep(0)
    first.callback(5)
    gt.kill()
    # No blocking call came, so the kill never landed: the thread ended normally.
    assert gt.dead
    assert gt.get() == "finished"
    ref = weakref.ref(gt)
    del gt
    collect_garbage(ref)
    assert ref() is None  # and nothing keeps the dead thread alive


def test_kill_with_an_exception_class() -> None:
    gt = txgreen.spawn(txgreen.block_on, blocker())
    txgreen.sleep(0)
    gt.kill(Boom)
    assert gt.dead
    assert not gt.successful()
    assert gt.value is None
    exc = gt.exception
    assert type(exc) is Boom
    with pytest.raises(Boom) as excinfo:
        gt.get()
    assert excinfo.value is exc


def test_kill_with_an_exception_instance() -> None:
    err = Boom("killed with this one")
    gt = txgreen.spawn(txgreen.block_on, blocker())
    txgreen.sleep(0)
    gt.kill(err)
    assert gt.exception is err
    with pytest.raises(Boom) as excinfo:
        gt.get()
    assert excinfo.value is err
    assert "block_on" in tb_names(err.__traceback__)  # raised where the thread was waiting


def test_kill_that_the_thread_catches() -> None:
    def work() -> str:
        try:
            txgreen.block_on(blocker())
        except GreenletExit:
            return "caught the kill"
        return "not killed"

    gt = txgreen.spawn(work)
    txgreen.sleep(0)
    gt.kill()
    assert gt.dead
    assert gt.value == "caught the kill"


def test_kill_timeout_when_the_thread_swallows_the_kill() -> None:
    second: Deferred[None] = Deferred()
    steps: list[str] = []

    def stubborn() -> str:
        try:
            txgreen.block_on(blocker())
        except GreenletExit:
            steps.append("ignored the kill")
        txgreen.block_on(second)
        return "ended later"

    gt = txgreen.spawn(stubborn)
    txgreen.sleep(0)
    start = R.seconds()
    gt.kill(timeout=0.02)
    assert R.seconds() >= start + 0.02
    assert not gt.dead
    assert steps == ["ignored the kill"]
    second.callback(None)
    assert gt.get() == "ended later"


def test_kill_of_a_dead_thread_is_a_no_op() -> None:
    gt = txgreen.spawn(lambda: 7)
    assert gt.get() == 7
    gt.kill()
    gt.kill(Boom("too late"))
    gt.kill(block=False)
    assert gt.successful()
    assert gt.value == 7
    assert gt.exception is None

    err = Boom("original")
    failed = txgreen.spawn(explode, err)
    failed.join()
    failed.kill(ValueError("too late"))
    assert failed.exception is err


def test_kill_of_itself_raises_in_the_caller() -> None:
    box: list[GreenThread[str]] = []
    caught: list[BaseException] = []

    def work() -> str:
        try:
            box[0].kill(Boom("me"))
        except Boom as e:
            caught.append(e)
        box[0].kill()  # default GreenletExit, not caught: ends the thread
        return "not reached"

    gt = txgreen.spawn(work)
    box.append(gt)
    assert gt.join() is True
    assert [str(e) for e in caught] == ["me"]
    assert gt.successful()
    assert exit_value(gt)


def test_kill_a_thread_waiting_in_join_unlinks_its_waiter() -> None:
    target = txgreen.spawn(txgreen.block_on, blocker())
    joiner = txgreen.spawn(target.join)
    txgreen.sleep(0)
    assert len(target._links or []) == 1
    joiner.kill()
    assert joiner.dead
    assert target._links == []
    target.kill()


@pytest.mark.in_hub
def test_kill_from_the_hub_never_waits() -> Deferred[None]:
    ran: list[str] = []
    unstarted = txgreen.spawn(ran.append, "ran")
    unstarted.kill()  # not started: dead at once, from the hub too
    assert unstarted.dead
    assert isinstance(unstarted.value, GreenletExit)

    blocked = txgreen.spawn(txgreen.block_on, blocker())

    def kill_it() -> Deferred[None]:
        blocked.kill(Boom("from the hub"))  # block=True, but the hub never waits
        return blocked.to_deferred()

    def unexpected(value: object) -> None:
        raise AssertionError(f"the killed thread succeeded with {value!r}")

    def check(failure: Failure) -> None:
        assert isinstance(failure.value, Boom)
        assert str(failure.value) == "from the hub"
        assert ran == []

    return in_reactor_callback(kill_it).addCallbacks(unexpected, check).addTimeout(5, R)


def test_greenletexit_kill_counts_as_success_and_is_documented() -> None:
    gt = txgreen.spawn(txgreen.block_on, blocker())
    txgreen.sleep(0)
    gt.kill()
    assert gt.successful() is True
    assert isinstance(gt.value, GreenletExit)
    assert gt.exception is None
    # gevent's convention, spelled out where people look.
    assert "GreenletExit" in (GreenThread.successful.__doc__ or "")


def test_greenletexit_value_is_documented() -> None:
    doc = (GreenThread.value.__doc__ or "") + (GreenThread.kill.__doc__ or "")
    assert "GreenletExit" in doc


# -- state -------------------------------------------------------------------------------------


def state(gt: GreenThread[Any]) -> tuple[bool, bool, bool, object, BaseException | None]:
    """``(dead, ready(), successful(), value, exception)``."""
    return gt.dead, gt.ready(), gt.successful(), gt.value, gt.exception


def test_state_of_a_thread_through_its_life() -> None:
    gate: Deferred[str] = Deferred()
    inside: list[tuple[bool, bool, bool]] = []
    box: list[GreenThread[str]] = []

    def work() -> str:
        me = box[0]
        inside.append((me.dead, me.ready(), me.successful()))
        return txgreen.block_on(gate)

    gt = txgreen.spawn(work)
    box.append(gt)
    # Not started yet.
    assert state(gt) == (False, False, False, None, None)
    txgreen.sleep(0)
    assert inside == [(False, False, False)]
    # Started and waiting.
    assert state(gt) == (False, False, False, None, None)
    gate.callback("result")
    gt.join()
    assert state(gt) == (True, True, True, "result", None)


def test_state_of_a_failed_thread() -> None:
    err = Boom("bad")
    gt = txgreen.spawn(explode, err)
    gt.join()
    assert gt.dead
    assert gt.ready()
    assert not gt.successful()
    assert gt.value is None
    assert gt.exception is err


def test_green_thread_is_a_greenlet() -> None:
    import greenlet

    gt = txgreen.spawn(lambda: None)
    assert isinstance(gt, greenlet.greenlet)
    gt.join()


# -- link / unlink -----------------------------------------------------------------------------


def test_link_is_called_in_the_hub_after_death_in_order() -> None:
    calls: list[tuple[str, GreenThread[int], bool, bool]] = []
    hub = txgreen.get_hub()

    def make(name: str) -> Callable[[GreenThread[int]], None]:
        def cb(g: GreenThread[int]) -> None:
            calls.append((name, g, hub.in_hub(), g.dead))

        return cb

    gate: Deferred[int] = Deferred()
    gt = txgreen.spawn(txgreen.block_on, gate)
    gt.link(make("first"))
    gt.link(make("second"))
    txgreen.sleep(0)
    assert calls == []
    gate.callback(3)
    gt.join()
    txgreen.sleep(0)
    assert calls == [("first", gt, True, True), ("second", gt, True, True)]


def test_link_on_a_dead_thread_is_called_soon_not_at_once() -> None:
    gt = txgreen.spawn(lambda: 1)
    gt.join()
    calls: list[tuple[GreenThread[int], bool]] = []
    gt.link(lambda g: calls.append((g, txgreen.get_hub().in_hub())))
    assert calls == []
    txgreen.sleep(0)
    assert calls == [(gt, True)]


def test_link_of_a_failed_thread_sees_the_exception() -> None:
    err = Boom("for the link")
    seen: list[BaseException | None] = []
    gt = txgreen.spawn(explode, err)
    gt.link(lambda g: seen.append(g.exception))
    gt.join()
    txgreen.sleep(0)
    assert seen == [err]


def test_link_callback_exception_is_logged_not_raised() -> None:
    err = Boom("in a link callback")
    calls: list[str] = []

    def bad(g: GreenThread[int]) -> None:
        raise err

    with txgreen_failures() as events:
        gt = txgreen.spawn(lambda: 9)
        gt.link(bad)
        gt.link(lambda g: calls.append("next link"))
        assert gt.get() == 9  # the joiner is not disturbed
        txgreen.sleep(0)
        assert calls == ["next link"]
        [event] = about(events, err)
    text = formatEvent(event)
    assert "error in link callback" in text
    assert repr(gt) in text
    assert "bad" in event["log_failure"].getTraceback()


def test_unlink() -> None:
    calls: list[str] = []

    def first(g: GreenThread[None]) -> None:
        calls.append("first")

    def second(g: GreenThread[None]) -> None:
        calls.append("second")

    gt = txgreen.spawn(txgreen.sleep, 0)
    gt.link(first)
    gt.link(second)
    gt.unlink(first)
    gt.unlink(first)  # not linked any more: no error
    gt.unlink(lambda g: None)  # never linked: no error
    gt.join()
    txgreen.sleep(0)
    assert calls == ["second"]
    gt.unlink(second)  # after death: no error
    assert calls == ["second"]


# -- to_deferred -------------------------------------------------------------------------------


def test_to_deferred_fires_with_the_result() -> None:
    gate: Deferred[str] = Deferred()
    gt = txgreen.spawn(txgreen.block_on, gate)
    d = gt.to_deferred()
    assert not d.called
    gate.callback("value")
    assert txgreen.block_on(d) == "value"


def test_to_deferred_of_a_dead_thread_fires_soon() -> None:
    gt = txgreen.spawn(lambda: "value")
    gt.join()
    d = gt.to_deferred()
    results: list[str] = []
    d.addCallback(results.append)
    txgreen.sleep(0)
    assert results == ["value"]


def test_to_deferred_errbacks_with_the_failure() -> None:
    err = Boom("to the errback")
    gt = txgreen.spawn(explode, err)
    failures: list[Failure] = []
    gt.to_deferred().addErrback(failures.append)
    gt.join()
    txgreen.sleep(0)
    [failure] = failures
    assert failure.value is err
    assert isinstance(failure.value, Boom)
    assert "explode" in failure.getTraceback()


def test_to_deferred_failure_raised_by_block_on_keeps_the_traceback() -> None:
    err = Boom("through block_on")
    gt = txgreen.spawn(explode, err)
    with pytest.raises(Boom) as excinfo:
        txgreen.block_on(gt.to_deferred())
    assert excinfo.value is err
    assert "explode" in tb_names(excinfo.value.__traceback__)


def test_cancelling_to_deferred_kills_the_thread() -> None:
    cancelled: list[str] = []
    steps: list[str] = []
    gt = spawn_blocked(cancelled, steps)
    d = gt.to_deferred()
    d.cancel()
    with pytest.raises(CancelledError):
        txgreen.block_on(d)
    gt.join()
    assert steps == ["finally"]
    assert cancelled == ["cancelled"]
    assert gt.successful()
    assert isinstance(gt.value, GreenletExit)


def test_cancelling_to_deferred_of_a_not_started_thread() -> None:
    ran: list[str] = []
    gt = txgreen.spawn(ran.append, "ran")
    d = gt.to_deferred()
    d.cancel()
    assert gt.dead
    with pytest.raises(CancelledError):
        txgreen.block_on(d)
    txgreen.sleep(0)
    assert ran == []


def test_cancelling_to_deferred_after_the_end_changes_nothing() -> None:
    gt = txgreen.spawn(lambda: "done")
    d = gt.to_deferred()
    gt.join()
    txgreen.sleep(0)
    d.cancel()
    assert txgreen.block_on(d) == "done"
    assert gt.value == "done"


def _cancel_in_hub(gt: GreenThread[Any]) -> list[object]:
    """From a reactor callback, cancel ``gt.to_deferred()``; what it fired with at once."""

    def cancel() -> Deferred[list[object]]:
        assert txgreen.get_hub().in_hub()
        d = gt.to_deferred()
        d.cancel()
        outcome: list[object] = []
        d.addBoth(outcome.append)
        return defer.succeed(outcome)

    return txgreen.block_on(in_reactor_callback(cancel))


def test_to_deferred_cancel_from_hub_of_a_blocked_thread() -> None:
    cancelled: list[str] = []
    gt = txgreen.spawn(txgreen.block_on, blocker(cancelled))
    txgreen.sleep(0)
    [outcome] = _cancel_in_hub(gt)
    gt.join()
    assert cancelled == ["cancelled"]
    assert isinstance(outcome, Failure), outcome
    assert isinstance(outcome.value, CancelledError)


def test_to_deferred_cancel_from_hub_of_a_not_started_thread() -> None:
    ran: list[str] = []
    gt = txgreen.spawn_later(30, ran.append, "ran")
    [outcome] = _cancel_in_hub(gt)
    gt.join()
    assert ran == []
    assert isinstance(outcome, Failure), outcome
    assert isinstance(outcome.value, CancelledError)


# -- unretrieved exceptions --------------------------------------------------------------------
#
# The tests never keep the exception itself: its traceback holds the thread's frames and so
# the thread, which is what has to be garbage-collected for the report to happen.  They match
# log events by message instead, and check through a weakref that the thread was collected
# (otherwise "nothing was logged" would prove nothing).


def logged(events: list[LogEvent], message: str) -> list[LogEvent]:
    return [e for e in events if str(e["log_failure"].value) == message]


def logged_once_collected(make: Callable[[], GreenThread[Any]], message: str) -> list[LogEvent]:
    """What txgreen logs about ``message`` while ``make()`` runs and then once the thread it
    returns is garbage-collected (``make`` keeps no reference to it: its locals are gone)."""
    with txgreen_failures() as events:
        ref = weakref.ref(make())
        collect_garbage(ref)
        assert ref() is None
    return logged(events, message)


def test_unretrieved_exception_is_logged_with_its_traceback() -> None:
    message = "nobody looked (logged)"
    names: list[str] = []

    def make() -> GreenThread[Any]:
        gt = txgreen.spawn(explode, Boom(message))
        assert gt.join() is True
        names.append(gt.name)
        return gt

    [event] = logged_once_collected(make, message)
    [name] = names
    failure = event["log_failure"]
    assert isinstance(failure, Failure)
    assert type(failure.value) is Boom
    assert "explode" in failure.getTraceback()
    text = formatEvent(event)
    assert text.startswith(f"Unhandled error in green thread <GreenThread {name} failed at 0x")


def test_unretrieved_exception_is_not_logged_while_the_thread_is_alive() -> None:
    message = "nobody looked yet"

    def make() -> GreenThread[Any]:
        with txgreen_failures() as events:
            gt = txgreen.spawn(explode, Boom(message))
            gt.join()
            collect_garbage()
        assert logged(events, message) == []
        exc = gt.exception  # now retrieved: never logged
        assert isinstance(exc, Boom)
        del exc
        return gt

    assert logged_once_collected(make, message) == []


def _kill_blocked(exc: BaseException) -> GreenThread[Any]:
    gt = txgreen.spawn(txgreen.block_on, blocker())
    txgreen.sleep(0)
    gt.kill(exc)
    return gt


def _kill_before_start(exc: BaseException) -> GreenThread[Any]:
    gt = txgreen.spawn(lambda: None)
    gt.kill(exc)
    return gt


def _raise_and_join(exc: BaseException) -> GreenThread[Any]:
    gt = txgreen.spawn(explode, exc)
    gt.join()
    return gt


@pytest.mark.parametrize(
    "retrieve",
    [
        pytest.param(lambda gt: gt.get, id="get"),
        pytest.param(lambda gt: lambda: explode(gt.exception or AssertionError()), id="exception"),
        pytest.param(lambda gt: lambda: txgreen.block_on(gt.to_deferred()), id="to_deferred"),
    ],
)
def test_retrieved_exception_is_not_logged(
    retrieve: Callable[[GreenThread[Any]], Callable[[], object]],
) -> None:
    message = "retrieved"

    def make() -> GreenThread[Any]:
        gt = _raise_and_join(Boom(message))
        with pytest.raises(Boom, match=f"^{message}$"):
            retrieve(gt)()
        return gt

    assert logged_once_collected(make, message) == []


@pytest.mark.parametrize(
    ("end", "message"),
    [
        pytest.param(_kill_blocked, "from the killer", id="kill"),
        pytest.param(_kill_before_start, "killed before it started", id="kill-before-start"),
    ],
)
def test_exception_from_a_kill_is_not_logged(
    end: Callable[[BaseException], GreenThread[Any]], message: str
) -> None:
    def make() -> GreenThread[Any]:
        gt = end(Boom(message))
        assert gt.dead
        return gt

    assert logged_once_collected(make, message) == []


@pytest.mark.parametrize(
    "end",
    [pytest.param(_kill_blocked, id="kill"), pytest.param(_raise_and_join, id="raise")],
)
def test_greenletexit_is_not_logged(end: Callable[[BaseException], GreenThread[Any]]) -> None:
    message = "plain exit"

    def make() -> GreenThread[Any]:
        gt = end(GreenletExit(message))
        assert gt.successful()
        assert str(gt.value) == message
        return gt

    assert logged_once_collected(make, message) == []


# -- repr --------------------------------------------------------------------------------------


def _state(gt: GreenThread[Any]) -> str:
    m = re.fullmatch(r"<GreenThread (.+) (scheduled|running|done|failed) at 0x[0-9a-f]+>", repr(gt))
    assert m is not None, repr(gt)
    assert m.group(1) == gt.name
    return m.group(2)


def test_repr_follows_the_state() -> None:
    gate: Deferred[None] = Deferred()
    inside: list[str] = []
    box: list[GreenThread[None]] = []

    def work() -> None:
        inside.append(_state(box[0]))
        txgreen.block_on(gate)

    gt = txgreen.spawn(work)
    box.append(gt)
    assert gt.name == "test_repr_follows_the_state.<locals>.work"
    assert _state(gt) == "scheduled"
    txgreen.sleep(0)
    assert inside == ["running"]
    assert _state(gt) == "running"  # waiting counts as running
    gate.callback(None)
    gt.join()
    assert _state(gt) == "done"
    assert repr(gt).endswith(f" at {id(gt):#x}>")


def test_repr_of_failed_and_killed_threads() -> None:
    failed = txgreen.spawn(explode, Boom("x"))
    failed.join()
    assert _state(failed) == "failed"
    assert isinstance(failed.exception, Boom)

    killed_before_start = txgreen.spawn(lambda: None)
    killed_before_start.kill()
    assert _state(killed_before_start) == "done"  # a GreenletExit kill is a normal end

    killed_with_error = txgreen.spawn_later(30, lambda: None)
    killed_with_error.kill(Boom("y"))
    assert _state(killed_with_error) == "failed"
    assert isinstance(killed_with_error.exception, Boom)


def test_repr_name_of_lambdas_and_partials() -> None:
    lam = txgreen.spawn(lambda: None)
    assert lam.name == "test_repr_name_of_lambdas_and_partials.<locals>.<lambda>"
    part = txgreen.spawn(functools.partial(explode, Boom("p")))
    assert part.name.startswith("functools.partial(<function explode at ")
    assert _state(part) == "scheduled"
    lam.join()
    part.join()
    assert isinstance(part.exception, Boom)


def test_repr_of_a_builtin_target() -> None:
    gt = txgreen.spawn(len, [1, 2])
    assert gt.name == "len"
    assert gt.get() == 2
    assert _state(gt) == "done"


def test_get_hands_over_a_returned_deferred_untouched() -> None:
    # A thread may return a Deferred; get() hands it over untouched (no implicit block_on).
    d: Deferred[int] = defer.succeed(4)
    gt = txgreen.spawn(lambda: d)
    assert gt.get() is d
