"""``Lock``, ``RLock``, ``Semaphore`` and ``BoundedSemaphore`` for green threads.

Fairness: a lock or permit given back while green threads wait is *handed over* to the one
that has waited longest (FIFO); it never becomes free in between, so a thread that arrives
later (or the releaser itself, acquiring again at once) cannot barge ahead.  The hand-over is
final: if the receiving thread is killed or its timeout passes before it runs again, it still
returns True from ``acquire`` (it owns the lock / holds the permit) and the kill or timeout is
raised at its next wait, so a ``with lock:`` block releases it on the way out.  A waiter whose
wait ended before the hand-over is skipped, so counts stay right.
"""

from __future__ import annotations

from collections import deque
from types import TracebackType

from greenlet import getcurrent
from greenlet import greenlet as _greenlet

from txgreen._event import check_timeout, count_active, hand_over, wait_woken
from txgreen._hub import Waiter
from txgreen._util import hidden_in_reports

__all__ = ["BoundedSemaphore", "Lock", "RLock", "Semaphore"]

__tracebackhide__ = hidden_in_reports  # pytest: the user's frames, not txgreen's


def _acquire_timeout(blocking: bool, timeout: float | None) -> float | None:
    """Validate acquire()'s arguments like :mod:`threading` does; None means no deadline."""
    if timeout == -1:
        timeout = None  # threading's spelling of "no timeout"
    if timeout is not None:
        if not blocking:
            raise ValueError("can't specify a timeout for a non-blocking call")
        check_timeout(timeout)
    return timeout


def _name(g: _greenlet | None) -> str:
    return "nobody" if g is None else repr(g)


class _Waitable:
    """What the locks and semaphores share: the FIFO of parked acquirers, ``with`` support.

    ``_wait`` returns True when handed over, False on timeout.
    """

    __slots__ = ("__weakref__", "_waiters")  # weak references, as gevent and threading allow

    def __init__(self) -> None:
        self._waiters: deque[Waiter] = deque()

    def acquire(self, blocking: bool = True, timeout: float | None = None) -> bool:
        raise NotImplementedError

    def release(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> bool:
        return self.acquire()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()

    def _wait(self, what: str, timeout: float | None) -> bool:
        return wait_woken(self, what, self._waiters, timeout)

    def _hand_over(self) -> Waiter | None:
        """Wake the longest-waiting acquirer whose wait is still on; None if there is none."""
        return hand_over(self._waiters, True)  # type: ignore[no-any-return]

    @property
    def waiting(self) -> int:
        """How many green threads are blocked in ``acquire`` now."""
        return count_active(self._waiters)


class Lock(_Waitable):
    """A mutual-exclusion lock owned by the green thread that acquired it.

    As :class:`threading.Lock`, with two differences: only the owner may :meth:`release` it
    (anyone else gets ``RuntimeError``, as with an RLock), and a blocking :meth:`acquire` by
    the owner raises ``RuntimeError`` instead of deadlocking forever.  Waiters get the lock in
    FIFO order.  Use it as a context manager: ``with lock: ...``.
    """

    __slots__ = ("_owner",)

    def __init__(self) -> None:
        super().__init__()
        self._owner: _greenlet | None = None

    def __repr__(self) -> str:
        state = f"locked by {_name(self._owner)}" if self._owner is not None else "unlocked"
        return f"<txgreen.Lock {state}, {self.waiting} waiting>"

    def locked(self) -> bool:
        """True while some green thread holds the lock."""
        return self._owner is not None

    def acquire(self, blocking: bool = True, timeout: float | None = None) -> bool:
        """Take the lock, waiting for it if needed; False if ``timeout`` passed (or not blocking).

        ``timeout=None`` (or -1) waits as long as it takes.
        """
        timeout = _acquire_timeout(blocking, timeout)
        cur = getcurrent()
        if self._owner is None:
            self._owner = cur
            return True
        if not blocking:
            return False
        if self._owner is cur:
            raise RuntimeError(
                "Lock.acquire(): this green thread already holds the lock, so it would wait "
                "forever; use an RLock for re-entrant locking"
            )
        return self._wait("acquire() on a held lock", timeout)

    def release(self) -> None:
        """Give the lock back; the longest waiter (if any) gets it (never switches)."""
        owner = self._owner
        if owner is None:
            raise RuntimeError("Lock.release(): release unlocked lock")
        if owner is not getcurrent():
            raise RuntimeError(
                f"Lock.release(): the lock is held by {_name(owner)}, not by the calling "
                "green thread; only the owner may release it"
            )
        w = self._hand_over()
        self._owner = w.greenlet if w is not None else None


class RLock(_Waitable):
    """A re-entrant lock: its owner may acquire it again; it is free after as many releases.

    As :class:`threading.RLock`; waiters get it in FIFO order.
    """

    __slots__ = ("_count", "_owner")

    def __init__(self) -> None:
        super().__init__()
        self._owner: _greenlet | None = None
        self._count = 0

    def __repr__(self) -> str:
        if self._owner is None:
            state = "unlocked"
        else:
            state = f"locked by {_name(self._owner)} (count {self._count})"
        return f"<txgreen.RLock {state}, {self.waiting} waiting>"

    def locked(self) -> bool:
        """True while some green thread holds the lock."""
        return self._owner is not None

    def acquire(self, blocking: bool = True, timeout: float | None = None) -> bool:
        """Take the lock (again, if the caller owns it); False if ``timeout`` passed."""
        timeout = _acquire_timeout(blocking, timeout)
        cur = getcurrent()
        if self._owner is cur:
            self._count += 1
            return True
        if self._owner is None:
            self._owner = cur
            self._count = 1
            return True
        if not blocking:
            return False
        # On hand-over the releaser sets us as owner with count 1.
        return self._wait("acquire() on a lock held by another green thread", timeout)

    def release(self) -> None:
        """Undo one :meth:`acquire`; after the last one the longest waiter gets the lock."""
        if self._owner is not getcurrent():
            raise RuntimeError(
                "RLock.release(): cannot release un-acquired lock (it is held by "
                f"{_name(self._owner)}, not by the calling green thread)"
            )
        self._count -= 1
        if self._count:
            return
        w = self._hand_over()
        if w is None:
            self._owner = None
        else:
            self._owner = w.greenlet
            self._count = 1


class Semaphore(_Waitable):
    """A counter of permits: :meth:`acquire` takes one (waiting while there is none).

    As :class:`threading.Semaphore`: ``Semaphore(value=1)``, ``acquire(blocking, timeout)``,
    ``release(n=1)``.  Any green thread may release.  Waiters get permits in FIFO order: a
    released permit goes straight to the longest waiter, never to a newcomer.
    """

    __slots__ = ("_value",)

    def __init__(self, value: int = 1) -> None:
        if value < 0:
            raise ValueError(f"semaphore initial value must be >= 0, not {value!r}")
        super().__init__()
        self._value = value

    def __repr__(self) -> str:
        return f"<txgreen.{type(self).__name__} value={self._value}, {self.waiting} waiting>"

    @property
    def value(self) -> int:
        """The number of free permits now."""
        return self._value

    def locked(self) -> bool:
        """True when no permit is free (an ``acquire`` would wait)."""
        return self._value == 0

    def acquire(self, blocking: bool = True, timeout: float | None = None) -> bool:
        """Take a permit, waiting if needed; False if ``timeout`` passed (or not blocking)."""
        timeout = _acquire_timeout(blocking, timeout)
        if self._value > 0:
            self._value -= 1
            return True
        if not blocking:
            return False
        return self._wait("acquire() with no permit free", timeout)

    def release(self, n: int = 1) -> None:
        """Give back ``n`` permits, each to the longest waiter if any (never switches)."""
        if n < 1:
            raise ValueError(f"{type(self).__name__}.release(): n must be one or more, not {n!r}")
        for _ in range(n):
            if self._hand_over() is None:
                self._value += 1


class BoundedSemaphore(Semaphore):
    """A :class:`Semaphore` that refuses to hold more than its initial value.

    Releasing more than was acquired raises ``ValueError`` (a bug in the caller), and the
    release does not happen.
    """

    __slots__ = ("_initial",)

    def __init__(self, value: int = 1) -> None:
        super().__init__(value)
        self._initial = value

    def release(self, n: int = 1) -> None:
        """Give back ``n`` permits; ``ValueError`` if that would exceed the initial value."""
        if n >= 1 and self._value + n > self._initial:
            raise ValueError(
                f"BoundedSemaphore.release(): semaphore released too many times (it would hold "
                f"{self._value + n} permits, its initial value is {self._initial})"
            )
        super().release(n)
