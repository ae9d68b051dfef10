"""Erlang's process relations between green threads: monitors, exit-signal links, trap_exits.

- A *monitor* (``thread.monitor()``, :func:`spawn_monitor`) is one-way and one-shot: when the
  thread ends, however it ends, the watcher gets one :class:`Down` message ``(ref, thread,
  reason)`` in its mailbox.
- An *exit-signal link* (:func:`link_exit`, :func:`spawn_link`) is two-way and lasts until one
  side ends: when a linked thread ends abnormally, the other is killed with
  :class:`ExitSignal` (which then travels on along its own links), unless it *traps exits*
  (:func:`trap_exits`), in which case it gets an :class:`Exit` message ``("EXIT", thread,
  reason)`` instead, for normal ends too.

Both are link callbacks (``GreenThread.link``) on the watched thread: nothing is added to a
thread that nobody watches, and they run in the hub when it ends.

Reasons: ``None`` for a thread that returned, else the exception it ended with (the
``GreenletExit`` instance after a plain ``kill()``).  *Abnormal* means anything but ``None``,
``GreenletExit`` (a deliberate stop, Erlang's ``shutdown``) and ``ReactorStopped`` (the whole
program is stopping).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple, ParamSpec, TypeVar

from greenlet import GreenletExit

from txgreen._greenthread import GreenThread, spawn
from txgreen._mailbox import Mailbox, current_thread, mailbox_of, send
from txgreen._util import hidden_in_reports
from txgreen.errors import ReactorStopped, TxgreenError

__all__ = [
    "Down",
    "Exit",
    "ExitSignal",
    "MonitorRef",
    "demonitor",
    "exit_reason",
    "is_abnormal",
    "link_exit",
    "monitor",
    "spawn_link",
    "spawn_monitor",
    "trap_exits",
    "unlink_exit",
]

__tracebackhide__ = hidden_in_reports  # pytest: the user's frames, not txgreen's

P = ParamSpec("P")
T = TypeVar("T")


class ExitSignal(TxgreenError):
    """A thread linked with :func:`link_exit` ended abnormally, so this one is killed too.

    ``thread`` is the thread that ended and ``reason`` its exception (also the ``__cause__``).
    Trap exits (:func:`trap_exits`) to get an :class:`Exit` message instead.
    """

    def __init__(self, thread: GreenThread[Any], reason: BaseException | None) -> None:
        super().__init__(f"linked green thread {thread!r} ended abnormally: {reason!r}")
        self.thread = thread
        self.reason = reason
        self.__cause__ = reason


class Down(NamedTuple):
    """The message a monitor delivers: ``(ref, thread, reason)`` (Erlang's ``'DOWN'``)."""

    ref: MonitorRef
    thread: GreenThread[Any]
    reason: BaseException | None


class Exit(NamedTuple):
    """A trapped exit signal: ``("EXIT", thread, reason)`` (Erlang's ``{'EXIT', Pid, Reason}``)."""

    tag: str
    thread: GreenThread[Any]
    reason: BaseException | None


def exit_reason(thread: GreenThread[Any]) -> BaseException | None:
    """How an ended ``thread`` ended: ``None`` if it returned, else its exception."""
    exc = thread._exception
    if exc is not None:
        return exc
    value = thread._value
    return value if isinstance(value, GreenletExit) else None


def is_abnormal(reason: BaseException | None) -> bool:
    """True unless ``reason`` is a return, a ``GreenletExit`` kill or the reactor stopping."""
    return reason is not None and not isinstance(reason, GreenletExit | ReactorStopped)


class MonitorRef:
    """What ``monitor()`` returns: the first field of the :class:`Down` message it delivers.

    Compare it with ``is`` in a ``receive(match=...)``; :func:`demonitor` (or :meth:`cancel`)
    stops the monitor.
    """

    __slots__ = ("active", "thread", "to")

    def __init__(self, thread: GreenThread[Any], to: GreenThread[Any] | Mailbox) -> None:
        self.thread = thread
        self.to: GreenThread[Any] | Mailbox | None = to
        self.active = True

    def __repr__(self) -> str:
        state = "active" if self.active else "done"
        return f"<txgreen.MonitorRef of {self.thread!r} ({state}) at {id(self):#x}>"

    def __call__(self, thread: GreenThread[Any]) -> None:
        # The link callback: the watched thread has ended.
        if self.active:
            self.active = False
            to, self.to = self.to, None
            assert to is not None
            send(to, Down(self, thread, exit_reason(thread)))

    def cancel(self, flush: bool = False) -> bool:
        """The same as ``demonitor(self, flush)``."""
        return demonitor(self, flush)


def monitor(thread: GreenThread[Any], to: GreenThread[Any] | Mailbox | None = None) -> MonitorRef:
    """``thread.monitor(to)``: see :meth:`txgreen.GreenThread.monitor`."""
    if not isinstance(thread, GreenThread):
        raise TypeError(f"monitor() watches a GreenThread, not {type(thread).__name__}")
    if to is None:
        to = current_thread("monitor() without to=")
    elif not isinstance(to, GreenThread | Mailbox):
        raise TypeError(
            f"monitor(to=...) takes a GreenThread or a Mailbox, not {type(to).__name__}"
        )
    ref = MonitorRef(thread, to)
    if thread.dead:
        ref(thread)  # reported at once
    else:
        thread.link(ref)
    return ref


def demonitor(ref: MonitorRef, flush: bool = False) -> bool:
    """Stop monitor ``ref``; True if it was still active (no message sent yet).

    With ``flush=True``, a :class:`Down` message of ``ref`` already delivered to a mailbox is
    removed too, so nothing of the monitor remains (Erlang's ``demonitor(Ref, [flush])``).
    """
    if not isinstance(ref, MonitorRef):
        raise TypeError(f"demonitor() takes what monitor() returned, not {type(ref).__name__}")
    was_active = ref.active
    ref.active = False
    ref.thread.unlink(ref)
    to, ref.to = ref.to, None
    if flush:
        box: Mailbox | None
        if to is None:  # delivered: the message can only be in the caller's own mailbox
            from greenlet import getcurrent

            cur = getcurrent()
            box = cur._mailbox if isinstance(cur, GreenThread) else None
        else:
            box = to if isinstance(to, Mailbox) else to._mailbox
        if box is not None:
            box.flush(lambda m: isinstance(m, Down) and m.ref is ref)
    return was_active


def spawn_monitor(
    fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs
) -> tuple[GreenThread[T], MonitorRef]:
    """Spawn ``fn(*args, **kwargs)`` and monitor it from the current thread: ``(thread, ref)``."""
    me = current_thread("spawn_monitor()")
    thread = spawn(fn, *args, **kwargs)
    return thread, monitor(thread, me)


class _ExitLink:
    """The link callback on one side of an exit-signal link: it signals ``peer``."""

    __slots__ = ("peer",)

    def __init__(self, peer: GreenThread[Any]) -> None:
        self.peer = peer

    def __call__(self, thread: GreenThread[Any]) -> None:
        peer = self.peer
        _remove_exit_link(peer, thread)  # the link is gone with the thread that ended
        if peer.dead:
            return
        reason = exit_reason(thread)
        box = peer._mailbox
        if box is not None and box.trap_exits:
            box.put(Exit("EXIT", thread, reason))
        elif is_abnormal(reason):
            peer.kill(ExitSignal(thread, reason), block=False)


def _find_exit_link(thread: GreenThread[Any], peer: GreenThread[Any]) -> _ExitLink | None:
    links = thread._links
    if links:
        for link in links:
            if isinstance(link, _ExitLink) and link.peer is peer:
                return link
    return None


def _remove_exit_link(thread: GreenThread[Any], peer: GreenThread[Any]) -> None:
    link = _find_exit_link(thread, peer)
    if link is not None:
        thread.unlink(link)


def link_exit(thread: GreenThread[Any], other: GreenThread[Any] | None = None) -> None:
    """Link ``thread`` and ``other`` (the current green thread by default) both ways.

    When either ends abnormally, the other is killed with :class:`ExitSignal`, unless it traps
    exits; a thread that traps exits gets an :class:`Exit` message whenever the other ends.
    Linking to a thread that has already ended signals at once.  Linking twice is one link.
    Erlang's ``link/1``; undo with :func:`unlink_exit`.
    """
    if other is None:
        other = current_thread("link_exit(thread) with one argument")
    for t in (thread, other):
        if not isinstance(t, GreenThread):
            raise TypeError(f"link_exit() links GreenThreads, not {type(t).__name__}")
    if thread is other:
        raise ValueError("link_exit(): a green thread cannot be linked to itself")
    if _find_exit_link(thread, other) is not None:
        return
    if thread.dead or other.dead:
        dead, alive = (thread, other) if thread.dead else (other, thread)
        if not alive.dead:
            _ExitLink(alive)(dead)
        return
    thread.link(_ExitLink(other))
    other.link(_ExitLink(thread))


def unlink_exit(thread: GreenThread[Any], other: GreenThread[Any] | None = None) -> None:
    """Remove the exit-signal link between ``thread`` and ``other`` (default: the current one)."""
    if other is None:
        other = current_thread("unlink_exit(thread) with one argument")
    _remove_exit_link(thread, other)
    _remove_exit_link(other, thread)


def spawn_link(fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> GreenThread[T]:
    """Spawn ``fn(*args, **kwargs)`` linked (:func:`link_exit`) to the current green thread."""
    me = current_thread("spawn_link()")
    thread = spawn(fn, *args, **kwargs)
    link_exit(thread, me)
    return thread


def trap_exits(flag: bool = True) -> bool:
    """Set whether the current thread traps exit signals; return the previous setting.

    Trapping, exit signals from linked threads arrive as :class:`Exit` messages (normal ends
    included) instead of killing this thread.  Erlang's ``process_flag(trap_exit, Flag)``.
    """
    box = mailbox_of(current_thread("trap_exits()"))
    old = box.trap_exits
    box.trap_exits = bool(flag)
    return old
