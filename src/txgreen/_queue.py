"""``Queue``, ``PriorityQueue`` and ``LifoQueue`` between green threads.

The API is the standard library's :class:`queue.Queue` (``put/get(block, timeout)``,
``put_nowait/get_nowait``, ``task_done/join``, ``qsize/empty/full``) plus gevent's iteration.

Hand-over keeps it fair and loss-free:

- ``put`` while green threads wait in ``get`` gives the item straight to the one that has
  waited longest (FIFO), without switching.  Once handed over, the item is that getter's: if
  it is killed or its timeout passes before it runs again, ``get`` still returns the item and
  the kill/timeout is raised at its next wait.  A getter whose wait ended before the hand-over
  is skipped, so the item goes to the next one (or into the queue).
- ``get`` from a full bounded queue moves the item of the longest-waiting putter in at once,
  so putters also proceed in FIFO order and a newcomer cannot take their place.
"""

from __future__ import annotations

import heapq
import queue as _stdlib_queue
from collections import deque
from collections.abc import Iterator
from typing import Any, Generic, TypeVar

from txgreen._event import (
    count_active,
    hand_over,
    new_waiter,
    park,
    wait_woken,
    wake_all,
)
from txgreen._hub import TIMED_OUT, Waiter
from txgreen._util import hidden_in_reports
from txgreen.errors import TxgreenError

__all__ = ["Empty", "Full", "LifoQueue", "PriorityQueue", "Queue"]

__tracebackhide__ = hidden_in_reports  # pytest: the user's frames, not txgreen's

T = TypeVar("T")


class Empty(TxgreenError, _stdlib_queue.Empty):
    """``get`` found no item: ``get_nowait``/``block=False`` on an empty queue, or its timeout.

    Raised by :class:`Queue` and its subclasses and by ``ThreadQueue``.

    It is also a :class:`queue.Empty`, so code written for the standard library catches it.
    """


class Full(TxgreenError, _stdlib_queue.Full):
    """``put`` found no room: ``put_nowait``/``block=False`` on a full queue, or its timeout.

    Raised by :class:`Queue` and its subclasses and by ``ThreadQueue``.

    It is also a :class:`queue.Full`, so code written for the standard library catches it.
    """


class Queue(Generic[T]):
    """A FIFO queue for green threads; ``maxsize > 0`` bounds it (``put`` then blocks).

    - ``put``/``get`` block (only the calling green thread) while the queue is full/empty, up to
      ``timeout`` seconds, then raise :class:`Full`/:class:`Empty` (subclasses of the standard
      library's ``queue.Full``/``queue.Empty``).  ``block=False`` (or ``put_nowait``/
      ``get_nowait``) raises at once instead of waiting.  An enclosing
      ``with txgreen.Timeout(...)`` raises that Timeout instead.
    - ``put_nowait`` (and a ``put`` that has room) never switches: it is safe in reactor
      callbacks.  A ``get``/``put`` from the hub that would have to wait raises
      :class:`txgreen.BlockingInHubError`; the ``_nowait`` forms work there.
    - Iteration (``for item in q``) calls ``get()`` until it receives the ``StopIteration``
      class as an item, as in gevent: ``q.put(StopIteration)`` ends one consumer's loop (put
      one per consumer).  The sentinel is consumed by the loop; a plain ``get()`` returns it
      like any item.
    - ``task_done()``/``join(timeout)`` count unfinished items like the standard library's;
      ``join`` returns True, or False if ``timeout`` passed first (gevent's convention).
    """

    def __init__(self, maxsize: int | None = 0) -> None:
        if maxsize is None or maxsize < 0:
            maxsize = 0
        self._maxsize = maxsize
        self._init()
        self._getters: deque[Waiter] = deque()
        self._putters: deque[tuple[Waiter, Any]] = deque()
        self._unfinished = 0
        self._joiners: deque[Waiter] = deque()

    # -- storage: what the subclasses change ----------------------------------------------------

    def _init(self) -> None:
        self._items: Any = deque()

    def _qsize(self) -> int:
        return len(self._items)

    def _put(self, item: Any) -> None:
        self._items.append(item)

    def _get(self) -> Any:
        return self._items.popleft()

    # -- state ---------------------------------------------------------------------------------

    def __repr__(self) -> str:
        bound = f"/{self._maxsize}" if self._maxsize else ""
        return (
            f"<txgreen.{type(self).__name__} {self._qsize()}{bound} items, "
            f"{self.getters_waiting} getters, {self.putters_waiting} putters waiting>"
        )

    @property
    def maxsize(self) -> int:
        """The bound given at creation (0: unbounded)."""
        return self._maxsize

    def qsize(self) -> int:
        """The number of items queued now (items handed straight to getters never count)."""
        return self._qsize()

    def empty(self) -> bool:
        """True if no item is queued now."""
        return not self._qsize()

    def full(self) -> bool:
        """True if a bounded queue holds ``maxsize`` items now."""
        return 0 < self._maxsize <= self._qsize()

    @property
    def getters_waiting(self) -> int:
        """How many green threads are blocked in :meth:`get` now."""
        return count_active(self._getters)

    @property
    def putters_waiting(self) -> int:
        """How many green threads are blocked in :meth:`put` now."""
        return count_active(self._putters)

    @property
    def unfinished_tasks(self) -> int:
        """Items put and not yet marked done with :meth:`task_done`."""
        return self._unfinished

    # -- putting -------------------------------------------------------------------------------

    def put(
        self, item: T | type[StopIteration], block: bool = True, timeout: float | None = None
    ) -> None:
        """Add ``item``, waiting while a bounded queue is full.

        Raises :class:`Full` at once with ``block=False``, or when ``timeout`` seconds pass.
        """
        # Getters wait only while the queue is empty: give the item to the longest waiting.
        if hand_over(self._getters, item) is not None:
            self._unfinished += 1
            return
        if not (0 < self._maxsize <= self._qsize()):
            self._put(item)
            self._unfinished += 1
            return
        if not block:
            raise Full(f"{type(self).__name__}.put(): the queue is full ({self._maxsize} items)")
        waiter = new_waiter(self, "put() on a full queue", timeout)
        # A getter that makes room moves our item in (and counts it) before waking us.
        if park(self._putters, (waiter, item), waiter, timeout, timed=True) is TIMED_OUT:
            raise Full(
                f"{type(self).__name__}.put(): the queue stayed full "
                f"({self._maxsize} items) for {timeout} seconds"
            )

    def put_nowait(self, item: T | type[StopIteration]) -> None:
        """``put(item, block=False)``: add it now or raise :class:`Full`; never switches."""
        self.put(item, False)

    # -- getting -------------------------------------------------------------------------------

    def get(self, block: bool = True, timeout: float | None = None) -> T:
        """Remove and return the next item, waiting while the queue is empty.

        Raises :class:`Empty` at once with ``block=False``, or when ``timeout`` seconds pass.
        """
        if self._qsize():
            item = self._get()
            putter = hand_over(self._putters)
            if putter is not None:
                self._put(putter[1])
                self._unfinished += 1
            return item  # type: ignore[no-any-return]
        if not block:
            raise Empty(f"{type(self).__name__}.get(): the queue is empty")
        waiter = new_waiter(self, "get() on an empty queue", timeout)
        item = park(self._getters, waiter, waiter, timeout, timed=True)
        if item is TIMED_OUT:
            raise Empty(f"{type(self).__name__}.get(): no item arrived within {timeout} seconds")
        return item  # type: ignore[no-any-return]

    def get_nowait(self) -> T:
        """``get(block=False)``: the next item, or :class:`Empty` at once."""
        return self.get(False)

    def __iter__(self) -> Iterator[T]:
        return self

    def __next__(self) -> T:
        item = self.get()
        if item is StopIteration:
            raise StopIteration
        return item

    # -- tasks ---------------------------------------------------------------------------------

    def task_done(self) -> None:
        """Mark one item as processed; when none are left, :meth:`join` callers wake."""
        if self._unfinished <= 0:
            raise ValueError(
                f"{type(self).__name__}.task_done() called too many times (more than items put)"
            )
        self._unfinished -= 1
        if not self._unfinished:
            wake_all(self._joiners)

    def join(self, timeout: float | None = None) -> bool:
        """Wait until every item put has been marked done; False if ``timeout`` passed first."""
        if not self._unfinished:
            return True
        return wait_woken(self, "join() with unfinished tasks", self._joiners, timeout)


class PriorityQueue(Queue[T]):
    """A :class:`Queue` that returns the lowest item first (a heap, like ``queue.PriorityQueue``).

    Items must be comparable with each other; ``(priority, data)`` tuples are the usual form.
    Iteration's ``StopIteration`` sentinel cannot be compared with other items, so end a
    consumer's loop with a sentinel of your own there.
    """

    def _init(self) -> None:
        self._items = []

    def _put(self, item: Any) -> None:
        heapq.heappush(self._items, item)

    def _get(self) -> Any:
        return heapq.heappop(self._items)


class LifoQueue(Queue[T]):
    """A :class:`Queue` that returns the most recently put item first (a stack)."""

    def _init(self) -> None:
        self._items = []

    def _put(self, item: Any) -> None:
        self._items.append(item)

    def _get(self) -> Any:
        return self._items.pop()
