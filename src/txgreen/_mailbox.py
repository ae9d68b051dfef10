"""Mailboxes: Erlang-style messages between green threads (``send``, selective ``receive``).

Every green thread can have a mailbox.  It costs nothing until it is used: the thread carries
one empty slot, the :class:`Mailbox` is made by the first ``send`` to the thread (or its first
``receive``, ``trap_exits`` or ``monitor``), and the message store inside it by the first
message that has to wait.  A :class:`Mailbox` can also be made on its own and shared.

Sending never blocks, and a thread's mailbox is unbounded, as an Erlang process's is: a sender
that could block on a full mailbox can deadlock with a receiver that is itself sending to it,
and the messages the runtime sends (monitors' "down" messages, trapped exits) must never be
lost or wait.  A stand-alone ``Mailbox(maxsize=n)`` can be bounded; its ``put`` then raises
:class:`MailboxFull` rather than block.

``receive(match=...)`` is a *selective* receive: it takes the oldest message ``match``
accepts and leaves the others where they are, in order, for later receives; while it waits,
each arriving message is offered to ``match`` once.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Any

from greenlet import getcurrent

from txgreen._event import check_timeout
from txgreen._greenthread import GreenThread, current_hub_and_greenlet
from txgreen._hub import TIMED_OUT, Waiter, wait_timed
from txgreen._queue import Empty
from txgreen._util import hidden_in_reports
from txgreen.errors import TxgreenError

__all__ = [
    "Mailbox",
    "MailboxFull",
    "NotAGreenThread",
    "current_thread",
    "mailbox_of",
    "receive",
    "send",
]

__tracebackhide__ = hidden_in_reports  # pytest: the user's frames, not txgreen's

Match = Callable[[Any], object]


class MailboxFull(TxgreenError):
    """``put`` on a bounded :class:`Mailbox` that already holds ``maxsize`` messages.

    Thread mailboxes are unbounded and never raise it.
    """


class NotAGreenThread(TxgreenError):
    """``receive``, ``trap_exits`` or ``link_exit`` was called outside a green thread.

    A mailbox belongs to a green thread: the hub (reactor callbacks) and the main greenlet have
    none.  Run the code in a green thread (``txgreen.spawn``), or use a stand-alone
    :class:`txgreen.Mailbox`.
    """


class Mailbox:
    """A message queue with Erlang's selective receive; ``put`` never blocks.

    ``maxsize`` (``None``: unbounded) bounds a stand-alone mailbox: ``put`` on a full one raises
    :class:`MailboxFull`.  Several green threads may ``receive`` from one mailbox; each message
    goes to one of them.
    """

    __slots__ = ("_maxsize", "_messages", "_taken", "_waiters", "trap_exits")

    def __init__(self, maxsize: int | None = None) -> None:
        if maxsize is not None and (not isinstance(maxsize, int) or maxsize < 1):
            raise ValueError(f"maxsize must be a positive int or None, not {maxsize!r}")
        self._maxsize = maxsize
        # Made by the first message that has to be stored: an idle mailbox is small.
        self._messages: deque[Any] | None = None
        self._waiters: list[Waiter] | None = None
        # How many messages receives took out; a receiver that sees it change rescans from the
        # start (another receiver may have taken a message before the point it had reached).
        self._taken = 0
        self.trap_exits = False
        """For a thread's mailbox: exit signals from linked threads arrive as messages."""

    def __len__(self) -> int:
        return len(self._messages) if self._messages else 0

    def __repr__(self) -> str:
        return f"<txgreen.Mailbox {len(self)} messages at {id(self):#x}>"

    def put(self, message: Any) -> None:
        """Add ``message`` at the end and wake the receivers; never blocks, never switches."""
        messages = self._messages
        if messages is None:
            messages = self._messages = deque()
        elif self._maxsize is not None and len(messages) >= self._maxsize:
            raise MailboxFull(f"the mailbox already holds {self._maxsize} messages (maxsize)")
        messages.append(message)
        waiters = self._waiters
        if waiters:
            self._waiters = None
            for waiter in waiters:
                waiter.resume_later()

    def receive(self, timeout: float | None = None, match: Match | None = None) -> Any:
        """Take the oldest message (the oldest that ``match(message)`` accepts) and return it.

        Waits until one arrives; raises :class:`txgreen.Empty` when ``timeout`` seconds pass
        first (``timeout=0`` polls).  Messages ``match`` rejects stay, in order.  An exception
        raised by ``match`` propagates, and the message it was looking at stays.
        """
        if timeout is not None:
            check_timeout(timeout)
        scanned = 0
        taken = self._taken
        deadline: float | None = None
        expired = False
        cur: Any = None
        hub: Any = None
        while True:
            messages = self._messages
            if messages:
                if match is None:
                    self._taken += 1
                    return messages.popleft()
                if self._taken != taken:
                    scanned, taken = 0, self._taken
                for i in range(scanned, len(messages)):
                    message = messages[i]
                    if match(message):
                        del messages[i]
                        self._taken += 1
                        return message
                scanned = len(messages)
            if expired or timeout == 0:
                raise Empty(f"receive(): no matching message within {timeout} seconds")
            if cur is None:
                cur, hub = _current()
            remaining = None
            if timeout is not None:
                now = hub.reactor.seconds()
                if deadline is None:
                    deadline = now + timeout
                remaining = max(deadline - now, 0.0)
            waiter = Waiter(hub, cur)
            waiters = self._waiters
            if waiters is None:
                waiters = self._waiters = []
            waiters.append(waiter)
            try:
                got = wait_timed(waiter, remaining)
            finally:
                waiters = self._waiters
                if waiters is not None and waiter in waiters:
                    waiters.remove(waiter)
            # After a timeout, look once more: a message may have come on the same turn.
            expired = got is TIMED_OUT

    def flush(self, match: Match | None = None) -> list[Any]:
        """Remove and return every message (every one ``match`` accepts), oldest first."""
        messages = self._messages
        if not messages:
            return []
        if match is None:
            out = list(messages)
            messages.clear()
        else:
            out = [m for m in messages if match(m)]
            if out:
                kept = [m for m in messages if not match(m)]
                messages.clear()
                messages.extend(kept)
        self._taken += len(out)
        return out


def _current() -> tuple[Any, Any]:
    cur = getcurrent()
    if cur.__class__ is GreenThread:
        return cur, cur.hub
    return current_hub_and_greenlet("Mailbox.receive()")


def mailbox_of(thread: GreenThread[Any]) -> Mailbox:
    """The mailbox of ``thread``, made on first use."""
    box: Mailbox | None = thread._mailbox
    if box is None:
        box = thread._mailbox = Mailbox()
    return box


def current_thread(what: str = "txgreen.current_thread()") -> GreenThread[Any]:
    """The current green thread (Erlang's ``self()``): where ``send`` reaches this code.

    Raises :class:`NotAGreenThread` in the hub or the main greenlet, naming ``what``.
    """
    cur = getcurrent()
    if cur.__class__ is not GreenThread:
        raise NotAGreenThread(
            f"{what} needs a green thread (it uses the thread's mailbox), but runs in "
            f"{'the hub' if cur is _hub_greenlet() else repr(cur)}: run it in a green thread "
            "(txgreen.spawn), or use a txgreen.Mailbox object"
        )
    return cur


def _hub_greenlet() -> Any:
    from txgreen._hub import get_hub

    return get_hub().greenlet


def send(to: GreenThread[Any] | Mailbox, message: Any) -> None:
    """Put ``message`` in the mailbox of green thread ``to`` (or in Mailbox ``to``).

    Never blocks and never switches, so it works from reactor callbacks too.  A message sent to
    a thread that has ended is dropped, as in Erlang.
    """
    if to.__class__ is GreenThread:
        if to._done:
            return
        box = to._mailbox
        if box is None:
            box = to._mailbox = Mailbox()
        box.put(message)
    elif isinstance(to, Mailbox):
        to.put(message)
    elif isinstance(to, GreenThread):
        if not to.dead:
            mailbox_of(to).put(message)
    else:
        raise TypeError(
            f"send() delivers to a GreenThread or a txgreen.Mailbox, not {type(to).__name__}"
        )


def receive(timeout: float | None = None, match: Match | None = None) -> Any:
    """Take a message from the current green thread's mailbox (see :meth:`Mailbox.receive`).

    ``match(message)`` selects which message (Erlang's selective receive); the others keep
    their order.  Raises :class:`txgreen.Empty` when ``timeout`` seconds pass first.
    """
    cur = getcurrent()
    if cur.__class__ is not GreenThread:
        cur = current_thread("txgreen.receive()")
    box = cur._mailbox
    if box is None:
        box = cur._mailbox = Mailbox()
    return box.receive(timeout, match)
