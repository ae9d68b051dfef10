"""Shutdown: what every kind of blocked green thread gets when the reactor stops.

``txgreen.run(main)`` starts green threads that block in different ways, lets them all park,
and returns; ``run`` then stops the reactor.  Each thread records what its blocking call
raised.  After ``run`` the script tries blocking, spawning and running again.  The report is
one JSON object on the last line of stdout.  Usage: ``shutdown_report.py REACTOR``.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import reactor_choice

reactor_name = reactor_choice.install(sys.argv[1])

from twisted.internet import defer, threads  # noqa: E402
from twisted.internet import reactor as _reactor  # noqa: E402

import txgreen  # noqa: E402

reactor: Any = _reactor  # the installed reactor, untyped (Twisted's is an interface)

report: dict[str, Any] = {"reactor": reactor_name, "events": []}
events: list[str] = report["events"]
lock = threading.Lock()


def record(key: str, value: object) -> None:
    with lock:
        report[key] = value


def outcome(call: Callable[[], object]) -> str:
    """'returned VALUE' or 'ExceptionName: message' for ``call()``."""
    try:
        value = call()
    except BaseException as e:
        return f"{type(e).__name__}: {e}"
    return f"returned {value!r}"


def trigger() -> None:
    events.append("before shutdown trigger")


reactor.addSystemEventTrigger("before", "shutdown", trigger)


def on_deferred(key: str) -> None:
    record(key, outcome(lambda: txgreen.block_on(defer.Deferred())))


def on_deferred_with_timeout() -> None:
    record("deferred_with_timeout", outcome(lambda: txgreen.block_on(defer.Deferred(), 60)))


def sleeper() -> None:
    record("sleep", outcome(lambda: txgreen.sleep(3600)))


def catch_and_block_again() -> None:
    first = outcome(lambda: txgreen.block_on(defer.Deferred()))
    start = time.monotonic()
    again = [
        outcome(lambda: txgreen.block_on(defer.Deferred())),
        outcome(lambda: txgreen.sleep(0)),
        outcome(lambda: txgreen.sleep(5)),
        outcome(lambda: txgreen.spawn(print)),
    ]
    record("catch_and_block_again", [first, *again])
    record("catch_and_block_again_seconds", time.monotonic() - start)


def cleanly_stopping_target() -> str:
    try:
        txgreen.block_on(defer.Deferred())
    except txgreen.ReactorStopped:
        return "target cleaned up"
    return "target: not stopped"


def thread_worker() -> None:
    # In a deferToThread worker (an OS thread) block_on waits like blockingCallFromThread.
    record("worker_thread_is_main", threading.current_thread() is threading.main_thread())

    async def park() -> None:
        # Runs in the reactor thread once the worker is registered as waiting.
        parked_worker.callback(None)
        await defer.Deferred()

    record("worker", outcome(lambda: txgreen.block_on(park())))


parked_worker: defer.Deferred[None] = defer.Deferred()
never_ran: list[str] = []


def unstarted() -> None:
    never_ran.append("unstarted ran")


def main() -> dict[str, txgreen.GreenThread[Any]]:
    gts: dict[str, txgreen.GreenThread[Any]] = {}
    gts["deferred_1"] = txgreen.spawn(on_deferred, "deferred_1")
    gts["deferred_2"] = txgreen.spawn(on_deferred, "deferred_2")
    gts["deferred_with_timeout"] = txgreen.spawn(on_deferred_with_timeout)
    gts["sleep"] = txgreen.spawn(sleeper)
    gts["catch_and_block_again"] = txgreen.spawn(catch_and_block_again)
    # Joiners parked before and after the thread they wait for (which itself parks, catches
    # ReactorStopped and returns normally).
    later: list[txgreen.GreenThread[str]] = []
    gts["join_before"] = txgreen.spawn(lambda: record("join_before", outcome(later[0].join)))
    gts["get_before"] = txgreen.spawn(lambda: record("get_before", outcome(later[0].get)))
    gts["target"] = target = txgreen.spawn(cleanly_stopping_target)
    later.append(target)
    gts["join_after"] = txgreen.spawn(lambda: record("join_after", outcome(target.join)))
    gts["get_after"] = txgreen.spawn(lambda: record("get_after", outcome(target.get)))
    gts["to_thread"] = txgreen.spawn(
        lambda: record(
            "to_thread", outcome(lambda: txgreen.block_on(threads.deferToThread(thread_worker)))
        )
    )
    gts["unstarted"] = txgreen.spawn_later(3600, unstarted)
    gts["uncaught"] = txgreen.spawn(txgreen.block_on, defer.Deferred())
    # Every spawned thread starts and parks before this returns (the ready queue is FIFO);
    # the deferToThread worker tells us once it is registered as waiting.
    txgreen.sleep(0)
    txgreen.block_on(parked_worker)
    events.append("all parked")
    record("dead_before_stop", sorted(k for k, g in gts.items() if g.dead))
    return gts


gts = txgreen.run(main)
events.append("run returned")
report["thread_states"] = {
    k: {
        "dead": g.dead,
        "successful": g.successful(),
        "exception": None if g.exception is None else type(g.exception).__name__,
        "value": g.value,
    }
    for k, g in gts.items()
}
report["unstarted_ran"] = never_ran
report["after"] = {
    "block_on": outcome(lambda: txgreen.block_on(defer.Deferred())),
    "sleep": outcome(lambda: txgreen.sleep(0)),
    "spawn": outcome(lambda: txgreen.spawn(print)),
    "spawn_later": outcome(lambda: txgreen.spawn_later(1, print)),
    "run": outcome(lambda: txgreen.run(print)),
}


def os_thread_blocks() -> None:
    report["after"]["block_on_from_os_thread"] = outcome(lambda: txgreen.block_on(defer.Deferred()))


late = threading.Thread(target=os_thread_blocks)
late.start()
late.join()
report["threads_left"] = reactor_choice.thread_names()
print(json.dumps(report, sort_keys=True))
