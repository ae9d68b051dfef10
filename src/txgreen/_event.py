"""``Event`` and ``AsyncResult``: wait for something to happen, or for a value to arrive.

Both follow the rules shared by every txgreen primitive (see docs/primitives.md):

- A call that has to wait parks the green thread with :meth:`Hub.wait`, so ``timeout=``, an
  enclosing ``with txgreen.Timeout(...)``, ``GreenThread.kill`` and reactor shutdown all end the
  wait the same way.  Such a call made from the hub raises :class:`BlockingInHubError`; a call
  that can complete at once (``wait()`` on a set Event) completes anywhere.
- Waking calls (``set``, ``set_exception``) never switch: they queue the wake-ups on the hub's
  ready queue, so they are safe in reactor callbacks.  Waiters run in the order they started
  waiting.

The small helpers at the top are shared by the other primitive modules.
"""

from __future__ import annotations

import contextlib
from collections import deque
from typing import Any, Generic, TypeVar

from greenlet import getcurrent
from twisted.internet.defer import Deferred

from txgreen._greenthread import GreenThread, current_hub_and_greenlet
from txgreen._hub import TIMED_OUT, Waiter, wait_timed
from txgreen._timeout import Timeout
from txgreen._util import failure_of, hidden_in_reports

__all__ = ["AsyncResult", "Event"]

__tracebackhide__ = hidden_in_reports  # pytest: the user's frames, not txgreen's

T = TypeVar("T")


# -- helpers shared by _event, _lock, _queue, _channel and _pool ---------------------------------


def check_timeout(timeout: float | None) -> None:
    """Reject a negative ``timeout`` (None means: wait as long as it takes)."""
    if timeout is not None and timeout < 0:
        raise ValueError(
            f"timeout must be a non-negative number of seconds or None, not {timeout!r}"
        )


def new_waiter(owner: object, what: str, timeout: float | None) -> Waiter:
    """A Waiter for the current greenlet, checking that it may block and that ``timeout`` is valid.

    ``what`` completes the BlockingInHubError message after the owner's class name (for
    example ``"get() on an empty queue"``); green threads, the usual callers, skip the check
    and the formatting.
    """
    if timeout is not None and timeout < 0:
        check_timeout(timeout)
    cur = getcurrent()
    if cur.__class__ is GreenThread:
        return Waiter(cur.hub, cur)
    cur, hub = current_hub_and_greenlet(f"{type(owner).__name__}.{what}")
    return Waiter(hub, cur)


def park(
    waiters: deque[Any],
    entry: Any,
    waiter: Waiter,
    timeout: float | None,
    timed: bool = False,
) -> Any:
    """Queue ``entry`` (which holds ``waiter``) on ``waiters`` and wait; return the handed value.

    ``timeout`` passing raises :class:`txgreen.Timeout`, or with ``timed`` returns TIMED_OUT
    (see :func:`wait_timed`).  Whoever completes the wait normally takes ``entry`` off the
    queue first.  If the wait ends any other way (timeout, kill, enclosing Timeout, shutdown)
    the entry is still queued and is removed here, so the primitive's counts stay right and
    nothing is handed to it later.
    """
    waiters.append(entry)
    try:
        value = wait_timed(waiter, timeout) if timed else waiter.hub.wait(waiter, timeout)
    except BaseException:
        _unqueue(waiters, entry)
        raise
    if value is TIMED_OUT:
        _unqueue(waiters, entry)
    return value


def _unqueue(waiters: deque[Any], entry: Any) -> None:
    # ValueError: already taken off by a waker (close(), or one that skipped it).
    with contextlib.suppress(ValueError):
        waiters.remove(entry)


def wait_woken(owner: object, what: str, waiters: deque[Waiter], timeout: float | None) -> bool:
    """Wait in ``waiters`` until a waker resumes us: True, or False if ``timeout`` passed first.

    For the waits that carry no value (``Event.wait``, ``Lock.acquire``, ``Queue.join``...);
    ``owner`` and ``what`` are as for :func:`new_waiter`.
    """
    waiter = new_waiter(owner, what, timeout)
    return park(waiters, waiter, waiter, timeout, timed=True) is not TIMED_OUT


def wake_all(waiters: deque[Waiter]) -> None:
    """Resume every waiter of ``waiters`` with True, in FIFO order (never switches)."""
    while waiters:
        waiters.popleft().resume_later(True)


def hand_over(waiters: deque[Any], value: Any = None, exc: BaseException | None = None) -> Any:
    """Complete the longest wait still on in ``waiters`` with ``value``/``exc``; its entry or None.

    Entries (a Waiter, or a tuple that starts with one) are taken off up to and including the
    one that got it; a waiter whose wait had already ended (timeout, kill) is skipped, so the
    value is never lost.  Never switches.
    """
    while waiters:
        entry = waiters.popleft()
        if _waiter_of(entry).resume_later(value, exc):
            return entry
    return None


def count_active(waiters: deque[Any]) -> int:
    """The number of queued waiters whose wait is still on (entries: Waiter or (Waiter, ...))."""
    n = 0
    for entry in waiters:
        if _waiter_of(entry).active:
            n += 1
    return n


def _waiter_of(entry: Any) -> Waiter:
    """The Waiter of a queued entry: the entry itself, or the first item of a tuple entry."""
    return entry if isinstance(entry, Waiter) else entry[0]


# -- Event -------------------------------------------------------------------------------------


class Event:
    """A flag that green threads can wait for: ``set()`` wakes every waiter.

    Like :class:`threading.Event` and ``gevent.event.Event``:

    - :meth:`set` raises the flag and wakes every green thread waiting in :meth:`wait`, in the
      order they started waiting.  It never switches (safe in reactor callbacks): the woken
      threads run on the hub's next turn.
    - :meth:`clear` lowers the flag; later :meth:`wait` calls block again.  A thread that was
      waiting when :meth:`set` was called still returns True, even if :meth:`clear` ran before
      it got to run (as with :class:`threading.Event`).
    - :meth:`wait` returns True at once if the flag is up (without switching), else blocks until
      :meth:`set` (True) or until ``timeout`` seconds pass (False).  An enclosing
      ``with txgreen.Timeout(...)`` raises instead.
    """

    __slots__ = ("__weakref__", "_flag", "_waiters")

    def __init__(self) -> None:
        self._flag = False
        self._waiters: deque[Waiter] = deque()

    def __repr__(self) -> str:
        state = "set" if self._flag else "unset"
        return f"<txgreen.Event {state}, {count_active(self._waiters)} waiting>"

    def is_set(self) -> bool:
        """True while the flag is up."""
        return self._flag

    def set(self) -> None:
        """Raise the flag and wake every waiter (never switches)."""
        self._flag = True
        wake_all(self._waiters)

    def clear(self) -> None:
        """Lower the flag."""
        self._flag = False

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the flag is up; True, or False if ``timeout`` seconds passed first."""
        if self._flag:
            return True
        return wait_woken(self, "wait() on an unset Event", self._waiters, timeout)


# -- AsyncResult -------------------------------------------------------------------------------

_UNSET = 0
_VALUE = 1
_ERROR = 2


class AsyncResult(Generic[T]):
    """A value (or an exception) that arrives once; green threads wait for it with :meth:`get`.

    Modelled on ``gevent.event.AsyncResult`` and :class:`concurrent.futures.Future`:

    - :meth:`set` / :meth:`set_exception` store the outcome and wake every waiter (never
      switching: safe in reactor callbacks).  An AsyncResult is set once: setting it again
      raises ``RuntimeError`` (gevent lets a later ``set`` overwrite; we refuse, like
      ``Future.set_result``, because a silently replaced result is a bug).
    - :meth:`get` returns the value or raises the exception, waiting for it if needed;
      ``block=False`` (or ``timeout`` passing) raises :class:`txgreen.Timeout` when there is
      no outcome yet, as gevent does.
    - :meth:`wait` only waits: True once there is an outcome, False if ``timeout`` passed
      (gevent's ``wait`` returns the value instead; ours matches :meth:`Event.wait`).
    - :meth:`to_deferred` gives a Deferred of the outcome, for reactor-side code.
    """

    __slots__ = ("__weakref__", "_deferreds", "_exc", "_state", "_value", "_waiters")

    def __init__(self) -> None:
        self._state = _UNSET
        self._value: T | None = None
        self._exc: BaseException | None = None
        self._waiters: deque[Waiter] = deque()
        self._deferreds: list[Deferred[T]] = []

    def __repr__(self) -> str:
        if self._state == _VALUE:
            state = f"value={self._value!r}"
        elif self._state == _ERROR:
            state = f"exception={self._exc!r}"
        else:
            state = f"unset, {count_active(self._waiters)} waiting"
        return f"<txgreen.AsyncResult {state}>"

    # -- state ---------------------------------------------------------------------------------

    def ready(self) -> bool:
        """True once a value or an exception has been set."""
        return self._state != _UNSET

    def successful(self) -> bool:
        """True if a value (not an exception) has been set."""
        return self._state == _VALUE

    @property
    def value(self) -> T | None:
        """The value, or None while unset or if an exception was set."""
        return self._value if self._state == _VALUE else None

    @property
    def exception(self) -> BaseException | None:
        """The exception set with :meth:`set_exception`, or None."""
        return self._exc

    # -- setting -------------------------------------------------------------------------------

    def _check_unset(self, what: str) -> None:
        if self._state != _UNSET:
            raise RuntimeError(
                f"AsyncResult.{what}() called on an AsyncResult that already has "
                f"{'a value' if self._state == _VALUE else 'an exception'}; an AsyncResult is "
                "set once (create a new one for the next result)"
            )

    def set(self, value: T = None) -> None:  # type: ignore[assignment]
        """Store ``value`` and wake every waiter (never switches)."""
        self._check_unset("set")
        self._state = _VALUE
        self._value = value
        for d in self._wake_all():
            d.callback(value)

    def set_exception(self, exception: BaseException | type[BaseException]) -> None:
        """Store ``exception`` (an instance or a class) for :meth:`get` to raise; wake waiters."""
        self._check_unset("set_exception")
        exc = exception() if isinstance(exception, type) else exception
        if not isinstance(exc, BaseException):
            raise TypeError(
                f"AsyncResult.set_exception() takes an exception instance or class, not "
                f"{type(exception).__name__!r}"
            )
        self._state = _ERROR
        self._exc = exc
        for d in self._wake_all():
            d.errback(failure_of(exc))

    def _wake_all(self) -> list[Deferred[T]]:
        """Now that there is an outcome: wake every waiter; return the Deferreds to fire."""
        wake_all(self._waiters)
        deferreds, self._deferreds = self._deferreds, []
        return deferreds

    # -- waiting -------------------------------------------------------------------------------

    def wait(self, timeout: float | None = None) -> bool:
        """Block until there is an outcome; True, or False if ``timeout`` seconds passed first.

        It does not raise the stored exception (use :meth:`get` for that).
        """
        if self._state != _UNSET:
            return True
        return wait_woken(self, "wait() on an unset AsyncResult", self._waiters, timeout)

    def get(self, block: bool = True, timeout: float | None = None) -> T:
        """Return the value or raise the exception, waiting for it if needed.

        With ``block=False``, or when ``timeout`` seconds pass first, raises
        :class:`txgreen.Timeout`.
        """
        if self._state == _UNSET:
            if not block:
                raise Timeout(0)
            waiter = new_waiter(self, "get() on an unset AsyncResult", timeout)
            park(self._waiters, waiter, waiter, timeout)
        if self._state == _ERROR:
            assert self._exc is not None
            raise self._exc
        return self._value  # type: ignore[return-value]

    def get_nowait(self) -> T:
        """``get(block=False)``."""
        return self.get(block=False)

    def to_deferred(self) -> Deferred[T]:
        """A new Deferred that fires with the value, or fails with the exception.

        It fires at once if the AsyncResult is ready.  Cancelling it only detaches it: the
        AsyncResult and its other waiters are unaffected.
        """

        def cancel(d: Deferred[T]) -> None:
            if d in self._deferreds:
                self._deferreds.remove(d)

        d: Deferred[T] = Deferred(cancel)
        if self._state == _VALUE:
            d.callback(self._value)  # type: ignore[arg-type]
        elif self._state == _ERROR:
            assert self._exc is not None
            d.errback(failure_of(self._exc))
        else:
            self._deferreds.append(d)
        return d
