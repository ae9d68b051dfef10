"""Start modes mixed up, as a new user may.  Usage: ``mixed_modes.py run-after-implicit|never-ran``.

``run-after-implicit``: a blocking call starts the reactor implicitly, then the script calls
``reactor.run()`` too: txgreen's ReactorAlreadyRunning says what happened and what to do.
``never-ran``: green threads are spawned but nothing ever starts the reactor: a
NeverRanWarning at exit says so.
"""

from __future__ import annotations

import sys
from typing import Any

from twisted.internet import reactor as _reactor
from twisted.internet import task

import txgreen

reactor: Any = _reactor
mode = sys.argv[1]

if mode == "run-after-implicit":
    print("block_on:", txgreen.block_on(task.deferLater(reactor, 0.01, lambda: 42)), flush=True)
    try:
        reactor.run()
    except txgreen.ReactorAlreadyRunning as e:
        from twisted.internet.error import ReactorAlreadyRunning

        print("caught as Twisted's too:", isinstance(e, ReactorAlreadyRunning), flush=True)
        raise
elif mode == "never-ran":
    for name in ("first", "second"):
        txgreen.spawn(print, name, "ran")
    print("end of script", flush=True)
else:
    raise SystemExit(f"unknown mode {mode!r}")
