"""A cooperative ``threading`` module: thread-aware locks, and ``Thread`` as a green thread.

**Thread-aware primitives.**  One :class:`Lock` (and everything built on it: :class:`RLock`,
:class:`Condition`, :class:`Semaphore`, :class:`BoundedSemaphore`, :class:`Event`,
:class:`Barrier`) may be shared by green threads *and* real OS threads (Twisted's thread pool,
``call_in_thread`` jobs, a C library's callback thread, ``logging`` in either):

- a green thread that has to wait parks only itself on the reactor;
- any other caller (another OS thread, or the hub itself: a reactor callback) blocks its own OS
  thread on a private real lock, exactly like the stdlib's lock;
- whoever releases hands the lock to the longest waiter and wakes it the way it waits: an OS
  waiter by releasing its real lock (from any thread, so OS threads never need the reactor to
  wake each other), a green waiter through the reactor (``callFromThread`` from another OS
  thread, the hub's ready queue from the reactor's thread).

The state of each lock is guarded by a real lock held only for a few instructions, never while
anybody waits, so neither side can deadlock the other through it (the class of gevent issues
863 and 1484, where a lock shared with native threads hung the process).

**Threads.**  :class:`Thread` started from the reactor's thread runs as a green thread
(``start``, ``join(timeout)``, ``is_alive``, ``name``, ``ident``, ``daemon``, a ``run``
override, ``threading.excepthook`` for an uncaught exception); started from any other OS
thread it is a real OS thread, as the stdlib's.  It is a subclass of the stdlib's
``threading.Thread``, and a running green Thread is listed by ``threading.enumerate()``.
:func:`current_thread` returns it inside the green thread (a dummy Thread-like object in a green
thread spawned otherwise), :func:`get_ident` tells green threads apart, and :class:`local` is
local to each green thread.  Every other name of the stdlib's module is re-exported unchanged.
"""

from __future__ import annotations

import _thread
import contextlib
import itertools as _itertools
import math as _math
import threading as _std
import time as _time
import weakref as _weakref
from collections import deque as _deque
from collections.abc import Callable, Iterable, Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any

from greenlet import GreenletExit as _GreenletExit
from greenlet import getcurrent as _getcurrent
from greenlet import greenlet as _greenlet

from txgreen._greenthread import GreenThread as _GreenThread
from txgreen._greenthread import spawn as _spawn
from txgreen._hub import TIMED_OUT as _TIMED_OUT
from txgreen._hub import Waiter as _Waiter
from txgreen._hub import wait_timed as _wait_timed
from txgreen.errors import ReactorStopped as _ReactorStopped
from txgreen.green import _fdwait

if TYPE_CHECKING:  # (the type checker sees the re-exported names one by one)
    from threading import ExceptHookArgs as ExceptHookArgs
    from threading import ThreadError as ThreadError
    from threading import active_count as active_count
    from threading import enumerate as enumerate
    from threading import excepthook as excepthook
    from threading import get_native_id as get_native_id
    from threading import getprofile as getprofile
    from threading import gettrace as gettrace
    from threading import main_thread as main_thread
    from threading import setprofile as setprofile
    from threading import settrace as settrace
    from threading import stack_size as stack_size
else:
    from threading import *  # noqa: F403 - the stdlib's whole surface, re-exported

__patched__: list[str] = [
    "Lock",
    "RLock",
    "Condition",
    "Semaphore",
    "BoundedSemaphore",
    "Event",
    "Barrier",
    "Timer",
    "Thread",
    "local",
    "current_thread",
    "get_ident",
]

# The stdlib's originals, bound now: after txgreen.patch() the module's names are ours.
_real_lock = _thread.allocate_lock
_os_ident = _thread.get_ident
_StdThread = _std.Thread
_std_current_thread = _std.current_thread
_std_active = _std._active  # type: ignore[attr-defined]
_std_active_lock = _std._active_limbo_lock  # type: ignore[attr-defined]
_std_monotonic = _time.monotonic
TIMEOUT_MAX = _thread.TIMEOUT_MAX


def _kind(obj: object) -> str:
    """``module.Class`` for a repr: ``threading.Event`` for ours, as the stdlib's reprs say."""
    cls = type(obj)
    module = "threading" if cls.__module__ == __name__ else cls.__module__
    return f"{module}.{cls.__qualname__}"


def _check_acquire(blocking: bool, timeout: float) -> float | None:
    """The wait ``acquire(blocking, timeout)`` asks for (None: forever), checked as the stdlib's."""
    if isinstance(timeout, bool) or not isinstance(timeout, int | float):
        raise TypeError(f"'{type(timeout).__name__}' object cannot be interpreted as an integer")
    if isinstance(timeout, float) and _math.isnan(timeout):
        raise ValueError("Invalid value NaN (not a number)")
    if not blocking:
        if timeout != -1:
            raise ValueError("can't specify a timeout for a non-blocking call")
        return 0.0
    if timeout == -1:
        return None
    if timeout < 0:
        raise ValueError("timeout value must be positive")
    if timeout > TIMEOUT_MAX:
        raise OverflowError("timeout value is too large")
    return float(timeout)


class _Entry:
    """One caller waiting for a :class:`Lock`: a parked green thread or a blocked OS thread."""

    __slots__ = ("granted", "hub", "os_lock", "waiter")

    def __init__(self) -> None:
        self.granted = False
        caller = _fdwait.green_caller()
        if caller is None:
            self.hub: Any = None
            self.waiter: _Waiter | None = None
            self.os_lock: Any = _real_lock()
            self.os_lock.acquire()
        else:
            self.hub = caller[0]
            self.waiter = _Waiter(caller[0], caller[1])
            self.os_lock = None

    def wake(self) -> None:
        """Hand the lock over (with the lock's state guard held): wake the waiter, any thread."""
        self.granted = True
        if self.os_lock is not None:
            self.os_lock.release()
            return
        waiter = self.waiter
        assert waiter is not None
        hub = self.hub
        if hub.thread_ident == _os_ident():
            waiter.resume_later()  # never switches: safe with the guard held
        else:
            hub.reactor.callFromThread(waiter.resume_later)

    def wait(self, timeout: float | None) -> bool:
        """Wait to be woken; False if ``timeout`` passed (the caller then checks ``granted``)."""
        if self.os_lock is not None:
            return bool(self.os_lock.acquire(True, -1 if timeout is None else timeout))
        assert self.waiter is not None
        return _wait_timed(self.waiter, timeout) is not _TIMED_OUT


class Lock:
    """A thread-aware, non-reentrant lock: the stdlib's ``threading.Lock`` API.

    Waiters are served first come, first served; green threads park, OS threads block (see
    the module's docstring).  ``release`` of an unlocked lock raises ``RuntimeError``; any
    green or OS thread may release a lock another one acquired, as with the stdlib's.
    """

    __slots__ = ("__weakref__", "_guard", "_held", "_waiters")

    def __init__(self) -> None:
        self._guard = _real_lock()
        self._held = False
        self._waiters: _deque[_Entry] = _deque()

    def __repr__(self) -> str:
        state = "locked" if self._held else "unlocked"
        return f"<{state} txgreen.green.threading.Lock object at {id(self):#x}>"

    def locked(self) -> bool:
        """True if the lock is held now."""
        return self._held

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        """Take the lock, waiting up to ``timeout`` seconds (-1: forever); True if taken."""
        wait = _check_acquire(blocking, timeout)
        with self._guard:
            if not self._held:
                self._held = True
                return True
            if wait == 0.0:
                return False
        return self._wait(wait)

    def _wait(self, timeout: float | None) -> bool:
        entry = _Entry()
        with self._guard:
            if not self._held:  # released meanwhile
                self._held = True
                return True
            self._waiters.append(entry)
        try:
            woken = entry.wait(timeout)
        except BaseException:
            with self._guard:
                granted = entry.granted
                if not granted:
                    self._waiters.remove(entry)
            if granted:  # handed over just as we were interrupted: pass it on
                self.release()
            raise
        if woken:
            return True
        with self._guard:
            if entry.granted:
                return True
            self._waiters.remove(entry)
            return False

    def release(self) -> None:
        """Release the lock, handing it to the longest waiter; ``RuntimeError`` if unlocked."""
        with self._guard:
            if not self._held:
                raise RuntimeError("release unlocked lock")
            if self._waiters:
                self._waiters.popleft().wake()  # stays held: it is the waiter's now
            else:
                self._held = False

    def __enter__(self) -> bool:
        return self.acquire()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()

    def _at_fork_reinit(self) -> None:
        """After ``fork()``, in the child: a new, unlocked lock (the stdlib's hook)."""
        self._guard = _real_lock()
        self._held = False
        self._waiters = _deque()

    acquire_lock = acquire
    release_lock = release
    locked_lock = locked


def _me() -> _greenlet:
    """Who owns a reentrant lock: the current greenlet (a green thread, or an OS thread's)."""
    return _getcurrent()


class RLock:
    """A thread-aware reentrant lock: the stdlib's ``threading.RLock`` API.

    Its owner is the green thread (or the OS thread) that acquired it; only the owner may
    release it (``RuntimeError`` otherwise), as many times as it acquired it.
    """

    __slots__ = ("__weakref__", "_block", "_count", "_owner")

    def __init__(self) -> None:
        self._block = Lock()
        self._owner: _greenlet | None = None
        self._count = 0

    def __repr__(self) -> str:
        owner = self._owner
        state = "locked" if owner is not None else "unlocked"
        ident = _ident_of(owner) if owner is not None else 0
        return (
            f"<{state} txgreen.green.threading.RLock object owner={ident} "
            f"count={self._count} at {id(self):#x}>"
        )

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        """Take the lock (again, if the caller owns it); True if taken (as :meth:`Lock.acquire`)."""
        _check_acquire(blocking, timeout)
        me = _me()
        if self._owner is me:
            self._count += 1
            return True
        if not self._block.acquire(blocking, timeout):
            return False
        self._owner = me
        self._count = 1
        return True

    def release(self) -> None:
        """Release once; the last release frees it.  ``RuntimeError`` if the caller is not the
        owner."""
        if self._owner is not _me() or not self._count:
            raise RuntimeError("cannot release un-acquired lock")
        self._count -= 1
        if not self._count:
            self._owner = None
            self._block.release()

    __enter__ = acquire

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()

    def locked(self) -> bool:
        """True if some green or OS thread owns the lock now."""
        return self._owner is not None

    def _is_owned(self) -> bool:
        return self._owner is _me()

    def _recursion_count(self) -> int:
        return self._count if self._owner is _me() else 0

    def _release_save(self) -> tuple[int, _greenlet | None]:
        if not self._count:
            raise RuntimeError("cannot release un-acquired lock")
        state = (self._count, self._owner)
        self._count = 0
        self._owner = None
        self._block.release()
        return state

    def _acquire_restore(self, state: tuple[int, _greenlet | None]) -> None:
        self._block.acquire()
        self._count, self._owner = state

    def _at_fork_reinit(self) -> None:
        self._block._at_fork_reinit()
        self._owner = None
        self._count = 0


class Condition:
    """A thread-aware condition variable: the stdlib's ``threading.Condition`` API.

    ``lock`` defaults to a new :class:`RLock`; a waiter waits on a :class:`Lock` of its own, so
    ``notify`` from an OS thread wakes a green thread and the other way round.
    """

    def __init__(self, lock: Any = None) -> None:
        if lock is None:
            lock = RLock()
        self._lock = lock
        self.acquire = lock.acquire
        self.release = lock.release
        for name in ("_release_save", "_acquire_restore", "_is_owned"):
            if hasattr(lock, name):
                setattr(self, name, getattr(lock, name))
        self._waiters: _deque[Lock] = _deque()

    def __repr__(self) -> str:
        return f"<Condition({self._lock!r}, {len(self._waiters)})>"

    def __enter__(self) -> bool:
        return bool(self._lock.__enter__())

    def __exit__(self, *args: Any) -> Any:
        return self._lock.__exit__(*args)

    def _release_save(self) -> Any:
        self._lock.release()

    def _acquire_restore(self, state: Any) -> None:
        self._lock.acquire()

    def _is_owned(self) -> bool:
        # Like the stdlib's fallback: a lock we can take is not ours.
        if self._lock.acquire(False):
            self._lock.release()
            return False
        return True

    def _at_fork_reinit(self) -> None:
        self._lock._at_fork_reinit()
        self._waiters.clear()

    def wait(self, timeout: float | None = None) -> bool:
        """Release the lock, wait for a notify (or ``timeout`` seconds), take the lock again.

        True unless the timeout passed; ``RuntimeError`` if the caller does not hold the lock.
        """
        if not self._is_owned():
            raise RuntimeError("cannot wait on un-acquired lock")
        waiter = Lock()
        waiter.acquire()
        self._waiters.append(waiter)
        saved = self._release_save()
        got = False
        try:
            if timeout is None:
                got = waiter.acquire()
            elif timeout > 0:
                got = waiter.acquire(True, min(timeout, TIMEOUT_MAX))
            else:
                got = waiter.acquire(False)
            return got
        finally:
            self._acquire_restore(saved)
            if not got:
                with contextlib.suppress(ValueError):
                    self._waiters.remove(waiter)

    def wait_for(self, predicate: Callable[[], Any], timeout: float | None = None) -> Any:
        """Wait until ``predicate()`` is true (or ``timeout`` passed); its last value."""
        deadline = None if timeout is None else _std_monotonic() + timeout
        result = predicate()
        while not result:
            left = None
            if deadline is not None:
                left = deadline - _std_monotonic()
                if left <= 0:
                    break
            self.wait(left)
            result = predicate()
        return result

    def notify(self, n: int = 1) -> None:
        """Wake up to ``n`` waiters; ``RuntimeError`` if the caller does not hold the lock."""
        if not self._is_owned():
            raise RuntimeError("cannot notify on un-acquired lock")
        waiters = self._waiters
        while waiters and n > 0:
            waiter = waiters[0]
            try:
                waiter.release()
            except RuntimeError:
                pass  # it timed out meanwhile (and is leaving the queue)
            else:
                n -= 1
            with contextlib.suppress(ValueError):
                waiters.remove(waiter)

    def notify_all(self) -> None:
        """Wake every waiter."""
        self.notify(len(self._waiters))

    def notifyAll(self) -> None:
        """Deprecated alias of :meth:`notify_all` (as in the stdlib)."""
        import warnings

        warnings.warn(
            "notifyAll() is deprecated, use notify_all() instead", DeprecationWarning, stacklevel=2
        )
        self.notify_all()


class Semaphore:
    """A thread-aware counting semaphore: the stdlib's ``threading.Semaphore`` API."""

    def __init__(self, value: int = 1) -> None:
        if value < 0:
            raise ValueError("semaphore initial value must be >= 0")
        self._cond = Condition(Lock())
        self._value = value

    def __repr__(self) -> str:
        return f"<{_kind(self)} at {id(self):#x}: value={self._value}>"

    def acquire(self, blocking: bool = True, timeout: float | None = None) -> bool:
        """Take one unit, waiting up to ``timeout`` seconds if none is free; True if taken."""
        if not blocking and timeout is not None:
            raise ValueError("can't specify timeout for non-blocking acquire")
        deadline = None
        with self._cond:
            while self._value == 0:
                if not blocking:
                    return False
                if timeout is not None:
                    if deadline is None:
                        deadline = _std_monotonic() + timeout
                    else:
                        timeout = deadline - _std_monotonic()
                        if timeout <= 0:
                            return False
                self._cond.wait(timeout)
            self._value -= 1
            return True

    __enter__ = acquire

    def release(self, n: int = 1) -> None:
        """Give back ``n`` units, waking up to ``n`` waiters."""
        if n < 1:
            raise ValueError("n must be one or more")
        with self._cond:
            self._value += n
            self._cond.notify(n)

    def __exit__(self, *args: Any) -> None:
        self.release()

    def _at_fork_reinit(self) -> None:
        self._cond._at_fork_reinit()


class BoundedSemaphore(Semaphore):
    """A :class:`Semaphore` whose ``release`` beyond the initial value raises ``ValueError``."""

    def __init__(self, value: int = 1) -> None:
        super().__init__(value)
        self._initial_value = value

    def __repr__(self) -> str:
        return f"<{_kind(self)} at {id(self):#x}: value={self._value}/{self._initial_value}>"

    def release(self, n: int = 1) -> None:
        """Give back ``n`` units; ``ValueError`` if that would exceed the initial value."""
        if n < 1:
            raise ValueError("n must be one or more")
        with self._cond:
            if self._value + n > self._initial_value:
                raise ValueError("Semaphore released too many times")
            self._value += n
            self._cond.notify(n)


class Event:
    """A thread-aware event flag: the stdlib's ``threading.Event`` API."""

    def __init__(self) -> None:
        self._cond = Condition(Lock())
        self._flag = False

    def __repr__(self) -> str:
        state = "set" if self._flag else "unset"
        return f"<{_kind(self)} at {id(self):#x}: {state}>"

    def _at_fork_reinit(self) -> None:
        self._cond._at_fork_reinit()

    def is_set(self) -> bool:
        """True once :meth:`set` was called (and :meth:`clear` not since)."""
        return self._flag

    def isSet(self) -> bool:
        """Deprecated alias of :meth:`is_set` (as in the stdlib)."""
        import warnings

        warnings.warn("isSet() is deprecated, use is_set() instead", DeprecationWarning, 2)
        return self._flag

    def set(self) -> None:
        """Set the flag and wake every waiter (green or OS thread)."""
        with self._cond:
            self._flag = True
            self._cond.notify_all()

    def clear(self) -> None:
        """Reset the flag."""
        with self._cond:
            self._flag = False

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until the flag is set or ``timeout`` seconds passed; the flag."""
        with self._cond:
            flag = self._flag
            if not flag:
                flag = self._cond.wait(timeout)
            return flag


_FILLING, _DRAINING, _RESETTING, _BROKEN = 0, 1, -1, -2

BrokenBarrierError = _std.BrokenBarrierError


class Barrier:
    """A thread-aware barrier for ``parties`` threads: the stdlib's ``threading.Barrier`` API.

    Raises the stdlib's ``threading.BrokenBarrierError``.
    """

    def __init__(
        self, parties: int, action: Callable[[], object] | None = None, timeout: float | None = None
    ) -> None:
        if parties < 1:
            raise ValueError("parties must be > 0")
        self._cond = Condition(Lock())
        self._action = action
        self._timeout = timeout
        self._parties = parties
        self._state = _FILLING
        self._count = 0

    def __repr__(self) -> str:
        if self._state == _BROKEN:
            return f"<{_kind(self)} at {id(self):#x}: broken>"
        return f"<{_kind(self)} at {id(self):#x}: waiters={self.n_waiting}/{self.parties}>"

    def wait(self, timeout: float | None = None) -> int:
        """Wait until ``parties`` threads wait; this thread's index (0 to parties - 1).

        ``BrokenBarrierError`` if the barrier is broken (or reset) meanwhile, or the wait times
        out (which breaks it for everybody).
        """
        if timeout is None:
            timeout = self._timeout
        with self._cond:
            self._enter()
            index = self._count
            self._count += 1
            try:
                if index + 1 == self._parties:
                    self._release()
                else:
                    self._wait(timeout)
                return index
            finally:
                self._count -= 1
                self._exit()

    def _enter(self) -> None:
        while self._state in (_DRAINING, _RESETTING):
            self._cond.wait()
        if self._state < 0:
            raise BrokenBarrierError

    def _release(self) -> None:
        try:
            if self._action is not None:
                self._action()
            self._state = _DRAINING
            self._cond.notify_all()
        except BaseException:
            self._break()
            raise

    def _wait(self, timeout: float | None) -> None:
        if not self._cond.wait_for(lambda: self._state != _FILLING, timeout):
            self._break()
            raise BrokenBarrierError
        if self._state < 0:
            raise BrokenBarrierError

    def _exit(self) -> None:
        if self._count == 0 and self._state in (_RESETTING, _DRAINING):
            self._state = _FILLING
            self._cond.notify_all()

    def reset(self) -> None:
        """Back to the empty state; threads waiting now get ``BrokenBarrierError``."""
        with self._cond:
            if self._count > 0:
                if self._state == _FILLING or self._state == _BROKEN:
                    self._state = _RESETTING
            else:
                self._state = _FILLING
            self._cond.notify_all()

    def abort(self) -> None:
        """Break the barrier: current and later waits raise ``BrokenBarrierError``."""
        with self._cond:
            self._break()

    def _break(self) -> None:
        self._state = _BROKEN
        self._cond.notify_all()

    @property
    def parties(self) -> int:
        """The number of threads the barrier waits for."""
        return self._parties

    @property
    def n_waiting(self) -> int:
        """The number of threads waiting now."""
        if self._state == _FILLING:
            return self._count
        return 0

    @property
    def broken(self) -> bool:
        """True if the barrier is broken."""
        return self._state == _BROKEN


# -- threads -----------------------------------------------------------------------------------

# The attribute of a green thread that holds the Thread object it runs (or its dummy).
_THREAD_ATTR = "_txgreen_thread"
_dummy_counter = _itertools.count(1)


def _ident_of(g: _greenlet) -> int:
    """The thread ident of the green thread ``g``, or of the OS thread a greenlet runs in."""
    if type(g) is _GreenThread:
        return id(g)
    return _os_ident()


def get_ident() -> int:
    """The current thread's identifier: each green thread has its own; elsewhere the OS's."""
    g = _getcurrent()
    if type(g) is _GreenThread:
        thread = getattr(g, _THREAD_ATTR, None)
        if thread is not None:
            return thread.ident  # type: ignore[no-any-return]
        return id(g)
    return _os_ident()


def _in_reactor_thread() -> bool:
    if type(_getcurrent()) is _GreenThread:
        return True
    from txgreen._hub import get_hub

    hub = get_hub()
    ident = hub.thread_ident
    if ident is None:
        from twisted.python import threadable

        ident = threadable.ioThread
        if ident is None:
            ident = _std.main_thread().ident
    return ident == _os_ident()


class Thread(_StdThread):
    """A thread that runs as a green thread: the stdlib's ``threading.Thread`` API.

    Started from the reactor's OS thread (a green thread, a reactor callback, the main
    greenlet), it runs in a new green thread; started from another OS thread it is a real OS
    thread, exactly the stdlib's.  ``join`` works from green threads and OS threads alike.  An
    exception that ends ``run`` goes to ``threading.excepthook``; a green Thread that is killed,
    or ended by the reactor's shutdown, ends quietly.
    """

    _green = False  # started as a green thread
    _os_thread = False  # started as a real OS thread

    def __init__(
        self,
        group: None = None,
        target: Callable[..., object] | None = None,
        name: str | None = None,
        args: Iterable[Any] = (),
        kwargs: Mapping[str, Any] | None = None,
        *,
        daemon: bool | None = None,
    ) -> None:
        if not isinstance(self, Thread):
            # The stdlib's own subclasses call ``Thread.__init__(self)`` by name, which after
            # patch() is this function (``threading._DummyThread``, made for an OS thread that
            # ``threading`` did not start): they get the stdlib's.
            _StdThread.__init__(self, group, target, name, args, kwargs, daemon=daemon)
            return
        if daemon is None:
            daemon = current_thread().daemon
        super().__init__(group, target, name, args, kwargs, daemon=daemon)
        self._finished = Event()

    def start(self) -> None:
        """Start the thread (once): a green thread in the reactor's OS thread, else an OS one."""
        if not self._initialized:  # type: ignore[attr-defined]
            raise RuntimeError("thread.__init__() not called")
        if self._started.is_set():  # type: ignore[attr-defined]
            raise RuntimeError("threads can only be started once")
        if not _in_reactor_thread():
            self._os_thread = True
            super().start()
            return
        gt = _spawn(self._bootstrap_green)
        self._green = True
        self._ident = id(gt)
        self._native_id = _thread.get_native_id()
        setattr(gt, _THREAD_ATTR, self)  # (the thread refers to its green thread by ident only)
        with _std_active_lock:
            _std_active[self._ident] = self
        self._started.set()  # type: ignore[attr-defined]

    def _bootstrap_green(self) -> None:
        try:
            self.run()
        except (_GreenletExit, _ReactorStopped):
            pass
        except BaseException:
            self._invoke_excepthook(self)  # type: ignore[attr-defined]
        finally:
            self._is_stopped = True
            with _std_active_lock:
                _std_active.pop(self._ident, None)
            self._finished.set()

    def is_alive(self) -> bool:
        """True from ``start()`` until ``run()`` has ended."""
        if not self._green:
            return super().is_alive()
        # (_is_stopped: also set by the stdlib's after-fork hook, for every thread but the
        # one that forked, as for OS threads)
        return not self._is_stopped and not self._finished.is_set()

    def join(self, timeout: float | None = None) -> None:
        """Wait until the thread ends, or ``timeout`` seconds (check :meth:`is_alive` after).

        ``RuntimeError`` for a thread not started yet, or a thread joining itself.
        """
        if self._os_thread:
            super().join(timeout)
            return
        if not self._initialized:  # type: ignore[attr-defined]
            raise RuntimeError("Thread.__init__() not called")
        if not self._started.is_set():  # type: ignore[attr-defined]
            raise RuntimeError("cannot join thread before it is started")
        if self is current_thread():
            raise RuntimeError("cannot join current thread")
        if timeout is not None:
            timeout = max(timeout, 0.0)
        self._finished.wait(timeout)

    def _stop(self) -> None:
        if not self._green:
            super()._stop()  # type: ignore[misc]
        else:
            self._is_stopped = True

    def _reset_internal_locks(self, is_alive: bool) -> None:
        if not self._green:
            super()._reset_internal_locks(is_alive)  # type: ignore[misc]
        else:
            self._started._at_fork_reinit()  # type: ignore[attr-defined]
            self._finished._at_fork_reinit()


class _DummyGreenThread(Thread):
    """What :func:`current_thread` returns in a green thread not started as a :class:`Thread`."""

    def __init__(self, gt: _GreenThread[Any]) -> None:
        # Not a daemon (unlike the stdlib's dummies): a Thread started from a plain green
        # thread (the program's main one under ``txgreen run``) is not one either.
        super().__init__(name=f"Dummy-{next(_dummy_counter)}", daemon=False)
        self._green = True
        self._ref = _weakref.ref(gt)
        self._ident = id(gt)
        self._native_id = _thread.get_native_id()
        self._started.set()  # type: ignore[attr-defined]

    def is_alive(self) -> bool:
        """True while its green thread runs."""
        gt = self._ref()
        return gt is not None and not gt.dead

    def join(self, timeout: float | None = None) -> None:
        """A dummy thread cannot be joined (as the stdlib's)."""
        raise RuntimeError("cannot join a dummy thread")


def current_thread() -> _StdThread:
    """The current thread's object: the green :class:`Thread` inside one (a dummy one in a green
    thread spawned otherwise), else the stdlib's answer for the OS thread."""
    g = _getcurrent()
    if type(g) is _GreenThread:
        found: Thread | None = getattr(g, _THREAD_ATTR, None)
        if found is None:
            found = _DummyGreenThread(g)
            setattr(g, _THREAD_ATTR, found)
        return found
    return _std_current_thread()


class Timer(Thread):
    """Call ``function(*args, **kwargs)`` after ``interval`` seconds unless cancelled first."""

    def __init__(
        self,
        interval: float,
        function: Callable[..., object],
        args: Iterable[Any] | None = None,
        kwargs: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.interval = interval
        self.function = function
        self.args = args if args is not None else []
        self.kwargs = kwargs if kwargs is not None else {}
        self.finished = Event()

    def cancel(self) -> None:
        """Stop the timer if it has not fired yet."""
        self.finished.set()

    def run(self) -> None:
        """Wait ``interval`` seconds, then call the function unless cancelled."""
        self.finished.wait(self.interval)
        if not self.finished.is_set():
            self.function(*self.args, **self.kwargs)
        self.finished.set()


# -- green-thread-local data ---------------------------------------------------------------------


class _LocalData:
    """The per-green-thread dictionaries of one :class:`local` object."""

    __slots__ = ("__weakref__", "args", "dicts", "guard")

    def __init__(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        self.args = (args, kwargs)
        # id(greenlet) -> (weak reference to it, its dict)
        self.dicts: dict[int, tuple[Any, dict[str, Any]]] = {}
        self.guard = _thread.RLock()

    def get(self) -> tuple[dict[str, Any], bool]:
        """The current greenlet's dict, and whether it was made just now."""
        g = _getcurrent()
        key = id(g)
        found = self.dicts.get(key)
        if found is not None and found[0]() is g:
            return found[1], False
        me = _weakref.ref(self)

        def forget(_: object, key: int = key) -> None:
            data = me()
            if data is not None:
                entry = data.dicts.get(key)
                if entry is not None and entry[0]() is None:
                    del data.dicts[key]

        d: dict[str, Any] = {}
        self.dicts[key] = (_weakref.ref(g, forget), d)
        return d, True


class local:
    """Green-thread-local data: each green thread (and each OS thread) sees its own attributes.

    Subclass it as the stdlib's ``threading.local``: ``__init__`` runs again, with the
    constructor's arguments, the first time each thread touches the object.  Data of a thread
    goes away when the thread ends.
    """

    __slots__ = ("__dict__", "__weakref__", "_local__data")

    def __new__(cls, *args: Any, **kwargs: Any) -> local:
        if (args or kwargs) and cls.__init__ is object.__init__:
            raise TypeError("Initialization arguments are not supported")
        self = object.__new__(cls)
        data = _LocalData(args, kwargs)
        object.__setattr__(self, "_local__data", data)
        d, _ = data.get()
        object.__setattr__(self, "__dict__", d)
        return self

    def __getattribute__(self, name: str) -> Any:
        with _local_dict(self):
            return object.__getattribute__(self, name)

    def __setattr__(self, name: str, value: Any) -> None:
        if name == "__dict__":
            raise AttributeError(
                f"{type(self).__name__!r} object attribute '__dict__' is read-only"
            )
        with _local_dict(self):
            object.__setattr__(self, name, value)

    def __delattr__(self, name: str) -> None:
        if name == "__dict__":
            raise AttributeError(
                f"{type(self).__name__!r} object attribute '__dict__' is read-only"
            )
        with _local_dict(self):
            object.__delattr__(self, name)


class _local_dict:
    """Installs the current green thread's dict on a :class:`local` for one attribute access."""

    __slots__ = ("data", "obj")

    def __init__(self, obj: local) -> None:
        self.obj = obj
        self.data: _LocalData = object.__getattribute__(obj, "_local__data")

    def __enter__(self) -> None:
        data = self.data
        data.guard.acquire()
        d, new = data.get()
        obj = self.obj
        object.__setattr__(obj, "__dict__", d)
        if new:
            args, kwargs = data.args
            init = type(obj).__init__
            if init is not object.__init__:
                init(obj, *args, **kwargs)

    def __exit__(self, *exc: object) -> None:
        self.data.guard.release()


def _as_main_thread() -> None:
    """Make the current green thread the program's main thread: ``current_thread()`` and
    ``get_ident()`` answer ``main_thread()`` there (``txgreen run`` runs the program's top level
    in a green thread)."""
    g = _getcurrent()
    if type(g) is _GreenThread:
        setattr(g, _THREAD_ATTR, _std.main_thread())


def _join_non_daemon_green_threads(timeout: float | None = None) -> None:
    """Wait for the green :class:`Thread` objects that are not daemons (the stdlib's shutdown
    rule), from the reactor's thread, after the ``threading._register_atexit`` callbacks;
    ``txgreen run`` calls it when the program's top level ends."""
    # First what the interpreter's shutdown calls before it joins threads, latest first:
    # ``threading._register_atexit`` callbacks (concurrent.futures' executors tell their
    # worker threads, green ones after patch(), to stop).  Each runs once.
    atexits: list[Callable[[], object]] = _std._threading_atexits  # type: ignore[attr-defined]
    while atexits:
        atexits.pop()()
    deadline = None if timeout is None else _std_monotonic() + timeout
    while True:
        with _std_active_lock:
            pending = [
                t
                for t in _std_active.values()
                if isinstance(t, Thread) and t._green and not t.daemon and not t._finished.is_set()
            ]
        if not pending:
            return
        for t in pending:
            left = None if deadline is None else max(0.0, deadline - _std_monotonic())
            t.join(left)
        if deadline is not None and _std_monotonic() >= deadline:
            return
