"""``block_on``: what it accepts, what it returns or raises, and how the waiting works.

Timeouts (``timeout=`` and ``with txgreen.Timeout``) are in test_timeout.py, OS threads in
test_block_on_threads.py.  Shutdown (``ReactorStopped``) is covered by the subprocess tests.
"""

from __future__ import annotations

import asyncio
import gc
import re
import traceback
from collections.abc import Generator, Iterator
from typing import Any, NoReturn, cast

import greenlet
import pytest
from twisted.internet import defer, reactor, task
from twisted.internet.defer import CancelledError, Deferred
from twisted.logger import LogEvent
from twisted.python.failure import Failure

import txgreen
import txgreen._block
from support import Boom, later

R: Any = reactor  # the installed reactor, untyped (its module is typed as a plain module)


def explode(message: str) -> NoReturn:
    raise Boom(message)


def tb_names(exc: BaseException) -> list[str]:
    """The function names in ``exc``'s traceback, outermost first."""
    return [frame.name for frame in traceback.extract_tb(exc.__traceback__)]


def clock_later(clock: task.Clock, seconds: float, value: Any) -> Deferred[Any]:
    """A Deferred that ``clock`` fires with ``value`` once advanced by ``seconds``."""
    return task.deferLater(cast(Any, clock), seconds, lambda: value)


def _asyncio_loop() -> asyncio.AbstractEventLoop | None:
    from twisted.internet.asyncioreactor import AsyncioSelectorReactor

    if isinstance(reactor, AsyncioSelectorReactor):
        loop: asyncio.AbstractEventLoop = R._asyncioEventloop
        return loop
    return None


needs_asyncio = pytest.mark.skipif(
    _asyncio_loop() is None, reason="needs the asyncio reactor (--txgreen-reactor=asyncio)"
)
without_asyncio = pytest.mark.skipif(
    _asyncio_loop() is not None, reason="checks the error when the asyncio reactor is absent"
)


# -- what block_on accepts -------------------------------------------------------------------


def test_deferred_fired_by_the_reactor() -> None:
    d = later("value")
    assert not d.called
    assert txgreen.block_on(d) == "value"


def test_deferred_fired_by_a_clock_advanced_from_the_reactor() -> None:
    clock = task.Clock()
    d = clock_later(clock, 60, "a minute later")
    R.callLater(0, clock.advance, 60)
    assert txgreen.block_on(d) == "a minute later"


def test_coroutine() -> None:
    steps: list[str] = []

    async def compute(x: int) -> int:
        steps.append("started")
        a = await later(x)
        b = await later(2)
        return int(a) * int(b)

    assert txgreen.block_on(compute(21)) == 42
    assert steps == ["started"]


def test_coroutine_exception_is_raised_with_its_traceback() -> None:
    async def failing() -> None:
        await later(None)
        explode("from a coroutine")

    with pytest.raises(Boom, match=r"^from a coroutine$") as info:
        txgreen.block_on(failing())
    names = tb_names(info.value)
    assert "failing" in names
    assert names[-1] == "explode"


@needs_asyncio
def test_asyncio_future_result() -> None:
    loop = _asyncio_loop()
    assert loop is not None
    fut: asyncio.Future[str] = loop.create_future()
    loop.call_soon(fut.set_result, "from asyncio")
    assert txgreen.block_on(fut) == "from asyncio"


@needs_asyncio
def test_asyncio_future_exception() -> None:
    loop = _asyncio_loop()
    assert loop is not None
    fut: asyncio.Future[str] = loop.create_future()
    err = Boom("asyncio failure")
    loop.call_soon(fut.set_exception, err)
    with pytest.raises(Boom) as info:
        txgreen.block_on(fut)
    assert info.value is err


@needs_asyncio
def test_asyncio_task() -> None:
    loop = _asyncio_loop()
    assert loop is not None

    async def in_asyncio() -> str:
        await asyncio.sleep(0)
        return "task result"

    assert txgreen.block_on(loop.create_task(in_asyncio())) == "task result"


@needs_asyncio
def test_asyncio_future_of_another_loop_is_a_type_error() -> None:
    other = asyncio.new_event_loop()
    try:
        fut: asyncio.Future[int] = other.create_future()
        with pytest.raises(TypeError, match="Future belongs to its event loop"):
            txgreen.block_on(fut)
    finally:
        other.close()


@without_asyncio
def test_asyncio_future_without_the_asyncio_reactor_is_a_clear_type_error() -> None:
    loop = asyncio.new_event_loop()
    try:
        fut: asyncio.Future[int] = loop.create_future()
        with pytest.raises(TypeError) as info:
            txgreen.block_on(fut)
    finally:
        loop.close()
    message = str(info.value)
    assert message.startswith(
        "block_on() can wait on an asyncio Future only when Twisted's asyncio reactor is installed"
    )
    assert "twisted.internet.asyncioreactor.install()" in message


class _Awaitable:
    def __await__(self) -> Generator[Any, None, int]:
        yield None
        return 1


def _a_generator() -> Iterator[int]:
    yield 1


async def _a_coroutine_function() -> int:
    return 1


@pytest.mark.parametrize(
    ("obj", "type_name"),
    [
        (42, "int"),
        ("text", "str"),
        (None, "NoneType"),
        (_a_generator(), "generator"),
        (_Awaitable(), "_Awaitable"),
        (_a_coroutine_function, "function"),  # forgot to call it
    ],
)
def test_other_objects_are_a_type_error(obj: Any, type_name: str) -> None:
    expected = (
        f"block_on() takes a Deferred, a coroutine or an asyncio Future, not '{type_name}'; "
        "wrap other awaitables in an 'async def'"
    )
    with pytest.raises(TypeError, match=f"^{re.escape(expected)}$"):
        txgreen.block_on(obj)


def test_awaitable_wrapped_in_async_def_works() -> None:
    # The fix the TypeError suggests.
    async def wrap() -> int:
        return await _Awaitable()

    assert txgreen.block_on(wrap()) == 1


# -- results and failures --------------------------------------------------------------------


def test_failure_raises_the_original_exception_with_its_traceback() -> None:
    d = task.deferLater(R, 0, explode, "late boom")
    with pytest.raises(Boom, match=r"^late boom$") as info:
        txgreen.block_on(d)
    assert type(info.value) is Boom
    assert tb_names(info.value)[-1] == "explode"
    # it is the very exception of the Deferred's failure, not a copy or a wrapper
    seen: list[Failure] = []
    d.addErrback(seen.append)
    assert seen[0].value is info.value


def test_failure_of_an_already_failed_deferred_keeps_its_traceback() -> None:
    try:
        explode("early boom")
    except Boom:
        d: Deferred[None] = defer.fail()
    with pytest.raises(Boom, match=r"^early boom$") as info:
        txgreen.block_on(d)
    assert tb_names(info.value)[-1] == "explode"


def test_base_exception_subclass_failure_is_raised_as_is() -> None:
    class Stop(BaseException):
        pass

    d: Deferred[None] = Deferred()
    R.callLater(0, d.errback, Stop("stop"))
    with pytest.raises(Stop, match=r"^stop$"):
        txgreen.block_on(d)


def test_deferred_paused_on_an_inner_deferred_waits_for_it() -> None:
    inner: Deferred[str] = Deferred()
    outer: Deferred[str] = defer.succeed("first")
    outer.addCallback(lambda _: inner)
    assert outer.called
    assert outer.paused  # fired, but its result is not there yet
    R.callLater(0, inner.callback, "second")
    assert txgreen.block_on(outer) == "second"


# -- fast path -------------------------------------------------------------------------------


def test_fired_deferred_returns_without_any_switch() -> None:
    switches: list[tuple[str, Any]] = []

    def trace(event: str, args: Any) -> None:
        switches.append((event, args))

    async def finishes_at_once() -> str:
        return "coroutine done"

    ran: list[str] = []
    other = txgreen.spawn(ran.append, "other green thread")  # runnable from now on
    previous = greenlet.settrace(trace)
    try:
        assert txgreen.block_on(defer.succeed("fired")) == "fired"
        assert txgreen.block_on(finishes_at_once()) == "coroutine done"
        with pytest.raises(Boom, match=r"^failed$"):
            txgreen.block_on(defer.fail(Boom("failed")))
    finally:
        greenlet.settrace(previous)
    assert switches == []
    assert ran == []  # nothing else got to run in between
    other.join()
    assert ran == ["other green thread"]


def test_switch_spy_sees_the_slow_path() -> None:
    # Control for the test above: the same spy does see a wait.
    switches: list[tuple[str, Any]] = []

    def trace(event: str, args: Any) -> None:
        switches.append((event, args))

    me = greenlet.getcurrent()
    hub = txgreen.get_hub().greenlet
    previous = greenlet.settrace(trace)
    try:
        assert txgreen.block_on(later("slow")) == "slow"
    finally:
        greenlet.settrace(previous)
    assert ("switch", (me, hub)) in switches
    assert ("switch", (hub, me)) in switches


# -- the lean wait: callbacks appended directly -----------------------------------------------


class _RemoteFailure(Failure):
    """A Failure subclass, as Perspective Broker's CopiedFailure is one."""


def _outcomes(n: int, timeout: float | None) -> list[str]:
    """``n`` waits of this green thread on Deferreds that the reactor fires on its next
    iteration, alternately with a value, a failure and a Failure subclass; what each gave."""
    seen: list[str] = []
    for i in range(n):
        d: Deferred[str] = Deferred()
        kind = i % 3
        if kind == 0:
            R.callLater(0, d.callback, f"value {i}")
        elif kind == 1:
            R.callLater(0, d.errback, Boom(f"failure {i}"))
        else:
            R.callLater(0, d.errback, cast(Any, _RemoteFailure)(Boom(f"subclass {i}")))
        passed_on: list[object] = []
        try:
            seen.append(txgreen.block_on(d, timeout=timeout))
        except Boom as e:
            seen.append(f"raised {e}")
        d.addBoth(passed_on.append)  # the outcome passes through, unchanged: once the
        txgreen.sleep(0)  # callback chain that resumed this thread has finished
        (outcome,) = passed_on
        if isinstance(outcome, Failure):
            assert isinstance(outcome, _RemoteFailure) == (kind == 2)
            outcome = f"raised {outcome.value}"
        assert outcome == seen[-1]
    return seen


APPEND_MODES = {
    "appended": txgreen._block.PRIVATE_LIST,
    "appended-public": txgreen._block.PUBLIC_LIST,
    "addCallbacks": txgreen._block.CALL,
}


@pytest.mark.filterwarnings("ignore:twisted.internet.defer.Deferred.callbacks was deprecated")
@pytest.mark.parametrize("append", list(APPEND_MODES))
@pytest.mark.parametrize("timeout", [None, 30.0], ids=["lean", "timed"])
def test_values_and_failures_alternate_on_one_thread(
    append: str, timeout: float | None, monkeypatch: pytest.MonkeyPatch, unhandled: list[LogEvent]
) -> None:
    # The thread reuses its waiter after a value and drops it after a failure; the failure
    # (a Failure subclass too) resumes it through the ready queue, marked so that the hub
    # hands the Failure back instead of raising the mark.  With each way of adding the
    # callbacks: appended to Deferred._callbacks, to Deferred.callbacks (Twisted < 25.5; here
    # its deprecated alias), or by addCallbacks (a Twisted that keeps them differently).
    monkeypatch.setattr(txgreen._block, "_APPEND_CALLBACKS", APPEND_MODES[append])
    seen = _outcomes(30, timeout)
    assert seen == [
        f"value {i}" if i % 3 == 0 else f"raised {'failure' if i % 3 == 1 else 'subclass'} {i}"
        for i in range(30)
    ]
    txgreen.sleep(0)
    gc.collect()
    assert unhandled == []  # every failure raised here counts as handled


def test_the_lean_wait_appends_its_callbacks_directly() -> None:
    # With the Twisted the tests run on, block_on's common wait appends its callback pair to
    # Deferred._callbacks itself (no addCallbacks call, no tuples built per wait).  If this
    # fails, Twisted keeps callbacks differently: block_on still works (addCallbacks), slower;
    # adapt _can_append_callbacks and the lean path in txgreen/_block.py.
    assert txgreen._block._can_append_callbacks() is True
    assert txgreen._block._APPEND_CALLBACKS == txgreen._block.PRIVATE_LIST


def test_another_layout_of_callbacks_is_not_appended_to() -> None:
    can = txgreen._block._can_append_callbacks
    assert can(attribute="no_such_list") is False
    # (Twisted 25.5+: "callbacks" is a deprecated property, not the instance's own list.)
    assert can(attribute="callbacks") is False

    class Ignores(Deferred[int]):
        """Keeps a _callbacks list but never runs it."""

        def callback(self, result: Any) -> None:
            self.called = True
            self.result = result

    assert can(Ignores) is False

    class Tuple(Deferred[int]):
        """Keeps its callbacks in something else than a list."""

        def __init__(self) -> None:
            super().__init__()
            self._callbacks = ()  # type: ignore[assignment]

    assert can(Tuple) is False


# -- the result passes through ---------------------------------------------------------------


def test_callbacks_added_later_see_the_value() -> None:
    d = defer.succeed("v")
    assert txgreen.block_on(d) == "v"
    seen: list[str] = []
    d.addCallback(seen.append)
    assert seen == ["v"]


def test_callbacks_added_after_a_wait_see_the_value() -> None:
    # The waiter is resumed from inside the Deferred's callback chain (as Twisted's own
    # ``await`` is), so a callback added right away runs once this green thread next yields.
    d = later("v")
    assert txgreen.block_on(d) == "v"
    seen: list[str] = []
    d.addCallback(seen.append)
    txgreen.sleep(0)
    assert seen == ["v"]


def test_block_on_after_adding_a_callback_sees_its_result() -> None:
    # Resumed inside d's running chain, the added callback has not run yet: block_on must wait
    # for it rather than return the stale d.result.
    d = later(5)
    assert txgreen.block_on(d) == 5
    d.addCallback(lambda x: x * 2)
    assert txgreen.block_on(d) == 10
    assert txgreen.block_on(d) == 10


@pytest.mark.parametrize("fired", [False, True], ids=["waited", "already-fired"])
def test_block_on_twice_returns_the_value_twice(fired: bool) -> None:
    d = defer.succeed("twice") if fired else later("twice")
    assert txgreen.block_on(d) == "twice"
    assert txgreen.block_on(d) == "twice"


def test_several_green_threads_wait_on_one_deferred() -> None:
    clock = task.Clock()
    d = clock_later(clock, 5, "shared")
    threads = [txgreen.spawn(txgreen.block_on, d) for _ in range(3)]
    txgreen.sleep(0)  # they all start and park on d
    assert not any(t.dead for t in threads)
    clock.advance(5)
    assert [t.get() for t in threads] == ["shared"] * 3


@pytest.mark.parametrize("fired", [False, True], ids=["waited", "already-fired"])
def test_errbacks_added_later_see_the_failure(fired: bool) -> None:
    d = defer.fail(Boom("pass it on")) if fired else task.deferLater(R, 0, explode, "pass it on")
    with pytest.raises(Boom) as first:
        txgreen.block_on(d)
    with pytest.raises(Boom) as second:  # a second block_on raises it again
        txgreen.block_on(d)
    assert second.value is first.value
    seen: list[Failure] = []
    d.addErrback(seen.append)
    assert len(seen) == 1
    assert seen[0].value is first.value


def _failing_deferred(kind: str) -> Deferred[Any]:
    if kind == "waited":
        return task.deferLater(R, 0, explode, "handled")
    if kind == "already-fired":
        return defer.fail(Boom("handled"))

    async def failing() -> None:
        if kind == "coroutine-waited":
            await later(None)
        explode("handled")

    return Deferred.fromCoroutine(failing())


@pytest.mark.parametrize("kind", ["waited", "already-fired", "coroutine-waited", "coroutine"])
def test_failure_raised_in_the_caller_is_not_logged_as_unhandled(
    kind: str, unhandled: list[LogEvent]
) -> None:
    d = _failing_deferred(kind)
    with pytest.raises(Boom, match=r"^handled$"):
        txgreen.block_on(d)
    del d
    txgreen.sleep(0)  # the hub lets go of what it last handed to this thread
    gc.collect()
    assert unhandled == []


def test_failure_passed_as_a_coroutine_is_not_logged_as_unhandled(
    unhandled: list[LogEvent],
) -> None:
    async def failing() -> None:
        await later(None)
        explode("coroutine failure")

    with pytest.raises(Boom):
        txgreen.block_on(failing())
    txgreen.sleep(0)
    gc.collect()
    assert unhandled == []


def test_control_an_ignored_failure_is_logged(unhandled: list[LogEvent]) -> None:
    # Proves the fixture sees what the tests above say is absent.
    d = defer.fail(Boom("nobody looked"))
    del d
    gc.collect()
    assert len(unhandled) == 1


# -- waiters are resumed by the hub ----------------------------------------------------------


def test_green_thread_firing_a_deferred_is_not_suspended() -> None:
    events: list[str] = []
    d: Deferred[str] = Deferred()

    def waiter() -> None:
        events.append("B waits")
        events.append("B got " + txgreen.block_on(d))

    def firer() -> None:
        events.append("A fires")
        d.callback("x")
        events.append("A continues")

    b = txgreen.spawn(waiter)
    a = txgreen.spawn(firer)
    a.join()
    b.join()
    assert events == ["B waits", "A fires", "A continues", "B got x"]


def test_green_thread_failing_a_deferred_is_not_suspended() -> None:
    events: list[str] = []
    d: Deferred[str] = Deferred()

    def waiter() -> None:
        events.append("B waits")
        try:
            txgreen.block_on(d)
        except Boom as e:
            events.append(f"B raised {e}")

    b = txgreen.spawn(waiter)
    txgreen.sleep(0)  # B starts and parks on d
    assert events == ["B waits"]
    d.errback(Boom("bad"))  # fired by this green thread
    events.append("A continues")
    events.append("A still running")
    b.join()
    assert events == ["B waits", "A continues", "A still running", "B raised bad"]


def test_callbacks_run_in_the_firing_green_thread_and_it_keeps_going() -> None:
    # The callback chain runs where the Deferred is fired; the waiter only resumes later.
    d: Deferred[str] = Deferred()
    where: list[Any] = []

    def upper(v: str) -> str:
        where.append(greenlet.getcurrent())
        return v.upper()

    d.addCallback(upper)
    b = txgreen.spawn(txgreen.block_on, d)
    txgreen.sleep(0)
    d.callback("value")
    assert where == [greenlet.getcurrent()]
    assert not b.dead  # not run yet: it is resumed by the hub
    assert b.get() == "VALUE"


# -- from the hub ----------------------------------------------------------------------------

FIX_HINTS = ("txgreen.spawn(", "txgreen.defer_to_green(", "@txgreen.green")


def _check_hub_message(err: BaseException) -> None:
    message = str(err)
    assert message.startswith("block_on() was called from the hub")
    for hint in FIX_HINTS:
        assert hint in message


@pytest.mark.in_hub
def test_in_hub_unfired_deferred_raises_blocking_in_hub_error() -> None:
    d: Deferred[None] = Deferred()
    with pytest.raises(txgreen.BlockingInHubError) as info:
        txgreen.block_on(d)
    _check_hub_message(info.value)
    assert not d.called


@pytest.mark.in_hub
def test_in_hub_fired_deferred_raises_too() -> None:
    with pytest.raises(txgreen.BlockingInHubError) as info:
        txgreen.block_on(defer.succeed(1))
    _check_hub_message(info.value)


@pytest.mark.in_hub
def test_in_hub_with_timeout_raises_and_arms_no_timer() -> None:
    before = set(R.getDelayedCalls())
    d: Deferred[None] = Deferred()
    with pytest.raises(txgreen.BlockingInHubError):
        txgreen.block_on(d, timeout=5)
    assert set(R.getDelayedCalls()) == before
    assert not d.called


@pytest.mark.in_hub
def test_in_hub_coroutine_raises_without_running_it() -> None:
    ran: list[str] = []

    async def body() -> None:
        ran.append("ran")

    coro = body()
    try:
        with pytest.raises(txgreen.BlockingInHubError):
            txgreen.block_on(coro)
    finally:
        coro.close()
    assert ran == []


def test_in_a_reactor_callback_raises_blocking_in_hub_error() -> None:
    def reactor_side() -> object:
        return txgreen.block_on(later("never seen"))

    with pytest.raises(txgreen.BlockingInHubError) as info:
        txgreen.block_on(task.deferLater(R, 0, reactor_side))
    _check_hub_message(info.value)
    assert "reactor_side" in tb_names(info.value)


def test_in_a_deferred_callback_fired_by_the_reactor_raises() -> None:
    inner: Deferred[str] = Deferred()
    outer: Deferred[None] = Deferred()
    outer.addCallback(lambda _: txgreen.block_on(inner))
    R.callLater(0, outer.callback, None)
    with pytest.raises(txgreen.BlockingInHubError) as info:
        txgreen.block_on(outer)
    _check_hub_message(info.value)
    assert not inner.called


@pytest.mark.parametrize("fix", ["green", "defer_to_green"])
def test_the_suggested_fix_works_in_a_reactor_callback(fix: str) -> None:
    def sync_style(x: int) -> int:
        return int(txgreen.block_on(later(x))) + 1

    def reactor_side() -> Deferred[int]:
        if fix == "green":
            return txgreen.green(sync_style)(41)
        return txgreen.defer_to_green(sync_style, 41)

    d: Deferred[Any] = task.deferLater(R, 0, reactor_side)
    assert txgreen.block_on(d) == 42


# -- kill ------------------------------------------------------------------------------------


def test_kill_while_blocked_cancels_the_deferred() -> None:
    cancelled: list[Deferred[None]] = []
    d: Deferred[None] = Deferred(cancelled.append)
    after: list[str] = []

    def body() -> None:
        txgreen.block_on(d)
        after.append("not reached")

    gt = txgreen.spawn(body)
    txgreen.sleep(0)  # it starts and parks in block_on
    assert not gt.dead
    gt.kill()
    assert gt.dead
    assert gt.successful()
    assert isinstance(gt.value, greenlet.GreenletExit)
    assert cancelled == [d]
    assert after == []
    seen: list[Failure] = []
    d.addErrback(seen.append)
    assert isinstance(seen[0].value, CancelledError)


def test_kill_with_an_exception_cancels_the_deferred() -> None:
    d: Deferred[None] = Deferred()
    gt = txgreen.spawn(txgreen.block_on, d)
    txgreen.sleep(0)
    err = Boom("killed")
    gt.kill(err)
    assert gt.exception is err
    assert d.called
    seen: list[Failure] = []
    d.addErrback(seen.append)
    assert isinstance(seen[0].value, CancelledError)


def test_kill_cancellation_is_not_logged_as_unhandled(unhandled: list[LogEvent]) -> None:
    d: Deferred[None] = Deferred()
    gt = txgreen.spawn(txgreen.block_on, d)
    txgreen.sleep(0)
    gt.kill()
    assert d.called
    del d, gt
    txgreen.sleep(0)
    gc.collect()
    assert unhandled == []


def test_kill_while_blocked_on_a_coroutine_cancels_what_it_awaits() -> None:
    seen: list[str] = []
    cancelled: list[Deferred[None]] = []

    async def body() -> None:
        try:
            await Deferred(cancelled.append)
        except CancelledError:
            seen.append("cancelled")
            raise

    gt = txgreen.spawn(txgreen.block_on, body())
    txgreen.sleep(0)
    gt.kill()
    assert gt.dead
    assert seen == ["cancelled"]
    assert len(cancelled) == 1
