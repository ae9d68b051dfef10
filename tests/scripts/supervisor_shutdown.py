"""A supervision tree when the program ends.  Usage: ``supervisor_shutdown.py REACTOR MODE``.

``service``: the supervisor runs as a Twisted service, so the hub stops it gracefully first:
its children's cleanup may still block, and they end in reverse start order.  ``plain``: it
runs in a green thread of its own (``start()``), so at shutdown every thread gets
``ReactorStopped``: the children's ``finally`` blocks still run and nothing is restarted.
``sigterm``: like ``service``, but the process ends on a SIGTERM to itself.  No traceback
either way.
"""

from __future__ import annotations

import os
import signal
import sys

import reactor_choice

say = reactor_choice.say
say("reactor:", reactor_choice.install(sys.argv[1]))
mode = sys.argv[2]

import txgreen  # noqa: E402
from txgreen import ChildSpec, Supervisor  # noqa: E402

starts = {"a": 0, "b": 0}


def worker(name: str) -> None:
    starts[name] += 1
    try:
        txgreen.Event().wait()
    except txgreen.ReactorStopped:
        say(f"{name}: ReactorStopped")
        raise
    finally:
        if mode != "plain":
            txgreen.sleep(0.01)  # blocking cleanup: allowed in a graceful stop
        say(f"{name} cleaned up")


def main() -> None:
    sup = Supervisor([ChildSpec("a", worker, ("a",)), ChildSpec("b", worker, ("b",))])
    if mode == "plain":
        sup.start()
    else:
        sup.startService()
    txgreen.sleep(0.05)
    say(f"running: {sup.count_children()['active']}")
    if mode == "sigterm":
        os.kill(os.getpid(), signal.SIGTERM)
        txgreen.Event().wait()
    say("main returns")


txgreen.run(main)
say(f"exited; starts {starts}")
