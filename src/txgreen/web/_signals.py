"""SIGTERM and SIGINT drain txgreen's servers before the reactor stops.

Left alone, the first SIGTERM or Ctrl-C stops the reactor at once (Twisted's handlers, wrapped
by txgreen's, see ``txgreen._interrupt``), and the reactor's shutdown wakes every green thread
with ``ReactorStopped``: the requests in flight would be cut off.  A server that wants a
graceful stop registers a stop function here.  Then the first signal runs every registered
function, each in a green thread of its own, while the reactor keeps running; once they have
all returned, the signal goes on to the handler that was there before (the reactor stops the
usual way) unless every registration said not to.  A second signal, at any time, ends the
process at once with status 128 + the signal number, as txgreen's own handlers do.

The handlers are only put in place of the ones Twisted or txgreen installed (``reactor.run``
in the main thread), never over a program's own, and only once the reactor runs.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Callable
from types import FrameType
from typing import Any

from txgreen._hub import get_hub
from txgreen._interrupt import exit_now

__all__ = ["Registration", "on_stop_signal"]

_NAMES: dict[int, str] = {signal.SIGINT: "Ctrl-C", signal.SIGTERM: "SIGTERM"}


class Registration:
    """One stop function registered with :func:`on_stop_signal`; :meth:`cancel` removes it."""

    def __init__(self, stop: Callable[[int], object], pass_on: bool) -> None:
        self.stop = stop
        self.pass_on = pass_on

    def cancel(self) -> None:
        """Forget this stop function (a later signal no longer runs it).

        With the last one gone, and no signal received yet, the handlers ours replaced are
        put back.
        """
        with contextlib.suppress(ValueError):
            _registered.remove(self)
        if not _registered and _signalled is None:
            _uninstall()


_registered: list[Registration] = []
_previous: dict[int, Any] = {}  # signal number -> the handler ours replaced
_signalled: int | None = None


def signal_name(signum: int) -> str:
    """``Ctrl-C``, ``SIGTERM``, or ``signal N``."""
    return _NAMES.get(signum, f"signal {signum}")


def on_stop_signal(stop: Callable[[int], object], *, pass_on: bool = True) -> Registration:
    """Run ``stop(signum)`` in a green thread on the first SIGTERM or SIGINT.

    Call it from the reactor's thread once the reactor runs (a green thread, or a reactor
    callback).  With ``pass_on`` (the default) the signal then goes on to the handler that was
    there before, which stops the reactor; without it, the caller stops things itself.
    """
    _install()
    registration = Registration(stop, pass_on)
    _registered.append(registration)
    return registration


def _install() -> None:
    if threading.current_thread() is not threading.main_thread():
        return
    hub = get_hub()
    ours = (hub.reactor, hub.signals)
    for signum in (signal.SIGINT, signal.SIGTERM):
        current = signal.getsignal(signum)
        if current == _handle:
            continue
        if getattr(current, "__self__", None) in ours:
            _previous[signum] = current
            signal.signal(signum, _handle)


def _uninstall() -> None:
    if threading.current_thread() is not threading.main_thread():
        return
    for signum, previous in list(_previous.items()):
        if signal.getsignal(signum) == _handle:
            signal.signal(signum, previous)
        del _previous[signum]


def _handle(signum: int, frame: FrameType | None) -> None:
    global _signalled
    if _signalled is not None:
        exit_now(signum)  # the second signal: out, now
    _signalled = signum
    get_hub().reactor.callFromThread(_begin, signum)


def _begin(signum: int) -> None:
    """In the hub: run the stop functions, each in a green thread; then pass the signal on."""
    from txgreen._greenthread import spawn
    from txgreen._pool import Group

    registered = list(_registered)
    if not registered:
        _pass_on(signum)
        return
    group = Group()
    for registration in registered:
        group.spawn(registration.stop, signum)

    def after() -> None:
        group.join()
        if any(r.pass_on for r in registered):
            # From the hub: txgreen's handler would interrupt a green thread that calls it.
            get_hub().reactor.callLater(0, _pass_on, signum)

    spawn(after)


def _pass_on(signum: int) -> None:
    previous = _previous.get(signum)
    if callable(previous):
        previous(signum, None)
    else:
        get_hub().stop_reactor()
