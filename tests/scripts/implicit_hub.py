"""Implicit hub: a plain script blocks from its main greenlet and never starts the reactor.

The first ``block_on`` starts the reactor in a hub greenlet; at interpreter exit txgreen's
atexit hook stops the reactor it started, so the shutdown trigger runs and a green thread still
blocked then gets ``ReactorStopped``.  Usage: ``implicit_hub.py REACTOR``.
"""

from __future__ import annotations

import sys
from typing import Any

import reactor_choice

say = reactor_choice.say
say("reactor:", reactor_choice.install(sys.argv[1]))

from greenlet import getcurrent  # noqa: E402
from twisted.internet import defer, task  # noqa: E402
from twisted.internet import reactor as _reactor  # noqa: E402

import txgreen  # noqa: E402

reactor: Any = _reactor  # the installed reactor, untyped (Twisted's is an interface)

main_greenlet = getcurrent()
reactor.addSystemEventTrigger("before", "shutdown", say, "trigger: before shutdown")
reactor.addSystemEventTrigger("after", "shutdown", say, "trigger: after shutdown")
say("running before first block:", reactor.running)

# 1. block_on from the main greenlet starts the reactor and returns the result.
value = txgreen.block_on(task.deferLater(reactor, 0.01, lambda: "deferLater result"))
say(
    "block_on:",
    value,
    "| running:",
    reactor.running,
    "| main greenlet:",
    getcurrent() is main_greenlet,
)


# 2. spawn from the main greenlet, then block on the thread.
def worker(a: int, b: int) -> str:
    txgreen.sleep(0.01)
    here = txgreen.block_on(task.deferLater(reactor, 0, lambda: a + b))
    return f"worker got {here} in {type(getcurrent()).__name__}"


gt = txgreen.spawn(worker, 2, b=3)
say("get:", gt.get())


# 3. a green thread still blocked at exit is woken by the shutdown with ReactorStopped.
def lingering() -> None:
    try:
        txgreen.block_on(defer.Deferred())
    except txgreen.ReactorStopped as e:
        say("lingering:", type(e).__name__)
    else:
        say("lingering: returned")


txgreen.spawn(lingering)
txgreen.sleep(0)  # let it start and block
say("main done")
