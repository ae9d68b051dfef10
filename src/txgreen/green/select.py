"""A cooperative ``select`` module: ``select()``, ``poll()`` and ``epoll`` wait on the reactor.

Each waiting call made in a green thread first asks the stdlib's call with a zero timeout; when
nothing is ready and the timeout allows, the green thread parks on the reactor until one of the
fds is ready (or the timeout passes) and asks again, so only that green thread waits and the
answer (which fds, which events, which errors) is always the stdlib's own.

A call made outside a green thread (in another OS thread, or in the hub itself: a reactor
callback) is the stdlib's call, blocking in the OS.

Differences from the stdlib, all in green threads:

- An fd that another green thread already waits on for the same direction (a green socket's
  ``recv`` parked on it, or another ``select``) raises
  :class:`~txgreen.errors.ConcurrentWaitError`: the reactor watches each fd for one reader and
  one writer at a time.  Select in the green thread that does the I/O.
- A green socket closed while a green thread selects on it wakes that thread at once with the
  stdlib's answer for a closed fd (``select`` raises ``OSError(EBADF)``, ``poll`` reports
  ``POLLNVAL``); Linux's blocking calls only notice at their timeout.
- What the reactor cannot watch (``xlist``, ``POLLPRI`` without ``POLLIN``, an empty event
  mask that only wants ``POLLHUP``/``POLLERR``) is checked again every 50 ms while waiting.
- ``epoll`` is a wrapper around the stdlib's (whose type cannot be subclassed), with the same
  methods, context manager and ``fromfd``.

Every other name of the stdlib's ``select`` module is re-exported unchanged.
"""

from __future__ import annotations

import math as _math
import operator as _operator
import select as _std
from collections.abc import Iterable
from select import *  # noqa: F403 - the stdlib's whole surface, re-exported
from time import monotonic as _monotonic
from typing import Any, SupportsIndex, TypeAlias

from txgreen.green import _fdwait

__patched__: list[str] = [name for name in ("select", "poll", "epoll") if hasattr(_std, name)]

# The stdlib's callables, bound at import time (after patch() the module's names are ours).
_std_select = _std.select
_std_poll = getattr(_std, "poll", None)
_std_epoll: Any = getattr(_std, "epoll", None)

_FileLike: TypeAlias = Any  # an int, or an object with a fileno() method

# How often what the reactor cannot watch (exceptional conditions) is asked again while waiting.
_SLICE = 0.05

# _PyTime_t is a signed 64-bit count of nanoseconds.
_MAX_SECONDS = (2**63 - 1) // 10**9
_INT_MAX = 2**31 - 1


def _to_seconds(value: Any, type_message: str, scale: float = 1.0) -> float:
    """``value`` (a number of 1/``scale`` seconds) in seconds, checked as the stdlib does."""
    if isinstance(value, float):
        if _math.isnan(value):
            raise ValueError("Invalid value NaN (not a number)")
        seconds = value * scale
        if not -_MAX_SECONDS <= seconds <= _MAX_SECONDS:
            raise OverflowError("timestamp out of range for platform time_t")
        return seconds
    try:
        n = _operator.index(value)
    except TypeError:
        raise TypeError(type_message) from None
    seconds = n * scale
    if not -_MAX_SECONDS <= seconds <= _MAX_SECONDS:
        raise OverflowError("timestamp too large to convert to C _PyTime_t")
    return float(seconds)


def _select_timeout(timeout: Any) -> float | None:
    """``select()``'s timeout in seconds (None: no limit), with the stdlib's errors."""
    if timeout is None:
        return None
    seconds = _to_seconds(timeout, "timeout must be a float or None")
    if seconds < 0:
        raise ValueError("timeout must be non-negative")
    return seconds


def _ms_timeout(timeout: Any, scale: float) -> float | None:
    """A ``poll``/``epoll`` timeout in seconds (None: no limit; negative means none too)."""
    if timeout is None:
        return None
    seconds = _to_seconds(timeout, "timeout must be an integer or None", scale)
    ms = _math.ceil(seconds * 1000)
    if not -_INT_MAX - 1 <= ms <= _INT_MAX:
        raise OverflowError("timeout is too large")
    return None if ms < 0 else ms / 1000


def _fileno(obj: _FileLike) -> int:
    """The fd of an int or of an object with ``fileno()`` (already checked by the stdlib)."""
    if isinstance(obj, int):
        return int(obj)
    return int(obj.fileno())


def _wait_ready(
    caller: tuple[Any, Any],
    readers: Iterable[int],
    writers: Iterable[int],
    deadline: float | None,
    unwatchable: bool,
) -> None:
    """Park until one fd is ready, the deadline passes, or (``unwatchable``) one slice ends."""
    hub, greenlet = caller
    left = None if deadline is None else max(0.0, deadline - _monotonic())
    if unwatchable:
        left = _SLICE if left is None else min(left, _SLICE)
    _fdwait.wait_many(hub, greenlet, readers, writers, left)


def _expired(deadline: float | None) -> bool:
    return deadline is not None and _monotonic() >= deadline


# -- select() -----------------------------------------------------------------------------------


def select(  # type: ignore[no-redef]
    rlist: Iterable[_FileLike],
    wlist: Iterable[_FileLike],
    xlist: Iterable[_FileLike],
    timeout: float | None = None,
    /,
) -> tuple[list[Any], list[Any], list[Any]]:
    """The stdlib's ``select.select``: wait until some fds are ready; only this green thread waits.

    The same arguments (sequences of ints or objects with ``fileno()``; ``timeout`` in
    seconds, None to wait forever), result (three lists of the objects passed in) and errors
    (``ValueError`` for a negative fd or timeout, ``TypeError``, ``OSError(EBADF)`` for a
    closed fd) as the stdlib's, whose call with a zero timeout answers each check.

    In a green thread, an fd another green thread already waits on for the same direction raises
    :class:`~txgreen.errors.ConcurrentWaitError`; an fd in ``xlist`` only is re-checked every
    50 ms (the reactor watches readability and writability only).  Outside green threads this
    is the stdlib's blocking call.
    """
    caller = _fdwait.green_caller()
    if caller is None:
        return _std_select(rlist, wlist, xlist, timeout)
    seconds = _select_timeout(timeout)
    # The stdlib accepts any sequence (and iterables through its fast-sequence protocol); keep
    # them as lists so that they can be asked more than once.
    rlist, wlist, xlist = _as_list(rlist), _as_list(wlist), _as_list(xlist)
    ready = _std_select(rlist, wlist, xlist, 0)
    if ready[0] or ready[1] or ready[2] or seconds == 0:
        return ready
    deadline = None if seconds is None else _monotonic() + seconds
    # Asked again about the fd numbers of the first call, as the stdlib's blocking call would
    # be: a socket closed meanwhile gives the stdlib's OSError(EBADF) for its old fd.
    readers = [_fileno(o) for o in rlist]
    writers = [_fileno(o) for o in wlist]
    errors = [_fileno(o) for o in xlist]
    unwatchable = bool(set(errors) - set(readers))
    while True:
        _wait_ready(caller, readers, writers, deadline, unwatchable)
        r, w, x = _std_select(readers, writers, errors, 0)
        if r or w or x or _expired(deadline):
            return _pick(rlist, readers, r), _pick(wlist, writers, w), _pick(xlist, errors, x)


def _pick(objects: list[Any], fds: list[int], ready: list[int]) -> list[Any]:
    """The objects whose fd is in ``ready``, in order (the stdlib's result from fd numbers)."""
    if not ready:
        return []
    got = set(ready)
    return [obj for obj, fd in zip(objects, fds, strict=True) if fd in got]


def _as_list(seq: Iterable[_FileLike]) -> list[Any]:
    if isinstance(seq, list):
        return seq
    try:
        return list(seq)
    except TypeError:
        raise TypeError("arguments 1-3 must be sequences") from None


# -- poll() -------------------------------------------------------------------------------------

_READ_EVENTS = getattr(_std, "POLLIN", 1) | getattr(_std, "POLLRDNORM", 0)
_WRITE_EVENTS = getattr(_std, "POLLOUT", 4) | getattr(_std, "POLLWRNORM", 0)


class poll:  # type: ignore[no-redef]
    """The stdlib's ``select.poll()`` object whose :meth:`poll` parks only the green thread.

    ``register``, ``modify`` and ``unregister`` are the stdlib's (same arguments, defaults and
    errors); :meth:`poll` answers as the stdlib's does, ``POLLHUP``, ``POLLERR`` and
    ``POLLNVAL`` included.  See the module's docstring for the differences in green threads.
    """

    def __init__(self) -> None:
        if _std_poll is None:  # pragma: no cover - platforms without poll()
            raise NotImplementedError("this platform's select module has no poll()")
        self._poll = _std_poll()
        self._masks: dict[int, int] = {}
        self._running = False

    def __repr__(self) -> str:
        return f"<txgreen green poll object fds={sorted(self._masks)}>"

    def register(
        self, fd: _FileLike, eventmask: int = _std.POLLIN | _std.POLLPRI | _std.POLLOUT
    ) -> None:
        """Watch ``fd`` (an int or an object with ``fileno()``) for the events in ``eventmask``."""
        self._poll.register(fd, eventmask)
        self._masks[_fileno(fd)] = eventmask

    def modify(self, fd: _FileLike, eventmask: int) -> None:
        """Change the events watched on a registered ``fd`` (``FileNotFoundError`` if it is not)."""
        self._poll.modify(fd, eventmask)
        self._masks[_fileno(fd)] = eventmask

    def unregister(self, fd: _FileLike) -> None:
        """Stop watching ``fd`` (``KeyError`` if it was not registered)."""
        self._poll.unregister(fd)
        self._masks.pop(_fileno(fd), None)

    def poll(self, timeout: float | None = None, /) -> list[tuple[int, int]]:
        """The ready fds as ``[(fd, events), ...]``, waiting up to ``timeout`` milliseconds.

        None or a negative ``timeout`` waits until something is ready; 0 only checks.  The
        same errors as the stdlib's (``TypeError``, ``OverflowError``, ``RuntimeError`` for a
        second concurrent call on the same object).  Outside green threads this is the stdlib's
        blocking call.
        """
        caller = _fdwait.green_caller()
        if caller is None:
            return self._poll.poll(timeout)  # type: ignore[no-any-return]
        seconds = _ms_timeout(timeout, 0.001)
        if self._running:
            raise RuntimeError("concurrent poll() invocation")
        self._running = True
        try:
            events: list[tuple[int, int]] = self._poll.poll(0)
            if events or seconds == 0:
                return events
            deadline = None if seconds is None else _monotonic() + seconds
            while True:
                masks = self._masks
                readers = [fd for fd, m in masks.items() if m & _READ_EVENTS]
                writers = [fd for fd, m in masks.items() if m & _WRITE_EVENTS]
                # POLLPRI alone, or only the always-reported POLLHUP/POLLERR: not watchable.
                unwatchable = any(not m & (_READ_EVENTS | _WRITE_EVENTS) for m in masks.values())
                _wait_ready(caller, readers, writers, deadline, unwatchable)
                events = self._poll.poll(0)
                if events or _expired(deadline):
                    return events
        finally:
            self._running = False


# -- epoll --------------------------------------------------------------------------------------


class epoll:  # type: ignore[no-redef]
    """The stdlib's ``select.epoll`` whose :meth:`poll` parks only the green thread.

    The stdlib's type cannot be subclassed, so this wraps one: ``register``, ``modify``,
    ``unregister``, ``close``, ``closed``, ``fileno``, :meth:`fromfd` and the context manager
    are the stdlib's.  :meth:`poll` waits on the reactor for the epoll fd itself to become
    readable (which it is when events are ready), then asks the epoll object.  Two green
    threads in ``poll`` on one epoll object at once: the second raises
    :class:`~txgreen.errors.ConcurrentWaitError`.
    """

    def __init__(self, sizehint: int = -1, flags: int = 0) -> None:
        if _std_epoll is None:  # pragma: no cover - platforms without epoll
            raise NotImplementedError("this platform's select module has no epoll")
        self._epoll: Any = _std_epoll(sizehint, flags)

    @classmethod
    def fromfd(cls, fd: int, /) -> Any:
        """An epoll object for an existing epoll fd (which it now owns)."""
        self = cls.__new__(cls)
        self._epoll = _std_epoll.fromfd(fd)
        return self

    def __repr__(self) -> str:
        state = "closed" if self.closed else f"fd={self.fileno()}"
        return f"<txgreen green epoll object {state}>"

    def __enter__(self) -> Any:
        self._epoll.__enter__()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def closed(self) -> bool:
        """True once the epoll object is closed."""
        return bool(self._epoll.closed)

    def close(self) -> None:
        """Close the epoll fd; a green thread waiting in :meth:`poll` gets an answer at once."""
        if not self._epoll.closed:
            _fdwait.before_close(self._epoll.fileno())
        self._epoll.close()

    def fileno(self) -> int:
        """The epoll fd (``ValueError`` once closed)."""
        return int(self._epoll.fileno())

    def register(
        self, fd: _FileLike, eventmask: int = _std.POLLIN | _std.POLLPRI | _std.POLLOUT
    ) -> None:
        """Watch ``fd`` for ``eventmask`` (``FileExistsError`` if it is registered already)."""
        self._epoll.register(fd, eventmask)

    def modify(self, fd: _FileLike, eventmask: int) -> None:
        """Change the events watched on a registered ``fd``."""
        self._epoll.modify(fd, eventmask)

    def unregister(self, fd: _FileLike) -> None:
        """Stop watching ``fd``."""
        self._epoll.unregister(fd)

    def poll(
        self, timeout: float | None = None, maxevents: SupportsIndex = -1
    ) -> list[tuple[int, int]]:
        """Up to ``maxevents`` ready ``(fd, events)`` pairs, waiting up to ``timeout`` seconds.

        None or a negative ``timeout`` waits until something is ready; the stdlib's errors
        (``ValueError`` once closed or for a bad ``maxevents``, ``TypeError``,
        ``OverflowError``).  Outside green threads this is the stdlib's blocking call.
        """
        caller = _fdwait.green_caller()
        if caller is None or self._epoll.closed:
            return self._epoll.poll(timeout, maxevents)  # type: ignore[no-any-return]
        seconds = _ms_timeout(timeout, 1.0)
        events: list[tuple[int, int]] = self._epoll.poll(0, maxevents)
        if events or seconds == 0:
            return events
        deadline = None if seconds is None else _monotonic() + seconds
        while True:
            # Closed by another green thread meanwhile: the stdlib's ValueError, from fileno()
            # or from poll().
            _wait_ready(caller, [self._epoll.fileno()], [], deadline, False)
            events = self._epoll.poll(0, maxevents)
            if events or _expired(deadline):
                return events


if _std_poll is None:  # pragma: no cover - platforms without poll()
    del poll
if _std_epoll is None:  # pragma: no cover - platforms without epoll
    del epoll
