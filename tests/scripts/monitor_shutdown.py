"""A ``BlockingWatch`` at the end of a program (tests/test_monitor.py).

Usage: ``monitor_shutdown.py REACTOR MODE`` where MODE is

- ``run``: ``txgreen.run(main)``; ``main`` starts a watch from ``TXGREEN_WATCH_BLOCKING``
  (the test sets it to 0.05), blocks the reactor with ``time.sleep(0.2)``, waits for the two
  reports (seen by a log observer; Twisted's logging is never started, so the watch also
  prints them to stderr) and returns without stopping the watch: the reactor's shutdown must.
- ``never-run``: start a watch, never run the reactor, and exit without stopping it: the
  monitor is a daemon thread, so the process exits anyway (and nothing is reported: a reactor
  that is not running is not blocked).

An atexit hook prints the OS threads still alive.
"""

from __future__ import annotations

import atexit
import sys
import threading
import time

import reactor_choice

say = reactor_choice.say
say("reactor:", reactor_choice.install(sys.argv[1]))
mode = sys.argv[2]

from twisted.logger import LogEvent, globalLogPublisher  # noqa: E402

import txgreen  # noqa: E402
from txgreen._monitor import (  # noqa: E402
    BlockingReport,
    BlockingWatch,
    watch_blocking,
    watch_blocking_from_env,
)


def at_exit() -> None:
    say("atexit: threads", reactor_choice.thread_names())


atexit.register(at_exit)


def monitor_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name == "txgreen-monitor"]


reports: list[BlockingReport] = []


def observer(event: LogEvent) -> None:  # in the monitor thread
    if event.get("log_namespace") == "txgreen.monitor":
        reports.append(event["report"])


def main() -> BlockingWatch:
    watch = watch_blocking_from_env()
    assert watch is not None
    say(f"watch from env: threshold {watch.threshold}, running {watch.running}")
    time.sleep(0.2)  # blocks the reactor
    with txgreen.Timeout(5):
        while len(reports) < 2:
            txgreen.sleep(0.01)
    say("reports:", ", ".join("ended" if r.ended else f"blocked {r.where}" for r in reports))
    return watch  # still running: the reactor's shutdown must stop it


def run() -> None:
    globalLogPublisher.addObserver(observer)  # type: ignore[arg-type]
    watch = txgreen.run(main)
    say(f"after run: running {watch.running}, monitor threads {monitor_threads()}")


def never_run() -> None:
    got: list[BlockingReport] = []
    watch = watch_blocking(0.05, on_block=got.append)
    time.sleep(0.15)
    say(f"watch running {watch.running}, reports {got}")


if mode == "run":
    run()
elif mode == "never-run":
    never_run()
else:
    raise SystemExit(f"unknown mode {mode!r}")
