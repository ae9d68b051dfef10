"""Blocking code and OS threads: ``call_in_thread``, ``@threaded``, ``ThreadQueue``,
``call_in_green``.

Green threads share one OS thread with the reactor, so a blocking call (a DB driver, file I/O, a
CPU-heavy function) made directly in a green thread stalls everything.  These helpers move such
work to OS threads and back:

- :func:`call_in_thread` / :func:`threaded`: a green thread runs ``fn`` in a thread pool (the
  reactor's, or a dedicated one) and waits for it; only that green thread waits.
- :class:`ThreadQueue`: a queue between OS threads and green threads, in either direction, where
  each side blocks the way it should (an OS thread blocks its OS thread, a green thread only
  itself), with ``close()`` to end iteration on both sides.
- :func:`call_in_green`: the mirror of ``call_in_thread``: an OS thread runs a sync-style function
  in a new green thread and waits for it.
- :class:`DaemonThreadPool`: a thread pool that does not hold up the process's exit for a job
  that never ends (Twisted's own pools join every worker when they stop).

Locking rule: the queue's ``threading.Lock`` is only ever held for a few non-blocking
statements, never across a greenlet switch (a green thread that switched away while holding
it would deadlock every other green thread of the reactor's OS thread).
"""

from __future__ import annotations

import contextvars
import functools
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from typing import Any, Generic, ParamSpec, TypeVar, overload

from greenlet import getcurrent
from greenlet import greenlet as _greenlet
from twisted.internet.defer import Deferred
from twisted.internet.threads import deferToThreadPool
from twisted.python import threadable
from twisted.python.threadpool import ThreadPool

from txgreen import _interrupt
from txgreen._block import block_on
from txgreen._greenthread import GreenThread, _new_thread
from txgreen._hub import STOPPED, Hub, Waiter, get_hub
from txgreen._queue import Empty, Full
from txgreen._timeout import Timeout
from txgreen._util import block_and_timeout, hidden_in_reports
from txgreen.errors import ReactorStopped, TxgreenError

__all__ = [
    "DaemonThreadPool",
    "Empty",
    "Full",
    "InReactorThreadError",
    "QueueClosed",
    "ThreadPoolNotRunning",
    "ThreadQueue",
    "call_in_green",
    "call_in_thread",
    "run_in_hub",
    "set_thread_pool_size",
    "threaded",
]

__tracebackhide__ = hidden_in_reports  # pytest: the user's frames, not txgreen's

P = ParamSpec("P")
T = TypeVar("T")


# -- errors ------------------------------------------------------------------------------------


class QueueClosed(TxgreenError):
    """The :class:`ThreadQueue` is closed: ``put`` on it, or ``get`` once it is empty.

    Iterating over a queue (``for item in q``) ends quietly on this instead of raising it.
    """


class ThreadPoolNotRunning(TxgreenError):
    """``call_in_thread(..., pool=p)`` was given a pool that is not started, or already stopped.

    Work given to such a pool would never run, so the caller would wait forever.
    """


class InReactorThreadError(TxgreenError):
    """A call meant for other OS threads (``call_in_green``) was made in the reactor's thread."""


# -- call_in_thread ----------------------------------------------------------------------------


class _Job:
    """One call of ``fn`` for a pool worker; returns ``(ok, value_or_exception)``.

    The exception is returned as a value (not turned into a Failure), so it keeps its own
    traceback and a late outcome, after the caller gave up, is never logged as an unhandled
    error.  ``cancelled`` is set when the caller gives up: a job not started by then never runs.
    """

    __slots__ = ("args", "cancelled", "ctx", "fn", "kwargs")

    def __init__(
        self, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> None:
        self.fn: Callable[..., Any] | None = fn
        self.args = args
        self.kwargs = kwargs
        self.ctx = contextvars.copy_context()
        self.cancelled = False

    def run(self) -> tuple[bool, Any]:
        fn, args, kwargs, ctx = self.fn, self.args, self.kwargs, self.ctx
        self.fn = None
        self.args = ()
        self.kwargs = {}
        if self.cancelled or fn is None:
            return True, None  # the caller gave up before a worker got to it: nobody waits
        try:
            return True, ctx.run(fn, *args, **kwargs)
        except BaseException as e:
            return False, e


def _check_pool(pool: ThreadPool) -> None:
    if not pool.started:
        state = "has been stopped" if pool.joined else "has not been started"
        raise ThreadPoolNotRunning(
            f"call_in_thread(): the thread pool {pool.name or pool!r} {state}, so the call would "
            "never run. Start a dedicated pool with pool.start() and stop it at shutdown with "
            "reactor.addSystemEventTrigger('during', 'shutdown', pool.stop)."
        )


def _call_in_thread(
    fn: Callable[..., T],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    timeout: float | None,
    pool: ThreadPool | None,
) -> T:
    cur = getcurrent()
    if type(cur) is GreenThread:
        hub = cur.hub
        in_reactor_thread = True
    else:
        hub = get_hub()
        # Raises BlockingInHubError in the hub before anything is submitted.
        in_reactor_thread = hub.check_can_block(cur, "call_in_thread()")
    if hub.state is STOPPED:
        raise ReactorStopped()
    if pool is not None:
        _check_pool(pool)
        _interrupt.pools.add(pool)  # its running jobs are counted in the Ctrl-C notice
    reactor = hub.reactor
    job = _Job(fn, args, kwargs)
    if in_reactor_thread:
        d = deferToThreadPool(reactor, pool or reactor.getThreadPool(), job.run)
    else:
        # Another OS thread: submit from the reactor's thread (getThreadPool is not thread-safe).
        # block_on's own set-up, queued after this one, then waits for d.
        d = Deferred()

        def submit() -> None:
            inner = deferToThreadPool(reactor, pool or reactor.getThreadPool(), job.run)
            inner.chainDeferred(d)  # a late result after a cancel is dropped by d

        reactor.callFromThread(submit)
    try:
        ok, value = block_on(d, timeout)
    except BaseException:
        job.cancelled = True  # not started yet: it never will
        raise
    if ok:
        return value  # type: ignore[no-any-return]
    try:
        raise value
    finally:
        del value  # no frame -> traceback -> frame cycle


def call_in_thread(
    fn: Callable[..., T],
    /,
    *args: Any,
    timeout: float | None = None,
    pool: ThreadPool | None = None,
    **kwargs: Any,
) -> T:
    """Run ``fn(*args, **kwargs)`` in a thread pool; only the calling green thread waits for it.

    Returns what ``fn`` returns, or raises what it raised, with its traceback (the frames in the
    worker thread follow the frame of this call).  ``fn`` runs in the caller's ``contextvars``
    context (a copy of it), like ``asyncio.to_thread``.

    - ``pool``: a :class:`twisted.python.threadpool.ThreadPool` to run in (e.g. a small pool
      bounding the connections of a database), which must be started; by default the
      reactor's thread pool (``reactor.getThreadPool()``, sized with
      :func:`set_thread_pool_size`).
    - ``timeout`` (seconds): the wait ends with :class:`txgreen.Timeout`.  An OS thread cannot be
      stopped: if ``fn`` has started it runs on to its end, and its late result or exception is
      dropped (never logged).  If it has not started yet (every worker busy), it never runs.
      The same holds when the wait ends because the green thread is killed, an enclosing
      ``with Timeout`` expires or the reactor stops (:class:`txgreen.ReactorStopped`).

    ``timeout`` and ``pool`` are keywords of ``call_in_thread`` itself, so they are never passed
    to ``fn``; to give ``fn`` arguments of those names, bind them first:
    ``call_in_thread(functools.partial(fn, timeout=5))``.

    From the hub (reactor callbacks) it raises :class:`txgreen.BlockingInHubError`.  From an OS
    thread other than the reactor's it also works, waiting like ``block_on`` does there (beware
    of a pool worker waiting for a job of its own, full pool).
    """
    return _call_in_thread(fn, args, kwargs, timeout, pool)


@overload
def threaded(fn: Callable[P, T], /) -> Callable[P, T]: ...
@overload
def threaded(
    *, pool: ThreadPool | None = None, timeout: float | None = None
) -> Callable[[Callable[P, T]], Callable[P, T]]: ...
def threaded(
    fn: Callable[P, T] | None = None,
    /,
    *,
    pool: ThreadPool | None = None,
    timeout: float | None = None,
) -> Callable[P, T] | Callable[[Callable[P, T]], Callable[P, T]]:
    """Decorator: calling the function runs it in a thread pool, as :func:`call_in_thread` does.

    Use it bare (``@threaded``: the reactor's pool, no timeout) or with settings
    (``@threaded(pool=db_pool, timeout=10)``).  The decorated function keeps its signature: all
    its arguments, even ones named ``timeout`` or ``pool``, go to the function.  Call it from a
    green thread (or another OS thread); the original function is ``decorated.__wrapped__``.
    """

    def decorate(f: Callable[P, T]) -> Callable[P, T]:
        @functools.wraps(f)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
            return _call_in_thread(f, args, kwargs, timeout, pool)

        return wrapper

    if fn is not None:
        return decorate(fn)
    return decorate


def set_thread_pool_size(minthreads: int, maxthreads: int) -> None:
    """Size the reactor's thread pool (used by ``call_in_thread`` without ``pool=``).

    ``minthreads`` workers are kept even when idle; at most ``maxthreads`` jobs run at once,
    the others wait in the pool's queue.  Twisted's default is 0 and 10.  Call it from the
    reactor's thread (or before the reactor runs).  ``reactor.suggestThreadPoolSize(n)`` only
    sets the maximum.
    """
    if not (isinstance(minthreads, int) and isinstance(maxthreads, int)):
        raise TypeError("set_thread_pool_size() takes two ints: minthreads, maxthreads")
    if minthreads < 0 or maxthreads < 1 or minthreads > maxthreads:
        raise ValueError(
            f"set_thread_pool_size() needs 0 <= minthreads <= maxthreads and maxthreads >= 1, "
            f"not ({minthreads}, {maxthreads})"
        )
    hub = get_hub()
    if not _in_reactor_thread(hub):
        from txgreen.errors import NotInReactorThreadError

        raise NotInReactorThreadError(
            "set_thread_pool_size() must be called from the reactor's thread: the reactor's "
            "thread pool is not thread-safe to resize"
        )
    hub.reactor.getThreadPool().adjustPoolsize(minthreads, maxthreads)


class _DaemonThread(threading.Thread):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.daemon = True


class DaemonThreadPool(ThreadPool):
    """A :class:`~twisted.python.threadpool.ThreadPool` that never holds up the process's exit.

    Twisted's pools (the reactor's included) join every worker when they stop, so a job that
    never ends (a hung network call, ``time.sleep(3600)``) keeps the process alive after Ctrl-C.
    Here the workers are daemon threads and :meth:`stop` waits at most ``stop_timeout``
    seconds for running jobs: a job still running then is abandoned, and dies with the
    process.  Use it, through ``call_in_thread(..., pool=...)``, for jobs that are safe to cut
    short; jobs that must finish (a write) belong in an ordinary pool.
    """

    threadFactory = _DaemonThread

    def __init__(
        self,
        minthreads: int = 0,
        maxthreads: int = 10,
        name: str | None = None,
        *,
        stop_timeout: float = 1.0,
    ) -> None:
        super().__init__(minthreads, maxthreads, name)
        self.stop_timeout = stop_timeout

    def stop(self) -> None:
        """Stop taking work; wait up to ``stop_timeout`` seconds for the running jobs."""
        threads, self.threads = self.threads, []
        try:
            super().stop()  # quits the workers; with no threads listed it joins nothing
        finally:
            self.threads = threads
        deadline = time.monotonic() + max(self.stop_timeout, 0.0)
        for t in threads:
            t.join(max(deadline - time.monotonic(), 0.0))


# -- where the caller runs ---------------------------------------------------------------------


def _in_reactor_thread(hub: Hub) -> bool:
    """True in the reactor's OS thread (or, before any reactor ran, in the main thread)."""
    ident = hub.thread_ident
    if ident is None:
        ident = threadable.ioThread
        if ident is None:
            ident = threading.main_thread().ident
    return ident == threading.get_ident()


def _caller(what: str) -> tuple[Hub, _greenlet | None]:
    """(hub, greenlet that will wait) for a green caller; (hub, None) for another OS thread."""
    cur = getcurrent()
    if type(cur) is GreenThread:
        return cur.hub, cur
    hub = get_hub()
    if _in_reactor_thread(hub):
        hub.check_can_block(cur, what)  # BlockingInHubError in the hub
        return hub, cur
    return hub, None


# -- ThreadQueue -------------------------------------------------------------------------------


def _resume(waiter: Waiter) -> None:
    waiter.resume()


class _GreenWake:
    """A green thread waiting in a ThreadQueue: wake it from any OS thread."""

    __slots__ = ("waiter",)

    def __init__(self, waiter: Waiter) -> None:
        self.waiter = waiter

    def wake(self) -> None:
        waiter = self.waiter
        hub = waiter.hub
        if threading.get_ident() == hub.thread_ident:
            waiter.resume_later()  # never switches: safe under the queue's lock
        else:
            hub.reactor.callFromThread(_resume, waiter)


class _ThreadWake:
    """An OS thread waiting in a ThreadQueue, on a lock of its own."""

    __slots__ = ("lock", "qlock", "woken")

    def __init__(self, qlock: threading.Lock) -> None:
        self.lock = threading.Lock()
        self.lock.acquire()
        self.qlock = qlock
        self.woken = False

    def wake(self) -> None:  # with the queue's lock held
        if not self.woken:
            self.woken = True
            self.lock.release()

    def release(self) -> None:  # the hub, at shutdown: the waiter re-checks and sees STOPPED
        with self.qlock:
            self.wake()


_Wake = _GreenWake | _ThreadWake

_NOTHING: Any = object()  # what ThreadQueue._take returns when no item is queued


class ThreadQueue(Generic[T]):
    """A FIFO queue between OS threads and green threads, in either direction.

    Every method can be called from a green thread or from any OS thread; each caller blocks
    the way it should: a green thread only blocks itself (the reactor and other green threads
    run on), an OS thread blocks its own OS thread.  Typical uses:

    - OS threads ``put`` (a worker reading a file, a C library's callback thread) and green
      threads ``get``: blocking producers stream into green code.  With ``maxsize > 0`` a full
      queue blocks the producing OS thread until a green consumer takes an item.
    - Green threads ``put`` and OS threads ``get``: green code feeds a worker thread; a full
      queue blocks the green producer only.

    ``close()`` ends the stream: ``put`` then raises :class:`QueueClosed`, ``get`` returns the
    items still queued and then raises :class:`QueueClosed`, and ``for item in q`` (in a green
    thread or an OS thread) ends.  Blocked getters and putters wake at once.

    ``get``/``put`` take ``timeout=`` (seconds; :class:`txgreen.Timeout` when it passes).  From
    the hub (reactor callbacks) only ``get_nowait``/``put_nowait``/``close`` can be used.  When
    the reactor stops, a ``get``/``put`` that has to wait raises :class:`txgreen.ReactorStopped`
    (in OS threads too: nothing on the green side can ever wake them any more); items already
    queued can still be taken.
    """

    def __init__(self, maxsize: int = 0) -> None:
        if not isinstance(maxsize, int) or maxsize < 0:
            raise ValueError(f"maxsize must be an int >= 0 (0: unbounded), not {maxsize!r}")
        self._maxsize = maxsize
        self._lock = threading.Lock()
        self._items: deque[T] = deque()
        self._closed = False
        self._getters: deque[_Wake] = deque()
        self._putters: deque[_Wake] = deque()

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        bound = f"/{self._maxsize}" if self._maxsize else ""
        return (
            f"<txgreen.ThreadQueue {state} {len(self._items)}{bound} items, "
            f"{len(self._getters)} getters, {len(self._putters)} putters waiting>"
        )

    # -- state ---------------------------------------------------------------------------------

    @property
    def maxsize(self) -> int:
        """The bound given at creation (0: unbounded)."""
        return self._maxsize

    @property
    def closed(self) -> bool:
        """True once :meth:`close` has been called."""
        return self._closed

    def qsize(self) -> int:
        """The number of items queued now (a snapshot: other threads may change it)."""
        return len(self._items)

    def empty(self) -> bool:
        """True if no item is queued now."""
        return not self._items

    def full(self) -> bool:
        """True if a bounded queue holds ``maxsize`` items now."""
        return 0 < self._maxsize <= len(self._items)

    @property
    def getters_waiting(self) -> int:
        """How many callers (green or OS threads) are blocked in :meth:`get` now."""
        return len(self._getters)

    @property
    def putters_waiting(self) -> int:
        """How many callers (green or OS threads) are blocked in :meth:`put` now."""
        return len(self._putters)

    # -- putting -------------------------------------------------------------------------------

    def put_nowait(self, item: T) -> None:
        """Queue ``item`` without waiting; :class:`Full` if a bounded queue is full.

        Callable from anywhere, the hub included.
        """
        with self._lock:
            if self._try_put(item, "put_nowait") is _NOTHING:
                raise Full(f"the ThreadQueue is full ({self._maxsize} items)")

    def put(self, item: T, timeout: float | None = None) -> None:
        """Queue ``item``; if a bounded queue is full, wait for room (only this caller waits).

        Raises :class:`QueueClosed` if the queue is closed (also while waiting) and
        :class:`txgreen.Timeout` if ``timeout`` seconds pass without room.
        """
        self._retry(self._putters, "put", timeout, self._try_put, item, "put")

    # -- getting -------------------------------------------------------------------------------

    def get_nowait(self) -> T:
        """Take the next item without waiting; :class:`Empty` if there is none.

        On a closed, empty queue it raises :class:`QueueClosed`.  Callable from anywhere, the
        hub included.
        """
        with self._lock:
            item = self._take()
            if item is _NOTHING:
                raise Empty("the ThreadQueue is empty")
            return item  # type: ignore[no-any-return]

    def get(self, block: bool = True, timeout: float | None = None) -> T:
        """Take the next item, waiting for one if needed (only this caller waits).

        Raises :class:`QueueClosed` once the queue is closed and empty (also while waiting)
        and :class:`txgreen.Timeout` if ``timeout`` seconds pass without an item.
        ``block=False`` is :meth:`get_nowait` (:class:`Empty` if there is no item).
        """
        if block is not True:
            block, timeout = block_and_timeout(block, timeout, "ThreadQueue.get")
            if not block:
                return self.get_nowait()
        return self._retry(self._getters, "get", timeout, self._take)  # type: ignore[no-any-return]

    def __iter__(self) -> Iterator[T]:
        """Yield items with :meth:`get` until the queue is closed and empty."""
        while True:
            try:
                item = self.get()
            except QueueClosed:
                return
            yield item

    # -- closing -------------------------------------------------------------------------------

    def close(self) -> None:
        """No more items: wake every waiter; ``put`` raises, ``get`` drains then raises.

        Idempotent; callable from anywhere, the hub included.
        """
        with self._lock:
            self._closed = True
            waiters = [*self._getters, *self._putters]
            self._getters.clear()
            self._putters.clear()
            for w in waiters:
                w.wake()

    # -- with the lock held ----------------------------------------------------------------------

    def _try_put(self, item: T, what: str) -> Any:
        """Queue ``item`` and wake the longest-waiting getter: None; _NOTHING if there is no room.

        Raises :class:`QueueClosed` (for the method ``what``) if the queue is closed.
        """
        if self._closed:
            raise QueueClosed(f"{what}() on a closed ThreadQueue")
        if self.full():
            return _NOTHING
        self._items.append(item)
        if self._getters:
            self._getters.popleft().wake()
        return None

    def _take(self) -> Any:
        """The next item, waking the longest-waiting putter; _NOTHING if there is none yet.

        Raises :class:`QueueClosed` once the queue is closed and empty.
        """
        if self._items:
            item = self._items.popleft()
            if self._putters:
                self._putters.popleft().wake()
            return item
        if self._closed:
            raise QueueClosed("the ThreadQueue is closed and empty")
        return _NOTHING

    # -- waiting -------------------------------------------------------------------------------

    def _retry(
        self,
        waiters: deque[_Wake],
        what: str,
        timeout: float | None,
        attempt: Callable[..., Any],
        *args: Any,
    ) -> Any:
        """Return ``attempt(*args)``, called with the lock held, once it is not _NOTHING.

        Between attempts the caller waits in ``waiters`` (:meth:`_wait`: only this caller
        waits, the way its kind of thread should) until woken or ``timeout`` passes.
        """
        hub, g = _caller(f"ThreadQueue.{what}()")
        clock: Callable[[], float] = time.monotonic if g is None else hub.reactor.seconds
        deadline = None if timeout is None else clock() + timeout
        first = True
        while True:
            with self._lock:
                result = attempt(*args)
                if result is not _NOTHING:
                    return result
            self._wait(waiters, hub, g, deadline, clock, timeout, first, what)
            first = False

    def _ready(self, waiters: deque[_Wake]) -> bool:
        """With the lock held: could the first of ``waiters`` proceed now?"""
        if self._closed:
            return True
        if waiters is self._getters:
            return bool(self._items)
        return not self.full()

    def _wait(
        self,
        waiters: deque[_Wake],
        hub: Hub,
        g: _greenlet | None,
        deadline: float | None,
        clock: Callable[[], float],
        timeout: float | None,
        first: bool,
        what: str,
    ) -> None:
        """Wait once in ``waiters`` until woken (then the caller checks again) or raise."""
        remaining = None
        if deadline is not None:
            remaining = deadline - clock()
            if remaining <= 0:
                raise Timeout(timeout)
        wake: _Wake
        with self._lock:
            if self._ready(waiters):
                return  # things changed since the caller looked: look again
            if hub.state is STOPPED:
                raise ReactorStopped(
                    f"ThreadQueue.{what}() would have to wait, but the reactor has stopped, so "
                    "nothing could ever wake it"
                )
            if g is not None:
                waiter = Waiter(hub, g)
                wake = _GreenWake(waiter)
            else:
                wake = _ThreadWake(self._lock)
            # A caller woken earlier whose chance was taken by another goes first again.
            if first:
                waiters.append(wake)
            else:
                waiters.appendleft(wake)
        try:
            if isinstance(wake, _GreenWake):
                mine = Timeout(timeout) if remaining is not None else None
                hub.wait(wake.waiter, remaining, mine)
            else:
                self._wait_in_os_thread(hub, wake, remaining, timeout, what)
        except BaseException:
            with self._lock:
                if wake in waiters:
                    waiters.remove(wake)
                elif waiters and self._ready(waiters):
                    # We were woken for something we will not take: pass the wake-up on.
                    waiters.popleft().wake()
            raise
        with self._lock:
            if wake in waiters:  # woken by a timeout of the OS thread, or by the shutdown
                waiters.remove(wake)

    def _wait_in_os_thread(
        self,
        hub: Hub,
        wake: _ThreadWake,
        remaining: float | None,
        timeout: float | None,
        what: str,
    ) -> None:
        if not hub.add_thread_waiter(wake.release):
            raise ReactorStopped(
                f"ThreadQueue.{what}() would have to wait, but the reactor has stopped"
            )
        try:
            if not wake.lock.acquire(timeout=-1 if remaining is None else remaining):
                with self._lock:
                    woken = wake.woken
                    wake.woken = True  # a late wake() must not release the lock any more
                if not woken:
                    raise Timeout(timeout)
        finally:
            hub.remove_thread_waiter(wake.release)


# -- call_in_green --------------------------------------------------------------------------------


def call_in_green(fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
    """From an OS thread: run sync-style ``fn(*args, **kwargs)`` in a new green thread and wait.

    The mirror of :func:`call_in_thread`: ``fn`` runs as a green thread (it can ``block_on``,
    ``sleep``, ``spawn``...) while only the calling OS thread blocks.  Returns what ``fn``
    returns or raises what it raised, with its traceback.  If the reactor has not started yet,
    the call waits for it.  If the reactor stops before ``fn`` ends, it raises
    :class:`txgreen.ReactorStopped` (``fn`` itself gets ``ReactorStopped`` at its blocking call).
    There is no timeout argument: bound the work inside ``fn`` with ``with txgreen.Timeout(s)``.

    Called from the reactor's own thread it raises :class:`InReactorThreadError`: the wait would
    block the very thread the green thread needs.
    """
    hub = get_hub()
    if _in_reactor_thread(hub) or type(getcurrent()) is GreenThread:
        raise InReactorThreadError(
            "call_in_green() was called from the reactor's thread, where blocking the OS thread "
            "would stop the green thread it waits for. In a green thread call fn directly; in "
            "reactor callbacks use txgreen.defer_to_green(fn, ...)."
        )
    reactor = hub.reactor
    if hub.state is STOPPED or (getattr(reactor, "_startedBefore", False) and not reactor.running):
        raise ReactorStopped()
    done = threading.Lock()
    done.acquire()
    box: list[tuple[bool, Any]] = []
    box_lock = threading.Lock()

    def finish(ok: bool, value: Any) -> None:  # any thread; the first outcome wins
        with box_lock:
            if box:
                return
            box.append((ok, value))
        done.release()

    def release() -> None:
        finish(False, ReactorStopped())

    def on_end(gt: GreenThread[T]) -> None:  # in the hub
        exc = gt.exception  # counts as handled: it is raised in the OS thread instead
        if exc is None:
            finish(True, gt.value)
        else:
            finish(False, exc)

    def start() -> None:  # in the hub (reactor.callFromThread runs it there)
        try:
            gt = _new_thread(fn, args, kwargs)
        except BaseException as e:
            finish(False, e)
            return
        gt.link(on_end)
        gt._begin()  # start it in this turn of the reactor, not the next

    if not hub.add_thread_waiter(release):
        raise ReactorStopped()
    try:
        reactor.callFromThread(start)
        done.acquire()
    finally:
        hub.remove_thread_waiter(release)
    ok, value = box.pop()
    if ok:
        return value  # type: ignore[no-any-return]
    try:
        raise value
    finally:
        del value


def run_in_hub(fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
    """Deprecated name of :func:`call_in_green` (it never ran ``fn`` in the hub: it starts a
    green thread); warns ``DeprecationWarning`` and calls it."""
    import warnings

    warnings.warn(
        "txgreen.run_in_hub() is now txgreen.call_in_green() (it runs fn in a new green thread, "
        "not in the hub); the old name will be removed in a later version",
        DeprecationWarning,
        stacklevel=2,
    )
    return call_in_green(fn, *args, **kwargs)
