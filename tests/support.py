"""Helpers shared by the test modules (``from support import ...``; pytest puts tests/ on the path).

Importing this module must not import ``twisted.internet.reactor``: tests/conftest.py imports it
before txgreen's plugin installs the reactor chosen with ``--txgreen-reactor``.  Helpers that need
the reactor import it when called.
"""

from __future__ import annotations

import gc
import os
import re
import signal
import subprocess
import sys
import weakref
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar, cast

import pytest
from twisted.internet import defer, task
from twisted.internet.defer import Deferred
from twisted.logger import ILogObserver, LogEvent, globalLogPublisher

T = TypeVar("T")
K = TypeVar("K")
V = TypeVar("V")


# -- in-process tests --------------------------------------------------------------------------


class Boom(Exception):
    """An exception no library code raises, so the test knows where it came from."""


def _reactor() -> Any:
    """The installed reactor, untyped (its module is typed as a plain module)."""
    from twisted.internet import reactor

    return reactor


@contextmanager
def no_gc() -> Iterator[None]:
    """The cyclic garbage collector off: only reference counting frees objects."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def freed_without_gc(make: Callable[[], object]) -> bool:
    """Is the object ``make()`` returns gone as soon as its last reference is dropped, with
    the cyclic garbage collector off (no cycle keeps it, nothing else refers to it)?"""
    with no_gc():
        obj = make()
        ref = weakref.ref(obj)
        del obj
        return ref() is None


def later(value: T, seconds: float = 0) -> Deferred[T]:
    """A Deferred that the reactor fires with ``value`` on a later iteration."""
    return task.deferLater(_reactor(), seconds, lambda: value)


def in_reactor_callback(fn: Callable[[], Deferred[T]]) -> Deferred[T]:
    """Call ``fn`` soon from a reactor callback (in the hub); a Deferred of its outcome."""
    result: Deferred[T] = Deferred()
    _reactor().callLater(0, lambda: defer.maybeDeferred(fn).chainDeferred(result))
    return result


@contextmanager
def log_events(wanted: Callable[[LogEvent], bool]) -> Iterator[list[LogEvent]]:
    """Collect the events Twisted's global log publisher sees in the block that ``wanted`` keeps."""
    events: list[LogEvent] = []

    def observer(event: LogEvent) -> None:
        if wanted(event):
            events.append(event)

    obs = cast(ILogObserver, observer)
    globalLogPublisher.addObserver(obs)
    try:
        yield events
    finally:
        globalLogPublisher.removeObserver(obs)


def tb_frames(tb: TracebackType | None) -> int:
    """How many frames a traceback holds."""
    n = 0
    while tb is not None:
        n += 1
        tb = tb.tb_next
    return n


def shared_by_twisted() -> list[BaseException]:
    """The exception objects Twisted hands to every connection that ends the same way.

    ``twisted.internet.main``'s two, ``protocol.connectionDone``'s, and those of the Failures
    kept in the default argument of ``posixbase._DisconnectSelectableMixin._disconnectSelectable``.
    """
    from twisted.internet import main, posixbase, protocol

    failures = [protocol.connectionDone]
    for faildict in posixbase._DisconnectSelectableMixin._disconnectSelectable.__defaults__ or ():
        failures += faildict.values()
    objects = [f.value for f in failures if f.value is not None]
    return [main.CONNECTION_LOST, main.CONNECTION_DONE, *objects]


def exception_state(objects: Sequence[BaseException]) -> list[tuple[object, ...]]:
    """What raising an exception changes: its traceback, context and cause (to compare)."""
    return [(o.__traceback__, o.__context__, o.__cause__) for o in objects]


def is_unhandled_deferred_error(event: LogEvent) -> bool:
    """Twisted's "Unhandled error in Deferred" report (of a Deferred garbage-collected failed)."""
    return "Unhandled error in Deferred" in (event.get("log_format") or "")


# -- subprocess tests: scripts in tests/scripts, each run on the reactor named on its command line


SCRIPTS = Path(__file__).parent / "scripts"
REACTORS = ["default", "epoll", "poll", "select", "asyncio"]
REACTOR_CLASS = {
    "default": "EPollReactor",  # Twisted's default on Linux
    "epoll": "EPollReactor",
    "poll": "PollReactor",
    "select": "SelectReactor",
    "asyncio": "AsyncioSelectorReactor",
}
# For what does not involve the reactor's own machinery, only how its loop stops: Twisted's own
# main loop or asyncio's (each process costs ~0.3 s of CPU).
MAIN_LOOPS = ["default", "asyncio"]
TIMEOUT = 30  # seconds a script may run
SCRIPT_TEST_MARKS = [
    # The scripts choose their reactor themselves: the extra per-reactor runs skip them.
    pytest.mark.single_reactor,
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the scripts read /proc"),
]


def script_command(script: str, *args: str) -> list[str]:
    """The command line that runs tests/scripts/``script`` with ``args``."""
    return [sys.executable, str(SCRIPTS / script), *args]


def _default_sigint() -> None:
    # A parent that ignores SIGINT (a background job of a non-interactive shell, some CI
    # runners) passes that on; Python and Twisted then leave SIGINT ignored.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def start_script(script: str, *args: str) -> subprocess.Popen[str]:
    """Start tests/scripts/``script`` with ``args`` (in that folder; stdout and stderr piped,
    text), with SIGINT's default action whatever the parent's, so that SIGINT interrupts it."""
    return subprocess.Popen(
        script_command(script, *args),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=SCRIPTS,
        preexec_fn=_default_sigint,
    )


@contextmanager
def reaped(procs: dict[K, subprocess.Popen[str]]) -> Iterator[dict[K, subprocess.Popen[str]]]:
    """Hand ``procs`` to the block; at its end kill those still running and reap them all."""
    try:
        yield procs
    finally:
        for p in procs.values():  # a test that failed half-way may leave its process running
            if p.poll() is None:
                p.kill()
            p.communicate(timeout=TIMEOUT)


@dataclass(frozen=True)
class Finished:
    returncode: int | None  # None: killed after TIMEOUT seconds
    stdout: str
    stderr: str


def run_script(script: str, *args: str, env: dict[str, str] | None = None) -> Finished:
    """Run tests/scripts/``script`` (in that folder) to its end, or kill it after TIMEOUT.

    ``env``: extra environment variables for it.
    """
    try:
        proc = subprocess.run(
            script_command(script, *args),
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
            cwd=SCRIPTS,
            env=None if env is None else {**os.environ, **env},
        )
    except subprocess.TimeoutExpired as e:
        return Finished(None, str(e.stdout), str(e.stderr))
    return Finished(proc.returncode, proc.stdout, proc.stderr)


def in_parallel(fn: Callable[[K], V], keys: Sequence[K]) -> dict[K, V]:
    """``{key: fn(key)}`` for every key, all calls at once (each in an OS thread of its own)."""
    with ThreadPoolExecutor(max_workers=len(keys)) as pool:
        return dict(zip(keys, pool.map(fn, keys), strict=True))


# -- subprocess tests: the examples and benchmarks, run as programs from the project's root


ROOT = Path(__file__).resolve().parent.parent
PROGRAM_TEST_MARKS = [
    # Each program chooses its own reactor, so the per-reactor runs of the suite skip these.
    pytest.mark.single_reactor,
    # The subprocess timeout (60 s) must come before the test deadline, which would kill the
    # test run.
    pytest.mark.timeout(90),
]


def run_program(*args: str, bare_path: bool = False) -> subprocess.CompletedProcess[str]:
    """Run ``python ARGS`` in the project's root (UTF-8, unbuffered output; 60 s at most).

    ``bare_path``: with only the venv's ``bin`` on ``PATH``, so the system's programs (wrk,
    valgrind, ...) are missing, as on a machine without them.
    """
    env = dict(os.environ, PYTHONIOENCODING="utf-8", PYTHONUNBUFFERED="1")
    if bare_path:
        env["PATH"] = os.path.dirname(sys.executable)
    return subprocess.run(
        [sys.executable, *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        encoding="utf-8",
        timeout=60,
        check=False,
    )


def check_says_how_to_install(program: str, args: list[str], tool: str) -> None:
    """Run benchmark ``program`` with ``args`` on a PATH without ``tool``: it must exit with
    status 2, print nothing, and say on stderr that it needs the tool and how to install it."""
    proc = run_program(program, *args, bare_path=True)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert proc.stdout == ""
    assert f"needs {tool}" in proc.stderr
    assert f"apt-get install {tool}" in proc.stderr


def ns(value: str, unit: str) -> float:
    """A figure a benchmark printed, ``value`` in ``unit`` (ns or µs), in nanoseconds."""
    return float(value) * (1000 if unit == "µs" else 1)


def bench_medians(lines: list[str], pattern: re.Pattern[str]) -> dict[str, float]:
    """``{key: median ns}`` from the benchmark's result lines, the lines ``pattern`` matches
    (groups: key, label, median, its unit, best, its unit; units ns or µs), in their order.
    Checks that each line's best is positive and no larger than its median."""
    figures: dict[str, float] = {}
    for line in lines:
        m = pattern.match(line)
        if m:
            median = ns(m[3], m[4])
            best = ns(m[5], m[6])
            assert 0 < best <= median
            figures[m[1]] = median
    return figures


# -- the report of the echo benchmarks (bench_echo.py, bench_green_socket.py) ------------------

ECHO_ROW = re.compile(r"^  (\S.*?) +(\d{1,3}(?:,\d{3})*) +(\d{1,3}(?:,\d{3})*)$")
ECHO_CPU_ROW = re.compile(r"^  (\S.*?) +(\d+\.\d) +(\d+\.\d)$")


def echo_tables(
    lines: list[str], start: int, labels: list[str]
) -> tuple[dict[str, tuple[float, float]], dict[str, tuple[float, float]]]:
    """Check the two tables an echo benchmark prints from ``lines[start]`` on.

    The round trips per second at 1 and 100 connections, a blank line, then the servers' CPU
    time per round trip (from /proc), one row per label in order.  Returns both tables.
    """
    n = len(labels)
    assert re.fullmatch(r"  server +1 conn +100 conns   \(round trips per second\)", lines[start])
    figures: dict[str, tuple[float, float]] = {}
    for line in lines[start + 1 : start + 1 + n]:
        m = ECHO_ROW.match(line)
        assert m is not None, line
        figures[m[1]] = (float(m[2].replace(",", "")), float(m[3].replace(",", "")))
    assert list(figures) == labels
    # Every server answered: echoload exits with an error (and the benchmark with it) if a
    # connection fails, and a server that echoes at all does hundreds of round trips per second.
    assert all(f > 100 for pair in figures.values() for f in pair), figures
    assert lines[start + 1 + n] == ""
    assert re.fullmatch(
        r"  server CPU per round trip +1 conn +100 conns   \(us, median\)", lines[start + 2 + n]
    )
    cpu: dict[str, tuple[float, float]] = {}
    for line in lines[start + 3 + n : start + 3 + 2 * n]:
        m = ECHO_CPU_ROW.match(line)
        assert m is not None, line
        cpu[m[1]] = (float(m[2]), float(m[3]))
    assert list(cpu) == labels
    # Serving hundreds of round trips per second costs some CPU, and less than a second each.
    assert all(0 < f < 1e6 for pair in cpu.values() for f in pair), cpu
    return figures, cpu
