"""``block_on``: wait for a Deferred, coroutine or asyncio Future as if it were a plain call."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, Final, TypeVar, overload

from greenlet import getcurrent
from twisted.internet.defer import Deferred
from twisted.python.failure import Failure

from txgreen._greenthread import GreenThread
from txgreen._hub import STOPPED, Hub, Waiter, get_hub
from txgreen._timeout import Timeout
from txgreen._util import exception_of, hidden_in_reports
from txgreen.errors import NotInReactorThreadError, ReactorStopped

__all__ = ["as_deferred", "block_on"]

__tracebackhide__ = hidden_in_reports  # pytest: the user's frames, not txgreen's

T = TypeVar("T")


def _mark_handled(d: Deferred[Any], failure: Failure) -> None:
    # The caller got the failure raised at it, so it must not be logged again as an "Unhandled
    # error in Deferred" when the Deferred is collected.  Twisted's own ``await`` does the same.
    info = d._debugInfo
    if info is not None and info.failResult is failure:
        info.failResult = None


def _mark_result_handled(d: Deferred[Any]) -> None:
    if d.called and not d.paused:
        result = d.result
        if isinstance(result, Failure):
            _mark_handled(d, result)


def as_deferred(awaitable: Any) -> Deferred[Any]:
    """Turn what ``block_on`` accepts into a Deferred (coroutines start running at once)."""
    if isinstance(awaitable, Deferred):
        return awaitable
    if isinstance(awaitable, Coroutine):
        return Deferred.fromCoroutine(awaitable)
    if asyncio.isfuture(awaitable):
        from twisted.internet import reactor

        loop = getattr(reactor, "_asyncioEventloop", None)
        if loop is None or awaitable.get_loop() is not loop:
            raise TypeError(
                "block_on() can wait on an asyncio Future only when Twisted's asyncio reactor is "
                "installed and the Future belongs to its event loop: call "
                "twisted.internet.asyncioreactor.install() before importing the reactor"
            )
        return Deferred.fromFuture(awaitable)
    raise TypeError(
        f"block_on() takes a Deferred, a coroutine or an asyncio Future, not "
        f"{type(awaitable).__name__!r}; wrap other awaitables in an 'async def'"
    )


@overload
def block_on(awaitable: Deferred[T], timeout: float | None = None) -> T: ...
@overload
def block_on(awaitable: Coroutine[Any, Any, T], timeout: float | None = None) -> T: ...
@overload
def block_on(awaitable: Awaitable[T], timeout: float | None = None) -> T: ...
def block_on(awaitable: Any, timeout: float | None = None) -> Any:
    """Wait for ``awaitable`` and return its result, or raise its failure's exception.

    ``awaitable`` is a :class:`~twisted.internet.defer.Deferred`, a coroutine (run with
    ``Deferred.fromCoroutine``) or, under the asyncio reactor, an asyncio Future.  Only the
    calling green thread waits; the reactor and every other green thread keep running.

    - An already-fired Deferred returns at once, without switching.
    - The result passes through: callbacks added later still see it, and a failure raised here
      counts as handled (it is not logged as "Unhandled error in Deferred").
    - ``timeout`` (seconds): when it passes, the Deferred is cancelled and
      :class:`txgreen.Timeout` (a ``TimeoutError``) is raised.  If the wait is interrupted any
      other way (a kill, an enclosing ``with Timeout``) the Deferred is cancelled too.
    - From the hub (reactor callbacks) it raises :class:`txgreen.BlockingInHubError`.
    - From another OS thread (a ``deferToThread`` worker) it waits like
      ``blockingCallFromThread``.
    - Once the reactor has stopped it raises :class:`txgreen.ReactorStopped`.
    """
    cur = getcurrent()
    if cur.__class__ is GreenThread and awaitable.__class__ is Deferred:
        if awaitable.called:
            if not awaitable.paused and not awaitable._runningCallbacks:
                # Fired, not waiting on another Deferred, and its callback chain not in the
                # middle of running (a green thread resumed from inside that chain may have
                # added callbacks that have not run yet, so d.result is not final): no switch.
                result = awaitable.result
                if not isinstance(result, Failure):
                    return result
        else:
            hub = cur.hub
            if timeout is None and not hub._pending and hub.state is not STOPPED:
                # The common wait, kept lean: Hub.wait inlined, with no timer, nothing to
                # convert and nothing pending for this thread.  The thread's last waiter is
                # reused when its wait ended normally (see below), with its callback pair.
                waiter = cur._spare
                if waiter is None:
                    waiter = cur._spare = Waiter(hub, cur)
                    cur._spare_callbacks = waiter.callbacks()
                else:
                    waiter.active = True
                if _APPEND_CALLBACKS == PRIVATE_LIST:
                    # d.addCallbacks(waiter.on_value, waiter.on_failure), without its call
                    # and the tuples it builds each time (see _can_append_callbacks).
                    awaitable._callbacks.append(cur._spare_callbacks)
                elif _APPEND_CALLBACKS == PUBLIC_LIST:
                    awaitable.callbacks.append(cur._spare_callbacks)  # type: ignore[attr-defined]
                else:
                    awaitable.addCallbacks(waiter.on_value, waiter.on_failure)
                cur._waiter = waiter  # parked (Hub.parked_waiter); stale once inactive
                try:
                    got = hub.greenlet.switch()  # type: ignore[union-attr]
                except BaseException:
                    cur._spare = cur._spare_callbacks = None
                    waiter.active = False
                    _abandon(awaitable)
                    raise
                if got is waiter and waiter.exc is None:
                    # Resumed by on_value (a failure, a kill, a timeout set ``exc``), which
                    # has run and is gone, and by nothing else: nothing refers to the waiter
                    # any more but this thread, so it stays the spare.
                    return waiter.value
                # Anything else (a kill, a timeout, a failure) may still hold the waiter.
                cur._spare = cur._spare_callbacks = None
                return _finish_wait(awaitable, hub.outcome, waiter, got)
    return _block(cur, awaitable, timeout)


def _can_append_callbacks(
    make: Callable[[], Deferred[int]] = Deferred, attribute: str = "_callbacks"
) -> bool:
    """True when a Deferred keeps its callbacks the way block_on's lean path appends them.

    Twisted keeps them in a list of ``((callback, args, kwargs), (errback, args, kwargs))``
    pairs, which ``addCallbacks`` only appends to: ``Deferred._callbacks`` since Twisted 25.5,
    ``Deferred.callbacks`` before (now a deprecated alias).  That is private, so it is tried
    once here, on a Deferred made by ``make``; with another layout block_on calls
    ``addCallbacks``.
    """
    d = make()
    got: list[object] = []
    failed: list[object] = []
    call: tuple[Any, tuple[()], dict[str, Any]] = (got.append, (), {})
    errback: tuple[Any, tuple[()], dict[str, Any]] = (failed.append, (), {})
    try:
        callbacks = d.__dict__[attribute]
    except (AttributeError, KeyError):
        return False
    if not isinstance(callbacks, list) or callbacks:
        return False
    callbacks.append((call, errback))
    d.callback(1)
    return got == [1] and not failed and not callbacks


# How block_on's lean path adds its callbacks (see _can_append_callbacks): appended to
# ``d._callbacks`` (PRIVATE_LIST), to ``d.callbacks`` (PUBLIC_LIST, Twisted < 25.5), or with
# ``d.addCallbacks`` (CALL).
CALL: Final = 0
PUBLIC_LIST: Final = 1
PRIVATE_LIST: Final = 2
_APPEND_CALLBACKS: int = (
    PRIVATE_LIST
    if _can_append_callbacks()
    else PUBLIC_LIST
    if _can_append_callbacks(attribute="callbacks")
    else CALL
)


class _PromptWaiter(Waiter):
    """A waiter that the reactor's result resumes right inside its callback, even when other
    green threads are runnable (a plain Waiter then queues behind them: FIFO fairness)."""

    __slots__ = ()

    def on_value(self, result: Any) -> Any:
        if self.active:
            hub = self.hub
            if getcurrent() is hub.greenlet:
                self.active = False
                self.value = result
                hub.switch_to(self.greenlet, self)
                return result
        return Waiter.on_value(self, result)


def block_on_promptly(awaitable: Any, timeout: float | None = None) -> Any:
    """``block_on``, but when a reactor callback fires the Deferred with a result, the waiting
    green thread runs inside that callback, before the reactor does anything else.

    For waits whose caller must act before the reactor runs again: ``connect_protocol``
    returns inside ``connectionMade``'s callback, so that a ``callback_queue`` made right
    after it sees every message (none can be delivered in between).
    """
    return _block(getcurrent(), awaitable, timeout, _PromptWaiter)


def _block(
    cur: Any, awaitable: Any, timeout: float | None, waiter_class: type[Waiter] = Waiter
) -> Any:
    """Everything but the fast path: checks, conversion, failures and the real wait."""
    if cur.__class__ is GreenThread:
        hub = cur.hub
    else:
        hub = get_hub()
        if not hub.check_can_block(cur, "block_on()"):
            return _block_from_thread(hub, awaitable, timeout)
    d = awaitable if isinstance(awaitable, Deferred) else as_deferred(awaitable)
    if d.called and not d.paused and not d._runningCallbacks:
        result = d.result
        if not isinstance(result, Failure):
            return result
        _mark_handled(d, result)
        raise exception_of(result)
    waiter = waiter_class(hub, cur)
    d.addCallbacks(waiter.on_value, waiter.on_failure)
    return _wait(hub, waiter, d, timeout)


def _abandon(d: Deferred[Any]) -> None:
    """Nobody waits for ``d`` any more (timeout, kill, shutdown): cancel it, quietly."""
    d.cancel()
    _mark_result_handled(d)


def _wait(hub: Hub, waiter: Waiter, d: Deferred[Any], timeout: float | None) -> Any:
    """Park until ``d`` (which resumes ``waiter``) fires; its result, or raise its failure."""
    return _finish_wait(d, hub.wait, waiter, timeout)


def _finish_wait(d: Deferred[Any], outcome: Callable[[Waiter, Any], Any], *args: Any) -> Any:
    """The result of a wait on ``d`` that ``outcome(*args)`` returns, or raise its failure."""
    try:
        result = outcome(*args)
    except BaseException:
        _abandon(d)
        raise
    if isinstance(result, Failure):
        # Resumed after the callback chain finished (see Waiter.on_failure): if the failure
        # is still the Deferred's result, the raise below is its handling.
        if d.called and not d.paused and d.result is result:
            _mark_handled(d, result)
        raise exception_of(result)
    return result


def _block_from_thread(hub: Hub, awaitable: Any, timeout: float | None) -> Any:
    """``block_on`` in an OS thread other than the reactor's: wait on a threading.Event."""
    reactor = hub.reactor
    if hub.state == STOPPED or (getattr(reactor, "_startedBefore", False) and not reactor.running):
        raise ReactorStopped()
    if not reactor.running:
        raise NotInReactorThreadError(
            "block_on() was called from an OS thread other than the reactor's while the reactor "
            "is not running, so nothing could ever complete the wait. Start the reactor first "
            "(txgreen.run() or reactor.run() in its own thread)."
        )
    done = threading.Event()
    box: list[tuple[bool, Any]] = []

    def finish(ok: bool, value: Any) -> None:
        if not box:
            box.append((ok, value))
            done.set()

    def release() -> None:
        finish(False, ReactorStopped())

    if not hub.add_thread_waiter(release):
        raise ReactorStopped()

    def start() -> None:
        try:
            d = as_deferred(awaitable)
        except BaseException as e:
            finish(False, e)
            return
        timer = None
        if timeout is not None:

            def expire() -> None:
                finish(False, Timeout(timeout))
                _abandon(d)

            timer = reactor.callLater(max(timeout, 0.0), expire)

        def on_result(result: Any) -> Any:
            if timer is not None and timer.active():
                timer.cancel()
            if isinstance(result, Failure):
                if not box:
                    hub.schedule(lambda f: _mark_handled(d, f), result)
                finish(False, result)
            else:
                finish(True, result)
            return result

        d.addBoth(on_result)

    try:
        reactor.callFromThread(start)
        done.wait()
    finally:
        hub.remove_thread_waiter(release)
    ok, value = box[0]
    if ok:
        return value
    if isinstance(value, Failure):
        raise exception_of(value)
    raise value
