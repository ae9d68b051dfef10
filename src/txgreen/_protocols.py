"""Existing Twisted protocols from sync-style code.

Three small tools let a green thread use an ordinary Twisted protocol (``LineReceiver``, AMP, an
HTTP client) without rewriting it:

- :func:`connect_protocol` connects one through an endpoint and returns it once
  ``connectionMade`` has run (or raises the connection error);
- :func:`blocking` wraps any object so that its methods returning Deferreds block the calling
  green thread and return the result (``blocking(amp).callRemote(Sum, a=1, b=2)``);
- :func:`callback_queue` turns the calls of one protocol method (``lineReceived``) into a bounded
  queue that a green thread reads, ending when the connection is lost; when it is full the
  transport is paused, so a fast peer cannot make it grow without bound.

The other direction, reactor-side code calling sync-style code, is :func:`txgreen.green`.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable, Coroutine, Iterator
from typing import Any, Generic, TypeVar, overload

from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectionDone
from twisted.internet.interfaces import IProtocol, IProtocolFactory
from twisted.internet.protocol import Factory, Protocol
from twisted.protocols.basic import IntNStringReceiver, LineReceiver
from twisted.python.failure import Failure

from txgreen._block import as_deferred, block_on, block_on_promptly
from txgreen._endpoints import ClientAddress, client_endpoint
from txgreen._event import park
from txgreen._greenthread import current_hub_and_greenlet
from txgreen._hub import TIMED_OUT, Waiter, get_hub
from txgreen._queue import Empty
from txgreen._util import failure_of, own_failure
from txgreen.errors import TxgreenError

__all__ = [
    "CallbackQueue",
    "CallbackQueueClosed",
    "blocking",
    "callback_queue",
    "connect_protocol",
]

P = TypeVar("P", bound=Protocol)
T = TypeVar("T")


# -- connect_protocol -----------------------------------------------------------------------------


class _OneProtocolFactory(Factory):
    """Builds the protocols ``connect_protocol`` was given (an instance, or a callable)."""

    def __init__(self, make: Callable[[], Any]) -> None:
        self._make = make

    def buildProtocol(self, addr: Any) -> Any:
        p = self._make()
        if not IProtocol.providedBy(p):
            raise TypeError(
                f"connect_protocol(): the callable returned {p!r}, which is not a protocol"
            )
        p.factory = self
        return p


def _as_factory(what: Any) -> Any:
    if IProtocolFactory.providedBy(what):
        return what
    if IProtocol.providedBy(what):
        return _OneProtocolFactory(lambda: what)
    if isinstance(what, type) and IProtocolFactory.implementedBy(what):
        raise TypeError(
            f"connect_protocol() was given the factory class {what.__name__}; pass an instance"
        )
    if callable(what):
        return _OneProtocolFactory(what)
    raise TypeError(
        "connect_protocol() takes a protocol factory, a protocol instance or a callable that "
        f"returns a protocol, not {type(what).__name__!r}"
    )


@overload
def connect_protocol(
    endpoint: ClientAddress,
    factory_or_protocol: P,
    *,
    timeout: float | None = None,
    reactor: Any = None,
) -> P: ...
@overload
def connect_protocol(
    endpoint: ClientAddress,
    factory_or_protocol: Callable[[], P],
    *,
    timeout: float | None = None,
    reactor: Any = None,
) -> P: ...
@overload
def connect_protocol(
    endpoint: ClientAddress,
    factory_or_protocol: Factory,
    *,
    timeout: float | None = None,
    reactor: Any = None,
) -> Any: ...
def connect_protocol(
    endpoint: Any,
    factory_or_protocol: Any,
    *,
    timeout: float | None = None,
    reactor: Any = None,
) -> Any:
    """Connect an ordinary Twisted protocol and return it once ``connectionMade`` has run.

    ``endpoint`` is a port on 127.0.0.1, a ``(host, port)`` tuple, a client endpoint
    description (``"tcp:host=127.0.0.1:port=8080"``) or an ``IStreamClientEndpoint``.
    ``factory_or_protocol`` is a protocol factory (the protocol it
    builds is returned), a protocol instance, or a zero-argument callable returning one (a
    protocol class).  Blocks the calling green thread until the protocol's ``connectionMade``
    has run; raises the connection error (Twisted's ``ConnectionRefusedError``, a DNS error,
    ...), or :class:`txgreen.Timeout` after ``timeout`` seconds, in which case the connection
    attempt is cancelled (as it is when the green thread is killed meanwhile).
    """
    if reactor is None:
        reactor = get_hub().reactor
    ep: Any = client_endpoint(reactor, endpoint, "connect_protocol()")
    factory = _as_factory(factory_or_protocol)
    current_hub_and_greenlet("connect_protocol()")  # check before starting to connect
    # On a timeout or a kill block_on cancels the Deferred, which cancels the attempt.
    # (own_failure: the error raised here is never an object Twisted shares between
    # connections, see txgreen._util.)  Promptly: this thread returns inside the callback
    # that connected, so the reactor delivers nothing before the caller's next statement.
    return block_on_promptly(ep.connect(factory).addErrback(own_failure), timeout)


# -- blocking --------------------------------------------------------------------------------------


def _is_awaitable_result(value: Any) -> bool:
    return isinstance(value, Deferred | Coroutine) or asyncio.isfuture(value)


def _take(d: Deferred[Any]) -> Deferred[Any]:
    """A Deferred with ``d``'s outcome, which ``d`` hands over and then forgets.

    The caller of a method through :func:`blocking` is the only one given its Deferred, and
    the raised exception is its handling of a failure.  Callbacks that the method's library
    adds later (AMP adds an errback that logs an error nobody handled and drops the
    connection) must then see no failure, so ``d`` continues with None.  Cancelling the new
    Deferred (a timeout, a kill) cancels ``d``.
    """
    out: Deferred[Any] = Deferred(lambda _: d.cancel())

    def hand_over(result: Any) -> None:
        if not out.called:
            if isinstance(result, Failure):
                # A copy if Twisted may share the exception between connections (AMP fails
                # every pending call with its connectionLost reason): the caller's own object.
                out.errback(own_failure(result))
            else:
                out.callback(result)

    d.addBoth(hand_over)
    return out


class _BlockingProxy:
    """What :func:`blocking` returns: attribute access goes to the wrapped object."""

    __slots__ = ("_txgreen_target", "_txgreen_timeout")

    _txgreen_target: Any
    _txgreen_timeout: float | None

    def __init__(self, target: Any, timeout: float | None) -> None:
        object.__setattr__(self, "_txgreen_target", target)
        object.__setattr__(self, "_txgreen_timeout", timeout)

    def __repr__(self) -> str:
        return f"<txgreen.blocking {self._txgreen_target!r}>"

    def __getattr__(self, name: str) -> Any:
        target = self._txgreen_target
        attr = getattr(target, name)
        if not callable(attr) or isinstance(attr, type):
            return attr
        timeout = self._txgreen_timeout
        what = f"blocking({type(target).__name__}).{name}()"

        def call(*args: Any, **kwargs: Any) -> Any:
            # Check before calling: a call whose result nobody can wait for must not be made
            # (a request would be sent, an answer lost).
            current_hub_and_greenlet(what)
            result = attr(*args, **kwargs)
            if _is_awaitable_result(result):
                return block_on(_take(as_deferred(result)), timeout)
            return result

        call.__name__ = name
        call.__qualname__ = f"blocking.{name}"
        call.__doc__ = getattr(attr, "__doc__", None)
        return call

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self._txgreen_target, name, value)

    def __delattr__(self, name: str) -> None:
        delattr(self._txgreen_target, name)

    def __dir__(self) -> list[str]:
        return dir(self._txgreen_target)


def blocking(obj: Any, *, timeout: float | None = None) -> Any:
    """A proxy of ``obj`` whose methods block until the Deferred they return has fired.

    ``blocking(amp).callRemote(Sum, a=1, b=2)`` returns the answer's dict instead of a
    Deferred; ``blocking(agent).request(b"GET", url)`` returns the response.  A method that
    returns a Deferred (or a coroutine, or under the asyncio reactor an asyncio Future) has its
    result waited for with :func:`txgreen.block_on`, so a failure raises its exception; any
    other result, and every non-callable attribute, passes through unchanged.  Setting an
    attribute sets it on ``obj``.

    ``timeout`` (seconds) bounds each such wait: when it passes the Deferred is cancelled and
    :class:`txgreen.Timeout` is raised.  Calling a method from the hub (a reactor callback)
    raises :class:`txgreen.BlockingInHubError` before the method is called; from an OS thread
    other than the reactor's, :class:`txgreen.NotInReactorThreadError`.
    """
    if isinstance(obj, _BlockingProxy):
        obj = obj._txgreen_target
    if timeout is not None and timeout < 0:
        raise ValueError(f"timeout must be None or >= 0, not {timeout!r}")
    return _BlockingProxy(obj, timeout)


# -- callback_queue --------------------------------------------------------------------------------


class CallbackQueueClosed(TxgreenError):
    """:meth:`CallbackQueue.get` found the queue empty and its connection lost.

    ``reason`` is the ``Failure`` given to ``connectionLost`` (``ConnectionDone`` for a clean
    close), or a copy of it when Twisted shares that object between connections.  Iterating
    over the queue ends quietly instead of raising this.
    """

    def __init__(self, reason: Failure | None) -> None:
        why = reason.getErrorMessage() if reason is not None else "closed"
        super().__init__(f"the connection was lost ({why}) and every item has been taken")
        self.reason = reason


_END = object()


def _already_lost(protocol: Any) -> bool:
    """True if ``protocol``'s connection is known to be lost already.

    A transport that has been connected and lost says so with ``disconnected`` (TCP, UNIX,
    and under a wrapper such as TLS, the transport it wraps); a protocol that was connected
    and whose transport is gone again has been disconnected too.
    """
    transport = getattr(protocol, "transport", None)
    if transport is None:
        return bool(getattr(protocol, "connected", False))
    for _ in range(8):  # wrappers of wrappers, but never a loop
        if getattr(transport, "disconnected", False):
            return True
        transport = getattr(transport, "transport", None)
        if transport is None:
            break
    return False


class CallbackQueue(Generic[T]):
    """The calls of one protocol method, queued for green threads; see :func:`callback_queue`."""

    def __init__(self, protocol: Any, method: str, maxsize: int, low_water: int | None) -> None:
        if maxsize < 1:
            raise ValueError(f"maxsize must be >= 1, not {maxsize!r}")
        if low_water is None:
            low_water = maxsize // 2
        if not 0 <= low_water < maxsize:
            raise ValueError(f"low_water must be >= 0 and < maxsize, not {low_water!r}")
        if not callable(getattr(protocol, method, None)):
            raise AttributeError(f"{type(protocol).__name__} has no method {method!r}")
        self.protocol = protocol
        self.method = method
        self.maxsize = maxsize
        self.low_water = low_water
        self.reason: Failure | None = None
        self._items: deque[Any] = deque()
        self._getters: deque[Waiter] = deque()
        self._closed = False
        self._paused = False
        self._resume_scheduled = False
        # The protocol's own flow control stops it delivering more calls at once; for others
        # we can only stop the transport, so up to one read's worth of calls may still come.
        self._own_pause = isinstance(protocol, LineReceiver | IntNStringReceiver)
        self._original_lost = protocol.connectionLost
        protocol.__dict__[method] = self._on_call
        protocol.__dict__["connectionLost"] = self._on_lost
        if _already_lost(protocol):
            # connectionLost has run already and will not run again: the queue is closed now.
            self._closed = True
            self.reason = failure_of(
                ConnectionDone("the connection was closed before callback_queue() was called")
            )

    def __repr__(self) -> str:
        state = "closed" if self._closed else ("paused" if self._paused else "open")
        return (
            f"<txgreen.CallbackQueue {type(self.protocol).__name__}.{self.method} "
            f"{len(self._items)}/{self.maxsize} items, {state}>"
        )

    # -- the reactor side (the hub) --------------------------------------------------------------

    def _on_call(self, *args: Any) -> None:
        if self._closed:
            return
        item = args[0] if len(args) == 1 else args
        getters = self._getters
        while getters:
            if getters.popleft().resume_later(item):
                return
        self._items.append(item)
        if len(self._items) >= self.maxsize and not self._paused:
            self._pause()

    def _on_lost(self, reason: Failure) -> None:
        try:
            self._original_lost(reason)
        finally:
            self._closed = True
            # Not the object Twisted may hand to every connection lost the same way: a copy
            # that the consumer may raise (see txgreen._util).
            self.reason = own_failure(reason)
            getters = self._getters
            while getters:
                getters.popleft().resume_later(_END)

    def _transport(self) -> Any:
        return self.protocol.transport

    def _pause(self) -> None:
        transport = self._transport()
        if transport is None:
            return
        self._paused = True
        if self._own_pause:
            self.protocol.pauseProducing()
        else:
            transport.pauseProducing()

    def _resume(self, _: object = None) -> None:
        self._resume_scheduled = False
        if not self._paused or self._closed or len(self._items) > self.low_water:
            return
        self._paused = False
        if self._own_pause:
            self.protocol.resumeProducing()  # also delivers the calls it held back
        else:
            self._transport().resumeProducing()

    # -- the green side ------------------------------------------------------------------------

    @property
    def paused(self) -> bool:
        """True while the transport is paused because the queue is full."""
        return self._paused

    @property
    def closed(self) -> bool:
        """True once ``connectionLost`` has been called (items may still be queued)."""
        return self._closed

    def qsize(self) -> int:
        """The number of calls queued and not yet taken."""
        return len(self._items)

    def _took(self) -> None:
        if self._paused and not self._resume_scheduled and len(self._items) <= self.low_water:
            # Resume in the hub: the protocol then delivers what it held back, in the hub.
            self._resume_scheduled = True
            get_hub().schedule(self._resume, None)

    def get(self, block: bool = True, timeout: float | None = None) -> T:
        """The next call's argument (a tuple of them for a method of several arguments).

        Waits while the queue is empty, at most ``timeout`` seconds (then raises
        :class:`txgreen.Empty`; ``block=False`` raises it at once).  Once the connection is
        lost and every item has been taken it raises :class:`CallbackQueueClosed`.
        """
        if self._items:
            item = self._items.popleft()
            self._took()
            return item  # type: ignore[no-any-return]
        if self._closed:
            raise CallbackQueueClosed(self.reason)
        if not block:
            raise Empty(f"CallbackQueue.get(): no {self.method}() call is queued")
        cur, hub = current_hub_and_greenlet(f"CallbackQueue.get() ({self.method})")
        waiter = Waiter(hub, cur)
        item = park(self._getters, waiter, waiter, timeout, timed=True)
        if item is TIMED_OUT:
            raise Empty(f"CallbackQueue.get(): no {self.method}() call within {timeout} seconds")
        if item is _END:
            raise CallbackQueueClosed(self.reason)
        return item  # type: ignore[no-any-return]

    def get_nowait(self) -> T:
        """``get(block=False)``."""
        return self.get(False)

    def __iter__(self) -> Iterator[T]:
        return self

    def __next__(self) -> T:
        try:
            return self.get()
        except CallbackQueueClosed:
            raise StopIteration from None


def callback_queue(
    protocol: Any, method: str, *, maxsize: int = 1000, low_water: int | None = None
) -> CallbackQueue[Any]:
    """Queue the calls of ``protocol.<method>`` for green threads; iteration ends at
    ``connectionLost``.

    ``messages = callback_queue(proto, "lineReceived")`` replaces the protocol's
    ``lineReceived`` (on this instance) with a function that queues its argument (a tuple of
    the arguments for a method that takes several); ``messages.get()`` or ``for line in
    messages`` takes them in order from a green thread.  The protocol's ``connectionLost``
    still runs, then ends the queue: iteration stops once every queued item has been taken
    (``get()`` raises :class:`CallbackQueueClosed`), and ``messages.reason`` is the Failure
    it was given (a copy of it when Twisted shares that object between connections).  Calls
    made after that are dropped.  On a connection already lost the queue is closed from the
    start (``reason`` is then a ``ConnectionDone`` saying so).

    Bounded: when ``maxsize`` items are queued the transport is paused (``pauseProducing``),
    and resumed once the consumer has brought the queue down to ``low_water`` items (default
    ``maxsize // 2``).  ``LineReceiver`` and the ``IntNStringReceiver`` family (AMP included)
    are paused through their own ``pauseProducing``, which also holds back the rest of the
    data already read, so the queue never holds more than ``maxsize`` items; other protocols
    may still deliver the calls of the data already read (one read, at most 64 KiB).

    Make the queue before the connection receives data (for example right after
    :func:`connect_protocol` returns, or in ``connectionMade``).
    """
    return CallbackQueue(protocol, method, maxsize, low_water)
