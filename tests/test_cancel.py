"""``txgreen.CancelScope``: cancel, deadlines, nesting, shielding, and living with ``Timeout``.

Adapted from the behaviour trio documents for ``CancelScope`` (``cancel_called``,
``cancelled_caught``, ``shield``, deadlines on the clock, nesting) and asyncio for
``asyncio.timeout``.  Deadlines run on the real reactor: SHORT ones against waits that never
end, never two close real times.
"""

from __future__ import annotations

from typing import Any

import pytest
from greenlet import GreenletExit
from twisted.internet import reactor
from twisted.internet.defer import CancelledError, Deferred
from twisted.python.failure import Failure

import txgreen
from txgreen import Cancelled, CancelScope, Timeout, block_on, sleep, spawn

pytestmark = pytest.mark.usefixtures("no_scope_left_behind")

R: Any = reactor

SHORT = 0.01
LONG = 30.0


def never() -> Deferred[Any]:
    return Deferred()


def test_a_scope_nobody_cancels_changes_nothing() -> None:
    with CancelScope() as scope:
        sleep(0)
        value = block_on(txgreen.as_deferred(_ready(3)))
    assert value == 3
    assert not scope.cancel_called
    assert not scope.cancelled_caught


async def _ready(v: int) -> int:
    return v


def test_cancel_from_inside_cancels_the_next_blocking_call_and_the_scope_catches_it() -> None:
    reached = []
    with CancelScope() as scope:
        scope.cancel()
        reached.append("after cancel")  # cancel() itself never raises
        sleep(LONG)
        reached.append("after sleep")
    assert reached == ["after cancel"]
    assert scope.cancel_called
    assert scope.cancelled_caught


def test_the_cancelled_wait_cancels_its_deferred() -> None:
    d = never()
    with CancelScope() as scope:
        R.callLater(SHORT, scope.cancel)
        block_on(d)
    assert scope.cancelled_caught
    assert d.called
    failures: list[Failure] = []
    d.addErrback(failures.append)
    assert isinstance(failures[0].value, CancelledError)


def test_cancel_from_another_green_thread() -> None:
    with CancelScope() as scope:
        helper = spawn(scope.cancel)
        sleep(LONG)
    assert scope.cancelled_caught
    helper.get()


def test_cancel_from_a_reactor_callback() -> None:
    with CancelScope() as scope:
        R.callLater(0, scope.cancel)
        block_on(never())
    assert scope.cancelled_caught


def test_cancel_before_entering_cancels_the_first_blocking_call() -> None:
    scope = CancelScope()
    scope.cancel()
    assert scope.cancel_called
    with scope:
        sleep(LONG)
        pytest.fail("not cancelled")
    assert scope.cancelled_caught


def test_a_deadline_in_the_past_cancels_the_first_blocking_call() -> None:
    with CancelScope(deadline=R.seconds() - 10) as scope:
        sleep(LONG)
        pytest.fail("not cancelled")
    assert scope.cancelled_caught
    assert scope.cancel_called


def test_a_deadline_on_the_reactor_clock() -> None:
    start = R.seconds()
    with CancelScope(deadline=start + SHORT) as scope:
        block_on(never())
    assert scope.cancelled_caught
    assert R.seconds() >= start + SHORT
    assert scope.deadline == start + SHORT


def test_timeout_counts_from_entering_and_sets_the_deadline() -> None:
    scope = CancelScope(timeout=SHORT)
    assert scope.deadline is None
    with scope:
        assert scope.deadline is not None
        assert scope.deadline <= R.seconds() + SHORT
        sleep(LONG)
    assert scope.cancelled_caught


def test_setting_the_deadline_inside_rearms_it() -> None:
    with CancelScope(timeout=LONG) as scope:
        scope.deadline = R.seconds() + SHORT
        sleep(LONG)
    assert scope.cancelled_caught
    with CancelScope(timeout=SHORT) as scope2:
        scope2.deadline = None  # never
        sleep(SHORT * 3)
    assert not scope2.cancel_called


def test_move_on_after() -> None:
    with txgreen.move_on_after(SHORT) as scope:
        sleep(LONG)
    assert scope.cancelled_caught
    with txgreen.move_on_after(LONG) as scope:
        sleep(0)
    assert not scope.cancelled_caught


def test_the_deadline_timer_is_gone_after_the_block() -> None:
    with CancelScope(timeout=LONG) as scope:
        sleep(0)
    assert scope._timer is None
    # (the plugin's leak check would fail the test on a DelayedCall left behind)


def test_a_cancel_not_yet_delivered_is_dropped_with_the_block() -> None:
    with CancelScope() as scope:
        scope.cancel()  # queued for the next blocking call, which never comes in the block
    assert not scope.cancelled_caught
    sleep(SHORT)  # not cancelled: the block is over


def test_cancel_after_the_block_does_nothing() -> None:
    with CancelScope() as scope:
        sleep(0)
    scope.cancel()
    assert scope.cancel_called
    assert not scope.cancelled_caught
    sleep(SHORT)


def test_cancelled_is_not_an_exception_but_a_greenlet_exit() -> None:
    seen: list[str] = []
    with CancelScope() as scope:
        scope.cancel()
        try:
            sleep(LONG)
        except Exception:  # does not catch Cancelled
            seen.append("Exception")
    assert seen == []
    assert scope.cancelled_caught
    assert issubclass(Cancelled, GreenletExit)
    assert not issubclass(Cancelled, Exception)


def test_cancellation_is_delivered_once() -> None:
    with CancelScope() as scope:
        scope.cancel()
        with pytest.raises(Cancelled) as info:
            sleep(LONG)
        assert info.value.scope is scope
        sleep(SHORT)  # swallowed above: the same scope does not cancel again
    assert not scope.cancelled_caught


def test_an_outer_cancel_propagates_through_the_inner_scope() -> None:
    with CancelScope() as outer:
        with CancelScope() as inner:
            R.callLater(0, outer.cancel)
            sleep(LONG)
        pytest.fail("the inner scope swallowed the outer cancellation")
    assert outer.cancelled_caught
    assert not inner.cancelled_caught
    assert not inner.cancel_called


def test_an_inner_cancel_stays_inside() -> None:
    with CancelScope() as outer:
        with CancelScope() as inner:
            inner.cancel()
            sleep(LONG)
        sleep(SHORT)
    assert inner.cancelled_caught
    assert not outer.cancel_called
    assert not outer.cancelled_caught


def test_both_cancelled_each_catches_its_own() -> None:
    steps: list[str] = []
    with CancelScope() as outer:
        with CancelScope() as inner:
            inner.cancel()
            outer.cancel()
            sleep(LONG)
        steps.append("between")  # the inner one caught its own; the outer's comes next
        sleep(LONG)
        steps.append("not reached")
    assert steps == ["between"]
    assert inner.cancelled_caught
    assert outer.cancelled_caught


def test_a_shield_holds_an_outer_cancel_until_it_ends() -> None:
    steps: list[str] = []
    with CancelScope() as outer:
        with CancelScope(shield=True) as shielded:
            outer.cancel()
            sleep(SHORT)  # cleanup that blocks: not cancelled
            steps.append("shielded sleep done")
        steps.append("after the shield")
        sleep(LONG)  # now the outer cancellation arrives
        steps.append("not reached")
    assert steps == ["shielded sleep done", "after the shield"]
    assert outer.cancelled_caught
    assert not shielded.cancel_called
    assert shielded.shield


def test_a_shielded_scope_can_still_cancel_itself() -> None:
    with CancelScope() as outer, CancelScope(shield=True) as shielded:
        outer.cancel()
        shielded.cancel()
        sleep(LONG)
    assert shielded.cancelled_caught
    assert outer.cancelled_caught is False  # its Cancelled was never raised (no blocking call)


def test_a_shield_in_cleanup_code() -> None:
    cleaned: list[str] = []
    with CancelScope(timeout=SHORT) as scope:
        try:
            sleep(LONG)
        finally:
            with CancelScope(shield=True):
                sleep(SHORT)
                cleaned.append("done")
    assert cleaned == ["done"]
    assert scope.cancelled_caught


def test_plain_spawn_inside_a_scope_is_not_cancelled() -> None:
    def worker() -> str:
        sleep(SHORT * 5)
        return "finished"

    with CancelScope() as scope:
        gt = spawn(worker)
        scope.cancel()
        sleep(LONG)
    assert scope.cancelled_caught
    assert gt.get() == "finished"


def test_timeout_inside_a_cancel_scope() -> None:
    # The Timeout's deadline passes first: the Timeout propagates, the scope is not cancelled.
    with CancelScope(timeout=LONG) as scope:
        with pytest.raises(Timeout), Timeout(SHORT):
            sleep(LONG)
        sleep(0)
    assert not scope.cancel_called
    # The scope is cancelled first: Cancelled goes through the Timeout block, which disarms.
    with CancelScope() as scope, Timeout(LONG) as t:
        R.callLater(SHORT, scope.cancel)
        sleep(LONG)
    assert scope.cancelled_caught
    assert not t.pending


def test_a_cancel_scope_inside_a_timeout() -> None:
    t = Timeout(SHORT)
    scope = CancelScope(timeout=LONG)
    with pytest.raises(Timeout) as info, t, scope:
        block_on(never())
    assert info.value is t
    assert not scope.cancelled_caught
    assert not scope.cancel_called
    # A silent Timeout around a cancelled scope: the scope catches its own first.
    with Timeout(LONG, silent=True), CancelScope() as scope:
        scope.cancel()
        sleep(LONG)
    assert scope.cancelled_caught


def test_cancel_scope_of_a_killed_thread() -> None:
    def body() -> None:
        with CancelScope(timeout=LONG):
            sleep(LONG)

    gt = spawn(body)
    sleep(SHORT)
    gt.kill()
    assert gt.dead
    assert gt.successful()


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="not both"):
        CancelScope(R.seconds() + 1, timeout=1)
    with pytest.raises(ValueError, match=">= 0"):
        CancelScope(timeout=-1)
    with pytest.raises(ValueError, match="NaN"):
        CancelScope(float("nan"))
    with pytest.raises(ValueError, match=">= 0"):
        txgreen.move_on_after(float("nan"))
    scope = CancelScope()
    with pytest.raises(ValueError, match="NaN"):
        scope.deadline = float("nan")


def test_a_scope_is_entered_once() -> None:
    scope = CancelScope()
    with scope:
        pass
    with pytest.raises(RuntimeError, match="only once"), scope:
        pass


def test_scopes_are_left_in_order() -> None:
    outer = CancelScope()
    inner = CancelScope()
    outer.__enter__()
    inner.__enter__()
    with pytest.raises(RuntimeError, match="reverse order"):
        outer.__exit__(None, None, None)
    inner.__exit__(None, None, None)
    outer.__exit__(None, None, None)


def test_a_scope_is_left_by_the_thread_that_entered_it() -> None:
    scope = CancelScope()
    scope.__enter__()
    try:
        other = spawn(scope.__exit__, None, None, None)
        other.join()
        assert isinstance(other.exception, RuntimeError)
        assert "entered it" in str(other.exception)
    finally:
        scope.__exit__(None, None, None)


@pytest.mark.in_hub
def test_a_scope_in_the_hub_is_refused() -> None:
    with pytest.raises(txgreen.BlockingInHubError):
        CancelScope().__enter__()


def test_repr() -> None:
    scope = CancelScope(timeout=LONG, shield=True)
    assert "new" in repr(scope)
    with scope:
        assert "entered" in repr(scope)
        assert "shield" in repr(scope)
        assert "deadline" in repr(scope)
        scope.cancel()
        assert "cancelled" in repr(scope)
    assert repr(Cancelled()) != ""


def test_fail_after_raises_timeout_at_the_end_of_the_block() -> None:
    seen: list[str] = []

    def body() -> None:
        with txgreen.fail_after(SHORT):
            try:
                sleep(LONG)
            except Exception:  # the deadline is not an Exception inside the block
                seen.append("Exception")
            finally:
                seen.append("cleanup")

    with pytest.raises(Timeout):
        body()
    assert seen == ["cleanup"]
    with txgreen.fail_after(LONG) as scope:
        sleep(0)
    assert not scope.cancel_called


def test_cancel_from_another_os_thread_is_refused() -> None:
    scope = CancelScope()
    errors: list[BaseException] = []

    def other() -> None:
        try:
            scope.cancel()
        except BaseException as e:
            errors.append(e)

    with scope:
        txgreen.call_in_thread(other)
    assert len(errors) == 1
    assert isinstance(errors[0], txgreen.NotInReactorThreadError)
    assert "callFromThread" in str(errors[0])
    assert not scope.cancel_called
