"""``defer_to_green`` and ``@green``: reactor-side code (a reactor callback, a Deferred callback,
a Protocol method) calling sync-style code that blocks, and getting a Deferred back.
"""

from __future__ import annotations

import gc
import inspect
import traceback
import weakref
from contextlib import AbstractContextManager
from typing import Any, NoReturn, cast

import pytest
from twisted.internet import defer, reactor
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.protocol import Protocol
from twisted.internet.testing import StringTransport
from twisted.logger import LogEvent
from twisted.python.failure import Failure

import txgreen
from support import Boom, in_reactor_callback, later, log_events
from txgreen import GreenletExit

R: Any = reactor  # the installed reactor, untyped (its module is typed as a plain module)


def tb_names(tb: Any) -> list[str]:
    return [frame.name for frame in traceback.extract_tb(tb)]


# Sync-style functions that block: they only work in a green thread.


def fetch_and_scale(x: int, *, scale: int = 1) -> int:
    """Wait for the reactor, then compute."""
    got = txgreen.block_on(later(x))
    return got * scale


def fetch_then_fail(message: str) -> NoReturn:
    txgreen.block_on(later(None))
    raise Boom(message)


@txgreen.green
def green_double(x: int, *, extra: int = 0) -> int:
    """Double ``x`` after a round trip through the reactor."""
    return txgreen.block_on(later(x)) * 2 + extra


@txgreen.green
def green_fail(message: str) -> NoReturn:
    fetch_then_fail(message)


def expect_fetch_then_fail(d: Deferred[Any], message: str) -> Deferred[None]:
    """``d`` checked to fail (within 5 s) with the Boom(``message``) that fetch_then_fail raised."""

    def unexpected(value: object) -> None:
        raise AssertionError(f"expected a failure, got {value!r}")

    def check(failure: Failure) -> None:
        assert type(failure.value) is Boom
        assert str(failure.value) == message
        assert "fetch_then_fail" in failure.getTraceback()

    return d.addCallbacks(unexpected, check).addTimeout(5, R)


# -- defer_to_green ----------------------------------------------------------------------------


@pytest.mark.in_hub
def test_defer_to_green_from_the_hub_returns_a_deferred_of_the_result() -> Deferred[None]:
    started: list[str] = []

    def sync_code(x: int, *, scale: int) -> int:
        started.append("started")
        return fetch_and_scale(x, scale=scale)

    d = txgreen.defer_to_green(sync_code, 4, scale=10)
    assert txgreen.get_hub().in_hub()
    assert isinstance(d, Deferred)
    assert not d.called  # the caller gets the Deferred first; the function runs later
    assert started == []

    def check(value: int) -> None:
        assert value == 40
        assert started == ["started"]

    return d.addCallback(check).addTimeout(5, R)


@pytest.mark.in_hub
def test_defer_to_green_from_the_hub_propagates_the_failure() -> Deferred[None]:
    d = txgreen.defer_to_green(fetch_then_fail, "failed after blocking")
    return expect_fetch_then_fail(d, "failed after blocking")


def test_defer_to_green_from_a_call_later_callback() -> None:
    seen: list[bool] = []

    def reactor_side() -> Deferred[int]:
        seen.append(txgreen.get_hub().in_hub())
        # Blocking right here is an error; defer_to_green is the way out.
        with pytest.raises(txgreen.BlockingInHubError):
            txgreen.block_on(later(1))
        return txgreen.defer_to_green(fetch_and_scale, 21, scale=2)

    assert txgreen.block_on(in_reactor_callback(reactor_side), timeout=5) == 42
    assert seen == [True]


def test_defer_to_green_failure_from_a_call_later_callback_keeps_the_traceback() -> None:
    d = in_reactor_callback(lambda: txgreen.defer_to_green(fetch_then_fail, "from callLater"))
    with pytest.raises(Boom, match=r"^from callLater$") as excinfo:
        txgreen.block_on(d, timeout=5)
    assert "fetch_then_fail" in tb_names(excinfo.value.__traceback__)


def test_defer_to_green_never_raises_synchronously() -> None:
    def fails_at_once() -> NoReturn:
        raise Boom("at once")

    d = txgreen.defer_to_green(fails_at_once)  # no exception here
    assert not d.called
    with pytest.raises(Boom, match=r"^at once$"):
        txgreen.block_on(d)


def test_defer_to_green_from_a_green_thread() -> None:
    d = txgreen.defer_to_green(fetch_and_scale, 5, scale=3)
    assert isinstance(d, Deferred)
    assert txgreen.block_on(d) == 15


def test_defer_to_green_passes_the_result_through_untouched() -> None:
    result = object()
    assert txgreen.block_on(txgreen.defer_to_green(lambda: result)) is result


def test_defer_to_green_passes_kwargs_named_like_its_own_parameter() -> None:
    def target(fn: str) -> str:
        return fn

    assert txgreen.block_on(txgreen.defer_to_green(target, fn="value")) == "value"


def test_cancelling_the_deferred_kills_the_green_thread() -> None:
    steps: list[str] = []
    inner_cancelled: list[str] = []

    def sync_code() -> None:
        try:
            txgreen.block_on(Deferred(lambda d: inner_cancelled.append("cancelled")))
            steps.append("not reached")
        finally:
            steps.append("finally")

    d = txgreen.defer_to_green(sync_code)
    txgreen.sleep(0)  # it runs and blocks
    d.cancel()
    with pytest.raises(CancelledError):
        txgreen.block_on(d)
    txgreen.sleep(0)  # the kill is delivered by the hub
    assert steps == ["finally"]
    assert inner_cancelled == ["cancelled"]


def test_cancelling_before_the_green_thread_starts() -> None:
    ran: list[str] = []
    d = txgreen.defer_to_green(ran.append, "ran")
    d.cancel()
    with pytest.raises(CancelledError):
        txgreen.block_on(d)
    txgreen.sleep(0)
    assert ran == []


@pytest.mark.in_hub
def test_cancelling_from_the_hub_errbacks_cancelled_error() -> Deferred[None]:
    ran: list[str] = []
    d = txgreen.defer_to_green(ran.append, "ran")
    d.cancel()
    outcome: list[object] = []
    d.addBoth(outcome.append)
    assert ran == []
    [result] = outcome
    assert not isinstance(result, GreenletExit), "fired with the GreenletExit as its result"
    assert isinstance(result, Failure)
    assert isinstance(result.value, CancelledError)
    return defer.succeed(None)


# -- @green ------------------------------------------------------------------------------------


def test_green_keeps_the_functions_identity() -> None:
    def original(x: int, *, extra: int = 0) -> int:
        """Double ``x`` after a round trip through the reactor."""
        return x

    assert green_double.__name__ == "green_double"
    assert green_double.__qualname__ == "green_double"
    assert green_double.__module__ == __name__
    assert green_double.__doc__ == "Double ``x`` after a round trip through the reactor."
    wrapped = getattr(green_double, "__wrapped__", None)
    assert callable(wrapped)
    assert wrapped is not green_double
    assert inspect.signature(green_double) == inspect.signature(original)


@pytest.mark.in_hub
def test_green_function_called_from_the_hub() -> Deferred[None]:
    d = green_double(20, extra=2)
    assert isinstance(d, Deferred)
    assert not d.called

    def check(value: int) -> None:
        assert value == 42

    return d.addCallback(check).addTimeout(5, R)


@pytest.mark.in_hub
def test_green_function_failure_from_the_hub() -> Deferred[None]:
    return expect_fetch_then_fail(green_fail("green failure"), "green failure")


def test_green_function_as_a_deferred_callback() -> None:
    # Reactor-side callback chain: the @green callback returns a Deferred, which Twisted chains.
    source: Deferred[int] = Deferred()
    chained = source.addCallback(green_double)
    R.callLater(0, source.callback, 10)
    assert txgreen.block_on(chained, timeout=5) == 20


def test_green_function_as_an_errback_chain() -> None:
    source: Deferred[str] = Deferred()
    chained = source.addCallback(green_fail)
    R.callLater(0, source.callback, "failed in a callback")
    with pytest.raises(Boom, match=r"^failed in a callback$"):
        txgreen.block_on(chained, timeout=5)


def test_green_function_called_from_a_green_thread() -> None:
    d: Deferred[int] = green_double(3)
    assert txgreen.block_on(d) == 6


def test_green_method_on_a_protocol() -> None:
    class Shout(Protocol):
        """Answers each chunk in upper case after a (simulated) lookup on the reactor."""

        def __init__(self) -> None:
            self.replies: list[Deferred[None]] = []

        def dataReceived(self, data: bytes) -> None:
            # Reactor-side: must not block, so hand the work to a green thread.
            self.replies.append(self.answer(data))

        @txgreen.green
        def answer(self, data: bytes) -> None:
            reply = txgreen.block_on(later(data.upper()))
            transport: Any = self.transport
            transport.write(reply + b"\n")

    proto = Shout()
    transport: Any = cast(Any, StringTransport)()
    cast(Any, proto).makeConnection(transport)

    def receive() -> Deferred[list[None]]:
        proto.dataReceived(b"hello")
        proto.dataReceived(b"world")
        assert transport.value() == b""  # nothing blocked in the hub
        return defer.gatherResults(proto.replies)

    assert txgreen.block_on(in_reactor_callback(receive), timeout=5) == [None, None]
    assert transport.value() == b"HELLO\nWORLD\n"


# -- unhandled failures ------------------------------------------------------------------------


def logged_failures() -> AbstractContextManager[list[LogEvent]]:
    gc.collect()  # flush the garbage of earlier tests first
    return log_events(lambda e: "log_failure" in e)


def test_unhandled_failure_is_reported_once_by_the_deferred() -> None:
    message = "nobody added an errback"
    with logged_failures() as events:
        d = txgreen.defer_to_green(fetch_then_fail, message)
        ref = weakref.ref(d)
        fired: Deferred[None] = Deferred()

        def note(result: object) -> object:
            fired.callback(None)
            return result  # passes the failure on: still unhandled

        d.addBoth(note)
        txgreen.block_on(fired)
        assert d.called
        del d
        txgreen.sleep(0)
        gc.collect()
        assert ref() is None
    mine = [e for e in events if str(e["log_failure"].value) == message]
    assert len(mine) == 1, mine
    [event] = mine
    assert event["log_namespace"] == "twisted.internet.defer"  # Twisted's report, not txgreen's
