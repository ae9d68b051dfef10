"""Signals and exit exceptions end a ``txgreen.run`` program promptly and cleanly, per reactor.

tests/scripts/signal_target.py blocks in ``block_on`` until something ends it; its shutdown
triggers, the woken threads and an atexit hook (listing live OS threads and child processes)
print what happened.  All the processes start at once; each test then drives its own.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import threading
import time
from collections.abc import Iterator

import pytest

from support import (
    MAIN_LOOPS,
    REACTOR_CLASS,
    REACTORS,
    SCRIPT_TEST_MARKS,
    TIMEOUT,
    reaped,
    start_script,
)

pytestmark = SCRIPT_TEST_MARKS

SIGNALS = [signal.SIGINT, signal.SIGTERM]
# An exit exception in a green thread does not involve the reactor's signal handling: these
# runs use MAIN_LOOPS only.
GREEN_EXITS = ["green-keyboardinterrupt", "green-systemexit"]
PROMPT = 5.0  # seconds from the signal to the exit


def start(reactor: str, mode: str) -> subprocess.Popen[str]:
    return start_script("signal_target.py", reactor, mode)


@pytest.fixture(scope="module")
def procs() -> Iterator[dict[tuple[str, str, int], subprocess.Popen[str]]]:
    with reaped(
        {
            **{(r, "wait", int(s)): start(r, "wait") for r in REACTORS for s in SIGNALS},
            **{(r, mode, 0): start(r, mode) for r in MAIN_LOOPS for mode in GREEN_EXITS},
        }
    ) as started:
        yield started


def read_until_ready(p: subprocess.Popen[str]) -> list[str]:
    """Read ``p``'s stdout lines up to and including the one starting with 'ready'."""
    assert p.stdout is not None
    lines: list[str] = []
    watchdog = threading.Timer(TIMEOUT, p.kill)  # a hung script: readline() then sees EOF
    watchdog.start()
    try:
        while not (lines and lines[-1].startswith("ready")):
            line = p.stdout.readline()
            assert line, f"the script ended before it was ready; got {lines}"
            lines.append(line.rstrip("\n"))
    finally:
        watchdog.cancel()
    return lines


def expected_stdout(reactor: str, raised: str) -> list[str]:
    return [
        f"reactor: {REACTOR_CLASS[reactor]}",
        "worker: ran in a pool thread",
        "ready helper parked: True",
        "trigger: before shutdown",
        # Both green threads blocked at the stop are woken, in the order they were spawned.
        "main: woken by ReactorStopped",
        "helper: woken by ReactorStopped",
        "trigger: after shutdown",
        f"run raised: {raised}",
        # Nothing left behind: only the main thread (the pool's worker is gone), no children.
        "atexit: threads ['MainThread'] children []",
    ]


@pytest.mark.parametrize("reactor", REACTORS)
@pytest.mark.parametrize("sig", SIGNALS, ids=["SIGINT", "SIGTERM"])
def test_signal_stops_blocked_program(
    procs: dict[tuple[str, str, int], subprocess.Popen[str]], reactor: str, sig: signal.Signals
) -> None:
    p = procs[reactor, "wait", int(sig)]
    before = read_until_ready(p)
    sent = time.monotonic()
    os.kill(p.pid, sig)
    out, err = p.communicate(timeout=TIMEOUT)
    assert time.monotonic() - sent < PROMPT
    lines = before + out.splitlines()
    if sig == signal.SIGINT:
        assert lines == expected_stdout(reactor, "KeyboardInterrupt ()")
        # KeyboardInterrupt escaped from txgreen.run: Python printed it and, as for any
        # uncaught KeyboardInterrupt, ended by SIGINT.
        assert p.returncode == -signal.SIGINT
        assert err.startswith("Traceback (most recent call last):\n")
        assert re.search(r'File ".*signal_target\.py", line \d+, in <module>\n +txgreen\.run', err)
        assert err.endswith("\nKeyboardInterrupt\n")
    else:
        assert lines == expected_stdout(reactor, "SystemExit (143,)")
        assert (p.returncode, err) == (143, "")


@pytest.mark.parametrize("reactor", MAIN_LOOPS)
@pytest.mark.parametrize(
    ("mode", "raised"),
    [
        ("green-keyboardinterrupt", "KeyboardInterrupt ('from a green thread',)"),
        ("green-systemexit", "SystemExit (3,)"),
    ],
    ids=["KeyboardInterrupt", "SystemExit"],
)
def test_exit_exception_in_green_thread_stops_program(
    procs: dict[tuple[str, str, int], subprocess.Popen[str]], reactor: str, mode: str, raised: str
) -> None:
    p = procs[reactor, mode, 0]
    out, err = p.communicate(timeout=TIMEOUT)
    assert out.splitlines() == expected_stdout(reactor, raised)
    if mode == "green-keyboardinterrupt":
        assert p.returncode == -signal.SIGINT
        # The traceback is the green thread's: it shows where the exception was raised.
        assert re.search(r'File ".*signal_target\.py", line \d+, in bad_thread\n +raise exc\n', err)
        assert err.endswith("\nKeyboardInterrupt: from a green thread\n")
    else:
        assert (p.returncode, err) == (3, "")
