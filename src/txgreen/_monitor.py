"""A blocking detector: ``watch_blocking`` reports when the reactor's thread stops responding.

A blocking call in a green thread or a reactor callback (``time.sleep``, a DB-API driver,
``requests``, a CPU-heavy loop) holds the reactor's OS thread, so the reactor and every green
thread freeze until it returns.  Nothing fails: everything just stops.  A
:class:`BlockingWatch` makes that visible.

How it works: a daemon OS thread (the *monitor*) asks the reactor to run a tiny function
(``reactor.callFromThread``) every ``threshold / 2`` seconds and checks that it ran.  When one
of these pings has waited ``threshold`` seconds, the reactor's thread is blocked: the monitor
takes that thread's stack (``sys._current_frames()``) and the green thread the hub had switched
into (``Hub.entered``), and reports once.  When the ping finally runs, it reports how long the
block lasted.  Nothing is added to txgreen's own code paths: the whole cost is the monitor's
wake-ups and one ``callFromThread`` per ping.

Reports go to ``twisted.logger`` (warning level, namespace ``txgreen.monitor``) and, if given,
to ``on_block(report)``, called in the monitor thread with a :class:`BlockingReport`.
"""

from __future__ import annotations

import contextlib
import math
import os
import sys
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from greenlet import greenlet as _greenlet
from twisted.logger import Logger, globalLogBeginner
from twisted.python import threadable

from txgreen import _hub
from txgreen.errors import TxgreenError

__all__ = [
    "BlockingReport",
    "BlockingWatch",
    "WatchAlreadyRunning",
    "watch_blocking",
    "watch_blocking_from_env",
]

log = Logger(namespace="txgreen.monitor")

ENV_VAR = "TXGREEN_WATCH_BLOCKING"

# How long stop() waits for the monitor thread by default (it wakes at once when told to stop,
# so only an on_block callback that is still running can make it wait).
STOP_TIMEOUT = 1.0

_BLOCKED = (
    "The reactor's thread has been blocked for {duration} s (threshold {threshold} s) {where}: "
    "the reactor and every other green thread are frozen until it returns.\n"
    "Fix: move blocking calls to a thread with txgreen.call_in_thread(fn, ...) or "
    "@txgreen.threaded; use txgreen.sleep() instead of time.sleep().\n"
    "Stack of the reactor's thread, most recent call last:\n{stack}"
)
_ENDED = "The block {where} is over: the reactor's thread was blocked for {duration} s in all."


class WatchAlreadyRunning(TxgreenError):
    """``watch_blocking`` was called while a :class:`BlockingWatch` runs for the same reactor.

    One watch per reactor is enough (two would report every block twice): stop the running one
    first, or keep using it.
    """


@dataclass(frozen=True)
class BlockingReport:
    """What a :class:`BlockingWatch` saw: one report when a block starts, one when it ends.

    - ``duration``: seconds the reactor had not answered when the report was made (for the
      first report, about ``threshold``); in the ``ended`` report, the whole block (a lower
      bound: the block may have started up to ``threshold / 2`` before the unanswered ping).
    - ``stack``: the stack of the reactor's thread when the block was detected, formatted like a
      traceback (most recent call last); the last lines show the blocking call.  The ended
      report carries the same stack.
    - ``green_thread``: the green thread that was running (a :class:`txgreen.GreenThread`, or
      the main greenlet in implicit mode), or None when the block was in the hub itself (a
      reactor callback, a protocol method, a Deferred callback).
    - ``ended``: False for the report made while the block lasts, True once the reactor is back.
    - ``threshold``: the watch's threshold, in seconds.
    """

    duration: float
    stack: str
    green_thread: _greenlet | None
    ended: bool
    threshold: float

    @property
    def green_thread_name(self) -> str | None:
        """The green thread's name (its function's name), or None if the block was in the hub."""
        g = self.green_thread
        if g is None:
            return None
        return _describe(g)

    @property
    def where(self) -> str:
        """A few words on where the block happened, as used in the log message."""
        name = self.green_thread_name
        if name is None:
            return "in the hub (a reactor callback, not a green thread)"
        return f"in green thread {name}"


def _describe(g: _greenlet) -> str:
    name = getattr(g, "name", None)
    if isinstance(name, str):
        return name
    if g.parent is None:
        return "main greenlet"
    return repr(g)


class BlockingWatch:
    """A running blocking detector for one reactor; made by :func:`watch_blocking`.

    :meth:`stop` ends it (also as a context manager: ``with txgreen.watch_blocking(): ...``).
    It also ends by itself when the reactor shuts down.  Its thread is a daemon thread, so it
    never keeps the process alive.
    """

    def __init__(
        self,
        reactor: Any,
        threshold: float,
        on_block: Callable[[BlockingReport], object] | None,
    ) -> None:
        self._reactor = reactor
        self._threshold = float(threshold)
        self._on_block = on_block
        self._cond = threading.Condition()
        self._stopping = False
        # Written by _pong, in the reactor's thread; read by the monitor thread.
        self._answered = 0
        self._answered_at = 0.0
        self._reactor_ident: int | None = _guess_reactor_ident(reactor)
        self._trigger: Any = None
        self._thread = threading.Thread(target=self._run, name="txgreen-monitor", daemon=True)

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<txgreen.BlockingWatch {state}, threshold {self._threshold:g} s>"

    @property
    def threshold(self) -> float:
        """Seconds the reactor may go without answering before a block is reported."""
        return self._threshold

    @property
    def running(self) -> bool:
        """True until :meth:`stop` (or the reactor's shutdown) has ended the monitor thread."""
        return self._thread.is_alive() and not self._stopping

    def _start(self) -> None:
        self._thread.start()
        reactor = self._reactor
        if _in_reactor_thread(reactor):
            self._add_trigger()
        else:
            reactor.callFromThread(self._add_trigger)

    # -- stopping ------------------------------------------------------------------------------

    def stop(self, timeout: float = STOP_TIMEOUT) -> bool:
        """Stop watching and wait (at most ``timeout`` seconds) for the monitor thread to end.

        Returns True once the thread has ended (False if it is still in an ``on_block`` call
        after ``timeout``; it ends when that call returns).  Stopping again is a no-op that
        returns the same.  Callable from any thread, ``on_block`` included.
        """
        self._signal_stop()
        if _in_reactor_thread(self._reactor):
            self._remove_trigger()
        else:
            # Twisted's triggers may only be touched in the reactor's thread.
            self._reactor.callFromThread(self._remove_trigger)
        return self._join(timeout)

    def __enter__(self) -> BlockingWatch:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _signal_stop(self) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        _forget(self)

    def _join(self, timeout: float) -> bool:
        thread = self._thread
        if thread is threading.current_thread():
            return False  # on_block stopping its own watch: the thread ends when it returns
        if thread.ident is not None:
            thread.join(timeout)
        return not thread.is_alive()

    def _add_trigger(self) -> None:  # in the reactor's thread
        if self._trigger is None and not self._stopping:
            self._trigger = self._reactor.addSystemEventTrigger(
                "before", "shutdown", self._on_reactor_shutdown
            )

    def _remove_trigger(self) -> None:  # in the reactor's thread
        trigger, self._trigger = self._trigger, None
        if trigger is not None:
            with contextlib.suppress(ValueError, KeyError):  # already fired or removed
                self._reactor.removeSystemEventTrigger(trigger)

    def _on_reactor_shutdown(self) -> None:
        # Blocking during shutdown (joining thread pools...) is expected: stop watching first.
        # The trigger has fired, so there is nothing to remove.
        self._trigger = None
        self._signal_stop()
        self._join(STOP_TIMEOUT)

    # -- the monitor thread --------------------------------------------------------------------

    def _pong(self, seq: int) -> None:  # in the reactor's thread: keep it tiny
        self._reactor_ident = threading.get_ident()
        self._answered_at = time.monotonic()
        self._answered = seq

    def _run(self) -> None:
        interval = self._threshold / 2
        cond = self._cond
        reactor = self._reactor
        clock = time.monotonic
        seq = 0
        sent_at = 0.0
        waiting = False  # a ping is out and has not been answered yet
        episode: BlockingReport | None = None  # the block being reported, until it ends
        while True:
            with cond:
                if self._stopping:
                    return
            now = clock()
            if waiting and self._answered >= seq:
                waiting = False
                if episode is not None:
                    ended = BlockingReport(
                        duration=max(self._answered_at - sent_at, self._threshold),
                        stack=episode.stack,
                        green_thread=episode.green_thread,
                        ended=True,
                        threshold=self._threshold,
                    )
                    episode = None
                    self._report(ended)
            if not waiting:
                seq += 1
                waiting = True
                reactor.callFromThread(self._pong, seq)
                # Counted from when the ping is surely queued: callFromThread writes to the
                # reactor's waker, and a busy reactor thread may keep the GIL from us meanwhile.
                sent_at = clock()
            elif episode is None and now - sent_at >= self._threshold:
                if not reactor.running:
                    # Not started yet (or stopped without a shutdown): not a block.  The ping
                    # stays queued; count from now.
                    sent_at = now
                else:
                    episode = self._capture(seq, now - sent_at)
                    if episode is not None:
                        self._report(episode)
            timeout = interval
            if waiting and episode is None:
                # Wake up right when the ping is due, not up to an interval late.
                timeout = min(interval, max(sent_at + self._threshold - clock(), 0.0))
            with cond:
                if not self._stopping:
                    cond.wait(timeout)

    def _capture(self, seq: int, duration: float) -> BlockingReport | None:
        """The report of a block now: the reactor thread's stack and green thread."""
        ident = self._reactor_ident
        frame = sys._current_frames().get(ident) if ident is not None else None
        green_thread = None
        hub = _hub._hub
        if hub is not None and hub.reactor is self._reactor:
            green_thread = hub.entered
        if frame is None:
            stack = "  (the reactor's thread was not found)\n"
        else:
            stack = "".join(traceback.format_stack(frame))
        del frame
        if self._answered >= seq:
            # It answered while the stack was taken: that stack would show a reactor at work,
            # not the block.
            return None
        return BlockingReport(
            duration=duration,
            stack=stack,
            green_thread=green_thread,
            ended=False,
            threshold=self._threshold,
        )

    def _report(self, report: BlockingReport) -> None:
        fields = {
            "duration": f"{report.duration:.3f}",
            "threshold": f"{report.threshold:g}",
            "where": report.where,
            "stack": report.stack.rstrip("\n"),
        }
        fmt = _ENDED if report.ended else _BLOCKED
        log.warn(fmt, report=report, **fields)
        if _logging_not_started():
            # Twisted only buffers warnings until the program starts logging: print it instead.
            try:
                sys.stderr.write("txgreen.monitor: " + fmt.format(**fields) + "\n")
                sys.stderr.flush()
            except (OSError, ValueError, AttributeError):  # pragma: no cover - stderr closed
                pass
        if self._on_block is not None:
            try:
                self._on_block(report)
            except Exception:
                log.failure(
                    "txgreen.monitor: error in on_block {on_block!r}", on_block=self._on_block
                )


# -- one watch per reactor -----------------------------------------------------------------------

_watches: dict[int, BlockingWatch] = {}
_watches_lock = threading.Lock()


def _forget(watch: BlockingWatch) -> None:
    with _watches_lock:
        key = id(watch._reactor)
        if _watches.get(key) is watch:
            del _watches[key]


def _in_reactor_thread(reactor: Any) -> bool:
    """True in the thread that runs (or will run) ``reactor``."""
    io = threadable.ioThread
    if io is None or not getattr(reactor, "_started", True):
        # Not started yet: whoever sets it up is the one to touch its triggers.
        return True
    return bool(io == threading.get_ident())


def _guess_reactor_ident(reactor: Any) -> int | None:
    """The reactor's thread, before the first ping has told us for sure."""
    hub = _hub._hub
    if hub is not None and hub.reactor is reactor and hub.thread_ident is not None:
        return hub.thread_ident
    if threadable.ioThread is not None:
        return int(threadable.ioThread)
    return threading.get_ident()  # the reactor has not run yet: it will run in this thread


def _logging_not_started() -> bool:
    return getattr(globalLogBeginner, "_temporaryObserver", None) is not None


def _check_threshold(threshold: object) -> float:
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)):
        raise TypeError(
            f"watch_blocking(): threshold must be a number of seconds, not {threshold!r}"
        )
    if not (math.isfinite(threshold) and threshold > 0):
        raise ValueError(
            f"watch_blocking(): threshold must be a finite number of seconds > 0, not {threshold!r}"
        )
    return float(threshold)


def watch_blocking(
    threshold: float = 0.1,
    *,
    reactor: Any = None,
    on_block: Callable[[BlockingReport], object] | None = None,
) -> BlockingWatch:
    """Start a :class:`BlockingWatch`: report whenever the reactor is blocked ``threshold`` s.

    A daemon OS thread pings the reactor every ``threshold / 2`` seconds.  When a ping has not
    run after ``threshold`` seconds, the reactor's thread is blocked: one warning is logged
    (``twisted.logger``, namespace ``txgreen.monitor``) with that thread's stack and the green
    thread that was running, and another when the block ends, with its total duration.  If
    the program has not started Twisted's logging, the reports are printed to stderr too.

    - ``reactor``: the reactor to watch; by default ``twisted.internet.reactor``.
    - ``on_block``: also called with each :class:`BlockingReport`, in the monitor thread (it
      must not wait for the reactor: the reactor may be the thing that is blocked).

    The watch runs until :meth:`BlockingWatch.stop` (or the end of a ``with`` block) or until
    the reactor shuts down.  A reactor that is not running yet is not reported as blocked.
    Raises :class:`WatchAlreadyRunning` if a watch already runs for this reactor,
    ``TypeError``/``ValueError`` for a ``threshold`` that is not a number > 0.
    """
    seconds = _check_threshold(threshold)
    if on_block is not None and not callable(on_block):
        raise TypeError(f"watch_blocking(): on_block must be callable or None, not {on_block!r}")
    if reactor is None:
        from twisted.internet import reactor as default_reactor

        reactor = default_reactor
    with _watches_lock:
        running = _watches.get(id(reactor))
        if running is not None:
            raise WatchAlreadyRunning(
                f"watch_blocking(): {running!r} already watches this reactor; stop it first "
                "(watch.stop()) or keep using it"
            )
        watch = BlockingWatch(reactor, seconds, on_block)
        _watches[id(reactor)] = watch
    try:
        watch._start()
    except BaseException:
        watch._signal_stop()
        raise
    return watch


def watch_blocking_from_env(*, reactor: Any = None) -> BlockingWatch | None:
    """Start a watch if the environment variable ``TXGREEN_WATCH_BLOCKING`` asks for one.

    Its value is the threshold in seconds (``TXGREEN_WATCH_BLOCKING=0.1``).  Unset, empty,
    ``0`` or ``off`` mean no watch: returns None.  If a watch already runs for the reactor,
    returns it instead of starting another.  Raises ``ValueError`` (naming the variable) for
    any other value that is not a number > 0.
    """
    raw = os.environ.get(ENV_VAR, "").strip()
    if raw.lower() in ("", "0", "off"):
        return None
    try:
        threshold = float(raw)
    except ValueError:
        threshold = math.nan
    if not (math.isfinite(threshold) and threshold > 0):
        raise ValueError(
            f"{ENV_VAR}={raw!r}: expected a threshold in seconds (a number > 0, e.g. 0.1), "
            "or 0 to turn the watch off"
        )
    if reactor is None:
        from twisted.internet import reactor as default_reactor

        reactor = default_reactor
    with _watches_lock:
        running = _watches.get(id(reactor))
    if running is not None:
        return running
    return watch_blocking(threshold, reactor=reactor)
