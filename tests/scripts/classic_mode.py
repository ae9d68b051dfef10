"""Classic mode: the script calls ``reactor.run()`` itself, so the main greenlet is the hub.

Green threads are spawned from reactor callbacks and block there; blocking in a reactor
callback (the hub) raises BlockingInHubError; ``txgreen.run`` raises ReactorAlreadyRunning;
``reactor.stop()`` from a green thread ends ``reactor.run()`` and the script exits normally.
Usage: ``classic_mode.py REACTOR``.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
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


def in_hub_errors() -> None:
    checks: list[tuple[str, Callable[[], object]]] = [
        ("block_on", lambda: txgreen.block_on(defer.Deferred())),
        ("sleep", lambda: txgreen.sleep(0)),
        ("run", lambda: txgreen.run(lambda: None)),
    ]
    for what, call in checks:
        try:
            call()
        except (txgreen.BlockingInHubError, txgreen.ReactorAlreadyRunning) as e:
            say(f"hub {what}:", type(e).__name__, "-", e)
        else:
            say(f"hub {what}: no error")


def client(n: int) -> int:
    txgreen.sleep(0.01 * n)
    got = txgreen.block_on(task.deferLater(reactor, 0, lambda: n * 10))
    say(f"client {n}: got {got} in a green thread: {type(getcurrent()).__name__}")
    return got


def conductor() -> None:
    threads = [txgreen.spawn(client, n) for n in (1, 2, 3)]
    say("conductor: results", [t.get() for t in threads])
    reactor.stop()


def on_running() -> None:
    say("callWhenRunning: in main greenlet:", getcurrent() is main_greenlet)
    in_hub_errors()
    gt = txgreen.spawn(conductor)
    try:
        gt.join()
    except txgreen.BlockingInHubError as e:
        say("hub join:", type(e).__name__)


reactor.callWhenRunning(on_running)
reactor.run()
say("reactor.run returned")
try:
    txgreen.spawn(lambda: None)
except txgreen.ReactorStopped as e:
    say("spawn after stop:", type(e).__name__, "-", e)
