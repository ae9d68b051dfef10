"""Ctrl-C and SIGTERM: a busy green thread is interrupted, and a waiting shutdown can be cut short.

Twisted's own handlers (``reactor.run`` installs them in the main OS thread) only schedule
``reactor.stop`` with ``callFromThread``.  That cannot serve two cases:

- a green thread running CPU-bound code holds the reactor's OS thread, so the scheduled stop
  never runs: here Ctrl-C raises ``KeyboardInterrupt`` in the code that runs (the current
  greenlet, when it is not the hub), as Python does without green threads;
- a shutdown that waits for OS threads (Twisted's thread pool joins its workers, the
  interpreter joins non-daemon threads at exit) no longer runs the reactor at all: here a
  second Ctrl-C, or a SIGTERM, ends the process at once with status 130 / 143, and the first
  one prints one line on stderr saying what the shutdown waits for.

Python runs signal handlers in the main OS thread, between two bytecodes, in whatever greenlet
is current: that is what lets the handler tell a busy green thread from the hub.  txgreen only
wraps handlers that Twisted itself installed (never a program's own, nor when the reactor runs
without signal handlers), and only for the reactor txgreen's hub is bound to.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
import weakref
from types import FrameType
from typing import TYPE_CHECKING, Any

from greenlet import getcurrent
from twisted.python import threadable

if TYPE_CHECKING:
    from twisted.python.threadpool import ThreadPool

    from txgreen._hub import Hub

# The dedicated pools given to ``call_in_thread(pool=...)``: their running jobs are counted too.
pools: weakref.WeakSet[ThreadPool] = weakref.WeakSet()

_NAMES: dict[int, str] = {signal.SIGINT: "Ctrl-C", signal.SIGTERM: "SIGTERM"}


def exit_now(signum: int) -> None:
    """End the process at once with status 128 + ``signum`` (output flushed first)."""
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(128 + signum)


class SignalGuard:
    """txgreen's SIGINT/SIGTERM handlers for one hub, wrapped around Twisted's."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self._twisted: dict[int, Any] = {}  # signal number -> the reactor's handler we wrapped
        self.signalled: int | None = None  # the first signal received
        self.stopping = False  # a signal asked the reactor to stop: the next one exits at once

    def install(self) -> None:
        """Wrap Twisted's handlers, if ``reactor.run`` installed them (call after startup)."""
        reactor = self.hub.reactor
        main = threading.main_thread()
        if threading.current_thread() is not main:
            # Signal handlers can only be set in the main thread.  (The hub was made by another
            # thread while the reactor runs: install from the reactor's thread, if it is main.)
            if reactor.running and threadable.ioThread == main.ident:
                reactor.callFromThread(self.install)
            return
        for signum, name in ((signal.SIGINT, "sigInt"), (signal.SIGTERM, "sigTerm")):
            theirs = getattr(reactor, name, None)
            if theirs is not None and signal.getsignal(signum) == theirs:
                self._twisted[signum] = theirs
                signal.signal(signum, self.handle)
        if self._twisted:
            reactor.addSystemEventTrigger("before", "shutdown", self._notice)
            reactor.addSystemEventTrigger("after", "shutdown", self._after_shutdown)

    def handle(self, signum: int, frame: FrameType | None) -> None:
        """The handler: interrupt the running code, ask for the stop, or exit at once."""
        from txgreen._hub import STOPPED

        hub = self.hub
        if self.stopping or hub.state == STOPPED:
            # The shutdown is under way and did not end: the user wants out, now.
            exit_now(signum)
        if self.signalled is None:
            self.signalled = signum
        if signum == signal.SIGINT:
            hub_greenlet = hub.greenlet
            if hub_greenlet is not None and getcurrent() is not hub_greenlet:
                # Code is running (a green thread, or the main greenlet while the hub waits):
                # interrupt it, as Python does.  A green thread that lets it through stops the
                # reactor; the next Ctrl-C during that shutdown exits at once.
                raise KeyboardInterrupt
        self.stopping = True
        self._twisted[signum](signum, frame)

    def _notice(self) -> None:
        """Before shutdown (blocked green threads already woken): say what the exit waits for."""
        if self.signalled is None:
            return
        jobs, others = busy_threads(self.hub.reactor)
        if not jobs and not others:
            return
        parts = []
        if jobs:
            parts.append(f"{jobs} thread job{'s' if jobs != 1 else ''}")
        if others:
            kind = "other OS thread" if jobs else "OS thread"
            parts.append(f"{others} {kind}{'s' if others != 1 else ''}")
        name = _NAMES.get(self.signalled, f"signal {self.signalled}")
        line = (
            f"txgreen: {name}: stopping; waiting for {' and '.join(parts)} to finish "
            "(Ctrl-C again exits at once)\n"
        )
        with contextlib.suppress(Exception):
            sys.stderr.write(line)
            sys.stderr.flush()

    def _after_shutdown(self) -> None:
        """The reactor has shut down without a signal: give Python's own handlers back.

        After a signal, txgreen's stay, so that one more signal ends a process that still
        waits for OS threads at exit.
        """
        if self.signalled is not None:
            return
        for signum in self._twisted:
            if signal.getsignal(signum) == self.handle:
                default = signal.default_int_handler if signum == signal.SIGINT else signal.SIG_DFL
                signal.signal(signum, default)
        self._twisted.clear()


def busy_threads(reactor: Any) -> tuple[int, int]:
    """(jobs running in the reactor's and ``call_in_thread``'s pools, other non-daemon threads).

    Those are what the process waits for when it stops: Twisted's pools join their workers,
    the interpreter joins non-daemon threads at exit.
    """
    known = [reactor_pool] if (reactor_pool := getattr(reactor, "threadpool", None)) else []
    known.extend(p for p in list(pools) if p is not reactor_pool)
    jobs = 0
    workers: set[threading.Thread] = set()
    for pool in known:
        threads = list(pool.threads)
        workers.update(threads)
        if pool.started and not any(t.daemon for t in threads):
            jobs += len(pool.working)
    main = threading.main_thread()
    others = sum(
        1
        for t in threading.enumerate()
        if t is not main and not t.daemon and t not in workers and t.is_alive()
    )
    return jobs, others
