"""Groups and pools of green threads: track, join and kill many at once; bound concurrency.

A :class:`Group` is a set of green threads that leave it by themselves when they end.  A
:class:`Pool` is a group with a size: ``Pool.spawn`` waits while ``size`` threads are in it.
``map``/``imap``/``imap_unordered`` fan work out over the group's threads and fan the results
back in.  :func:`joinall` and :func:`killall` do the same for any list of green threads.

Every wait here goes through the hub's :class:`~txgreen._hub.Waiter`, so ``timeout=``, kills,
an enclosing ``with txgreen.Timeout(...)`` and reactor shutdown work as for any other blocking
call, and a thread killed while it waits leaves the pool's accounting as it found it.
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Generic, ParamSpec, TypeVar

from greenlet import GreenletExit, getcurrent

from txgreen._greenthread import (
    GreenThread,
    _callable_name,
    check_callable,
    current_hub_and_greenlet,
    spawn,
)
from txgreen._hub import TIMED_OUT, Waiter, get_hub, wait_timed
from txgreen._timeout import Timeout
from txgreen._util import hidden_in_reports
from txgreen.errors import TxgreenError

__all__ = ["Group", "Pool", "PoolFull", "joinall", "killall"]

__tracebackhide__ = hidden_in_reports  # pytest: the user's frames, not txgreen's

P = ParamSpec("P")
T = TypeVar("T")
R = TypeVar("R")

KillException = type[BaseException] | BaseException


class PoolFull(TxgreenError):
    """``Pool.add(thread, blocking=False)`` was called while the pool had no free slot."""


def _check_thread(thread: object, what: str) -> None:
    if not isinstance(thread, GreenThread):
        raise TypeError(f"{what} takes a GreenThread, not {type(thread).__name__!r}")


def _in_hub() -> bool:
    return get_hub().in_hub()


# -- module functions --------------------------------------------------------------------------


def joinall(
    threads: Iterable[GreenThread[Any]],
    timeout: float | None = None,
    raise_error: bool = False,
) -> list[GreenThread[Any]]:
    """Wait until every thread in ``threads`` has finished; return the finished ones.

    The list is in the order the threads finished (those already finished first, in the order
    given).  With ``timeout`` (seconds) it returns when the time is up, with the threads that
    finished by then.  With ``raise_error=True`` the exception of the first thread that failed
    (a ``GreenletExit`` kill is not a failure) is raised at once instead, and counts as handled.
    From the hub it raises :class:`txgreen.BlockingInHubError` unless every thread has already
    finished; a thread cannot wait for itself (``RuntimeError``).
    """
    threads = list(threads)
    for t in threads:
        _check_thread(t, "joinall()")
    done = [t for t in threads if t.dead]
    if raise_error:
        for t in done:
            if not t.successful():
                t.get()  # raises the thread's exception, marking it handled
    pending = {t: None for t in threads if not t.dead}
    if not pending:
        return done
    cur, hub = current_hub_and_greenlet("joinall()")
    if cur in pending:
        raise RuntimeError(
            "joinall(): a green thread cannot wait for itself (it would wait forever)"
        )
    waiter = Waiter(hub, cur)

    def on_done(t: GreenThread[Any]) -> None:
        if t not in pending:
            return
        del pending[t]
        done.append(t)
        if raise_error and not t.successful() and waiter.resume_later(t):
            return
        if not pending:
            waiter.resume_later(None)

    for t in pending:
        t.link(on_done)
    try:
        failed = wait_timed(waiter, timeout)
    finally:
        for t in list(pending):
            t.unlink(on_done)
    if failed is not None and failed is not TIMED_OUT:
        failed.get()  # raises its exception, marking it handled
    return done


def killall(
    threads: Iterable[GreenThread[Any]],
    exception: KillException = GreenletExit,
    block: bool = True,
    timeout: float | None = None,
) -> None:
    """Kill every thread in ``threads`` with ``exception``; with ``block``, wait for their end.

    Each thread gets the exception where it waits (one not started yet ends without running;
    an exception class is instantiated once per thread).  With ``block=True`` the caller then
    waits up to ``timeout`` seconds for all of them to finish (no error when the time is up,
    as with ``GreenThread.kill``); from the hub it never waits.  If the caller is one of the
    threads, the others are killed (and waited for) first, then the exception is raised in
    the caller.
    """
    threads = list(threads)
    for t in threads:
        _check_thread(t, "killall()")
    cur = getcurrent()
    others = [t for t in threads if t is not cur and not t.dead]
    for t in others:
        t.kill(exception, block=False)
    if block and not _in_hub():
        joinall(others, timeout)
    for t in threads:
        if t is cur and not t.dead:
            t.kill(exception)  # raises it here, in the caller


# -- Group --------------------------------------------------------------------------------------


class Group:
    """A set of green threads, each leaving it by itself when it finishes.

    Threads are added by :meth:`spawn` or :meth:`add` and leave when they end (their links run
    in the hub right after) or on :meth:`discard`.  ``len(group)``, ``thread in group`` and
    iteration (in the order they were added, over a snapshot) tell what is still running.
    """

    def __init__(self, threads: Iterable[GreenThread[Any]] = ()) -> None:
        self._threads: dict[GreenThread[Any], None] = {}
        self._joiners: deque[tuple[Waiter, bool]] = deque()
        for t in threads:
            self.add(t)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} of {len(self._threads)} at {id(self):#x}>"

    # -- membership ------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._threads)

    def __contains__(self, thread: object) -> bool:
        return thread in self._threads

    def __iter__(self) -> Iterator[GreenThread[Any]]:
        return iter(list(self._threads))

    def add(self, thread: GreenThread[Any]) -> None:
        """Track ``thread`` until it finishes (a finished thread is not added)."""
        _check_thread(thread, f"{type(self).__name__}.add()")
        self._add_now(thread)

    def _add_now(self, thread: GreenThread[Any]) -> None:
        if thread.dead or thread in self._threads:
            return
        self._threads[thread] = None
        thread.link(self._on_done)

    def discard(self, thread: GreenThread[Any]) -> None:
        """Stop tracking ``thread`` (no error if it is not in the group); it keeps running."""
        if thread not in self._threads:
            return
        del self._threads[thread]
        thread.unlink(self._on_done)
        self._slot_freed()
        if not self._threads:
            joiners, self._joiners = self._joiners, deque()
            for waiter, _ in joiners:
                waiter.resume_later(None)

    def _on_done(self, thread: GreenThread[Any]) -> None:
        # A link: runs in the hub right after ``thread`` ended.
        if thread not in self._threads:
            return
        if not thread.successful() and any(raise_error for _, raise_error in self._joiners):
            exc = thread.exception  # reading it marks it handled: a joiner gets it raised
            keep: deque[tuple[Waiter, bool]] = deque()
            for waiter, raise_error in self._joiners:
                if raise_error:
                    waiter.resume_later(None, exc)
                else:
                    keep.append((waiter, raise_error))
            self._joiners = keep
        self.discard(thread)

    def _prune(self) -> None:
        # A thread killed before it started ends at once, but its links (so its leaving the
        # group) run on the hub's next turn: account for it now.
        for t in [t for t in self._threads if t.dead]:
            self.discard(t)

    def _slot_freed(self) -> None:
        pass

    def full(self) -> bool:
        """Always False: a Group has no size limit (see :class:`Pool`)."""
        return False

    # -- spawning --------------------------------------------------------------------------

    def spawn(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> GreenThread[T]:
        """Start ``fn(*args, **kwargs)`` in a new green thread that belongs to the group."""
        thread = spawn(fn, *args, **kwargs)
        self._add_now(thread)
        return thread

    # -- waiting and killing ---------------------------------------------------------------

    def join(self, timeout: float | None = None, raise_error: bool = False) -> bool:
        """Wait until the group is empty; True if it is, False if ``timeout`` passed first.

        With ``raise_error=True``, the first thread that fails while we wait (not counting
        ``GreenletExit`` kills) makes ``join`` raise its exception at once; the other threads
        keep running.  A thread cannot join a group it belongs to (``RuntimeError``); from
        the hub, joining a non-empty group raises :class:`txgreen.BlockingInHubError`.
        """
        name = f"{type(self).__name__}.join()"
        self._prune()
        if not self._threads:
            return True
        cur, hub = current_hub_and_greenlet(name)
        if cur in self._threads:
            raise RuntimeError(
                f"{name}: a green thread cannot join a group it belongs to (it would wait forever)"
            )
        entry = (Waiter(hub, cur), raise_error)
        self._joiners.append(entry)
        try:
            return wait_timed(entry[0], timeout) is not TIMED_OUT
        finally:
            if entry in self._joiners:
                self._joiners.remove(entry)

    def kill(
        self,
        exception: KillException = GreenletExit,
        block: bool = True,
        timeout: float | None = None,
    ) -> None:
        """Kill every thread of the group (see :func:`killall`); with ``block``, wait for them."""
        threads = list(self._threads)
        try:
            killall(threads, exception, block, timeout)
        finally:
            self._prune()

    # -- fan-out / fan-in ------------------------------------------------------------------

    def apply(
        self,
        fn: Callable[..., R],
        args: Iterable[Any] = (),
        kwargs: dict[str, Any] | None = None,
    ) -> R:
        """Run ``fn(*args, **kwargs)`` in the group and return (or raise) its outcome.

        Called from a thread of the group itself, it calls ``fn`` directly (waiting for a
        slot of your own pool could wait forever).
        """
        args = tuple(args)
        kwargs = kwargs or {}
        if getcurrent() in self._threads:
            return fn(*args, **kwargs)
        return self.spawn(fn, *args, **kwargs).get()

    def imap(
        self, fn: Callable[..., R], *iterables: Iterable[Any], maxsize: int | None = None
    ) -> IMap[R]:
        """Iterate over ``fn(*items)`` for the items of ``iterables`` (zipped), in input order.

        The calls run in threads of the group, started lazily as the iterator is consumed:
        at most ``maxsize`` calls are *in flight* (started, result not yet taken by the
        consumer).  ``maxsize`` defaults to the pool's size for a :class:`Pool` and to no limit
        for a :class:`Group` (then the first ``next()`` starts everything).  The first call that
        raises makes ``next()`` raise its exception (in input order); the calls still in flight
        are killed and no new one is started.
        """
        return IMap(self, fn, iterables, maxsize, ordered=True)

    def imap_unordered(
        self, fn: Callable[..., R], *iterables: Iterable[Any], maxsize: int | None = None
    ) -> IMap[R]:
        """Like :meth:`imap`, but yields results as the calls finish (completion order)."""
        return IMap(self, fn, iterables, maxsize, ordered=False)

    def map(
        self, fn: Callable[..., R], *iterables: Iterable[Any], maxsize: int | None = None
    ) -> list[R]:
        """All the results of ``fn(*items)``, in input order, like ``list(self.imap(...))``.

        It fails fast: the first call that raises (in completion order, not input order)
        makes ``map`` raise its exception at once; the calls in flight are killed (and waited
        for) and no new one is started.
        """
        results: dict[int, R] = {}
        indexed = IMap(self, _Indexed(fn), (itertools.count(), *iterables), maxsize, False)
        indexed._what = f"{type(self).__name__}.map()"
        for i, value in indexed:
            results[i] = value
        return [results[i] for i in range(len(results))]

    def _default_window(self) -> int | None:
        return None


# -- Pool ---------------------------------------------------------------------------------------


class _SlotWait:
    """A thread waiting in a Pool for a free slot; ``reserve``: the slot is kept for it."""

    __slots__ = ("granted", "reserve", "waiter")

    def __init__(self, waiter: Waiter, reserve: bool) -> None:
        self.waiter = waiter
        self.reserve = reserve
        self.granted = False


class Pool(Group):
    """A :class:`Group` of at most ``size`` green threads.

    :meth:`spawn` starts a thread at once when a slot is free, else waits for one; waiting
    threads get free slots in the order they started waiting (FIFO), and a slot handed to a
    waiter is kept for it until it runs, so a later caller cannot take it.
    """

    def __init__(self, size: int, threads: Iterable[GreenThread[Any]] = ()) -> None:
        if isinstance(size, bool) or not isinstance(size, int):
            raise TypeError(f"Pool size must be an int, not {type(size).__name__!r}")
        if size < 1:
            raise ValueError(f"Pool size must be >= 1, not {size!r}")
        self.size: int = size
        self._reserved = 0  # slots handed to woken waiters that have not taken them yet
        self._slot_waits: deque[_SlotWait] = deque()
        super().__init__()
        for t in threads:
            self.add(t, blocking=False)

    def __repr__(self) -> str:
        return f"<Pool {len(self)}/{self.size} at {id(self):#x}>"

    def _free(self) -> int:
        return self.size - len(self._threads) - self._reserved

    def free_count(self) -> int:
        """How many threads could be spawned now without waiting."""
        return max(self._free(), 0)

    def full(self) -> bool:
        """True when :meth:`spawn` would wait."""
        return self._free() <= 0

    def _slot_freed(self) -> None:
        # Hand free slots to the waiters, first come first served.  Wait_available waiters are
        # only told; spawn/add waiters get the slot reserved.  Never switches.
        waits = self._slot_waits
        while waits and self._free() > 0:
            entry = waits.popleft()
            if entry.waiter.resume_later(None) and entry.reserve:
                entry.granted = True
                self._reserved += 1

    def _wait_for_slot(self, reserve: bool, timeout: float | None, what: str) -> bool:
        """Wait for a free slot; True when there is one (reserved for us if ``reserve``)."""
        cur, hub = current_hub_and_greenlet(what)
        entry = _SlotWait(Waiter(hub, cur), reserve)
        self._slot_waits.append(entry)
        ok = False
        try:
            ok = wait_timed(entry.waiter, timeout) is not TIMED_OUT
        finally:
            if entry in self._slot_waits:
                self._slot_waits.remove(entry)
            if entry.granted and not ok:
                self._release_reservation()
        return ok

    def _release_reservation(self) -> None:
        self._reserved -= 1
        self._slot_freed()

    def wait_available(self, timeout: float | None = None) -> int:
        """Wait until a slot is free; return :meth:`free_count` (0 if ``timeout`` passed).

        It does not take the slot: another thread may take it before the caller spawns.
        From the hub it raises :class:`txgreen.BlockingInHubError` if it would wait.
        """
        if self._free() <= 0:
            self._wait_for_slot(False, timeout, "Pool.wait_available() on a full pool")
        return self.free_count()

    def spawn(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> GreenThread[T]:
        """Start ``fn(*args, **kwargs)`` in the pool, first waiting for a free slot if it is full.

        From the hub a full pool raises :class:`txgreen.BlockingInHubError` (nothing is
        spawned).  To bound the wait, use ``with txgreen.Timeout(...)`` or
        :meth:`wait_available` first.
        """
        if self._free() > 0:
            return super().spawn(fn, *args, **kwargs)
        check_callable(fn, "Pool.spawn()")  # at once, not after waiting for a slot
        self._wait_for_slot(True, None, "Pool.spawn() on a full pool")
        # The slot reserved for us by _slot_freed becomes the new thread's.
        self._reserved -= 1
        try:
            thread = spawn(fn, *args, **kwargs)
        except BaseException:
            self._slot_freed()
            raise
        self._add_now(thread)
        return thread

    def add(
        self, thread: GreenThread[Any], blocking: bool = True, timeout: float | None = None
    ) -> None:
        """Track ``thread`` in the pool, waiting for a free slot if it is full.

        With ``blocking=False`` a full pool raises :class:`PoolFull`; with ``timeout`` it
        raises :class:`txgreen.Timeout` when the time is up.  A thread already in the pool or
        finished is not added again.
        """
        _check_thread(thread, "Pool.add()")
        if thread in self._threads or thread.dead:
            return
        if self._free() > 0:
            self._add_now(thread)
            return
        if not blocking:
            raise PoolFull(f"Pool.add(): the pool is full ({self.size} of {self.size} slots used)")
        if not self._wait_for_slot(True, timeout, "Pool.add() on a full pool"):
            raise Timeout(timeout)
        self._reserved -= 1
        if thread.dead:  # it ended while we waited for the slot
            self._slot_freed()
            return
        self._add_now(thread)

    def _default_window(self) -> int | None:
        return self.size


# -- imap ---------------------------------------------------------------------------------------


class IMap(Iterator[R]):
    """The iterator returned by ``imap`` and ``imap_unordered`` (see :meth:`Group.imap`).

    ``close()`` kills the calls still in flight and ends the iteration.
    """

    def __init__(
        self,
        group: Group,
        fn: Callable[..., R],
        iterables: tuple[Iterable[Any], ...],
        maxsize: int | None,
        ordered: bool,
    ) -> None:
        if not iterables:
            raise TypeError("imap() needs at least one iterable")
        if maxsize is not None and (isinstance(maxsize, bool) or not isinstance(maxsize, int)):
            raise TypeError(f"maxsize must be an int or None, not {type(maxsize).__name__!r}")
        if maxsize is not None and maxsize < 1:
            raise ValueError(f"maxsize must be >= 1, not {maxsize!r}")
        self._group = group
        self._fn = fn
        self._source: Iterator[tuple[Any, ...]] = zip(*iterables, strict=False)
        self._window = maxsize if maxsize is not None else group._default_window()
        self._ordered = ordered
        self._outstanding: dict[GreenThread[R], None] = {}  # started, result not yet taken
        self._done: deque[GreenThread[R]] = deque()  # finished, for imap_unordered
        self._waiter: Waiter | None = None
        self._exhausted = False
        self._closed = False
        self._what = f"{type(group).__name__}.{'imap' if ordered else 'imap_unordered'}()"

    def __iter__(self) -> IMap[R]:
        return self

    @property
    def in_flight(self) -> int:
        """Calls started whose result the consumer has not taken yet."""
        return len(self._outstanding)

    def __next__(self) -> R:
        if self._closed:
            raise StopIteration
        cur, hub = current_hub_and_greenlet(self._what)
        try:
            self._refill()
            if not self._outstanding:
                self._closed = True
                raise StopIteration
            thread = self._next_finished(cur, hub)
        except StopIteration:
            raise
        except BaseException:
            # The consumer was interrupted (timeout, kill) or the input iterable raised.
            self.close(block=False)
            raise
        del self._outstanding[thread]
        try:
            return thread.get()
        except BaseException:
            self.close()
            raise

    def _refill(self) -> None:
        group = self._group
        window = self._window
        while not self._exhausted and (window is None or len(self._outstanding) < window):
            if self._outstanding and group.full():
                break  # wait for one of ours rather than for a slot
            try:
                args = next(self._source)
            except StopIteration:
                self._exhausted = True
                break
            thread = group.spawn(self._fn, *args)
            self._outstanding[thread] = None
            if not self._ordered:
                thread.link(self._on_done)

    def _next_finished(self, cur: Any, hub: Any) -> GreenThread[R]:
        if self._ordered:
            thread = next(iter(self._outstanding))
            thread.join()
            return thread
        while not self._done:
            waiter = self._waiter = Waiter(hub, cur)
            try:
                hub.wait(waiter)
            finally:
                self._waiter = None
        return self._done.popleft()

    def _on_done(self, thread: GreenThread[R]) -> None:
        # A link of each call of imap_unordered: runs in the hub when the call ends.
        if self._closed:
            return
        self._done.append(thread)
        waiter = self._waiter
        if waiter is not None:
            waiter.resume_later(None)

    def close(self, block: bool = True) -> None:
        """End the iteration: kill the calls in flight (waiting for them if ``block``).

        Their errors, if any, are dropped: the consumer has stopped listening.
        """
        if self._closed:
            return
        self._closed = True
        self._exhausted = True
        threads = list(self._outstanding)
        self._outstanding.clear()
        self._done.clear()
        for t in threads:
            t.link(_drop_error)
        try:
            killall(threads, block=block)
        finally:
            self._group._prune()


class _Indexed(Generic[R]):
    """``fn`` for ``map``: returns ``(index, fn(*args))``; named like ``fn`` in reprs."""

    __slots__ = ("__qualname__", "fn")

    def __init__(self, fn: Callable[..., R]) -> None:
        self.fn = fn
        self.__qualname__ = _callable_name(fn)

    def __call__(self, index: int, *args: Any) -> tuple[int, R]:
        return index, self.fn(*args)


def _drop_error(thread: GreenThread[Any]) -> None:
    _ = thread.exception
