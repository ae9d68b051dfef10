"""What thread helpers do when the reactor stops: a ``txgreen.run`` program, per reactor.

Usage: ``threads_shutdown.py REACTOR MODE`` where MODE is

- ``pending``: park a green thread in ``call_in_thread`` (its job blocked in the reactor's
  pool), one in ``call_in_thread`` whose job is still queued behind a busy dedicated pool, a
  green ``ThreadQueue.get``, an OS thread in ``ThreadQueue.get``, an OS thread in a full
  ``ThreadQueue.put`` and an OS thread in ``call_in_green``; then let ``main`` return.  After
  ``run`` returns, try each kind of call once more.  Prints one JSON report as its last line.
- ``sigint-reactor-pool``: ``main`` waits in ``call_in_thread`` for a job on the reactor's pool
  that prints ``job started`` and then runs until 0.5 s after the reactor starts stopping; the
  test sends SIGINT.
- ``sigint-daemon-pool``: the same with a 60 s job on a ``DaemonThreadPool``.

An atexit hook prints the OS threads still alive.
"""

from __future__ import annotations

import atexit
import json
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import reactor_choice

say = reactor_choice.say
say("reactor:", reactor_choice.install(sys.argv[1]))
mode = sys.argv[2]

from twisted.internet import defer  # noqa: E402
from twisted.internet import reactor as _reactor  # noqa: E402
from twisted.python.threadpool import ThreadPool  # noqa: E402

import txgreen  # noqa: E402

reactor: Any = _reactor


def at_exit() -> None:
    say("atexit: threads", reactor_choice.thread_names())


atexit.register(at_exit)


def outcome(fn: Callable[[], object]) -> str:
    try:
        return f"returned {fn()!r}"
    except BaseException as e:
        return f"{type(e).__name__}: {e}"


def pending() -> None:
    report: dict[str, Any] = {}
    gate = threading.Event()  # opened by a shutdown trigger that runs after txgreen's
    started: dict[str, defer.Deferred[None]] = {
        k: defer.Deferred() for k in ("job", "busy", "hub fn")
    }

    def job(key: str) -> str:
        reactor.callFromThread(started[key].callback, None)
        gate.wait(10)
        report[f"{key} ended"] = True
        return f"late result of {key}"

    queued_ran: list[str] = []
    pool = ThreadPool(1, 1, "dedicated")
    q_green: txgreen.ThreadQueue[int] = txgreen.ThreadQueue()
    q_os: txgreen.ThreadQueue[int] = txgreen.ThreadQueue()
    q_full: txgreen.ThreadQueue[int] = txgreen.ThreadQueue(maxsize=1)
    q_full.put_nowait(0)

    def record(key: str, fn: Callable[[], object]) -> None:
        report[key] = outcome(fn)

    def hub_fn() -> None:
        reactor.callFromThread(started["hub fn"].callback, None)
        record("call_in_green's green thread", lambda: txgreen.block_on(defer.Deferred()))

    os_threads = [
        threading.Thread(target=record, args=("OS get", q_os.get)),
        threading.Thread(target=record, args=("OS put", lambda: q_full.put(1))),
        threading.Thread(
            target=record, args=("call_in_green", lambda: txgreen.call_in_green(hub_fn))
        ),
    ]

    def main() -> None:
        pool.start()
        reactor.addSystemEventTrigger("during", "shutdown", pool.stop)
        reactor.addSystemEventTrigger("before", "shutdown", gate.set)
        txgreen.spawn(record, "call_in_thread", lambda: txgreen.call_in_thread(job, "job"))
        txgreen.spawn(txgreen.call_in_thread, job, "busy", pool=pool)
        txgreen.block_on(started["busy"])
        txgreen.spawn(
            record, "queued call", lambda: txgreen.call_in_thread(queued_ran.append, 1, pool=pool)
        )
        txgreen.spawn(record, "green get", q_green.get)
        for t in os_threads:
            t.start()
        txgreen.block_on(defer.gatherResults([started["job"], started["hub fn"]]))
        with txgreen.Timeout(10):
            while (q_os.getters_waiting, q_full.putters_waiting, q_green.getters_waiting) != (
                1,
                1,
                1,
            ):
                txgreen.sleep(0.001)
        say("all parked")

    txgreen.run(main)
    for t in os_threads:
        t.join(10)
    report["OS threads alive after run"] = [t.name for t in os_threads if t.is_alive()]
    report["queued job ran"] = bool(queued_ran)
    # After the stop: waiting is impossible, taking what is there still works.
    q_os.put_nowait(5)
    after: dict[str, str] = {}
    after["main call_in_thread"] = outcome(lambda: txgreen.call_in_thread(len, "x"))
    after["main get with an item"] = outcome(q_os.get)

    def from_os_thread() -> None:
        after["OS get, empty"] = outcome(q_os.get)
        after["OS put, full"] = outcome(lambda: q_full.put(2))
        after["OS call_in_green"] = outcome(lambda: txgreen.call_in_green(len, "x"))
        after["OS call_in_thread"] = outcome(lambda: txgreen.call_in_thread(len, "x"))

    t = threading.Thread(target=from_os_thread)
    t.start()
    t.join(10)
    report["after stop"] = after
    say(json.dumps(report, sort_keys=True))


def sigint(pool: ThreadPool | None, after_stop: float, seconds: float) -> None:
    stopping = threading.Event()

    def job() -> str:
        say("job started")
        if after_stop:
            stopping.wait(60)  # runs on for ``after_stop`` seconds after the Ctrl-C
            time.sleep(after_stop)
        else:
            time.sleep(seconds)
        say("job ended")
        return "late"

    def main() -> None:
        reactor.addSystemEventTrigger("before", "shutdown", stopping.set)
        if pool is not None:
            pool.start()
            reactor.addSystemEventTrigger("during", "shutdown", pool.stop)
        try:
            txgreen.call_in_thread(job, pool=pool)
        except txgreen.ReactorStopped:
            say("main: ReactorStopped")
            raise

    try:
        txgreen.run(main)
    except KeyboardInterrupt:
        say("run raised KeyboardInterrupt")


if mode == "pending":
    pending()
elif mode == "sigint-reactor-pool":
    sigint(None, 0.5, 0)
elif mode == "sigint-daemon-pool":
    sigint(txgreen.DaemonThreadPool(0, 2, "stuck", stop_timeout=0.2), 0, 60.0)
else:
    raise SystemExit(f"unknown mode {mode!r}")
