"""``Channel``: a rendezvous between green threads, in the style of Stackless channels.

A channel holds no items: ``send`` waits until a receiver takes the value, ``receive`` waits
until a sender offers one.  Waiting senders and receivers are served in FIFO order.

Hand-over rules (the same as the queues'): a value is handed to a waiting receiver without
switching, so ``send`` with a receiver waiting is safe in reactor callbacks.  Once handed
over, the value is the receiver's even if it is killed or times out before it runs again (the
kill/timeout is then raised at its next wait); a receiver or sender whose wait ended first is
skipped, so the value goes to the next party and ``balance`` stays right.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from typing import Any, Generic, TypeVar

from txgreen._event import count_active, hand_over, new_waiter, park
from txgreen._hub import Waiter
from txgreen._util import hidden_in_reports
from txgreen.errors import TxgreenError

__all__ = ["Channel", "ChannelClosed"]

__tracebackhide__ = hidden_in_reports  # pytest: the user's frames, not txgreen's

T = TypeVar("T")


class ChannelClosed(TxgreenError):
    """The channel was closed: ``send``/``receive`` on it, or it closed while they waited."""


class Channel(Generic[T]):
    """A rendezvous: ``send(value)`` blocks until a receiver takes ``value``.

    - :meth:`send` completes at once, without switching, when a receiver is waiting (the
      receiver runs on the hub's next turn); otherwise it waits for one.  Safe in reactor
      callbacks only when a receiver is waiting: a ``send`` from the hub that would have to
      wait raises :class:`txgreen.BlockingInHubError`.
    - :meth:`receive` returns the next value, waiting for a sender.
    - :meth:`send_exception` delivers an exception instead: the receiver raises it.
    - :attr:`balance`: the number of blocked senders minus the number of blocked receivers.
    - :meth:`close`: later ``send``/``receive`` calls raise :class:`ChannelClosed`, and every
      blocked sender and receiver is woken with it (a blocked sender's value is not
      delivered).  Closing twice is a no-op.
    - Iteration (``for value in ch``) receives until the channel is closed.
    - Every blocking call takes ``timeout=`` (seconds; :class:`txgreen.Timeout` when it passes)
      and obeys an enclosing ``with txgreen.Timeout(...)``.
    """

    __slots__ = ("__weakref__", "_closed", "_receivers", "_senders")

    def __init__(self) -> None:
        self._closed = False
        self._receivers: deque[Waiter] = deque()
        # (waiter, value, is_exception)
        self._senders: deque[tuple[Waiter, Any, bool]] = deque()

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<txgreen.Channel {state} balance={self.balance}>"

    @property
    def balance(self) -> int:
        """Blocked senders minus blocked receivers (positive: values are waiting to be taken)."""
        return count_active(self._senders) - count_active(self._receivers)

    @property
    def closed(self) -> bool:
        """True once :meth:`close` has been called."""
        return self._closed

    def _send(self, value: Any, is_exc: bool, timeout: float | None, what: str) -> None:
        if self._closed:
            raise ChannelClosed(f"Channel.{what}() on a closed channel")
        if is_exc:
            taken = hand_over(self._receivers, None, value)
        else:
            taken = hand_over(self._receivers, value)
        if taken is not None:
            return
        waiter = new_waiter(self, f"{what}() with no receiver waiting", timeout)
        # A receiver takes our entry off and wakes us with None; close() wakes us with
        # ChannelClosed.
        park(self._senders, (waiter, value, is_exc), waiter, timeout)

    def send(self, value: T, timeout: float | None = None) -> None:
        """Hand ``value`` to a receiver, waiting until one takes it.

        Raises :class:`ChannelClosed` if the channel is closed (before or while waiting) and
        :class:`txgreen.Timeout` when ``timeout`` seconds pass first (the value is then not
        delivered).
        """
        self._send(value, False, timeout, "send")

    def send_exception(
        self, exception: BaseException | type[BaseException], timeout: float | None = None
    ) -> None:
        """Like :meth:`send`, but the receiver raises ``exception`` (an instance or a class)."""
        exc = exception() if isinstance(exception, type) else exception
        if not isinstance(exc, BaseException):
            raise TypeError(
                "Channel.send_exception() takes an exception instance or class, not "
                f"{type(exception).__name__!r}"
            )
        self._send(exc, True, timeout, "send_exception")

    def receive(self, timeout: float | None = None) -> T:
        """Take the next value from a sender, waiting for one.

        Raises what a sender passed to :meth:`send_exception`, :class:`ChannelClosed` if the
        channel is closed (before or while waiting) and :class:`txgreen.Timeout` when
        ``timeout`` seconds pass first.
        """
        if self._closed:
            raise ChannelClosed("Channel.receive() on a closed channel")
        sender = hand_over(self._senders)
        if sender is not None:
            _, value, is_exc = sender
            if is_exc:
                raise value
            return value  # type: ignore[no-any-return]
        waiter = new_waiter(self, "receive() with no sender waiting", timeout)
        return park(self._receivers, waiter, waiter, timeout)  # type: ignore[no-any-return]

    def close(self) -> None:
        """Close the channel: wake every blocked sender and receiver with :class:`ChannelClosed`.

        Never switches (safe in reactor callbacks); the woken threads run on the hub's next turn.
        """
        if self._closed:
            return
        self._closed = True
        receivers, senders = self._receivers, self._senders
        while receivers:
            receivers.popleft().resume_later(
                None, ChannelClosed("Channel.receive(): the channel was closed while waiting")
            )
        while senders:
            senders.popleft()[0].resume_later(
                None,
                ChannelClosed(
                    "Channel.send(): the channel was closed before a receiver took the value"
                ),
            )

    def __iter__(self) -> Iterator[T]:
        return self

    def __next__(self) -> T:
        try:
            return self.receive()
        except ChannelClosed:
            raise StopIteration from None
