"""``txgreen.generator``: a generator whose body can yield from any depth of nested calls.

A native generator can only ``yield`` in its own frame.  ``generator(func)`` runs ``func`` in a
greenlet of its own and hands it a ``yield_`` callable: ``func``, or any function it calls, calls
``yield_(value)`` to produce a value, and the consumer's ``next()`` switches into the body until
the next ``yield_``.  The result behaves like a native generator object: ``next``, ``for``,
``send``, ``throw``, ``close``, ``StopIteration.value`` for the body's return value, PEP 479's
``RuntimeError`` for a ``StopIteration`` escaping the body, and ``GeneratorExit`` raised at the
pending ``yield_`` by ``close()`` (and when the generator is garbage-collected).

It is plain greenlet switching: no reactor is needed.  Inside a green thread the body may also
block (``block_on``, ``sleep``): the consumer then waits inside its ``next()`` while the reactor
and other green threads run.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from types import TracebackType
from typing import Any, Concatenate, Generic, ParamSpec, TypeVar, overload

from greenlet import getcurrent
from greenlet import greenlet as _greenlet
from twisted.logger import Logger

from txgreen._greenthread import _callable_name
from txgreen._util import failure_of, hidden_in_reports, make_exception
from txgreen.errors import BlockingInHubError

__all__ = ["GreenGenerator", "generator"]

__tracebackhide__ = hidden_in_reports  # pytest: the user's frames, not txgreen's

Y = TypeVar("Y")
P = ParamSpec("P")

log = Logger(namespace="txgreen")

_YIELD = 0  # the body called yield_(value)
_RETURN = 1  # the body returned value
_RAISE = 2  # the body raised value (an exception)
# What the body's greenlet passes to its consumer when it yields or ends: anything else arriving
# in the consumer's switch() comes from a txgreen wait switching to the hub (see _resume).
_SIGNAL: Any = object()


class _State:
    """What the body's greenlet and ``yield_`` share.  It never refers to the GreenGenerator,
    so dropping the last reference to that object closes the generator at once (as CPython
    does for native generators)."""

    __slots__ = ("consumer", "func", "gr", "inbox", "kind", "name", "thread", "value")

    def __init__(self, func: Callable[..., Any], name: str) -> None:
        self.func: Callable[..., Any] | None = func
        self.name = name
        self.gr: _greenlet | None = None
        self.consumer: _greenlet | None = None
        self.thread = threading.get_ident()
        # consumer -> body: (is_throw, value); body -> consumer: (kind, value)
        self.inbox: tuple[bool, Any] = (False, None)
        self.kind = _YIELD
        self.value: Any = None


def _make_yield(state: _State) -> Callable[[Any], Any]:
    def yield_(value: Any = None) -> Any:
        """Produce ``value`` to the consumer; return what it sends (None for ``next()``)."""
        gr = state.gr
        if gr is None or getcurrent() is not gr or state.consumer is None:
            raise RuntimeError(
                f"yield_() of {state.name} was called outside that generator's body (from "
                "another greenlet, or after the generator finished); call it only from the "
                "function given to txgreen.generator() or from functions that function calls"
            )
        state.kind = _YIELD
        state.value = value
        state.consumer.switch(_SIGNAL)
        is_throw, got = state.inbox
        state.inbox = (False, None)
        if is_throw:
            raise got
        return got

    return yield_


def _body(state: _State, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    is_throw, got = state.inbox
    state.inbox = (False, None)
    func = state.func
    state.func = None
    assert func is not None
    try:
        if is_throw:
            raise got  # thrown in before the first next(): the body never runs
        result = func(_make_yield(state), *args, **kwargs)
    except StopIteration as e:
        err = RuntimeError("generator raised StopIteration")
        err.__cause__ = e
        state.kind, state.value = _RAISE, err
    except BaseException as e:
        state.kind, state.value = _RAISE, e
    else:
        state.kind, state.value = _RETURN, result
    finally:
        del func
    return _SIGNAL  # to the parent, which _resume set to the consumer


class GreenGenerator(Iterator[Y], Generic[Y]):
    """The iterator :func:`generator` returns; it behaves like a native generator object."""

    __slots__ = ("__weakref__", "_args", "_kwargs", "_running", "_started", "_state")

    def __init__(
        self, func: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> None:
        name = _callable_name(func)
        self._state: _State | None = _State(func, f"<txgreen.generator {name}>")
        self._args = args
        self._kwargs = kwargs
        self._started = False
        self._running = False

    def __repr__(self) -> str:
        state = self._state
        if state is None:
            return "<txgreen.generator (finished)>"
        return state.name[:-1] + (" running>" if self._running else ">")

    def __iter__(self) -> GreenGenerator[Y]:
        return self

    def __next__(self) -> Y:
        return self._resume(False, None)  # type: ignore[no-any-return]

    def send(self, value: Any) -> Y:
        """Resume the body: the pending ``yield_`` returns ``value``; return the next value."""
        if not self._started and value is not None and self._state is not None:
            raise TypeError("can't send non-None value to a just-started generator")
        return self._resume(False, value)  # type: ignore[no-any-return]

    @overload
    def throw(
        self, typ: type[BaseException], val: object = None, tb: TracebackType | None = None, /
    ) -> Y: ...
    @overload
    def throw(
        self, typ: BaseException, val: None = None, tb: TracebackType | None = None, /
    ) -> Y: ...
    def throw(self, typ: Any, val: Any = None, tb: TracebackType | None = None, /) -> Y:
        """Raise an exception at the pending ``yield_``; return the next value it yields.

        Before the body has started, the exception is raised here and the generator is
        finished, as with a native generator.
        """
        exc = make_exception(typ, val, tb)
        if self._state is None or not self._started:
            self._finish()  # a native generator is finished too, its body never having run
            raise exc
        return self._resume(True, exc)  # type: ignore[no-any-return]

    def close(self) -> None:
        """Raise ``GeneratorExit`` at the pending ``yield_`` so the body's ``finally`` blocks run.

        Like a native generator: no effect once finished; a body that never started just
        finishes; a body that yields again raises ``RuntimeError("generator ignored
        GeneratorExit")``; any other exception the body raises propagates.
        """
        state = self._state
        if state is None:
            return
        if not self._started:
            self._finish()
            return
        try:
            self._resume(True, GeneratorExit())
        except (GeneratorExit, StopIteration):
            return
        raise RuntimeError("generator ignored GeneratorExit")

    def __del__(self) -> None:
        state = self._state
        if state is None or not self._started or self._running:
            return
        if state.thread != threading.get_ident():
            return  # cannot switch into another OS thread's greenlet; greenlet cleans it up
        try:
            self.close()
        except BaseException as e:  # like a native generator's close() during collection
            log.failure("Exception ignored while closing {name}", failure_of(e), name=state.name)

    # -- internals ------------------------------------------------------------------------------

    def _finish(self) -> None:
        self._state = None
        self._args = ()
        self._kwargs = {}

    def _resume(self, is_throw: bool, value: Any) -> Any:
        state = self._state
        if state is None:
            if is_throw:
                raise value
            raise StopIteration
        if self._running:
            raise ValueError("generator already executing")
        if state.thread != threading.get_ident():
            raise RuntimeError(f"{state.name} belongs to another OS thread")
        consumer = getcurrent()
        gr = state.gr
        if gr is None:
            args, kwargs = self._args, self._kwargs
            gr = state.gr = _greenlet(lambda: _body(state, args, kwargs), parent=consumer)
            self._started = True
        else:
            gr.parent = consumer  # so that the body's end returns here, whoever consumes it
        state.consumer = consumer
        state.inbox = (is_throw, value)
        self._running = True
        try:
            if gr.switch() is not _SIGNAL:
                self._blocked_in_hub(state, gr)
        finally:
            self._running = False
            state.consumer = None
        kind, out = state.kind, state.value
        state.value = None
        if gr.dead:
            self._finish()
        if kind == _YIELD and not gr.dead:
            return out
        if kind == _RETURN:
            raise StopIteration(out) if out is not None else StopIteration
        raise out

    def _blocked_in_hub(self, state: _State, gr: _greenlet) -> None:
        # The body called a txgreen blocking function while the consumer is the hub: hub.wait
        # switched to the hub, which is us.  Make that wait raise BlockingInHubError in the body
        # (as block_on in the hub itself does), then carry on with whatever the body does next.
        from txgreen._hub import get_hub

        hub = get_hub()
        if getcurrent() is not hub.greenlet:  # pragma: no cover - defensive
            raise RuntimeError(f"{state.name}: unexpected switch into its consumer")
        exc = BlockingInHubError(
            f"a blocking call in the body of {state.name}, consumed by the hub,"
        )
        while not gr.dead and hub.parked_waiter(gr) is not None:
            hub.interrupt(gr, exc)


def generator(
    func: Callable[Concatenate[Callable[[Any], Any], P], Any], /, *args: P.args, **kwargs: P.kwargs
) -> GreenGenerator[Any]:
    """An iterator over the values ``func(yield_, *args, **kwargs)`` produces with ``yield_``.

    ``func`` runs in a greenlet of its own, starting at the first ``next()`` (as a native
    generator function's body does).  ``yield_(value)`` may be called by ``func`` or by any
    function it calls, at any depth; it suspends the body, hands ``value`` to the consumer, and
    returns what the consumer passes to ``send()`` (None for ``next()``).  ``func``'s return
    value becomes ``StopIteration.value``.  Calling ``yield_`` from outside the body raises
    ``RuntimeError``.  See docs/generators.md for the exact behaviour, including blocking calls
    in the body.
    """
    return GreenGenerator(func, args, kwargs)
