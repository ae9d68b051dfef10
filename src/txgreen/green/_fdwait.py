"""The fd registry and the readiness wait shared by the green modules.

A green thread that needs a file descriptor to become readable or writable parks with
:func:`wait_readable` / :func:`wait_writable`.  The reactor learns about the fd through
**one** descriptor object per fd, a :class:`_FdWatch`, which is both Twisted's
``IReadDescriptor`` and ``IWriteDescriptor``: the epoll, poll and asyncio reactors key readers
and writers by fd number, so a second object for the same fd would silently replace the first
(and its waiter would never wake).

A watch is registered with the reactor (``addReader``/``addWriter``) only while a green thread
waits for that direction, and taken off as soon as nobody does; a watch nobody waits on at all is
dropped from the registry.  So nothing is left in the reactor between waits, and a recycled fd
number starts from a clean slate.  :func:`notify_close` (called by the socket before it closes
its fd) takes the watch off the reactor and wakes its waiters with ``OSError(EBADF)``.

One exception saves the reactor two system calls per wait (an ``epoll_ctl`` pair on epoll) on
a busy connection: a wait made with ``managed=True`` (the green socket's) is settled only *after*
its wake-up.  The woken thread runs inside the reactor's callback; if it waits for the same fd
and direction again before it gives control back (a ping-pong connection does, after each
message), the registration is simply kept; otherwise it is taken off when the callback ends.
Meanwhile (while the woken thread runs) its fd is still in the registry and the reactor with
nobody waiting on it; once the thread waits on anything or ends, it is gone.  ``managed`` is for
fds whose owner calls :func:`before_close` before the fd is closed in *every* way (the green
socket does so in ``close``, ``detach`` and its finaliser): an fd closed behind the registry's
back while registered would leave the reactor watching a dead (or recycled) fd number.

Each direction has one waiter at a time: a second green thread waiting to read (or to write)
the same fd gets :class:`~txgreen.errors.ConcurrentWaitError`.

Everything here runs in the reactor's thread (green threads and the hub); callers outside it
never get here (they block in the OS instead, see :func:`blocking_wait`).
"""

from __future__ import annotations

import _thread
import errno
import select
import threading
import time
from collections.abc import Iterable
from typing import Any

from greenlet import getcurrent
from twisted.internet.interfaces import IReadDescriptor, IWriteDescriptor
from twisted.python import threadable
from twisted.python.failure import Failure
from zope.interface import implementer  # type: ignore[import-untyped]

from txgreen._greenthread import GreenThread
from txgreen._hub import RUNNING, TIMED_OUT, Hub, Waiter, get_hub, wait_timed
from txgreen.errors import BlockingInHubError, ConcurrentWaitError

__all__ = [
    "before_close",
    "blocking_wait",
    "green_caller",
    "is_watched",
    "notify_close",
    "wait",
    "wait_many",
    "wait_readable",
    "wait_writable",
    "watched_fds",
]

# The stdlib's originals, bound now: after txgreen.patch() the select module's names are green.
_std_poll = getattr(select, "poll", None)
_std_select = select.select

# fd -> its watch, for the fds some green thread is waiting on (in the reactor's thread only).
_watches: dict[int, _FdWatch] = {}


def _closed_error(fd: int) -> OSError:
    return OSError(errno.EBADF, f"file descriptor {fd} was closed while waiting for it")


@implementer(IReadDescriptor, IWriteDescriptor)
class _FdWatch:
    """The reactor's view of one fd: at most one reading and one writing waiter."""

    __slots__ = (
        "fd",
        "keep_reader",
        "keep_writer",
        "reactor",
        "reader",
        "reading",
        "writer",
        "writing",
    )

    def __init__(self, fd: int, reactor: Any) -> None:
        self.fd = fd
        self.reactor = reactor
        self.reader: Waiter | None = None
        self.writer: Waiter | None = None
        self.reading = False  # registered with reactor.addReader
        self.writing = False  # registered with reactor.addWriter
        # The current reading (writing) wait is settled after its wake-up (a managed wait).
        self.keep_reader = False
        self.keep_writer = False

    def __repr__(self) -> str:
        return f"<txgreen fd watch {self.fd} reader={self.reader!r} writer={self.writer!r}>"

    # -- Twisted's descriptor interface -------------------------------------------------------

    def fileno(self) -> int:
        """The watched fd (fixed for the watch's life: it is unregistered before any close)."""
        return self.fd

    def logPrefix(self) -> str:
        """What Twisted's log calls this descriptor."""
        return "txgreen-fd"

    def doRead(self) -> None:
        """The fd is readable: wake the reading green thread (it retries its syscall).

        After a managed wait the registration is settled only once the wake-up returns: the
        woken thread usually runs right inside it and, if it waits to read again, the reactor
        keeps watching the fd instead of forgetting and relearning it (see the module's doc).
        """
        waiter = self.reader
        if waiter is None:
            self.update()
        elif self.keep_reader:
            self.reader = None
            waiter.resume()
            self.update()
        else:
            self.reader = None
            self.update()
            waiter.resume()

    def doWrite(self) -> None:
        """The fd is writable: wake the writing green thread (settled as :meth:`doRead`)."""
        waiter = self.writer
        if waiter is None:
            self.update()
        elif self.keep_writer:
            self.writer = None
            waiter.resume()
            self.update()
        else:
            self.writer = None
            self.update()
            waiter.resume()

    def connectionLost(self, reason: Failure) -> None:
        """The reactor dropped the fd (hang-up, error, bad fd): wake both waiters to retry.

        The syscall they retry reports the real error (a reset, EPIPE, EBADF), with the
        stdlib's exception for it.  The reactor has already taken the fd off its sets.
        """
        self.reading = self.writing = False
        reader, writer = self.reader, self.writer
        self.reader = self.writer = None
        self.update()
        if reader is not None:
            reader.resume_later()
        if writer is not None:
            writer.resume_later()

    # -- registration -------------------------------------------------------------------------

    def update(self) -> None:
        """Make the reactor's registration match the waiters; drop a watch nobody waits on."""
        reactor = self.reactor
        if self.reader is None:
            if self.reading:
                self.reading = False
                reactor.removeReader(self)
        elif not self.reading:
            self.reading = True
            reactor.addReader(self)
        if self.writer is None:
            if self.writing:
                self.writing = False
                reactor.removeWriter(self)
        elif not self.writing:
            self.writing = True
            reactor.addWriter(self)
        if self.reader is None and self.writer is None and _watches.get(self.fd) is self:
            del _watches[self.fd]


def _wait(
    hub: Hub,
    greenlet: Any,
    fd: int,
    write: bool,
    timeout: float | None,
    managed: bool = False,
) -> bool:
    watch = _watches.get(fd)
    if watch is None:
        watch = _watches[fd] = _FdWatch(fd, hub.reactor)
    current = watch.writer if write else watch.reader
    if current is not None and current.active:
        direction = "write to" if write else "read from"
        raise ConcurrentWaitError(
            f"two green threads tried to {direction} fd {fd} at once ({current.greenlet!r} "
            f"already waits); a socket serves one reading and one writing green thread at a "
            "time: give it a single reader (and writer), or serialise the calls with a "
            "txgreen.Lock"
        )
    waiter = Waiter(hub, greenlet)
    if write:
        watch.writer = waiter
        watch.keep_writer = managed
        registered = watch.writing
    else:
        watch.reader = waiter
        watch.keep_reader = managed
        registered = watch.reading
    try:
        if not registered:  # (still registered when the thread waits again right after a wake)
            watch.update()
        return wait_timed(waiter, timeout) is not TIMED_OUT
    finally:
        # A timeout, a kill or the shutdown ended the wait: stop watching for this waiter.
        if write:
            if watch.writer is waiter:
                watch.writer = None
                watch.update()
        elif watch.reader is waiter:
            watch.reader = None
            watch.update()


def wait_readable(hub: Hub, greenlet: Any, fd: int, timeout: float | None = None) -> bool:
    """Park ``greenlet`` until ``fd`` is readable; False if ``timeout`` seconds passed first.

    Raises ``OSError(EBADF)`` if the fd is closed (through :func:`notify_close`) meanwhile, and
    :class:`~txgreen.errors.ConcurrentWaitError` if another green thread already waits to read
    it.  A kill, an enclosing ``txgreen.Timeout`` or the reactor's shutdown raise as usual.
    """
    return _wait(hub, greenlet, fd, False, timeout)


def wait_writable(hub: Hub, greenlet: Any, fd: int, timeout: float | None = None) -> bool:
    """Park ``greenlet`` until ``fd`` is writable; False on timeout (see :func:`wait_readable`)."""
    return _wait(hub, greenlet, fd, True, timeout)


def notify_close(fd: int) -> None:
    """``fd`` is about to be closed (or detached): unregister it, wake its waiters with EBADF.

    Call it from the reactor's thread before the fd is closed, so that the reactor never polls a
    closed (or recycled) fd number.
    """
    watch = _watches.pop(fd, None)
    if watch is None:
        return
    reader, writer = watch.reader, watch.writer
    watch.reader = watch.writer = None
    watch.update()
    for waiter in (reader, writer):
        if waiter is not None:
            waiter.resume_later(None, _closed_error(fd))


def is_watched(fd: int) -> bool:
    """Is ``fd`` in the registry: does a green thread wait on it (or did one, woken by it, not
    give control back yet after a managed wait: see the module's docstring)?"""
    return fd in _watches


def watched_fds() -> dict[int, tuple[bool, bool]]:
    """fd -> (someone waits to read, someone waits to write), for tests and debugging.

    ``(False, False)`` is an fd whose managed wait has ended while the thread it woke has not
    given control back yet; it leaves the registry when the thread does.
    """
    return {fd: (w.reader is not None, w.writer is not None) for fd, w in _watches.items()}


def blocking_wait(fd: int, write: bool, timeout: float | None) -> bool:
    """Wait in the OS (no green switch) until ``fd`` is ready; False if ``timeout`` passed.

    What calls made outside a green thread use (another OS thread, or the hub itself): they
    behave like the stdlib's blocking calls.
    """
    deadline = None if timeout is None else time.monotonic() + timeout
    if _std_poll is not None:
        poller = _std_poll()
        poller.register(fd, select.POLLOUT if write else select.POLLIN)
        while True:
            ms = None if deadline is None else max(0, int((deadline - time.monotonic()) * 1000))
            if poller.poll(ms):
                return True
            if deadline is not None and time.monotonic() >= deadline:
                return False
    while True:  # pragma: no cover - platforms without poll()
        left = None if deadline is None else max(0.0, deadline - time.monotonic())
        r, w, _ = _std_select([] if write else [fd], [fd] if write else [], [], left)
        if r or w:
            return True
        if deadline is not None and time.monotonic() >= deadline:
            return False


# -- the entry points the green modules use (any thread) ----------------------------------------


def green_caller() -> tuple[Hub, Any] | None:
    """(hub, greenlet) when the caller may park on the reactor; None when it must block.

    None means: the caller is another OS thread, or the hub itself (a reactor callback), or
    the reactor is not running (before ``txgreen.run``, or after it stopped), so
    it waits in the OS exactly as the stdlib's blocking call would (a stall in the hub is
    what ``txgreen.watch_blocking`` reports).
    """
    cur = getcurrent()
    if type(cur) is GreenThread:
        return cur.hub, cur
    hub = get_hub()
    if hub.state is not RUNNING:
        # Before the reactor runs (set-up code before txgreen.run) or after it stopped (code at
        # exit): nothing to park on, and a stdlib call must not start the reactor by itself.
        return None
    ident = hub.thread_ident
    if ident is None:
        ident = threadable.ioThread
        if ident is None:
            ident = threading.main_thread().ident
    if ident != _thread.get_ident():
        return None  # another OS thread: behave like the stdlib's blocking call
    try:
        if not hub.check_can_block(cur, "a green socket call"):
            return None
    except BlockingInHubError:
        return None  # the hub itself (a reactor callback): block like the stdlib
    return hub, cur


def wait(fd: int, write: bool, timeout: float | None, *, managed: bool = False) -> bool:
    """Wait until ``fd`` is readable (or writable); False if ``timeout`` seconds passed.

    A green thread parks on the reactor; any other caller waits in the OS
    (:func:`blocking_wait`).  ``managed=True`` lets the registration outlive the wake-up, for
    fds whose owner calls :func:`before_close` before they are closed in every way (see the
    module's docstring).
    """
    caller = green_caller()
    if caller is None:
        return blocking_wait(fd, write, timeout)
    hub, greenlet = caller
    return _wait(hub, greenlet, fd, write, timeout, managed)


def before_close(fd: int) -> None:
    """``fd`` is about to be closed or detached, in any thread: see :func:`notify_close`."""
    if fd not in _watches:
        return
    hub = get_hub()
    # (the OS thread's ident: after patch(threading=True) threading's is the green thread's)
    if hub.thread_ident in (None, _thread.get_ident()):
        notify_close(fd)
    else:
        # Closed from another OS thread while a green thread waits on it: the registry
        # belongs to the reactor's thread.
        from twisted.internet.threads import blockingCallFromThread

        blockingCallFromThread(hub.reactor, notify_close, fd)


# -- one green thread waiting on many fds at once (select, poll, epoll, selectors) ---------------


def _check_free(fds: Iterable[int], write: bool) -> None:
    """Raise ConcurrentWaitError if another green thread already waits on one of ``fds``."""
    for fd in fds:
        watch = _watches.get(fd)
        if watch is None:
            continue
        current = watch.writer if write else watch.reader
        if current is not None and current.active:
            direction = "write to" if write else "read from"
            raise ConcurrentWaitError(
                f"a green thread waits to {direction} fd {fd} ({current.greenlet!r}) and "
                f"another selects on it for the same direction at once; an fd serves one "
                "reading and one writing green thread at a time: select in the green thread "
                "that does the I/O, or serialise the two with a txgreen.Lock"
            )


def wait_many(
    hub: Hub,
    greenlet: Any,
    readers: Iterable[int],
    writers: Iterable[int],
    timeout: float | None = None,
) -> bool:
    """Park ``greenlet`` until one of ``readers`` is readable or one of ``writers`` writable.

    True when something happened (an fd became ready, the reactor dropped one, or one was closed
    through :func:`notify_close`): the caller asks its system call again to learn what, and
    gets the stdlib's answer for a closed fd.  False if ``timeout`` seconds passed first (no
    fds at all: a plain green sleep).  One :class:`~txgreen._hub.Waiter` is registered on
    every fd's watch and taken off all of them however the wait ends (readiness, timeout, a
    kill, an enclosing ``txgreen.Timeout``, an error), so nothing stays with the reactor.

    An fd on which another green thread already waits for the same direction raises
    :class:`~txgreen.errors.ConcurrentWaitError` before anything is registered.
    """
    read_fds = set(readers)
    write_fds = set(writers)
    _check_free(read_fds, False)
    _check_free(write_fds, True)
    waiter = Waiter(hub, greenlet)
    taken: list[_FdWatch] = []
    try:
        for fd in read_fds | write_fds:
            watch = _watches.get(fd)
            if watch is None:
                watch = _watches[fd] = _FdWatch(fd, hub.reactor)
            taken.append(watch)
            if fd in read_fds:
                watch.reader = waiter
                watch.keep_reader = False
            if fd in write_fds:
                watch.writer = waiter
                watch.keep_writer = False
            watch.update()
        try:
            return wait_timed(waiter, timeout) is not TIMED_OUT
        except OSError as e:
            if e is waiter.exc and e.errno == errno.EBADF:
                return True  # closed meanwhile (notify_close): the caller's re-check tells
            raise
    finally:
        for watch in taken:
            mine = False
            if watch.reader is waiter:
                watch.reader = None
                mine = True
            if watch.writer is waiter:
                watch.writer = None
                mine = True
            if mine:
                watch.update()
