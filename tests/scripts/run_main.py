"""``txgreen.run(main, *args, **kwargs)``.  Usage: ``run_main.py REACTOR ok|raise|async``.

``ok``: main gets its arguments, blocks, and its result comes back from ``run``; ``run`` called
again inside main raises ReactorAlreadyRunning, and after it has returned raises
ReactorStopped.  ``raise``: main's exception propagates out of ``run`` (the test checks the
traceback on stderr).  ``async``: an ``async def`` main is awaited, and passing its coroutine
(or anything not callable) raises TypeError saying what to pass.  In every mode the reactor is
stopped when main ends, so the shutdown triggers print.
"""

from __future__ import annotations

import sys
from typing import Any

import reactor_choice

say = reactor_choice.say
say("reactor:", reactor_choice.install(sys.argv[1]))
mode = sys.argv[2]

from twisted.internet import reactor as _reactor  # noqa: E402
from twisted.internet import task  # noqa: E402

import txgreen  # noqa: E402

reactor: Any = _reactor  # the installed reactor, untyped (Twisted's is an interface)

reactor.addSystemEventTrigger("before", "shutdown", say, "trigger: before shutdown")
reactor.addSystemEventTrigger("after", "shutdown", say, "trigger: after shutdown")


def nested_main() -> str:
    return "nested main ran"  # must never run


def user_main(a: int, *, scale: int) -> tuple[int, str]:
    say("main: running", reactor.running)
    try:
        txgreen.run(nested_main)
    except txgreen.ReactorAlreadyRunning as e:
        say("main: nested run:", type(e).__name__, "-", e)
    total = txgreen.block_on(task.deferLater(reactor, 0.01, lambda: a * scale))
    return total, "done"


def user_failing_main(a: int, *, scale: int) -> None:
    txgreen.block_on(task.deferLater(reactor, 0, lambda: None))
    raise ValueError(f"main failed with {a * scale}")


async def user_async_main(a: int, *, scale: int) -> tuple[int, bool]:
    total = await task.deferLater(reactor, 0.01, lambda: a * scale)
    return total, reactor.running


if mode == "ok":
    result = txgreen.run(user_main, 6, scale=7)
    say("run returned:", repr(result), "| running:", reactor.running)
    try:
        txgreen.run(nested_main)
    except txgreen.ReactorStopped as e:
        say("run again:", type(e).__name__, "-", e)
elif mode == "async":
    # Wrong first: the coroutine instead of the function, and something not callable at all.
    for wrong in (user_async_main(1, scale=1), 42):
        try:
            txgreen.run(wrong)  # type: ignore[call-overload]
        except TypeError as e:
            say("wrong:", type(e).__name__, "-", e)
    say("run returned:", repr(txgreen.run(user_async_main, 6, scale=7)))
elif mode == "raise":
    txgreen.run(user_failing_main, 6, scale=7)
    say("not reached")
else:
    raise SystemExit(f"unknown mode {mode!r}")
