"""A cooperative ``queue`` module: thread-aware queues.

:class:`Queue`, :class:`LifoQueue` and :class:`PriorityQueue` are the stdlib's classes (their
subclasses: same methods, same ``queue.Empty``/``queue.Full``, ``isinstance`` of the stdlib's)
whose mutex and conditions are :mod:`txgreen.green.threading`'s thread-aware ones, and
:class:`SimpleQueue` is a thread-aware queue with the stdlib's ``SimpleQueue`` API.  So a green
thread that has to wait for an item (or for room) parks only itself, an OS thread blocks its own
OS thread, and either kind may put what the other gets.  Every other name of the stdlib's
``queue`` module is re-exported unchanged.
"""

from __future__ import annotations

import queue as _std
import time as _time
from collections import deque as _deque
from typing import TYPE_CHECKING, Generic, TypeVar

from txgreen.green.threading import Condition as _Condition
from txgreen.green.threading import Lock as _Lock

if not TYPE_CHECKING:  # (Empty and Full, the rest of its surface, are named below)
    from queue import *  # noqa: F403 - the stdlib's whole surface, re-exported

__patched__: list[str] = ["Queue", "LifoQueue", "PriorityQueue", "SimpleQueue"]

# The stdlib's classes and errors, bound now: after txgreen.patch() the module's names are ours.
_StdQueue = _std.Queue
_StdLifoQueue = _std.LifoQueue
_StdPriorityQueue = _std.PriorityQueue
Empty = _std.Empty
Full = _std.Full
_monotonic = _time.monotonic
_T = TypeVar("_T")


class Queue(_StdQueue[_T]):
    """A FIFO queue, the stdlib's ``queue.Queue`` with thread-aware locking.

    ``put``/``get`` with ``block`` and ``timeout``, ``task_done``/``join``, ``qsize``,
    ``empty``, ``full`` and the ``_init``/``_qsize``/``_put``/``_get`` hooks for subclasses are
    the stdlib's own code; the waits in them are green in green threads.
    """

    def __init__(self, maxsize: int = 0) -> None:
        self.maxsize = maxsize
        self._init(maxsize)
        # (the stdlib's stubs type these as its own classes; ours have the same API)
        self.mutex = _Lock()  # type: ignore[assignment]
        self.not_empty = _Condition(self.mutex)  # type: ignore[assignment]
        self.not_full = _Condition(self.mutex)  # type: ignore[assignment]
        self.all_tasks_done = _Condition(self.mutex)  # type: ignore[assignment]
        self.unfinished_tasks = 0


class LifoQueue(_StdLifoQueue[_T], Queue[_T]):
    """A last-in, first-out :class:`Queue` (the stdlib's ``LifoQueue``, thread-aware)."""


class PriorityQueue(_StdPriorityQueue[_T], Queue[_T]):  # type: ignore[type-var]
    """A :class:`Queue` that returns the lowest item first (the stdlib's ``PriorityQueue``,
    thread-aware)."""


class SimpleQueue(Generic[_T]):
    """An unbounded FIFO queue without task tracking: the stdlib's ``queue.SimpleQueue`` API,
    thread-aware (``put`` never blocks; ``get`` parks a green thread, blocks an OS thread)."""

    def __init__(self) -> None:
        self._items: _deque[_T] = _deque()
        self._cond = _Condition(_Lock())

    def __repr__(self) -> str:
        return f"<txgreen.green.queue.SimpleQueue object at {id(self):#x}>"

    def put(self, item: _T, block: bool = True, timeout: float | None = None) -> None:
        """Put ``item`` (never blocks; ``block`` and ``timeout`` are accepted and ignored)."""
        with self._cond:
            self._items.append(item)
            self._cond.notify()

    def put_nowait(self, item: _T) -> None:
        """Put ``item`` (the same as :meth:`put`)."""
        self.put(item)

    def get(self, block: bool = True, timeout: float | None = None) -> _T:
        """Take the next item, waiting up to ``timeout`` seconds; ``queue.Empty`` if none came.

        ``ValueError`` for a negative ``timeout``.
        """
        if timeout is not None and block:
            if timeout < 0:
                raise ValueError("'timeout' must be a non-negative number")
            deadline = _monotonic() + timeout
        with self._cond:
            while not self._items:
                if not block:
                    raise Empty
                if timeout is None:
                    self._cond.wait()
                else:
                    left = deadline - _monotonic()
                    if left <= 0:
                        raise Empty
                    self._cond.wait(left)
            return self._items.popleft()

    def get_nowait(self) -> _T:
        """Take the next item without waiting; ``queue.Empty`` if there is none."""
        return self.get(False)

    def empty(self) -> bool:
        """True if no item is queued now."""
        return not self._items

    def qsize(self) -> int:
        """The number of items queued now."""
        return len(self._items)
