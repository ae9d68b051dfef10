"""The hub: the greenlet that runs the reactor, and the one way green threads wait and wake.

Every green thread waits the same way: it parks a ``Waiter`` with :meth:`Hub.wait`, which
switches to the hub.  Whoever completes the wait calls :meth:`Hub.resume` on that waiter.  When
the resumer is the hub itself (a reactor callback, a timer) and no other green thread is
runnable, the hub switches straight into the waiting green thread; otherwise, and from anywhere
else, the wake-up goes on the hub's ready queue, which the hub runs in FIFO order on its next
turn.  So a reactor event never lets a thread jump ahead of threads already runnable, green
threads are only ever resumed by the hub, and a green thread that fires a Deferred is never
suspended by doing so.

A waiter is resumed at most once: the first of result, timeout, kill or reactor shutdown wins,
and any later attempt is a no-op.  That single rule is what keeps timeouts, kills and
shutdown free of lost or duplicated wake-ups.
"""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final

from greenlet import getcurrent
from greenlet import greenlet as _greenlet
from twisted.internet.defer import Deferred
from twisted.internet.error import ReactorNotRunning
from twisted.logger import Logger
from twisted.python import threadable
from twisted.python.failure import Failure

from txgreen._interrupt import SignalGuard
from txgreen._util import hidden_in_reports
from txgreen.errors import BlockingInHubError, NotInReactorThreadError, ReactorStopped

if TYPE_CHECKING:
    from twisted.internet.base import DelayedCall

    from txgreen._greenthread import GreenThread

log = Logger(namespace="txgreen")

__tracebackhide__ = hidden_in_reports  # pytest: the user's frames, not txgreen's

# Hub states.
NEW: Final = "new"  # the reactor has not been started yet
RUNNING: Final = "running"  # the reactor is running (or will be, as soon as we switch to the hub)
STOPPED: Final = "stopped"  # the reactor has stopped or is stopping: nobody can block any more


class _HubExit:
    """What our own hub greenlet returns to its parent when the reactor has stopped."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "<txgreen hub exited>"


HUB_EXIT: Final = _HubExit()


# The keyword arguments of Waiter.callbacks (none), one dict shared by all: Deferreds only
# unpack it.
_NO_KEYWORDS: Final[dict[str, Any]] = {}


class Waiter:
    """One wait of one greenlet: resumed once, with a value or an exception.

    ``value`` and ``exc`` are set when the waiter is resumed and read only after that.
    """

    __slots__ = ("active", "exc", "greenlet", "hub", "value")

    value: Any
    exc: BaseException | None

    def __init__(self, hub: Hub, greenlet: _greenlet) -> None:
        self.hub = hub
        self.greenlet = greenlet
        self.active = True
        self.exc = None

    def resume(self, value: Any = None, exc: BaseException | None = None) -> bool:
        """Complete the wait with ``value`` or ``exc``; False if it was already completed.

        From the hub, when nothing else is runnable or when the hub is running its ready queue
        (whose order this call is part of), this switches straight into the waiting greenlet
        (and returns once it waits again or ends); otherwise the wake-up goes on the hub's
        ready queue, behind the green threads already runnable (FIFO fairness between reactor
        events and the ready queue).  Wake-ups made while the links of a finished green
        thread run (its joiners) are queued too, so that no frame of the hub still refers to
        the finished thread while they run: dropped, it is freed at once.
        """
        if not self._complete(value, exc):
            return False
        hub = self.hub
        if (
            (not hub._ready or hub._draining)
            and not hub._dispatching
            and getcurrent() is hub.greenlet
        ):
            hub.switch_to(self.greenlet, self)
        else:
            hub.schedule(hub.switch_waiter, self)
        return True

    def resume_later(self, value: Any = None, exc: BaseException | None = None) -> bool:
        """Like :meth:`resume` but never switches: the wake-up always goes on the ready queue.

        This is what code that may run in the hub uses when it must not be suspended by the
        greenlet it wakes (``Event.set``, ``Queue.put_nowait``, ...).  False if the wait was
        already completed.
        """
        if not self._complete(value, exc):
            return False
        hub = self.hub
        hub.schedule(hub.switch_waiter, self)
        return True

    def _complete(self, value: Any, exc: BaseException | None) -> bool:
        """Record the outcome and end the wait; False (recording nothing) if it had ended."""
        if not self.active:
            return False
        self.active = False
        self.value = value
        self.exc = exc
        return True

    def on_value(self, result: Any) -> Any:
        """Deferred callback: resume with the result and pass it on unchanged."""
        if self.active:
            # resume(result), inlined: this is half of every block_on round trip.  (``exc``
            # is None: set so by __init__, and a waiter that failed is never reused.)
            self.active = False
            self.value = result
            hub = self.hub
            if (
                (not hub._ready or hub._draining)
                and not hub._dispatching
                and getcurrent() is hub.greenlet
            ):
                # hub.switch_to(self.greenlet, self), inlined
                g = self.greenlet
                hub.entered = g
                g.switch(self)
                hub.entered = None
                if hub._dying is not None:
                    hub.dispatch_dying()
            else:
                hub.schedule(hub.switch_waiter, self)
        return result

    def on_failure(self, failure: Failure) -> Failure:
        """Deferred errback: resume with ``failure`` as the value, marked by ``exc`` being
        :data:`DEFERRED_FAILED`, and pass it on unchanged.

        It resumes through the ready queue, so the waiting greenlet runs after the Deferred's
        callback chain has finished and can mark the failure handled.
        """
        self.resume_later(failure, DEFERRED_FAILED)
        return failure

    def callbacks(self) -> tuple[tuple[Any, tuple[()], dict[str, Any]], ...]:
        """What ``d.addCallbacks(self.on_value, self.on_failure)`` appends to a Deferred's list
        of callbacks: block_on's lean path appends it itself (see txgreen._block)."""
        return (self.on_value, (), _NO_KEYWORDS), (self.on_failure, (), _NO_KEYWORDS)


class _DeferredFailed(BaseException):
    """The type of :data:`DEFERRED_FAILED` (never raised)."""


# The ``exc`` of a waiter that a Deferred's failure resumed: a mark, never raised.  The
# Failure is the waiter's value; :meth:`Hub.outcome` returns it, for block_on to raise.
DEFERRED_FAILED: Final = _DeferredFailed()


# What a timed wait returns when its own ``timeout`` passed (see :func:`wait_timed`).
TIMED_OUT: Final[Any] = object()


def wait_timed(waiter: Waiter, timeout: float | None) -> Any:
    """``hub.wait(waiter, timeout)``, but return TIMED_OUT when ``timeout`` passes.

    Only this wait's own deadline becomes TIMED_OUT: an enclosing ``with Timeout``, a kill or
    the shutdown still raise.  This is what the calls that report a timeout by their return
    value (``Event.wait`` -> False, ``GreenThread.join`` -> False) or by an error of their
    own (``Queue.get`` -> Empty) use.
    """
    if timeout is None:
        return waiter.hub.wait(waiter, None)
    from txgreen._timeout import Timeout  # (_timeout imports this module)

    mine = Timeout(timeout)
    try:
        return waiter.hub.wait(waiter, timeout, mine)
    except Timeout as t:
        if t is mine:
            return TIMED_OUT
        raise


# The class of green threads, registered by txgreen._greenthread (which imports this module):
# green threads keep their waiter on themselves, other greenlets in Hub._parked.
thread_class: type[_greenlet] | None = None


def _root(g: _greenlet) -> _greenlet:
    while g.parent is not None:
        g = g.parent
    return g


class Hub:
    """The reactor's greenlet and the scheduler of green threads.

    There is one hub per process, bound to the global reactor.  Use :func:`get_hub`.
    """

    def __init__(self, reactor: Any) -> None:
        self.reactor = reactor
        self.greenlet: _greenlet | None = None
        self.thread_ident: int | None = None
        self.state: str = NEW
        self.own = False  # True when txgreen created the hub greenlet and runs reactor.run()
        # Live green threads in the order they were spawned (a dict used as an ordered set),
        # for shutdown and leak checks.
        self.threads: dict[GreenThread[Any], None] = {}
        self.exit_exception: BaseException | None = None  # KeyboardInterrupt/SystemExit to re-raise
        self._ready: deque[tuple[Callable[[Any], object], Any]] = deque()
        self._drain_call: DelayedCall | None = None
        self._draining = False
        # How long one turn of the hub may run green threads before the reactor gets to poll
        # for I/O again (the same idea, and default, as gevent's switch interval).
        self.switch_interval = 0.005
        # The waiter of each parked greenlet that is not a GreenThread (a GreenThread keeps
        # its own in its ``_waiter`` attribute, so that nothing in the hub refers to it).
        self._parked: dict[_greenlet, Waiter] = {}
        # exceptions (kills, expired Timeouts) for greenlets that were not parked, in order
        self._pending: dict[_greenlet, list[BaseException]] = {}
        self._dying: GreenThread[Any] | None = None
        self.entered: _greenlet | None = None  # the greenlet switch_to is running, if any
        self._dispatch_queue: deque[GreenThread[Any]] = deque()
        self._dispatching = False
        self._thread_waiters: set[Callable[[], None]] = set()
        self._thread_waiters_lock = threading.Lock()
        # Graceful stops (GreenService, servers): run first at shutdown, while green threads
        # can still block; see add_graceful_stop.
        self._graceful_stops: list[Callable[[], Any]] = []
        reactor.addSystemEventTrigger("before", "shutdown", self._on_shutdown)
        # Ctrl-C in a busy green thread, and a way out of a shutdown that waits for OS threads.
        self.signals = SignalGuard(self)
        reactor.callWhenRunning(self.signals.install)

    # -- finding or making the hub greenlet ---------------------------------------------------

    def ensure_greenlet(self) -> _greenlet:
        """Return the hub greenlet, adopting or creating it on first use."""
        if self.greenlet is not None:
            return self.greenlet
        reactor = self.reactor
        gr = _pytest_twisted_greenlet(reactor)
        if gr is not None:
            # pytest-twisted runs the reactor in its own greenlet: that greenlet is the hub.
            self.greenlet = gr
            self.thread_ident = threading.get_ident()
            if reactor.running:
                self.state = RUNNING
            return gr
        if reactor.running:
            if threadable.ioThread is not None and threadable.ioThread != threading.get_ident():
                raise NotInReactorThreadError(
                    "the reactor runs in another OS thread; green threads live in the reactor's "
                    "thread. From this thread use txgreen.block_on(), which waits like "
                    "blockingCallFromThread."
                )
            # Classic mode: someone called reactor.run() and we are in one of its callbacks, so
            # the current greenlet is the one running the reactor.
            self.greenlet = getcurrent()
            self.thread_ident = threading.get_ident()
            self.state = RUNNING
            return self.greenlet
        if getattr(reactor, "_startedBefore", False):
            self.state = STOPPED
        # Implicit mode: txgreen runs the reactor in a greenlet of its own, started by the first
        # blocking call.  Its parent is the thread's main greenlet, which gets control back when
        # the reactor stops.
        self.greenlet = _greenlet(self._run, parent=_root(getcurrent()))
        self.thread_ident = threading.get_ident()
        self.own = True
        self._guard_reactor_run()
        # If the program then runs the reactor itself (classic mode, after spawning green
        # threads at start-up), the greenlet that runs it becomes the hub instead.
        reactor.callWhenRunning(self._adopt_runner)
        return self.greenlet

    def _guard_reactor_run(self) -> None:
        """Make ``reactor.run()`` explain itself when txgreen's hub already runs the reactor.

        Twisted's own error (``ReactorAlreadyRunning`` with no message) does not tell that the
        first blocking call started the reactor, nor what to do instead.
        """
        reactor = self.reactor
        original = reactor.run
        hub = self

        def run(*args: Any, **kwargs: Any) -> Any:
            g = hub.greenlet
            if hub.own and g is not None and g and getcurrent() is not g:
                from txgreen._run import ReactorAlreadyRunning

                raise ReactorAlreadyRunning(
                    "reactor.run() was called, but txgreen already runs the reactor: the first "
                    "blocking call made outside a green thread (block_on, sleep, join, ...) "
                    "started it. Either call reactor.run() before any blocking call (spawn "
                    "green threads first, then run the reactor: classic mode), or let txgreen "
                    "run it: put the program in main() and call txgreen.run(main), without "
                    "reactor.run()."
                )
            return original(*args, **kwargs)

        run.__wrapped__ = original  # type: ignore[attr-defined]
        reactor.run = run

    def _adopt_runner(self) -> None:
        runner = getcurrent()
        if runner is self.greenlet or self.greenlet is None or self.greenlet:
            return  # our own hub greenlet runs the reactor (or has started): nothing to do
        self.greenlet = runner
        self.own = False
        self.state = RUNNING
        self.thread_ident = threading.get_ident()
        for gt in self.threads:
            if not gt:  # not started yet: it will run under the new hub
                gt.parent = runner

    def _run(self) -> _HubExit:
        self.state = RUNNING
        try:
            if getattr(self.reactor, "_startedBefore", False) and not self.reactor.running:
                # Twisted reactors cannot be restarted.
                return HUB_EXIT
            self.reactor.run(
                installSignalHandlers=threading.current_thread() is threading.main_thread()
            )
        finally:
            self._on_shutdown()
        return HUB_EXIT

    def in_hub(self) -> bool:
        """True when the caller runs in the hub greenlet."""
        if (
            self.greenlet is None
            and self.reactor.running
            and threadable.ioThread == threading.get_ident()
        ):
            self.ensure_greenlet()
        return getcurrent() is self.greenlet

    def check_can_block(self, cur: _greenlet, what: str) -> bool:
        """Check that ``cur`` (not a GreenThread) may wait in the hub's thread.

        Raises :class:`BlockingInHubError` in the hub.  Returns False when the caller is in
        another OS thread than the reactor's (only ``block_on`` can serve those), else True.
        """
        me = threading.get_ident()
        if self.greenlet is None:
            io = threadable.ioThread
            if self.reactor.running and io is not None and io != me:
                return False
            if not self.reactor.running and me != threading.main_thread().ident:
                # Before the reactor runs, its thread is the main thread (where txgreen.run
                # starts it): a worker thread must not start it in a thread of its own.
                return False
            self.ensure_greenlet()
        if cur is self.greenlet:
            raise BlockingInHubError(what)
        return self.thread_ident == me

    def require_reactor_thread(self, cur: _greenlet, what: str) -> None:
        """Like :meth:`check_can_block`, raising for callers outside the reactor's thread."""
        if not self.check_can_block(cur, what):
            raise NotInReactorThreadError(
                f"{what} was called from an OS thread that is not the reactor's; green threads "
                "live in the reactor's thread. From other threads use txgreen.block_on(), which "
                "waits like blockingCallFromThread."
            )

    # -- waiting and waking --------------------------------------------------------------------

    def wait(
        self,
        waiter: Waiter,
        timeout: float | None = None,
        timeout_exc: BaseException | None = None,
    ) -> Any:
        """Park the current greenlet until ``waiter`` is resumed; return or raise its outcome.

        ``timeout`` (seconds) resumes the waiter with ``timeout_exc`` (by default a new
        :class:`txgreen.Timeout`) if nothing else did first.  An exception delivered while the
        greenlet was not parked (a kill or an expired ``with Timeout``) is raised here before
        waiting.
        """
        cur = waiter.greenlet
        if self._pending:
            queued = self._pending.get(cur)
            if queued:
                exc = queued.pop(0)
                if not queued:
                    del self._pending[cur]
                waiter.active = False
                raise exc
        if self.state is STOPPED:
            waiter.active = False
            raise ReactorStopped()
        timer = None
        if timeout is not None:
            if timeout_exc is None:
                from txgreen._timeout import Timeout

                timeout_exc = Timeout(timeout)
            timer = self.reactor.callLater(max(timeout, 0.0), waiter.resume, None, timeout_exc)
        if cur.__class__ is thread_class:
            # Left in place after the wait: a waiter that is no longer active means "not
            # parked" (see parked_waiter); the thread drops it when it ends.
            cur._waiter = waiter  # type: ignore[attr-defined]
            try:
                got = self.greenlet.switch()  # type: ignore[union-attr]
            finally:
                if timer is not None and timer.active():
                    timer.cancel()
        else:
            parked = self._parked
            parked[cur] = waiter
            try:
                got = self.greenlet.switch()  # type: ignore[union-attr]
            finally:
                del parked[cur]
                if timer is not None and timer.active():
                    timer.cancel()
        if got is waiter and waiter.exc is None:
            return waiter.value
        return self.outcome(waiter, got)

    def outcome(self, waiter: Waiter, got: Any) -> Any:
        """What a wait on ``waiter`` that the hub's switch answered with ``got`` raises.

        The uncommon ends of a wait (an exception, the hub exiting, a stray switch), shared by
        :meth:`wait` and ``block_on``'s lean path.
        """
        if got is not waiter:
            waiter.active = False
            if got is HUB_EXIT:
                raise self.exit_exception_for_parent()
            from txgreen.errors import UnexpectedSwitchError

            raise UnexpectedSwitchError(
                f"a greenlet waiting in txgreen was switched to from outside txgreen "
                f"(switch value {got!r}); resume green threads only through Deferreds and "
                "txgreen primitives"
            )
        exc = waiter.exc
        if exc is not None and exc is not DEFERRED_FAILED:
            raise exc
        return waiter.value

    def parked_waiter(self, g: _greenlet | None) -> Waiter | None:
        """The waiter ``g`` is parked on, or None if it is not waiting in :meth:`wait`."""
        if g.__class__ is thread_class:
            w: Waiter | None = g._waiter  # type: ignore[attr-defined]
            return w if w is not None and w.active else None
        return self._parked.get(g) if g is not None else None

    def resume(self, waiter: Waiter, value: Any = None, exc: BaseException | None = None) -> bool:
        """Complete ``waiter`` with ``value`` or ``exc`` (see :meth:`Waiter.resume`)."""
        return waiter.resume(value, exc)

    def switch_waiter(self, waiter: Waiter) -> None:
        """From the hub's ready queue: switch into a waiter already resumed elsewhere."""
        self.switch_to(waiter.greenlet, waiter)

    def switch_to(self, g: _greenlet, arg: Any) -> None:
        """From the hub: run ``g`` until it waits again or ends; then dispatch its links.

        Every switch from the hub into a green thread goes through here, so a thread that ends
        has its links (joiners, callbacks) run right away, in the hub.
        """
        self.entered = g
        g.switch(arg)
        self.entered = None
        if self._dying is not None:
            self.dispatch_dying()

    def dispatch_dying(self) -> None:
        """Run the links of the green thread that just ended.

        Links can wake joiners that end in turn; those are queued and run by the outermost
        call, so a chain of N joins does not nest N deep on the hub's stack.
        """
        dying = self._dying
        self._dying = None
        if dying is None:
            return
        queue = self._dispatch_queue
        queue.append(dying)
        if self._dispatching:
            return
        self._dispatching = True
        try:
            while queue:
                queue.popleft()._dispatch_links()
        finally:
            self._dispatching = False

    def interrupt(self, target: _greenlet, exc: BaseException) -> None:
        """Deliver ``exc`` to ``target``: at once if it is parked, else at its next wait."""
        waiter = self.parked_waiter(target)
        if waiter is not None and waiter.active:
            waiter.resume(None, exc)
        else:
            self._pending.setdefault(target, []).append(exc)

    def discard_pending(self, target: _greenlet, exc: BaseException) -> None:
        """Forget ``exc`` if it is still waiting to be delivered to ``target``."""
        queued = self._pending.get(target)
        if queued and exc in queued:
            queued.remove(exc)
            if not queued:
                del self._pending[target]

    def schedule(self, fn: Callable[[Any], object], arg: Any) -> None:
        """Call ``fn(arg)`` in the hub, in FIFO order, within its current or next turn."""
        self._ready.append((fn, arg))
        if self._drain_call is None and not self._draining and self.state != STOPPED:
            self._drain_call = self.reactor.callLater(0, self._drain)

    def _drain(self) -> None:
        """One turn of the hub: run the ready queue, including what it queues meanwhile.

        Green threads that wake each other (an Event, a Queue, a Channel, a join, ``sleep(0)``)
        go on within the same turn, without a reactor iteration for every wake-up.  The turn
        ends when the queue is empty or ``switch_interval`` seconds have passed, whichever
        comes first; then the reactor polls for I/O and runs its timers before the next turn.
        """
        self._drain_call = None
        self._draining = True
        ready = self._ready
        clock = time.monotonic
        end = clock() + self.switch_interval
        try:
            while ready:
                fn, arg = ready.popleft()
                try:
                    fn(arg)
                except Exception:
                    log.failure("txgreen: error in a scheduled call {fn!r}", fn=fn)
                if clock() >= end:
                    break
        finally:
            self._draining = False
        if ready and self._drain_call is None and self.state != STOPPED:
            self._drain_call = self.reactor.callLater(0, self._drain)

    # -- shutdown ------------------------------------------------------------------------------

    def exit_exception_for_parent(self) -> BaseException:
        """The exception the hub's parent raises when the hub returns because the reactor ended."""
        if self.exit_exception is not None:
            return self.exit_exception
        sig = getattr(self.reactor, "_exitSignal", None)
        if sig == signal.SIGINT:
            return KeyboardInterrupt()
        if sig is not None:
            return SystemExit(128 + int(sig))
        return ReactorStopped()

    def stop_reactor(self) -> None:
        """Stop the reactor if it is still running (no error if it is already stopping)."""
        with contextlib.suppress(ReactorNotRunning):
            self.reactor.stop()

    def add_graceful_stop(self, stop: Callable[[], Any]) -> None:
        """Call ``stop()`` first when the reactor shuts down, while green threads can block.

        The hub's shutdown ("before" shutdown: every parked green thread gets
        ``ReactorStopped``) waits for the Deferreds the graceful stops return -- each must
        bound its own wait -- so a service's green threads can clean up (blocking calls
        included) before anything is stopped under them.  A stop that raises is logged.
        """
        self._graceful_stops.append(stop)

    def remove_graceful_stop(self, stop: Callable[[], Any]) -> None:
        """Forget a graceful stop (it was done another way); no error if it is unknown."""
        with contextlib.suppress(ValueError):
            self._graceful_stops.remove(stop)

    def _on_shutdown(self) -> Deferred[None] | None:
        """The reactor is stopping: wake every parked green thread with ReactorStopped.

        Graceful stops run first (the reactor's shutdown waits for the Deferred returned here).
        """
        if self.state == STOPPED:
            return None
        stops, self._graceful_stops = self._graceful_stops, []
        if stops and self.state == RUNNING:
            return self._stop_gracefully(stops)
        self._stop_threads()
        return None

    def _stop_threads(self) -> None:
        """Mark the hub stopped and wake every parked green thread with ReactorStopped."""
        self.state = STOPPED
        if self._drain_call is not None:
            if self._drain_call.active():
                self._drain_call.cancel()
            self._drain_call = None
        with self._thread_waiters_lock:
            thread_waiters = list(self._thread_waiters)
            self._thread_waiters.clear()
        for release in thread_waiters:
            release()
        if getcurrent() is not self.greenlet:
            return  # cannot switch from here; parked greenlets are woken by the hub only
        # The hub's ancestors (the main greenlet) get control back when the hub greenlet ends.
        ancestors = set()
        g = self.greenlet.parent if self.greenlet is not None else None
        while g is not None:
            ancestors.add(g)
            g = g.parent
        for _ in range(1000):
            for gt in list(self.threads):
                if not gt._started:
                    gt._finish_unstarted(ReactorStopped())
            while self._ready:
                fn, arg = self._ready.popleft()
                try:
                    fn(arg)
                except Exception:
                    log.failure("txgreen: error in a scheduled call {fn!r}", fn=fn)
            victims = [w for g2, w in self._parked.items() if g2 not in ancestors and w.active]
            victims.extend(w for gt in self.threads if (w := gt._waiter) is not None and w.active)
            if not victims and not self._ready:
                break
            # Complete every parked wait before running any of the threads, so that what one
            # thread does on its way out (ending, firing a Deferred) cannot complete another's
            # wait normally: every thread parked at shutdown sees ReactorStopped.
            for w in victims:
                w.active = False
                w.value = None
                w.exc = ReactorStopped()
            for w in victims:
                self.switch_to(w.greenlet, w)

    def _stop_gracefully(self, stops: list[Callable[[], Any]]) -> Deferred[None]:
        from twisted.internet.defer import DeferredList, maybeDeferred

        done: Deferred[None] = Deferred()
        started = [maybeDeferred(stop) for stop in reversed(stops)]  # the newest first
        for d in started:
            d.addErrback(lambda f: log.failure("txgreen: a graceful stop failed", f))

        def then_stop(_: object) -> None:
            # In the hub (a timer), whoever fired the last Deferred: only the hub may switch.
            def finish() -> None:
                self._on_shutdown()
                done.callback(None)

            self.reactor.callLater(0, finish)

        DeferredList(started).addCallback(then_stop)
        return done

    def add_thread_waiter(self, release: Callable[[], None]) -> bool:
        """Register an OS-thread waiter to release at shutdown; False if already stopped."""
        with self._thread_waiters_lock:
            if self.state == STOPPED:
                return False
            self._thread_waiters.add(release)
            return True

    def remove_thread_waiter(self, release: Callable[[], None]) -> None:
        with self._thread_waiters_lock:
            self._thread_waiters.discard(release)

    def stop_at_exit(self) -> None:
        """At interpreter exit, let a reactor that txgreen started shut down cleanly.

        If nothing ever started the reactor, green threads spawned meanwhile never ran: say so.
        """
        self._warn_never_ran()
        if not self.own or self.state != RUNNING or self.greenlet is None:
            return
        if self.thread_ident != threading.get_ident() or self.greenlet.dead:
            return
        if not self.greenlet:  # never started
            return
        self.stop_reactor()
        try:
            self.greenlet.switch()
        except BaseException:  # pragma: no cover - best effort at exit
            log.failure("txgreen: error while stopping the reactor at exit")

    def _warn_never_ran(self) -> None:
        g = self.greenlet
        if not self.own or g is None or g or g.dead or self.reactor.running:
            return  # the reactor ran (or runs), or it is not txgreen's to run
        never = [gt for gt in self.threads if not gt._started]
        if not never:
            return
        import warnings

        from txgreen.errors import NeverRanWarning

        shown = ", ".join(repr(gt) for gt in never[:3]) + (", ..." if len(never) > 3 else "")
        warnings.warn_explicit(
            f"{len(never)} green thread{'s were' if len(never) != 1 else ' was'} spawned but "
            f"never ran ({shown}): spawn() only schedules, and nothing started the reactor. "
            "Run the program with txgreen.run(main), block on something (txgreen.sleep, "
            "thread.join(), block_on), or call reactor.run() yourself.",
            NeverRanWarning,
            filename="txgreen (at exit)",  # no line of anyone's code to show: it is the exit
            lineno=0,
        )


def _pytest_twisted_greenlet(reactor: Any) -> _greenlet | None:
    mod = sys.modules.get("pytest_twisted")
    if mod is None:
        return None
    instances = getattr(mod, "_instances", None)
    gr = getattr(instances, "gr_twisted", None)
    if gr is None or getattr(instances, "reactor", None) is not reactor:
        return None
    return gr  # type: ignore[no-any-return]


_hub: Hub | None = None
_hub_lock = threading.Lock()


def get_hub() -> Hub:
    """Return the process's hub, bound to ``twisted.internet.reactor`` (installed on first use)."""
    global _hub
    hub = _hub
    if hub is None:
        with _hub_lock:
            if _hub is None:
                from twisted.internet import reactor

                _hub = Hub(reactor)
                import atexit

                atexit.register(_hub.stop_at_exit)
                created = True
            else:
                created = False
            hub = _hub
        if created:
            _watch_from_env(hub)
    return hub


def _watch_from_env(hub: Hub) -> None:
    """Start the blocking detector if ``TXGREEN_WATCH_BLOCKING`` asks for it (docs/monitor.md).

    A bad value is reported as a RuntimeWarning rather than raised: it would otherwise fail
    whatever first needed the hub, far from the typo.
    """
    import os

    if not os.environ.get("TXGREEN_WATCH_BLOCKING"):
        return
    import warnings

    from txgreen._monitor import watch_blocking_from_env

    try:
        watch_blocking_from_env(reactor=hub.reactor)
    except ValueError as e:
        warnings.warn(f"{e}; no blocking detector started", RuntimeWarning, stacklevel=3)
