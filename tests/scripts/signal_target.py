"""A ``txgreen.run`` program that blocks until something ends it.

Usage: ``signal_target.py REACTOR MODE`` where MODE is

- ``wait``: print ``ready`` once main and a helper green thread are blocked and a
  ``deferToThread`` worker has run, then wait for a signal (the test sends SIGINT or SIGTERM);
- ``green-keyboardinterrupt`` / ``green-systemexit``: a non-main green thread raises
  ``KeyboardInterrupt`` / ``SystemExit(3)`` while main is blocked.

Shutdown triggers, the blocked threads' ``finally`` blocks and an atexit hook print what
happened; the atexit hook also lists the OS threads and child processes still alive.
"""

from __future__ import annotations

import atexit
import sys
from typing import Any

import reactor_choice

say = reactor_choice.say
blocked = reactor_choice.blocked
say("reactor:", reactor_choice.install(sys.argv[1]))
mode = sys.argv[2]

from twisted.internet import reactor as _reactor  # noqa: E402
from twisted.internet import threads  # noqa: E402

import txgreen  # noqa: E402

reactor: Any = _reactor  # the installed reactor, untyped (Twisted's is an interface)


def at_exit() -> None:
    say("atexit: threads", reactor_choice.thread_names(), "children", reactor_choice.child_pids())


atexit.register(at_exit)
reactor.addSystemEventTrigger("before", "shutdown", say, "trigger: before shutdown")
reactor.addSystemEventTrigger("after", "shutdown", say, "trigger: after shutdown")


def bad_thread(exc: BaseException) -> None:
    txgreen.sleep(0.01)
    raise exc


def main() -> None:
    helper = txgreen.spawn(blocked, "helper")
    say("worker:", txgreen.block_on(threads.deferToThread(lambda: "ran in a pool thread")))
    if mode == "green-keyboardinterrupt":
        txgreen.spawn(bad_thread, KeyboardInterrupt("from a green thread"))
    elif mode == "green-systemexit":
        txgreen.spawn(bad_thread, SystemExit(3))
    elif mode != "wait":
        raise SystemExit(f"unknown mode {mode!r}")
    txgreen.sleep(0)
    say("ready", "helper parked:", not helper.dead)
    blocked("main")


try:
    txgreen.run(main)
except BaseException as e:
    say("run raised:", type(e).__name__, e.args)
    raise
else:
    say("run returned")
