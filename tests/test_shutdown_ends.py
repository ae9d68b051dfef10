"""Shutdown always ends, and the user can always get out: subprocesses on every reactor.

tests/scripts/shutdown_ends.py runs one program per mode; these tests drive them (signals,
connection attempts) with a time bound each:

- a shutdown that waits for OS threads (a ``call_in_thread`` job, a ``block_on`` worker, a
  ``ThreadQueue`` producer) says so in one line on stderr, and a second Ctrl-C or a SIGTERM
  ends it at once with status 130 / 143;
- Ctrl-C interrupts a green thread running CPU-bound code within a second;
- green threads of ``defer_to_green`` / ``@green`` blocked at shutdown end with
  ``ReactorStopped`` without an "Unhandled error in Deferred" report;
- ``block_on`` from a worker thread before the reactor runs raises ``NotInReactorThreadError``;
- ``listen`` / ``serve_wsgi`` ports refuse connections as soon as the shutdown starts;
- ``callback_queue`` on a connection already closed ends at once.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable

import pytest

from support import (
    REACTOR_CLASS,
    REACTORS,
    SCRIPT_TEST_MARKS,
    TIMEOUT,
    Finished,
    in_parallel,
    reaped,
    run_script,
    start_script,
)

pytestmark = SCRIPT_TEST_MARKS

SCRIPT = "shutdown_ends.py"
# The modes that run to their end by themselves: all at once, once per reactor.
RUN_MODES = ["green-pending", "worker-before-run", "callback-queue", "handlers"]


@pytest.fixture(scope="module")
def finished() -> dict[tuple[str, str], Finished]:
    keys = [(mode, r) for mode in RUN_MODES for r in REACTORS]
    return in_parallel(lambda key: run_script(SCRIPT, key[1], key[0]), keys)


def read_line(p: subprocess.Popen[str], stream: str, within: float) -> str:
    """The next line of ``p``'s stdout or stderr; "" if none comes ``within`` seconds (``p`` is
    killed then, so that the read ends)."""
    pipe = p.stdout if stream == "stdout" else p.stderr
    assert pipe is not None
    watchdog = threading.Timer(within, p.kill)
    watchdog.start()
    try:
        return pipe.readline().rstrip("\n")
    finally:
        watchdog.cancel()


def finish(p: subprocess.Popen[str]) -> tuple[str, str]:
    """The rest of ``p``'s stdout and stderr once it has ended (killed after TIMEOUT).

    Reads through the same buffered pipes as :func:`read_line` (``communicate`` would skip
    what they have buffered already).
    """
    assert p.stdout is not None
    assert p.stderr is not None
    watchdog = threading.Timer(TIMEOUT, p.kill)
    watchdog.start()
    try:
        out = p.stdout.read()
        err = p.stderr.read()
        p.wait()
    finally:
        watchdog.cancel()
    return out, err


def read_until(p: subprocess.Popen[str], done: Callable[[str], bool], within: float) -> list[str]:
    """``p``'s stdout lines up to the one ``done`` accepts (all of them, if it ended first)."""
    lines: list[str] = []
    deadline = time.monotonic() + within
    while not (lines and done(lines[-1])):
        line = read_line(p, "stdout", max(deadline - time.monotonic(), 0.01))
        if not line:
            break
        lines.append(line)
    return lines


# -- a second signal ends a shutdown that waits for OS threads --------------------------------

NOTICE = {
    "job": "txgreen: Ctrl-C: stopping; waiting for 1 thread job to finish "
    "(Ctrl-C again exits at once)",
    "os-threads": "txgreen: Ctrl-C: stopping; waiting for 1 thread job and 1 other OS thread "
    "to finish (Ctrl-C again exits at once)",
}
WOKEN = {"job": "main: ReactorStopped", "os-threads": "main: woken by ReactorStopped"}


@pytest.mark.parametrize("reactor", REACTORS)
@pytest.mark.parametrize("mode", ["job", "os-threads"])
@pytest.mark.parametrize("second", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_second_signal_ends_a_shutdown_waiting_for_threads(
    reactor: str, mode: str, second: signal.Signals
) -> None:
    with reaped({0: start_script(SCRIPT, reactor, mode)}) as procs:
        p = procs[0]
        before = read_until(p, lambda line: line == "ready", TIMEOUT)
        assert before[-1:] == ["ready"], before
        p.send_signal(signal.SIGINT)
        # The green threads are woken as before, and one line says what the exit waits for.
        assert read_line(p, "stderr", 5) == NOTICE[mode]
        time.sleep(0.3)
        assert p.poll() is None  # it does wait (a job that ends meanwhile would still finish)
        sent = time.monotonic()
        p.send_signal(second)
        out, err = finish(p)
        took = time.monotonic() - sent
    assert p.returncode == 128 + second
    assert took < 2
    assert err == ""
    lines = before + out.splitlines()
    assert lines[0] == f"reactor: {REACTOR_CLASS[reactor]}"
    assert "trigger: before shutdown" in lines
    assert WOKEN[mode] in lines
    assert "job ended" not in lines


# -- Ctrl-C interrupts a busy green thread ------------------------------------------------------


@pytest.mark.parametrize("reactor", REACTORS)
def test_ctrl_c_interrupts_a_busy_green_thread(reactor: str) -> None:
    with reaped({0: start_script(SCRIPT, reactor, "busy")}) as procs:
        p = procs[0]
        before = read_until(p, lambda line: line == "ready", TIMEOUT)
        assert before[-1:] == ["ready"], before
        time.sleep(0.2)  # the green thread spins
        sent = time.monotonic()
        p.send_signal(signal.SIGINT)
        interrupted = read_line(p, "stdout", 5)
        took = time.monotonic() - sent
        assert interrupted == "busy: KeyboardInterrupt"
        assert took < 1
        out, err = finish(p)
    lines = out.splitlines()
    # Then the normal shutdown: blocked threads get ReactorStopped, run raises the interrupt.
    assert lines[0] == "trigger: before shutdown"
    assert sorted(lines[1:3]) == [
        "helper: woken by ReactorStopped",
        "main: woken by ReactorStopped",
    ]
    assert lines[3:] == ["run raised: KeyboardInterrupt"]
    assert p.returncode == -signal.SIGINT
    assert ", in spin\n" in err
    assert err.endswith("\nKeyboardInterrupt\n")


# -- green threads started by reactor-side code, blocked at shutdown ----------------------------


@pytest.mark.parametrize("reactor", REACTORS)
def test_green_threads_blocked_at_shutdown_are_not_unhandled_errors(
    finished: dict[tuple[str, str], Finished], reactor: str
) -> None:
    got = finished["green-pending", reactor]
    assert (got.returncode, got.stderr) == (0, "")  # no "Unhandled error in Deferred"
    lines = got.stdout.splitlines()
    assert lines[0] == f"reactor: {REACTOR_CLASS[reactor]}"
    assert sorted(lines[3:6]) == [
        "defer_to_green: woken by ReactorStopped",
        "responder: woken by ReactorStopped",
        "responder: woken by ReactorStopped",
    ]
    # Their Deferreds still fail with ReactorStopped, for an errback that wants to know.
    assert lines[6:] == ["errback got ReactorStopped", "run returned"]


# -- block_on in a worker thread before the reactor runs ---------------------------------------


@pytest.mark.parametrize("reactor", REACTORS)
def test_block_on_in_a_worker_before_the_reactor_runs(
    finished: dict[tuple[str, str], Finished], reactor: str
) -> None:
    got = finished["worker-before-run", reactor]
    assert (got.returncode, got.stderr) == (0, "")
    # At once, and the reactor was left for txgreen.run to start in the main thread.
    assert got.stdout.splitlines() == [
        f"reactor: {REACTOR_CLASS[reactor]}",
        "worker: NotInReactorThreadError True",
        "trigger: before shutdown",
        "run returned",
    ]


# -- the ports close when the shutdown starts ---------------------------------------------------


def connect(port: int) -> str:
    """What a client connecting to ``port`` gets: the first bytes, or the error's name."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
            if s.send(b"GET / HTTP/1.0\r\n\r\n") and (data := s.recv(100)):
                return "answered " + data.decode().splitlines()[0]
            return "no answer"
    except OSError as e:
        return type(e).__name__


@pytest.mark.parametrize("reactor", REACTORS)
@pytest.mark.parametrize("mode", ["listen", "wsgi"])
def test_ports_refuse_connections_once_the_shutdown_starts(reactor: str, mode: str) -> None:
    with reaped({0: start_script(SCRIPT, reactor, mode)}) as procs:
        p = procs[0]
        before = read_until(p, lambda line: line == "ready", TIMEOUT)
        assert before[-1:] == ["ready"], before
        port = int(before[-2].split()[1])
        answer = "answered hello" if mode == "listen" else "answered HTTP/1.0 200 OK"
        assert connect(port) == answer
        p.send_signal(signal.SIGINT)
        # The shutdown starts, and then waits 1 s (a drain, a thread job): meanwhile the port
        # refuses connections instead of taking ones that nobody would answer.
        assert read_line(p, "stdout", 5) == "trigger: before shutdown"
        time.sleep(0.2)
        assert connect(port) == "ConnectionRefusedError"
        out, err = finish(p)
    assert out.splitlines()[-1] == "run raised: KeyboardInterrupt"
    assert p.returncode == -signal.SIGINT
    assert err.endswith("\nKeyboardInterrupt\n")


# -- callback_queue on a closed connection -----------------------------------------------------


@pytest.mark.parametrize("reactor", REACTORS)
def test_callback_queue_on_a_closed_connection_ends_at_once(
    finished: dict[tuple[str, str], Finished], reactor: str
) -> None:
    got = finished["callback-queue", reactor]
    assert (got.returncode, got.stderr) == (0, "")
    assert got.stdout.splitlines() == [
        f"reactor: {REACTOR_CLASS[reactor]}",
        "closed: True",
        "iterated: []",
        "get raised CallbackQueueClosed: ConnectionDone",
        "at once: True",
        "trigger: before shutdown",
        "run returned",
    ]


# -- txgreen's handlers are there while the reactor runs, Python's after a quiet shutdown -------


@pytest.mark.parametrize("reactor", REACTORS)
def test_python_handlers_are_back_after_a_shutdown_without_signal(
    finished: dict[tuple[str, str], Finished], reactor: str
) -> None:
    got = finished["handlers", reactor]
    assert (got.returncode, got.stderr) == (0, "")
    assert got.stdout.splitlines() == [
        f"reactor: {REACTOR_CLASS[reactor]}",
        "running: SignalGuard.handle SignalGuard.handle",
        "trigger: before shutdown",
        "run returned",
        "after: default_int_handler 0",  # 0: SIG_DFL
    ]
