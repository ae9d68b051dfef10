"""The reactor stops while a ``TaskGroup`` waits: nothing hangs and no error is lost.

Usage: ``taskgroup_stop.py MODE``; MODE ``body`` stops the reactor while the body blocks,
``exit`` while the block's exit waits for its threads.  One child ignores nothing, one raises
during its cleanup.  Prints what each thread saw and what the block raised.
"""

from __future__ import annotations

import sys
from typing import Any, cast

from twisted.internet import reactor as _reactor
from twisted.logger import ILogObserver, globalLogBeginner, textFileLogObserver

import txgreen

reactor: Any = _reactor
mode = sys.argv[1]
observer = cast(ILogObserver, textFileLogObserver(sys.stdout))
globalLogBeginner.beginLoggingTo([observer], redirectStandardIO=False)


def say(*words: object) -> None:
    print(*words, flush=True)


def quiet() -> None:
    try:
        txgreen.sleep(60)
    except BaseException as e:
        say("quiet child saw", type(e).__name__)
        raise


def messy() -> None:
    try:
        txgreen.sleep(60)
    except BaseException as e:
        say("messy child saw", type(e).__name__)
        raise ValueError("cleanup failed") from None


def main() -> None:
    reactor.callLater(0.2, reactor.stop)
    try:
        with txgreen.TaskGroup() as tg:
            tg.spawn(quiet)
            tg.spawn(messy)
            if mode == "body":
                txgreen.sleep(60)
    except BaseException as e:
        say("block raised", repr(e))
        raise
    say("block ended quietly")


try:
    txgreen.run(main)
except BaseException as e:
    say("run raised", type(e).__name__)
say("threads left", len(txgreen.get_hub().threads))
