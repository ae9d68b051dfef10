"""Green threads: spawn, sleep, join, kill, links, and the bridge to Deferreds."""

from __future__ import annotations

import contextvars
import functools
import threading
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Generic, ParamSpec, TypeVar

from greenlet import GreenletExit, getcurrent
from greenlet import greenlet as _greenlet
from twisted.internet.defer import Deferred
from twisted.logger import Logger

from txgreen import _hub
from txgreen._hub import STOPPED, TIMED_OUT, Hub, Waiter, get_hub, wait_timed
from txgreen._timeout import Timeout
from txgreen._util import block_and_timeout, failure_of, hidden_in_reports
from txgreen.errors import NotInReactorThreadError, ReactorStopped

if TYPE_CHECKING:
    from twisted.internet.base import DelayedCall

    from txgreen._mailbox import Mailbox
    from txgreen._process import MonitorRef

__all__ = [
    "GreenThread",
    "current_hub_and_greenlet",
    "defer_to_green",
    "green",
    "sleep",
    "spawn",
    "spawn_later",
]

__tracebackhide__ = hidden_in_reports  # pytest: the user's frames, not txgreen's

P = ParamSpec("P")
T = TypeVar("T")

log = Logger(namespace="txgreen")


class _UnretrievedError:
    """Logs a green thread's exception if nobody ever looks at it (like Deferred's DebugInfo)."""

    __slots__ = ("exc", "name")

    def __init__(self, name: str, exc: BaseException) -> None:
        self.name = name
        self.exc: BaseException | None = exc

    def __del__(self) -> None:
        exc = self.exc
        if exc is not None:
            self.exc = None
            log.failure(
                "Unhandled error in green thread {name} (nobody called get() or looked at "
                "its exception):",
                failure_of(exc),
                name=self.name,
            )


def _invoke(fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    # A separate frame so that an exception's traceback does not hold the GreenThread.
    try:
        if not kwargs:
            # CPython 3.11+ runs a Python function called with a fixed number of arguments in
            # the caller's C frame of the interpreter; fn(*args) nests another one, which the
            # greenlet then keeps saved for as long as the thread waits (0.4-0.6 KB per
            # waiting thread: benchmarks/bench_memory.py).
            n = len(args)
            if n == 0:
                return True, fn()
            if n == 1:
                return True, fn(args[0])
            if n == 2:
                return True, fn(args[0], args[1])
        return True, fn(*args, **kwargs)
    except BaseException as e:
        return False, e


def _callable_name(fn: Callable[..., Any]) -> str:
    return getattr(fn, "__qualname__", None) or repr(fn)


def check_callable(fn: object, what: str) -> None:
    """Raise TypeError at once, in the caller, if ``fn`` cannot be called (as gevent does)."""
    if not callable(fn):
        raise TypeError(f"{what} needs a callable, not {type(fn).__name__} ({fn!r:.80})")


class GreenThread(_greenlet, Generic[T]):
    """A green thread: a greenlet scheduled by the hub, with a result you can wait for.

    Create one with :func:`spawn` or :func:`spawn_later`, never directly.  It starts on the
    hub's next turn, runs until it blocks (then other green threads and the reactor run), and
    ends when its function returns or raises.  Its context (``contextvars``) starts as a copy of
    the spawner's.
    """

    # Slots keep a thread's own fields out of a per-instance dict (one pointer each, where a
    # dict of these names would take several hundred bytes per thread); greenlet's __dict__
    # stays available for attributes that callers add.
    __slots__ = (
        "_args",
        "_done",
        "_exception",
        "_fn",
        "_kill_exc",
        "_kwargs",
        "_links",
        "_mailbox",
        "_reporter",
        "_spare",
        "_spare_callbacks",
        "_start_call",
        "_started",
        "_value",
        "_waiter",
        "hub",
        "name",
    )

    hub: Hub
    _started: bool
    _done: bool

    def __init__(
        self,
        hub: Hub,
        fn: Callable[..., T],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> None:
        _greenlet.__init__(self, parent=hub.ensure_greenlet())
        self.gr_context = contextvars.copy_context()
        self.hub = hub
        self._fn: Callable[..., T] | None = fn
        self._args: tuple[Any, ...] | None = args
        self._kwargs: dict[str, Any] | None = kwargs
        self.name = _callable_name(fn)
        self._started = False
        self._done = False
        self._value: Any = None
        self._exception: BaseException | None = None
        self._kill_exc: BaseException | None = None
        self._links: list[Callable[[GreenThread[T]], object] | Waiter] | None = []
        self._reporter: _UnretrievedError | None = None
        self._mailbox: Mailbox | None = None  # txgreen._mailbox, on first send/receive
        self._start_call: DelayedCall | None = None
        # The waiter of this thread's last wait: it is parked while that waiter is active.
        self._waiter: Waiter | None = None
        # A finished waiter that block_on's lean path may reuse (see txgreen._block).
        self._spare: Waiter | None = None
        # Its Deferred callback pair (Waiter.callbacks), kept here rather than on the waiter:
        # the pair's bound methods refer to the waiter, and the thread drops both when it ends.
        self._spare_callbacks: Any = None

    def __repr__(self) -> str:
        if self._done:
            state = "failed" if self._exception is not None else "done"
        else:
            state = "running" if self._started else "scheduled"
        return f"<GreenThread {self.name} {state} at {id(self):#x}>"

    # -- running -------------------------------------------------------------------------------

    def _begin(self, _: object = None) -> None:
        # Called in the hub when the thread is due to start.
        self._start_call = None
        if self._done:
            return  # killed before it started
        if self.hub.state == STOPPED:
            self._finish_unstarted(ReactorStopped())
            return
        self.hub.switch_to(self, None)

    def run(self, *_: object) -> None:  # greenlet entry point; ignores the switch argument
        """The greenlet's body (called by greenlet, not by you): run the function, record
        its outcome and wake whoever waits for it."""
        self._started = True
        fn, args, kwargs = self._fn, self._args, self._kwargs
        self._fn = self._args = self._kwargs = None
        assert fn is not None
        assert args is not None
        assert kwargs is not None
        # While the function runs, this frame refers to the thread only weakly: an exception's
        # traceback reaches this frame (as the caller of _invoke's), and must not make a cycle
        # back to the thread that stores the exception.
        me = weakref.ref(self)
        del self
        ok, value = _invoke(fn, args, kwargs)
        del fn, args, kwargs
        gt = me()
        assert gt is not None  # (the running greenlet is alive)
        if ok:
            gt._finish(value, None)
        else:
            gt._finish(None, value)

    def _finish(self, value: Any, exc: BaseException | None) -> None:
        self._done = True
        # (they refer back to this thread)
        self._spare = self._waiter = self._spare_callbacks = None
        self._mailbox = None  # messages to a thread that has ended are dropped (Erlang's rule)
        hub = self.hub
        hub.threads.pop(self, None)
        if hub._pending:
            hub._pending.pop(self, None)  # a kill that arrived after its last wait
        report = False
        if exc is not None:
            if isinstance(exc, GreenletExit):
                # gevent's convention: a GreenletExit kill is a normal, successful end.  Its
                # traceback (where the thread waited) is of no use and refers back to this
                # thread through the frames of the wait: drop it.
                exc.__traceback__ = None
                value, exc = exc, None
            elif isinstance(exc, KeyboardInterrupt | SystemExit):
                # Ctrl-C or sys.exit() in a green thread ends the program, as in a thread-less one.
                if hub.exit_exception is None:
                    hub.exit_exception = exc
                hub.stop_reactor()
            elif exc is not self._kill_exc and not isinstance(exc, ReactorStopped):
                report = True
        self._value = value
        self._exception = exc
        if report:
            assert exc is not None
            self._reporter = _UnretrievedError(repr(self), exc)
        if hub.entered is self:
            hub._dying = self  # the hub dispatches the links as soon as we have switched back
        elif getcurrent() is self:
            # Something outside txgreen switched into this thread: let the hub dispatch later.
            hub.schedule(GreenThread._dispatch_links, self)
        else:
            self._dispatch_links()

    def _finish_unstarted(self, exc: BaseException) -> None:
        if self._start_call is not None and self._start_call.active():
            self._start_call.cancel()
        self._start_call = None
        self._started = True
        self._fn = self._args = self._kwargs = None
        self._finish(None, exc)

    def _retrieved(self) -> None:
        reporter = self._reporter
        if reporter is not None:
            reporter.exc = None
            self._reporter = None

    def _dispatch_links(self) -> None:
        links, self._links = self._links, None
        if not links:
            return
        hub = self.hub
        in_hub = getcurrent() is hub.greenlet
        for link in links:
            if isinstance(link, Waiter):
                link.resume()
            elif in_hub:
                self._call_link(link)
            else:
                hub.schedule(self._call_link, link)

    def _call_link(self, link: Callable[[GreenThread[T]], object]) -> None:
        try:
            link(self)
        except Exception:
            log.failure("txgreen: error in link callback {link!r} of {gt!r}", link=link, gt=self)

    # -- state ---------------------------------------------------------------------------------

    @property
    def dead(self) -> bool:
        """True once the thread has finished (returned, raised or been killed)."""
        return self._done

    def ready(self) -> bool:
        """True once the thread has finished; the same as :attr:`dead`."""
        return self._done

    def successful(self) -> bool:
        """True if the thread finished without an exception (a ``GreenletExit`` kill counts)."""
        return self._done and self._exception is None

    @property
    def value(self) -> T | None:
        """The return value, or None while running or if it failed.

        After a kill with ``GreenletExit`` (the default) it is the ``GreenletExit`` instance,
        following gevent's convention that such a kill is a successful end.
        """
        return self._value if self._done and self._exception is None else None

    @property
    def exception(self) -> BaseException | None:
        """The exception the thread died of, or None.  Reading it counts as handling it."""
        self._retrieved()
        return self._exception

    # -- waiting -------------------------------------------------------------------------------

    def link(self, callback: Callable[[GreenThread[T]], object]) -> None:
        """Call ``callback(thread)`` in the hub when the thread finishes (at once if it has)."""
        if self._links is None:
            self.hub.schedule(self._call_link, callback)
        else:
            self._links.append(callback)

    def unlink(self, callback: Callable[[GreenThread[T]], object]) -> None:
        """Remove a callback added with :meth:`link` (no error if it is not there)."""
        if self._links is not None and callback in self._links:
            self._links.remove(callback)

    def monitor(self, to: GreenThread[Any] | Mailbox | None = None) -> MonitorRef:
        """Watch this thread: one ``(ref, thread, reason)`` message when it ends; return ``ref``.

        The message (a :class:`txgreen.Down`) goes to the mailbox of the calling green thread,
        or of ``to`` (a green thread or a :class:`txgreen.Mailbox`), however the thread ends:
        ``reason`` is ``None`` after a return, else the exception (the ``GreenletExit``
        instance after a plain :meth:`kill`).  A thread that has already ended is reported at
        once.  Erlang's ``erlang:monitor(process, Pid)``; stop with ``txgreen.demonitor(ref)``.
        """
        from txgreen._process import monitor  # (the process layer builds on this module)

        return monitor(self, to)

    def join(self, timeout: float | None = None) -> bool:
        """Wait until the thread finishes; True if it did, False if ``timeout`` passed first."""
        if self._done:
            return True
        cur, hub = current_hub_and_greenlet("GreenThread.join()")
        if cur is self:
            raise RuntimeError("a green thread cannot join itself (it would wait forever)")
        waiter = Waiter(hub, cur)
        links = self._links
        assert links is not None
        links.append(waiter)
        try:
            return wait_timed(waiter, timeout) is not TIMED_OUT
        finally:
            if self._links is not None and waiter in self._links:
                self._links.remove(waiter)

    def get(self, block: bool = True, timeout: float | None = None) -> T:
        """Wait for the thread and return its result, or raise the exception it died of.

        Raises :class:`txgreen.Timeout` when ``timeout`` seconds pass first, or at once with
        ``block=False`` if the thread has not finished (as gevent's ``Greenlet.get``).
        """
        if block is not True:
            block, timeout = block_and_timeout(block, timeout, "GreenThread.get")
        if not block and not self._done:
            raise Timeout(0)
        if not self.join(timeout):
            raise Timeout(timeout)
        self._retrieved()
        exc = self._exception
        if exc is not None:
            raise exc
        return self._value  # type: ignore[no-any-return]

    def kill(
        self,
        exception: type[BaseException] | BaseException = GreenletExit,
        block: bool = True,
        timeout: float | None = None,
    ) -> None:
        """Raise ``exception`` in the thread at the point where it waits, then wait for its end.

        A thread that has not started yet ends at once without running.  A thread that is
        running (not waiting) gets the exception at its next blocking call.  The Deferred it was
        waiting on is cancelled.  With ``block=True`` (the default) the caller then waits up to
        ``timeout`` seconds for the thread to finish; from the hub, ``kill`` never waits.

        A thread that ends because of a ``GreenletExit`` kill counts as successful (gevent's
        convention): ``successful()`` is True, ``value`` is the ``GreenletExit`` instance and
        ``get()`` returns it.  Any other kill exception is its ``exception``, raised by
        ``get()``, but never logged as unhandled (the killer chose it).
        """
        if self._done:
            return
        exc = exception() if isinstance(exception, type) else exception
        self._kill_exc = exc
        cur = getcurrent()
        if cur is self:
            raise exc
        if not self._started:
            self._finish_unstarted(exc)
            return
        hub = self.hub
        hub.interrupt(self, exc)
        if block and cur is not hub.greenlet and not self._done:
            self.join(timeout)

    def to_deferred(self) -> Deferred[T]:
        """A Deferred that fires with the thread's result or failure.

        Cancelling the Deferred kills the thread.  The Deferred takes over the thread's
        exception, so an unhandled one is reported by Twisted's Deferred machinery instead.
        """
        cancelled = False

        def cancel(_: Deferred[T]) -> None:
            nonlocal cancelled
            cancelled = True  # Twisted errbacks d with CancelledError once we return
            self.kill(block=False)

        d: Deferred[T] = Deferred(cancel)

        def fire(gt: GreenThread[T]) -> None:
            if d.called or cancelled:
                return
            exc = gt._exception
            gt._retrieved()
            if exc is None:
                d.callback(gt._value)
                return
            failure = failure_of(exc)
            d.errback(failure)
            if isinstance(exc, ReactorStopped):
                # Dying of the shutdown is normal (docs/shutdown.md): the Deferred still fails
                # with ReactorStopped, but is not reported as an unhandled error if no errback
                # handles it (the reactor-side caller is usually shutting down too).
                info = d._debugInfo
                if info is not None and info.failResult is failure:
                    info.failResult = None

        self.link(fire)
        return d


_hub.thread_class = GreenThread


def current_hub_and_greenlet(what: str) -> tuple[_greenlet, Hub]:
    """The current greenlet and the hub, checking that the current greenlet may block."""
    cur = getcurrent()
    if type(cur) is GreenThread:
        return cur, cur.hub
    hub = get_hub()
    hub.require_reactor_thread(cur, what)
    return cur, hub


def spawn(fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> GreenThread[T]:
    """Run ``fn(*args, **kwargs)`` in a new green thread, starting on the hub's next turn.

    Callable from anywhere in the reactor's thread: a green thread, the hub (reactor
    callbacks) or the main greenlet before the reactor runs.  ``spawn`` never switches; the new
    thread starts once the caller blocks or returns control to the reactor.  The new thread's
    ``contextvars`` context is a copy of the caller's.
    """
    gt = _new_thread(fn, args, kwargs, "spawn()")
    gt.hub.schedule(gt._begin, None)
    return gt


def _new_thread(
    fn: Callable[..., T],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    what: str = "a green thread",
) -> GreenThread[T]:
    check_callable(fn, what)
    hub = get_hub()
    if hub.state == STOPPED:
        raise ReactorStopped("cannot spawn a green thread: the reactor has stopped")
    if hub.thread_ident is not None and hub.thread_ident != threading.get_ident():
        raise NotInReactorThreadError(
            "green threads can only be spawned from the reactor's OS thread; from another "
            "thread, hand the work over with reactor.callFromThread(txgreen.spawn, fn, ...)"
        )
    gt: GreenThread[T] = GreenThread(hub, fn, args, kwargs)
    hub.threads[gt] = None
    return gt


def spawn_later(
    seconds: float, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs
) -> GreenThread[T]:
    """Like :func:`spawn`, but the thread starts after ``seconds``.

    Killing it before then cancels the start: the function never runs.
    """
    check_callable(fn, "spawn_later()")
    if seconds < 0:
        raise ValueError(f"seconds must be >= 0, not {seconds!r}")
    gt = _new_thread(fn, args, kwargs, "spawn_later()")
    gt._start_call = gt.hub.reactor.callLater(seconds, gt._begin)
    return gt


def sleep(seconds: float = 0) -> None:
    """Block the current green thread for ``seconds``; ``sleep(0)`` lets everything else run.

    ``sleep(0)`` is a yield: the thread goes to the back of the hub's ready queue, behind the
    green threads already runnable.  Like gevent's, it does not force a reactor iteration: the
    reactor polls for I/O and runs timers between the hub's turns, at least every
    ``get_hub().switch_interval`` seconds (5 ms) of green-thread work.
    """
    cur, hub = current_hub_and_greenlet("txgreen.sleep()")
    waiter = Waiter(hub, cur)
    if seconds <= 0:
        hub.schedule(Waiter.resume, waiter)
        hub.wait(waiter)
        return
    call = hub.reactor.callLater(seconds, waiter.resume)
    try:
        hub.wait(waiter)
    finally:
        if call.active():
            call.cancel()


def defer_to_green(fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> Deferred[T]:
    """Run sync-style ``fn`` in a new green thread; return a Deferred of its result.

    This is how reactor-side code (a Protocol method, a Deferred callback) calls code that
    blocks: the caller gets a Deferred at once, and cancelling it kills the green thread.
    """
    return spawn(fn, *args, **kwargs).to_deferred()


def green(fn: Callable[P, T]) -> Callable[P, Deferred[T]]:
    """Decorator: calling ``fn`` runs it in a new green thread and returns a Deferred.

    Use it on sync-style functions that reactor-side code calls, such as an AMP responder or
    a Deferred callback that needs to ``block_on`` something.
    """

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> Deferred[T]:
        return spawn(fn, *args, **kwargs).to_deferred()

    return wrapper
