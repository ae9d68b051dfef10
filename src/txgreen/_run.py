"""``txgreen.run``: run a sync-style main function with the reactor, like ``task.react``."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Coroutine
from typing import Any, ParamSpec, TypeVar, overload

from greenlet import getcurrent

from txgreen._block import block_on
from txgreen._greenthread import GreenThread, spawn
from txgreen._hub import HUB_EXIT, STOPPED, get_hub
from txgreen.errors import ReactorStopped, TxgreenError

__all__ = ["ReactorAlreadyRunning", "run"]

P = ParamSpec("P")
T = TypeVar("T")


class ReactorAlreadyRunning(TxgreenError):
    """``txgreen.run`` was called while the reactor is already running."""


@overload
def run(main: Callable[P, Coroutine[Any, Any, T]], /, *args: P.args, **kwargs: P.kwargs) -> T: ...
@overload
def run(main: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T: ...
def run(main: Callable[P, Any], /, *args: P.args, **kwargs: P.kwargs) -> Any:
    """Run ``main(*args, **kwargs)`` in a green thread with the reactor running; return its result.

    ``main`` may also be an ``async def`` function: its coroutine is awaited as ``block_on``
    would (``Deferred.fromCoroutine``), so ``txgreen.run(async_main)`` works like
    ``asyncio.run(async_main())`` -- but pass the function, not the coroutine it returns.

    The reactor starts in the hub, ``main`` runs as a green thread, and when ``main`` returns or
    raises the reactor is stopped (shutdown triggers run, the thread pool stops) and ``run``
    returns the result or raises the exception.  Other green threads still blocked at that
    point get :class:`txgreen.ReactorStopped`.

    Ctrl-C (SIGINT) stops the reactor and makes ``run`` raise :class:`KeyboardInterrupt`;
    SIGTERM makes it raise ``SystemExit(143)``.  Call it once, from the main program, while the
    reactor is not running (Twisted reactors cannot be restarted).
    """
    if not callable(main):
        _reject_uncallable(main)
    if inspect.iscoroutinefunction(main):
        awaiting: Callable[..., Any] = _await_in_green
        return run(awaiting, main, *args, **kwargs)
    hub = get_hub()
    reactor = hub.reactor
    if reactor.running or (hub.greenlet is not None and not hub.own):
        raise ReactorAlreadyRunning(
            "txgreen.run() starts the reactor, but it is already running (or run by someone "
            "else). From code already under the reactor, use txgreen.spawn() or block_on()."
        )
    if hub.state == STOPPED or getattr(reactor, "_startedBefore", False):
        raise ReactorStopped("the reactor has already run and stopped; it cannot be restarted")
    cur = getcurrent()
    if isinstance(cur, GreenThread):
        raise ReactorAlreadyRunning("txgreen.run() cannot be called from a green thread")
    hub_gr = hub.ensure_greenlet()
    if hub_gr:  # already started (implicitly, by an earlier block_on from this thread)
        raise ReactorAlreadyRunning(
            "txgreen.run() was called after the reactor was started implicitly by a blocking "
            "call; call txgreen.run() first, or keep using block_on()/spawn()"
        )
    hub_gr.parent = cur
    gt = spawn(main, *args, **kwargs)
    gt.link(lambda _: hub.stop_reactor())
    got = hub_gr.switch()
    if got is not HUB_EXIT:  # pragma: no cover - defensive
        raise RuntimeError(f"txgreen.run(): unexpected switch into the main greenlet: {got!r}")
    exit_exc = hub.exit_exception_for_parent()
    if gt.dead and gt.successful():
        return gt.get()
    if not isinstance(exit_exc, ReactorStopped):
        _ = gt.exception  # the exit exception takes precedence; do not log main's error too
        raise exit_exc
    return gt.get()


def _await_in_green(main: Callable[..., Coroutine[Any, Any, T]], *args: Any, **kwargs: Any) -> T:
    return block_on(main(*args, **kwargs))


def _reject_uncallable(main: object) -> None:
    if inspect.iscoroutine(main):
        main.close()  # never awaited: no "coroutine was never awaited" warning on top of this
        raise TypeError(
            "txgreen.run() takes the function to run, not its result: write "
            "txgreen.run(main), not txgreen.run(main()) (an async def function is fine)"
        )
    raise TypeError(
        f"txgreen.run() takes a function to run in a green thread, not a "
        f"{type(main).__name__!r}: txgreen.run(main, *args)"
    )
