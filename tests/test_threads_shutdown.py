"""Thread helpers at shutdown and on Ctrl-C, in subprocesses (tests/scripts/threads_shutdown.py).

- ``pending``, per reactor: every kind of waiter (green and OS thread) gets ReactorStopped when
  the reactor stops, the jobs run on to their end without leaking a thread, a job still queued
  never runs, and after the stop each call fails at once instead of hanging.
- Ctrl-C during a long ``call_in_thread``: on the reactor's pool the green thread is woken at
  once but the process exits only when the job ends (Twisted joins its pool's workers), after
  saying so on stderr; on a ``DaemonThreadPool`` it exits at once and the stuck worker is
  abandoned.  (A second Ctrl-C cutting the wait short: tests/test_shutdown_ends.py.)
"""

from __future__ import annotations

import json
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from support import (
    MAIN_LOOPS,
    REACTOR_CLASS,
    REACTORS,
    SCRIPT_TEST_MARKS,
    TIMEOUT,
    in_parallel,
    reaped,
    run_script,
    start_script,
)

pytestmark = SCRIPT_TEST_MARKS

STOPPED = (
    "ReactorStopped: the reactor has stopped, so this call can never complete; "
    "green threads cannot block once the reactor is shut down"
)


def queue_stopped(what: str) -> str:
    return (
        f"ReactorStopped: ThreadQueue.{what}() would have to wait, but the reactor has stopped, "
        "so nothing could ever wake it"
    )


def pending_report(reactor: str) -> dict[str, Any]:
    # A waiter that ReactorStopped failed to release shows up as the script's timeout.
    got = run_script("threads_shutdown.py", reactor, "pending")
    assert (got.returncode, got.stderr) == (0, ""), got.stdout
    lines = got.stdout.splitlines()
    assert lines[0] == f"reactor: {REACTOR_CLASS[reactor]}"
    assert lines[1] == "all parked"
    assert lines[3] == "atexit: threads ['MainThread']"  # no leftover OS thread
    report: dict[str, Any] = json.loads(lines[2])
    return report


@pytest.fixture(scope="module")
def reports() -> dict[str, dict[str, Any]]:
    return in_parallel(pending_report, REACTORS)


# -- Ctrl-C ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sigint_procs() -> Iterator[dict[tuple[str, str], subprocess.Popen[str]]]:
    modes = ["sigint-reactor-pool", "sigint-daemon-pool"]
    procs = {(r, m): start_script("threads_shutdown.py", r, m) for r in MAIN_LOOPS for m in modes}
    with reaped(procs):
        yield procs


def interrupt_when_the_job_runs(p: subprocess.Popen[str]) -> tuple[list[str], str, float]:
    """Send SIGINT once the job has started; (stdout lines, stderr, seconds to the exit)."""
    assert p.stdout is not None
    lines: list[str] = []
    watchdog = threading.Timer(TIMEOUT, p.kill)  # a hung script: readline() then sees EOF
    watchdog.start()
    try:
        while not (lines and lines[-1] == "job started"):
            line = p.stdout.readline()
            assert line, f"the script ended before its job started; got {lines}"
            lines.append(line.rstrip("\n"))
        sent = time.monotonic()
        p.send_signal(signal.SIGINT)
        out, err = p.communicate(timeout=TIMEOUT)
        took = time.monotonic() - sent
    finally:
        watchdog.cancel()
    return lines + out.splitlines(), err, took


@pytest.mark.parametrize(
    ("mode", "ending", "took_range", "notice"),
    [
        # The green thread is woken at once, before the job ends; Twisted then joins its pool's
        # workers during shutdown, so the process ends only once the job has run its last half
        # second (a job that ends within the wait is not cut short), and one line on stderr
        # says what it waits for.
        pytest.param(
            "sigint-reactor-pool",
            ["job ended", "run raised KeyboardInterrupt", "atexit: threads ['MainThread']"],
            (0.5, 10),
            "txgreen: Ctrl-C: stopping; waiting for 1 thread job to finish "
            "(Ctrl-C again exits at once)\n",
            id="reactor-pool-waits-for-the-running-job",
        ),
        # The 60 s job is abandoned: its daemon worker is still alive at exit, and dies with the
        # process.  Nothing waits for it, so there is nothing to say.
        pytest.param(
            "sigint-daemon-pool",
            [
                "run raised KeyboardInterrupt",
                "atexit: threads ['MainThread', 'PoolThread-stuck-0']",
            ],
            (0, 5),  # the job had 60 s to go
            "",
            id="daemon-pool-exits-promptly",
        ),
    ],
)
@pytest.mark.parametrize("reactor", MAIN_LOOPS)
def test_ctrl_c_during_a_job(
    sigint_procs: dict[tuple[str, str], subprocess.Popen[str]],
    reactor: str,
    mode: str,
    ending: list[str],
    took_range: tuple[float, float],
    notice: str,
) -> None:
    p = sigint_procs[(reactor, mode)]
    lines, err, took = interrupt_when_the_job_runs(p)
    assert (p.returncode, err) == (0, notice)
    assert lines == [
        f"reactor: {REACTOR_CLASS[reactor]}",
        "job started",
        "main: ReactorStopped",
        *ending,
    ]
    low, high = took_range
    assert low < took < high
