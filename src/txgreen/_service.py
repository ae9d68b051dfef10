"""``GreenService``: green code as a ``twisted.application`` service (``twistd``, ``twist``, .tac).

Twisted's deployment tools start and stop *services*: ``twistd -ny app.tac`` builds an
``Application``, starts its services before the reactor runs and stops them (waiting for the
Deferreds ``stopService`` returns) before it exits.  :class:`GreenService` makes one green
thread such a service: ``startService`` spawns ``fn(*args, **kwargs)``, ``stopService`` kills
it with ``GreenletExit`` and returns a Deferred that fires once it has ended (its ``finally``
blocks and ``with`` exits have run, blocking calls included), or after ``stop_timeout`` seconds.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.application.service import Service
from twisted.internet.defer import Deferred, succeed
from twisted.logger import Logger

from txgreen._greenthread import GreenThread, spawn
from txgreen._hub import get_hub
from txgreen._util import failure_of

__all__ = ["GreenService"]

log = Logger(namespace="txgreen.service")


class GreenService(Service):
    """A Twisted ``Service`` that runs ``fn(*args, **kwargs)`` in a green thread while running.

    - ``startService()`` spawns the thread (before the reactor runs, as ``twistd`` starts
      services, it runs as soon as the reactor does).  ``thread`` is the
      :class:`txgreen.GreenThread`.
    - ``stopService()`` kills the thread and returns a Deferred that fires when it has ended,
      so ``twistd``/``twist`` and a ``MultiService`` parent wait for its cleanup.  When the
      reactor shuts down, running GreenServices are stopped first, before the hub gives the
      other green threads ``ReactorStopped``: their cleanup may block.  A thread
      still running ``stop_timeout`` seconds later (it caught ``GreenletExit``, or it is in a
      busy loop) is left behind with a warning, so shutdown always ends; ``None`` waits for
      ever.
    - If ``fn`` raises, the error is logged (``txgreen.service`` namespace) with the service's
      name; the service stays "running" until stopped, as Twisted services do.  If ``fn``
      returns, nothing happens: a service whose work is done is simply idle.
    """

    stop_timeout: float | None = 30.0
    """Seconds ``stopService`` waits for the killed thread to end (``None``: for ever)."""

    def __init__(self, fn: Callable[..., object], /, *args: Any, **kwargs: Any) -> None:
        if not callable(fn):
            raise TypeError(
                f"GreenService() takes the function to run in a green thread, not a "
                f"{type(fn).__name__!r}: GreenService(fn, *args)"
            )
        self.fn = fn
        self.args = args
        self.kwargs = kwargs
        self.thread: GreenThread[Any] | None = None

    def __repr__(self) -> str:
        name = getattr(self.fn, "__qualname__", repr(self.fn))
        state = "running" if self.running else "stopped"
        return f"<txgreen.GreenService {self.name or name!s} ({state})>"

    def startService(self) -> None:
        """Mark the service running and spawn ``fn(*args, **kwargs)`` in a green thread."""
        super().startService()  # type: ignore[no-untyped-call]
        thread = spawn(self.fn, *self.args, **self.kwargs)
        thread.link(self._ended)
        self.thread = thread
        # When the reactor shuts down (twistd on SIGTERM), stop first, while the thread's
        # cleanup can still block; the hub wakes the other green threads after that.
        get_hub().add_graceful_stop(self.stopService)

    def _ended(self, thread: GreenThread[Any]) -> None:
        exc = thread.exception  # retrieved here: logged once, below, and not again
        if exc is not None:
            log.failure(
                "GreenService {service!r}: {fn} failed",
                failure=failure_of(exc),
                service=self,
                fn=getattr(self.fn, "__qualname__", repr(self.fn)),
            )

    def stopService(self) -> Deferred[None]:
        """Kill the thread; the Deferred fires when it has ended (or after ``stop_timeout``)."""
        super().stopService()  # type: ignore[no-untyped-call]
        get_hub().remove_graceful_stop(self.stopService)
        thread = self.thread
        if thread is None or thread.dead:
            return succeed(None)
        done: Deferred[None] = Deferred()

        def ended(_: object) -> None:
            if not done.called:
                done.callback(None)

        thread.link(ended)
        thread.kill(block=False)
        if self.stop_timeout is not None and not done.called:
            reactor: Any = get_hub().reactor
            timer = reactor.callLater(self.stop_timeout, self._gave_up, thread, done)
            done.addBoth(_cancel_timer, timer)
        return done

    def _gave_up(self, thread: GreenThread[Any], done: Deferred[None]) -> None:
        if not done.called:
            log.warn(
                "GreenService {service!r}: its green thread {thread!r} did not end within "
                "{timeout} s of being killed; stopping without it",
                service=self,
                thread=thread,
                timeout=self.stop_timeout,
            )
            done.callback(None)


def _cancel_timer(result: object, timer: Any) -> object:
    if timer.active():
        timer.cancel()
    return result
