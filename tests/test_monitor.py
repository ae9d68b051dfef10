"""``watch_blocking``: the blocking detector (txgreen/_monitor.py).

The blocks are real (``time.sleep`` in the reactor's thread, for 0.1 to 0.3 s) because what is
under test is a real OS thread watching the real reactor; the tests learn of each report from
``on_block``, which fires a Deferred through ``reactor.callFromThread``, never by sleeping.
Shutdown and "never keeps the process alive" are in subprocesses
(tests/scripts/monitor_shutdown.py).
"""

from __future__ import annotations

import math
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import pytest
from twisted.internet import reactor
from twisted.internet.defer import Deferred, succeed
from twisted.logger import LogEvent, LogLevel, formatEvent

import txgreen
from support import (
    MAIN_LOOPS,
    SCRIPT_TEST_MARKS,
    TIMEOUT,
    Finished,
    in_parallel,
    log_events,
    run_script,
)
from txgreen._monitor import (
    ENV_VAR,
    BlockingReport,
    BlockingWatch,
    WatchAlreadyRunning,
    watch_blocking,
    watch_blocking_from_env,
)

R: Any = reactor  # the installed reactor, untyped
F = TypeVar("F", bound=Callable[..., None])
MONITOR = "txgreen-monitor"  # the monitor thread's name


def monitor_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == MONITOR]


class Reports:
    """An ``on_block`` that keeps the reports and fires ``ended`` on the first ended report."""

    def __init__(self) -> None:
        self.reports: list[BlockingReport] = []
        self.ended: Deferred[BlockingReport] = Deferred()

    def __call__(self, report: BlockingReport) -> None:  # in the monitor thread
        self.reports.append(report)
        if report.ended:
            R.callFromThread(self.ended.callback, report)


def last_frame(stack: str) -> str:
    """The innermost frame of a formatted stack, from its ``File "..."`` on (the text after it
    included: the source line, and the error position marks of Python versions that add them)."""
    return 'File "' + stack.rsplit('  File "', 1)[1]


def monitor_events(event: LogEvent) -> bool:
    return event.get("log_namespace") == "txgreen.monitor"


@pytest.fixture
def no_watch_left() -> Iterator[None]:
    """Fail if the test leaves a monitor thread running (and stop it)."""
    yield
    left = monitor_threads()
    import txgreen._monitor as monitor

    for watch in list(monitor._watches.values()):
        watch.stop()
    assert left == []


pytestmark = pytest.mark.usefixtures("no_watch_left")


# -- reports -------------------------------------------------------------------------------------


def test_a_blocked_green_thread_is_reported_once_then_its_end() -> None:
    got = Reports()

    def sleeper() -> None:
        time.sleep(0.3)  # the blocking call

    sleep_line = sleeper.__code__.co_firstlineno + 1
    with log_events(monitor_events) as events, watch_blocking(0.05, on_block=got) as watch:
        gt = txgreen.spawn(sleeper)
        gt.join()
        ended = txgreen.block_on(got.ended, 5)
        assert watch.running
    assert not watch.running

    assert [r.ended for r in got.reports] == [False, True]  # one report while it lasted
    blocked = got.reports[0]
    assert blocked.green_thread is gt
    assert blocked.green_thread_name == gt.name == sleeper.__qualname__
    assert blocked.where == f"in green thread {gt.name}"
    assert blocked.threshold == 0.05
    assert 0.05 <= blocked.duration < 0.3
    # The stack ends at the user's blocking line.
    where = f'File "{__file__}", line {sleep_line}, in sleeper\n    time.sleep(0.3)'
    assert last_frame(blocked.stack).startswith(where)

    assert ended is got.reports[1]
    assert ended.duration >= 0.25
    assert ended.duration < 5
    assert (ended.stack, ended.green_thread, ended.threshold) == (blocked.stack, gt, 0.05)

    # The same two reports went to twisted.logger as warnings.
    assert [e["log_level"] for e in events] == [LogLevel.warn, LogLevel.warn]
    assert [e["report"] for e in events] == got.reports
    text = formatEvent(events[0])
    assert text.startswith(
        f"The reactor's thread has been blocked for {blocked.duration:.3f} s (threshold 0.05 s) "
        f"in green thread {gt.name}: the reactor and every other green thread are frozen until "
        "it returns.\nFix: move blocking calls to a thread with txgreen.call_in_thread(fn, ...) "
        "or @txgreen.threaded; use txgreen.sleep() instead of time.sleep().\n"
        "Stack of the reactor's thread, most recent call last:\n"
    )
    assert last_frame(text).startswith(where + "  # the blocking call")
    assert formatEvent(events[1]) == (
        f"The block in green thread {gt.name} is over: the reactor's thread was blocked for "
        f"{ended.duration:.3f} s in all."
    )


def test_a_blocked_reactor_callback_is_reported_without_a_green_thread() -> None:
    got = Reports()

    def callback_that_blocks() -> None:
        time.sleep(0.2)

    with watch_blocking(0.05, on_block=got):
        R.callLater(0, callback_that_blocks)
        ended = txgreen.block_on(got.ended, 5)
    assert [r.ended for r in got.reports] == [False, True]
    blocked = got.reports[0]
    assert blocked.green_thread is None
    assert blocked.green_thread_name is None
    assert blocked.where == "in the hub (a reactor callback, not a green thread)"
    assert last_frame(blocked.stack).startswith(
        f'File "{__file__}", line {callback_that_blocks.__code__.co_firstlineno + 1}, '
        "in callback_that_blocks\n    time.sleep(0.2)\n"
    )
    assert 0.15 <= ended.duration < 5


def test_a_busy_cooperative_program_is_not_reported() -> None:
    got = Reports()
    end = time.monotonic() + 0.3
    rounds: list[int] = []

    def worker() -> None:
        n = 0
        while time.monotonic() < end:
            txgreen.sleep(0)
            txgreen.block_on(succeed(n))
            txgreen.block_on(txgreen.spawn(abs, n).to_deferred())
            n += 1
        rounds.append(n)

    with watch_blocking(0.1, on_block=got) as watch:
        txgreen.joinall([txgreen.spawn(worker) for _ in range(20)])
        assert got.reports == []
        # The watch is alive and well: its pings go on being answered.  (During the busy
        # phase CPython's GIL may favour the reactor's thread, which releases and retakes it
        # at every poll, so the monitor may have checked only a few times; it never reports
        # a reactor that answers.)
        answered = watch._answered
        with txgreen.Timeout(2):
            while watch._answered == answered:
                txgreen.sleep(0.01)
    assert got.reports == []
    assert len(rounds) == 20
    assert min(rounds) > 10  # they really were busy


def test_an_on_block_error_is_logged_and_the_watch_goes_on() -> None:
    got = Reports()

    def on_block(report: BlockingReport) -> None:
        got(report)
        if not report.ended:
            raise ValueError("broken on_block")

    with log_events(monitor_events) as events, watch_blocking(0.02, on_block=on_block):
        R.callLater(0, time.sleep, 0.1)
        txgreen.block_on(got.ended, 5)
    assert [r.ended for r in got.reports] == [False, True]
    failures = [e for e in events if "log_failure" in e]
    assert len(failures) == 1
    assert failures[0]["log_failure"].value.args == ("broken on_block",)
    assert failures[0]["log_format"].startswith("txgreen.monitor: error in on_block")


def test_a_reactor_that_is_not_running_is_not_reported() -> None:
    class NotRunning:
        running = False

        def __init__(self) -> None:
            self.calls: list[tuple[Any, ...]] = []
            self.triggers: list[tuple[Any, ...]] = []

        def callFromThread(self, *call: Any) -> None:
            self.calls.append(call)

        def addSystemEventTrigger(self, *trigger: Any) -> object:
            self.triggers.append(trigger)
            return trigger

        def removeSystemEventTrigger(self, handle: object) -> None:
            self.triggers.remove(handle)  # type: ignore[arg-type]

    fake = NotRunning()
    got = Reports()
    with watch_blocking(0.02, reactor=fake, on_block=got) as watch:
        assert [t[:2] for t in fake.triggers] == [("before", "shutdown")]
        txgreen.sleep(0.1)  # five thresholds
    assert got.reports == []
    assert len(fake.calls) == 1  # one ping, queued: no pile-up while nothing answers
    assert fake.triggers == []
    assert watch._answered == 0


# -- stopping ------------------------------------------------------------------------------------


def shutdown_triggers() -> list[Any]:
    return [t[0] for t in R._eventTriggers["shutdown"].before]


def test_stop_joins_the_thread_and_removes_the_shutdown_trigger() -> None:
    before = shutdown_triggers()
    watch = watch_blocking(0.05)
    assert isinstance(watch, BlockingWatch)
    assert watch.running
    assert watch.threshold == 0.05
    assert repr(watch) == "<txgreen.BlockingWatch running, threshold 0.05 s>"
    (thread,) = monitor_threads()
    assert thread.daemon
    assert shutdown_triggers() == [*before, watch._on_reactor_shutdown]
    assert watch.stop() is True
    assert not thread.is_alive()
    assert monitor_threads() == []
    assert not watch.running
    assert repr(watch) == "<txgreen.BlockingWatch stopped, threshold 0.05 s>"
    assert shutdown_triggers() == before
    assert watch.stop() is True  # again: nothing to do


def test_the_context_manager_stops_the_watch_on_error_too() -> None:
    seen: list[BlockingWatch] = []

    def use_it() -> None:
        with watch_blocking() as watch:
            seen.append(watch)
            assert watch.running
            raise ValueError("inside")

    with pytest.raises(ValueError, match="inside"):
        use_it()
    (watch,) = seen
    assert watch.threshold == 0.1
    assert not watch.running
    assert monitor_threads() == []


def test_on_block_can_stop_its_own_watch() -> None:
    got = Reports()
    stopped: list[bool] = []
    box: list[BlockingWatch] = []

    def on_block(report: BlockingReport) -> None:
        stopped.append(box[0].stop())  # in the monitor thread: cannot join itself
        got(report)
        R.callFromThread(got.ended.callback, report)

    box.append(watch_blocking(0.02, on_block=on_block))
    R.callLater(0, time.sleep, 0.06)
    txgreen.block_on(got.ended, 5)
    assert stopped == [False]
    assert [r.ended for r in got.reports] == [False]  # stopped: no ended report
    assert box[0].stop() is True  # from here it joins


def test_one_watch_per_reactor() -> None:
    with watch_blocking(0.5) as first:
        with pytest.raises(WatchAlreadyRunning) as info:
            watch_blocking(0.1)
        assert str(info.value) == (
            "watch_blocking(): <txgreen.BlockingWatch running, threshold 0.5 s> already watches "
            "this reactor; stop it first (watch.stop()) or keep using it"
        )
        assert isinstance(info.value, txgreen.TxgreenError)
        assert len(monitor_threads()) == 1
    assert not first.running
    with watch_blocking(0.1) as second:  # once stopped, a new one can start
        assert second.running


# -- bad input -----------------------------------------------------------------------------------


@pytest.mark.parametrize("threshold", [0, 0.0, -1, -0.5, math.nan, math.inf])
def test_a_threshold_that_is_not_positive_raises_value_error(threshold: float) -> None:
    with pytest.raises(ValueError) as info:
        watch_blocking(threshold)
    assert str(info.value) == (
        f"watch_blocking(): threshold must be a finite number of seconds > 0, not {threshold!r}"
    )
    assert monitor_threads() == []


@pytest.mark.parametrize("threshold", ["0.1", None, True, [1]])
def test_a_threshold_that_is_not_a_number_raises_type_error(threshold: Any) -> None:
    with pytest.raises(TypeError) as info:
        watch_blocking(threshold)
    assert str(info.value) == (
        f"watch_blocking(): threshold must be a number of seconds, not {threshold!r}"
    )
    assert monitor_threads() == []


def test_an_on_block_that_is_not_callable_raises_type_error() -> None:
    with pytest.raises(TypeError) as info:
        watch_blocking(0.1, on_block="print")  # type: ignore[arg-type]
    assert str(info.value) == "watch_blocking(): on_block must be callable or None, not 'print'"
    with watch_blocking(0.1) as watch:  # nothing was left registered
        assert watch.running


# -- the environment variable --------------------------------------------------------------------


@pytest.mark.parametrize("value", [None, "", "  ", "0", "off", "OFF"])
def test_env_var_unset_or_off_starts_nothing(
    value: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    if value is None:
        monkeypatch.delenv(ENV_VAR, raising=False)
    else:
        monkeypatch.setenv(ENV_VAR, value)
    assert watch_blocking_from_env() is None
    assert monitor_threads() == []


def test_env_var_starts_a_watch_with_its_threshold(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV_VAR, " 0.25 ")
    watch = watch_blocking_from_env()
    assert watch is not None
    with watch:
        assert watch.threshold == 0.25
        assert watch.running
        assert watch_blocking_from_env() is watch  # already running: the same one
    assert monitor_threads() == []


@pytest.mark.parametrize("value", ["fast", "-1", "nan", "inf", "1e400"])
def test_env_var_with_a_bad_value_raises(value: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV_VAR, value)
    with pytest.raises(ValueError) as info:
        watch_blocking_from_env()
    assert str(info.value) == (
        f"TXGREEN_WATCH_BLOCKING={value!r}: expected a threshold in seconds (a number > 0, "
        "e.g. 0.1), or 0 to turn the watch off"
    )
    assert monitor_threads() == []


# -- subprocesses: the reactor's shutdown ends the watch; a watch never keeps a process alive ----


def script_test(fn: F) -> F:
    """The marks of a test that runs tests/scripts (once, not once per reactor)."""
    for mark in SCRIPT_TEST_MARKS:
        fn = mark(fn)
    return fn


def run_monitor_script(key: str) -> Finished:
    """Run tests/scripts/monitor_shutdown.py for ``key`` ("MODE REACTOR"), with the watch's
    environment variable set to 0.05 s."""
    mode, reactor_name = key.split()
    return run_script("monitor_shutdown.py", reactor_name, mode, env={ENV_VAR: "0.05"})


def script_outcomes() -> dict[str, Finished]:
    runs = [f"run {r}" for r in MAIN_LOOPS] + ["never-run default"]
    return in_parallel(run_monitor_script, runs)


@pytest.fixture(scope="module")
def outcomes() -> dict[str, Finished]:
    return script_outcomes()


@script_test
@pytest.mark.parametrize("reactor_name", MAIN_LOOPS)
@pytest.mark.in_hub  # it only reads what the subprocess printed
def test_the_reactor_shutdown_stops_the_watch(
    reactor_name: str, outcomes: dict[str, Finished]
) -> None:
    got = outcomes[f"run {reactor_name}"]
    assert got.returncode == 0, got
    lines = got.stdout.splitlines()
    assert lines[1:] == [
        "watch from env: threshold 0.05, running True",
        "reports: blocked in green thread main, ended",
        "after run: running False, monitor threads []",
        "atexit: threads ['MainThread']",
    ], got
    # Twisted's logging was never started, so the reports were printed to stderr too.
    err = got.stderr.splitlines()
    assert err[0].startswith("txgreen.monitor: The reactor's thread has been blocked for ")
    assert err[0].endswith(
        " in green thread main: the reactor and every other green thread are frozen until it "
        "returns."
    )
    assert err[1].startswith("Fix: move blocking calls to a thread")
    assert err[2] == "Stack of the reactor's thread, most recent call last:"
    stack = got.stderr.split("Stack of the reactor's thread, most recent call last:\n")[1]
    assert re.match(r'File ".*monitor_shutdown.py", line \d+, in main\n', last_frame(stack))
    assert "in main\n    time.sleep(0.2)  # blocks the reactor\n" in last_frame(stack)
    assert err[-1].startswith(
        "txgreen.monitor: The block in green thread main is over: the reactor's thread was "
        "blocked for "
    )
    assert err[-1].endswith(" s in all.")


@script_test
@pytest.mark.in_hub
def test_a_watch_never_keeps_the_process_alive(outcomes: dict[str, Finished]) -> None:
    got = outcomes["never-run default"]
    assert (got.returncode, got.stderr) == (0, ""), got
    assert got.stdout.splitlines()[1:] == [
        "watch running True, reports []",
        "atexit: threads ['MainThread', 'txgreen-monitor']",
    ]


HUB_STARTS_THE_WATCH = """
import sys
import time

from twisted.logger import globalLogPublisher

import txgreen

reports = []
globalLogPublisher.addObserver(
    lambda e: reports.append(e["report"]) if e.get("log_namespace") == "txgreen.monitor" else None
)


def main() -> None:
    if sys.argv[1] == "no-wait":
        print("main ran")
        return
    time.sleep(0.2)  # blocks the reactor; nobody called watch_blocking
    with txgreen.Timeout(5):
        while len(reports) < 2:
            txgreen.sleep(0.01)
    print("reports:", [r.ended for r in reports])


txgreen.run(main)
"""


def run_program_with_env(value: str, mode: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", HUB_STARTS_THE_WATCH, mode],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        env=dict(os.environ, **{ENV_VAR: value}),
    )


@script_test
@pytest.mark.in_hub  # it only reads what the subprocess printed
def test_the_hub_starts_a_watch_from_the_environment() -> None:
    got = run_program_with_env("0.05", "wait")
    assert got.returncode == 0, got
    assert got.stdout.splitlines() == ["reports: [False, True]"]


@script_test
@pytest.mark.in_hub
def test_a_bad_environment_value_warns_and_the_program_runs_on() -> None:
    got = run_program_with_env("fast", "no-wait")
    assert got.returncode == 0, got
    assert got.stdout.splitlines() == ["main ran"]
    assert f"RuntimeWarning: {ENV_VAR}='fast': expected a threshold in seconds" in got.stderr
    assert "no blocking detector started" in got.stderr
