"""``txgreen.TaskGroup``: no thread outlives its block, no error is lost.

Adapted from the behaviour asyncio documents for ``asyncio.TaskGroup`` (the block waits for
every task; the first failure cancels the rest; an ``ExceptionGroup`` of every failure, the
body's included; the parent's cancellation cancels the tasks first) and trio for nurseries
(``start`` and ``task_status.started``, ``cancel_scope``, nesting).  The plugin's leak check
(on for this suite) fails any test that leaves a green thread or a timer behind.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any, TypeVar

import pytest
from twisted.internet import reactor
from twisted.internet.defer import Deferred

import txgreen
from support import SCRIPT_TEST_MARKS, run_script
from txgreen import (
    TASK_STATUS_IGNORED,
    Cancelled,
    CancelScope,
    TaskGroup,
    TaskStatus,
    Timeout,
    block_on,
    sleep,
    spawn,
)

if sys.version_info >= (3, 11):
    from builtins import BaseExceptionGroup, ExceptionGroup
else:  # pragma: no cover - Python 3.10
    from exceptiongroup import BaseExceptionGroup, ExceptionGroup

pytestmark = pytest.mark.usefixtures("no_scope_left_behind")

R: Any = reactor
E = TypeVar("E", bound=BaseException)

SHORT = 0.01
LONG = 30.0


class Boom(Exception):
    pass


def raised_by(expected: type[E], body: Callable[[], object]) -> E:
    """The exception of type ``expected`` that ``body()`` raises (the test fails otherwise)."""
    with pytest.raises(expected) as info:
        body()
    return info.value


def fail_after(seconds: float, message: str = "boom") -> None:
    sleep(seconds)
    raise Boom(message)


def wait_forever(seen: list[str], name: str = "child") -> None:
    """Block until cancelled; record what it saw."""
    try:
        sleep(LONG)
    except BaseException as e:
        seen.append(f"{name}: {type(e).__name__}")
        raise


def test_the_block_waits_for_every_thread() -> None:
    done: list[int] = []

    def work(n: int) -> int:
        sleep(SHORT * n)
        done.append(n)
        return n * 10

    with TaskGroup() as tg:
        threads = [tg.spawn(work, n) for n in (3, 1, 2)]
        assert all(isinstance(gt, txgreen.GreenThread) for gt in threads)
        assert tg.threads == threads
    assert sorted(done) == [1, 2, 3]
    assert [gt.value for gt in threads] == [30, 10, 20]
    assert tg.threads == []


def test_an_empty_group_and_a_group_of_finished_threads() -> None:
    with TaskGroup():
        pass
    with TaskGroup() as tg:
        gt = tg.spawn(lambda: 1)
        sleep(SHORT)
        assert gt.dead
    assert gt.value == 1


def test_the_first_failure_cancels_the_others_and_the_body() -> None:
    seen: list[str] = []
    tg = TaskGroup()

    def body() -> None:
        with tg:
            tg.spawn(wait_forever, seen, "a")
            tg.spawn(fail_after, SHORT)
            tg.spawn(wait_forever, seen, "b")
            wait_forever(seen, "body")

    raised = raised_by(ExceptionGroup, body)
    assert [type(e) for e in raised.exceptions] == [Boom]
    assert sorted(seen) == ["a: Cancelled", "b: Cancelled", "body: Cancelled"]
    assert tg.cancel_scope.cancel_called


def test_every_failure_is_reported_in_order() -> None:
    def fail_in_cleanup() -> None:
        try:
            sleep(LONG)
        finally:
            raise Boom("in cleanup")

    def body() -> None:
        with TaskGroup() as tg:
            tg.spawn(fail_in_cleanup)
            tg.spawn(fail_after, SHORT, "first")

    raised = raised_by(ExceptionGroup, body)
    assert [str(e) for e in raised.exceptions] == ["first", "in cleanup"]


def test_failures_at_once_are_all_reported() -> None:
    def fail_now(message: str) -> None:
        raise Boom(message)  # no blocking call: the group's cancellation cannot stop it

    def body() -> None:
        with TaskGroup() as tg:
            for i in range(3):
                tg.spawn(fail_now, str(i))

    raised = raised_by(ExceptionGroup, body)
    assert sorted(str(e) for e in raised.exceptions) == ["0", "1", "2"]


def test_an_error_in_the_body_cancels_the_threads_and_is_reported() -> None:
    seen: list[str] = []

    def body() -> None:
        with TaskGroup() as tg:
            tg.spawn(wait_forever, seen)
            sleep(0)
            raise KeyError("body")

    raised = raised_by(ExceptionGroup, body)
    assert [type(e) for e in raised.exceptions] == [KeyError]
    assert seen == ["child: Cancelled"]


def test_a_thread_error_and_a_body_error_both_reported() -> None:
    def body_fails_in_cleanup() -> None:
        with TaskGroup() as tg:
            tg.spawn(fail_after, SHORT, "thread")
            try:
                sleep(LONG)
            finally:
                raise KeyError("body cleanup")

    def body() -> None:
        body_fails_in_cleanup()

    raised = raised_by(ExceptionGroup, body)
    assert [type(e) for e in raised.exceptions] == [Boom, KeyError]


def test_killing_the_owner_cancels_the_threads_first() -> None:
    seen: list[str] = []
    order: list[str] = []

    def owner() -> None:
        try:
            with TaskGroup() as tg:
                tg.spawn(wait_forever, seen, "a")
                tg.spawn(wait_forever, seen, "b")
                sleep(LONG)
        finally:
            order.append(f"owner ends after {len(seen)} children")

    gt = spawn(owner)
    sleep(SHORT)
    gt.kill()
    assert gt.dead
    assert gt.successful()  # the GreenletExit propagated unchanged
    assert sorted(seen) == ["a: Cancelled", "b: Cancelled"]
    assert order == ["owner ends after 2 children"]


def test_killing_the_owner_while_the_exit_waits() -> None:
    seen: list[str] = []

    def owner() -> None:
        with TaskGroup() as tg:
            tg.spawn(wait_forever, seen)

    gt = spawn(owner)
    sleep(SHORT)
    gt.kill(Boom("killed"))
    assert seen == ["child: Cancelled"]
    assert isinstance(gt.exception, Boom)


def test_a_timeout_of_the_owner_cancels_the_threads_then_propagates() -> None:
    seen: list[str] = []
    t = Timeout(SHORT)

    def body() -> None:
        with t, TaskGroup() as tg:
            tg.spawn(wait_forever, seen)
            sleep(LONG)

    raised = raised_by(Timeout, body)
    assert raised is t
    assert seen == ["child: Cancelled"]
    with Timeout(SHORT, silent=True), TaskGroup() as tg:
        tg.spawn(wait_forever, seen, "silent")
    assert seen[-1] == "silent: Cancelled"


def test_a_child_that_fails_while_the_owner_times_out_loses_nothing() -> None:
    def fails_when_cancelled() -> None:
        try:
            sleep(LONG)
        finally:
            raise Boom("cleanup")

    t = Timeout(SHORT)

    def body() -> None:
        with t, TaskGroup() as tg:
            tg.spawn(fails_when_cancelled)

    raised = raised_by(ExceptionGroup, body)
    assert [type(e) for e in raised.exceptions] == [Boom, Timeout]
    assert raised.exceptions[1] is t


def test_cancelling_the_group_ends_it_quietly() -> None:
    seen: list[str] = []
    with TaskGroup() as tg:
        tg.spawn(wait_forever, seen)
        R.callLater(SHORT, tg.cancel_scope.cancel)
        sleep(LONG)
    assert seen == ["child: Cancelled"]
    assert tg.cancel_scope.cancelled_caught


def test_a_cancel_scope_around_a_group_cancels_its_threads() -> None:
    seen: list[str] = []
    with CancelScope() as scope:
        with TaskGroup() as tg:
            tg.spawn(wait_forever, seen, "a")
            tg.spawn(wait_forever, seen, "b")
            R.callLater(SHORT, scope.cancel)
        pytest.fail("the group swallowed the outer cancellation")
    assert scope.cancelled_caught
    assert sorted(seen) == ["a: Cancelled", "b: Cancelled"]


def test_a_cancelled_scope_keeps_the_errors_of_the_threads() -> None:
    def fails_when_cancelled() -> None:
        try:
            sleep(LONG)
        finally:
            raise Boom("cleanup")

    scope = CancelScope()

    def body() -> None:
        with scope, TaskGroup() as tg:
            tg.spawn(fails_when_cancelled)
            R.callLater(SHORT, scope.cancel)

    raised = raised_by(ExceptionGroup, body)
    # The scope took its own Cancelled out of the group; the error went on.
    assert [type(e) for e in raised.exceptions] == [Boom]
    assert scope.cancelled_caught


def test_a_shield_inside_a_group_thread() -> None:
    cleaned: list[str] = []

    def careful() -> None:
        try:
            sleep(LONG)
        finally:
            with CancelScope(shield=True):
                sleep(SHORT)
                cleaned.append("cleaned")

    with TaskGroup() as tg:
        tg.spawn(careful)
        R.callLater(SHORT, tg.cancel_scope.cancel)
    assert cleaned == ["cleaned"]


def test_nested_groups() -> None:
    seen: list[str] = []

    def inner_owner() -> None:
        with TaskGroup() as inner:
            inner.spawn(wait_forever, seen, "inner")
            inner.spawn(fail_after, SHORT, "inner failure")

    def body() -> None:
        with TaskGroup() as outer:
            outer.spawn(wait_forever, seen, "outer")
            outer.spawn(inner_owner)

    raised = raised_by(ExceptionGroup, body)
    (nested,) = raised.exceptions
    assert isinstance(nested, ExceptionGroup)
    assert [str(e) for e in nested.exceptions] == ["inner failure"]
    assert sorted(seen) == ["inner: Cancelled", "outer: Cancelled"]


def test_cancelling_an_outer_group_reaches_the_inner_groups_threads() -> None:
    seen: list[str] = []
    with TaskGroup() as outer:

        def inner_owner() -> None:
            with TaskGroup() as inner:
                inner.spawn(wait_forever, seen, "grandchild")

        outer.spawn(inner_owner)
        R.callLater(SHORT, outer.cancel_scope.cancel)
    assert seen == ["grandchild: Cancelled"]


def test_a_thread_may_spawn_siblings_while_the_exit_waits() -> None:
    results: list[str] = []

    def parent(tg: TaskGroup) -> None:
        sleep(SHORT)
        tg.spawn(results.append, "sibling")

    with TaskGroup() as tg:
        tg.spawn(parent, tg)
    assert results == ["sibling"]


def test_spawning_into_a_cancelled_group_cancels_the_new_thread() -> None:
    seen: list[str] = []
    with TaskGroup() as tg:
        tg.cancel_scope.cancel()
        tg.spawn(wait_forever, seen, "late")
    assert seen == ["late: Cancelled"]


def test_a_child_killed_from_outside() -> None:
    seen: list[str] = []
    with TaskGroup() as tg:
        gt = tg.spawn(wait_forever, seen)
        sleep(0)
        gt.kill()  # a GreenletExit kill is a normal end: not an error, nothing cancelled
    assert not tg.cancel_scope.cancel_called

    def body() -> None:
        with TaskGroup() as tg:
            gt = tg.spawn(wait_forever, seen)
            sleep(0)
            gt.kill(Boom("killed"), block=False)

    raised = raised_by(ExceptionGroup, body)
    assert [str(e) for e in raised.exceptions] == ["killed"]


def test_start_returns_the_started_value() -> None:
    steps: list[str] = []

    def server(port: int, *, task_status: TaskStatus = TASK_STATUS_IGNORED) -> None:
        sleep(SHORT)
        steps.append("listening")
        task_status.started(port + 1)
        sleep(SHORT)
        steps.append("served")

    with TaskGroup() as tg:
        value = tg.start(server, 8000)
        steps.append(f"start returned {value}")
        tg.spawn(server, 1)  # TASK_STATUS_IGNORED: the same function, spawned
    assert steps[:2] == ["listening", "start returned 8001"]
    assert sorted(steps[2:]) == ["listening", "served", "served"]


def test_start_raises_what_fails_before_started_and_the_group_goes_on() -> None:
    def broken(*, task_status: TaskStatus) -> None:
        sleep(0)
        raise Boom("could not listen")

    with TaskGroup() as tg, pytest.raises(Boom, match="could not listen"):
        tg.start(broken)
    assert not tg.cancel_scope.cancel_called


def test_start_of_a_function_that_never_calls_started() -> None:
    def forgetful(*, task_status: TaskStatus) -> int:
        return 1

    with (
        TaskGroup() as tg,
        pytest.raises(RuntimeError, match=r"without calling task_status\.started"),
    ):
        tg.start(forgetful)


def test_started_twice_is_an_error_in_the_thread() -> None:
    def twice(*, task_status: TaskStatus) -> None:
        task_status.started(1)
        task_status.started(2)

    def body() -> None:
        with TaskGroup() as tg:
            assert tg.start(twice) == 1

    raised = raised_by(ExceptionGroup, body)
    assert "already called" in str(raised.exceptions[0])


def test_a_failure_after_started_belongs_to_the_group() -> None:
    def flaky(*, task_status: TaskStatus) -> None:
        task_status.started()
        sleep(SHORT)
        raise Boom("later")

    def body() -> None:
        with TaskGroup() as tg:
            tg.start(flaky)
            sleep(LONG)

    raised = raised_by(ExceptionGroup, body)
    assert [str(e) for e in raised.exceptions] == ["later"]


def test_cancelling_start_cancels_the_starting_thread() -> None:
    seen: list[str] = []

    def slow_start(*, task_status: TaskStatus) -> None:
        wait_forever(seen, "starting")
        task_status.started()

    with TaskGroup() as tg, CancelScope(timeout=SHORT) as scope:
        tg.start(slow_start)
    assert scope.cancelled_caught
    assert seen == ["starting: Cancelled"]


def test_start_rejects_its_own_keyword() -> None:
    with TaskGroup() as tg, pytest.raises(TypeError, match="task_status"):
        tg.start(lambda task_status: None, task_status=None)


def test_bad_use() -> None:
    tg = TaskGroup()
    with pytest.raises(RuntimeError, match="enter the group first"):
        tg.spawn(sleep, 0)
    with tg, pytest.raises(TypeError, match="callable"):
        tg.spawn(42)  # type: ignore[arg-type]
    with pytest.raises(RuntimeError, match="closed"):
        tg.spawn(sleep, 0)
    with pytest.raises(RuntimeError, match="closed"):
        tg.start(sleep, 0)
    with pytest.raises(RuntimeError, match="only once"), tg:
        pass
    assert "exited" in repr(tg)


@pytest.mark.in_hub
def test_a_group_in_the_hub_is_refused() -> None:
    with pytest.raises(txgreen.BlockingInHubError):
        TaskGroup().__enter__()


def test_keyboard_interrupt_in_the_body_wins_but_waits() -> None:
    seen: list[str] = []

    def body() -> None:
        with TaskGroup() as tg:
            tg.spawn(wait_forever, seen)
            sleep(0)
            raise KeyboardInterrupt

    raised_by(KeyboardInterrupt, body)
    assert seen == ["child: Cancelled"]


def test_a_thread_ending_with_the_groups_cancelled_is_no_error() -> None:
    d: Deferred[None] = Deferred()

    def waits() -> None:
        block_on(d)

    with TaskGroup() as tg:
        tg.spawn(waits)
        sleep(0)
        tg.cancel_scope.cancel()
    d.addErrback(lambda f: None)
    assert tg.cancel_scope.cancelled_caught


def test_exception_group_types() -> None:
    def body() -> None:
        with Timeout(SHORT), TaskGroup() as tg:
            tg.spawn(fail_after, 0)

            def killed_owner_error() -> None:
                raise Boom("x")

            sleep(LONG)

    raised = raised_by(BaseExceptionGroup, body)
    assert isinstance(raised, ExceptionGroup)
    assert isinstance(Cancelled(), BaseException)


@pytest.mark.parametrize("mode", ["body", "exit"])
@pytest.mark.timeout(60)
@SCRIPT_TEST_MARKS[0]
def test_the_reactor_stops_inside_a_group(mode: str) -> None:
    done = run_script("taskgroup_stop.py", mode)
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert "quiet child saw ReactorStopped" in out
    assert "messy child saw ReactorStopped" in out
    assert "block raised ReactorStopped(" in out
    assert "ValueError: cleanup failed" in out  # logged: not lost
    assert "threads left 0" in out


def test_a_silent_timeout_takes_only_itself_out_of_the_group() -> None:
    def fails_when_cancelled() -> None:
        try:
            sleep(LONG)
        finally:
            raise Boom("cleanup")

    def body() -> None:
        with Timeout(SHORT, silent=True), TaskGroup() as tg:
            tg.spawn(fails_when_cancelled)

    raised = raised_by(ExceptionGroup, body)
    assert [type(e) for e in raised.exceptions] == [Boom]


def test_fail_after_around_a_group() -> None:
    seen: list[str] = []

    def body() -> None:
        with txgreen.fail_after(SHORT), TaskGroup() as tg:
            tg.spawn(wait_forever, seen)

    raised_by(Timeout, body)
    assert seen == ["child: Cancelled"]
