"""txgreen's pytest plugin, tested by running pytest on small test files in a subprocess.

Three runs (each in a process of its own, so each has its own reactor) cover the options:

- ``strict``: the default mode, with ``--txgreen-reactor=poll``: ``@pytest.mark.green``,
  unmarked tests left in the hub, a ``@pytest.mark.timeout`` deadline, the leak check,
  hypothesis;
- ``auto``: ``txgreen_mode = auto`` with ``timeout`` in the ini file: sync tests are green,
  Deferred-based tests and ``@pytest.mark.in_hub`` tests are not, the ini deadline;
- ``no-twisted``: ``-p no:twisted``: green tests on txgreen's own hub.

A conftest in each run writes every test's outcome, duration and failure text to a JSON file.
Each run happens once (the first test that needs it) and several tests check its results.
"""

from __future__ import annotations

import json
import os
import re
import textwrap
from dataclasses import dataclass
from typing import Any

import pytest

pytest_plugins = ["pytester"]
pytestmark = pytest.mark.single_reactor

BACKSTOP_GRACE = 5.0  # pytest-timeout fires this long after a green test's own deadline

RECORDER = """
import json

import pytest

_results = {}


def pytest_runtest_logreport(report):
    name = report.nodeid.split("::", 1)[1]
    if report.when == "call" or report.outcome != "passed":
        _results[name] = {
            "when": report.when,
            "outcome": report.outcome,
            "duration": report.duration,
            "longrepr": report.longreprtext,
        }


def pytest_sessionfinish(session):
    with open("txgreen-results.json", "w") as f:
        json.dump(_results, f)
"""

STRICT_TESTS = """
import pytest
from greenlet import getcurrent
from hypothesis import given, settings, strategies as st
from twisted.internet import defer, reactor, task

import txgreen


def test_unmarked_first_is_in_hub():
    # The first test of the run, before any green test made txgreen adopt the hub.
    assert txgreen.get_hub().in_hub()


@pytest.mark.green
def test_marked_green_blocks():
    assert type(getcurrent()) is txgreen.GreenThread
    assert not txgreen.get_hub().in_hub()
    assert txgreen.block_on(task.deferLater(reactor, 0.01, lambda: "slept")) == "slept"
    helper = txgreen.spawn(lambda: txgreen.block_on(task.deferLater(reactor, 0, lambda: 2)))
    txgreen.sleep(0)
    assert helper.get() == 2


def test_unmarked_is_in_hub():
    assert type(getcurrent()) is not txgreen.GreenThread
    assert txgreen.get_hub().in_hub()


def test_unmarked_blocks_in_hub():
    txgreen.block_on(defer.Deferred())


@pytest.mark.green
def test_reactor_option():
    from twisted.internet.pollreactor import PollReactor

    assert isinstance(reactor, PollReactor)
    assert txgreen.get_hub().reactor is reactor
    assert reactor.running


@pytest.mark.green
@pytest.mark.timeout(0.5)
def test_hangs_past_marker_deadline():
    never = defer.Deferred()
    txgreen.block_on(never)  # the test hangs here


@pytest.mark.green(leak_check=True)
def test_leaks():
    txgreen.spawn(txgreen.block_on, defer.Deferred())
    reactor.callLater(100, print, "never")


SEEN = []


@pytest.mark.green
def test_returns_a_deferred():
    # As under pytest-twisted: the test is not over until the Deferred it returns has fired.
    return task.deferLater(reactor, 0.05, SEEN.append, "deferred")


@pytest.mark.green
def test_returns_a_coroutine():
    async def later():
        await task.deferLater(reactor, 0.05, SEEN.append, "coroutine")

    return later()


@pytest.mark.green
def test_returned_deferreds_were_waited_for():
    assert SEEN == ["deferred", "coroutine"]


@pytest.mark.green
def test_returns_a_failing_deferred():
    return task.deferLater(reactor, 0, lambda: 1 / 0)


KEPT = []


@pytest.mark.green(leak_check=True)
def test_leaks_a_socket():
    import socket

    KEPT.append(socket.socket())  # never closed, never a reactor reader


@pytest.mark.green(leak_check=True)
def test_leaves_a_green_socket_waiting():
    from txgreen.green import socket as gsocket

    a, b = gsocket.socketpair()
    KEPT.extend([a, b])
    txgreen.spawn(a.recv, 1)  # parked on the reactor, its fd in the registry
    txgreen.sleep(0)


@pytest.mark.green(leak_check=True)
def test_closes_its_socket():
    import socket

    with socket.socket():
        pass


@pytest.mark.green(leak_check=True)
def test_clean():
    gt = txgreen.spawn(txgreen.block_on, task.deferLater(reactor, 0.01, lambda: "done"))
    assert gt.get() == "done"
    reactor.callLater(0, print, "runs before the test ends")
    txgreen.sleep(0.01)


@pytest.mark.green
@settings(max_examples=5, deadline=None)
@given(st.integers())
def test_hypothesis_green(n):
    assert type(getcurrent()) is txgreen.GreenThread
    assert txgreen.block_on(task.deferLater(reactor, 0, lambda: n)) == n
"""

AUTO_INI = """
[pytest]
txgreen_mode = auto
timeout = 0.5
"""

AUTO_TESTS = """
import pytest
import pytest_twisted
from greenlet import getcurrent
from hypothesis import given, settings, strategies as st
from twisted.internet import defer, reactor, task

import txgreen


def test_sync_is_green():
    assert type(getcurrent()) is txgreen.GreenThread
    assert txgreen.block_on(task.deferLater(reactor, 0.01, lambda: "slept")) == "slept"


@pytest_twisted.ensureDeferred
async def test_async_def_stays_in_hub():
    assert txgreen.get_hub().in_hub()
    assert await task.deferLater(reactor, 0, lambda: 3) == 3
    with pytest.raises(txgreen.BlockingInHubError):
        txgreen.block_on(defer.Deferred())


@pytest_twisted.inlineCallbacks
def test_inline_callbacks_stays_in_hub():
    assert txgreen.get_hub().in_hub()
    assert (yield task.deferLater(reactor, 0, lambda: 4)) == 4
    with pytest.raises(txgreen.BlockingInHubError):
        txgreen.block_on(defer.Deferred())


@pytest.mark.in_hub
def test_in_hub_marker():
    assert txgreen.get_hub().in_hub()
    with pytest.raises(txgreen.BlockingInHubError, match="mark the test @pytest.mark.green"):
        txgreen.block_on(defer.Deferred())


@settings(max_examples=5, deadline=None)
@given(st.integers())
def test_hypothesis_auto(n):
    assert type(getcurrent()) is txgreen.GreenThread
    assert txgreen.block_on(task.deferLater(reactor, 0, lambda: n)) == n


def test_hangs_past_ini_deadline():
    never = defer.Deferred()
    txgreen.sleep(0.01)
    txgreen.block_on(never)  # the test hangs here
"""

NO_TWISTED_TESTS = """
import sys

import pytest
from greenlet import getcurrent
from twisted.internet import defer, reactor, task

import txgreen


@pytest.mark.green
def test_marked_green():
    assert "pytest_twisted" not in sys.modules
    assert type(getcurrent()) is txgreen.GreenThread
    assert txgreen.block_on(task.deferLater(reactor, 0.01, lambda: "slept")) == "slept"


def test_auto_green_on_the_same_hub():
    assert type(getcurrent()) is txgreen.GreenThread
    assert reactor.running
    helper = txgreen.spawn(lambda: txgreen.block_on(task.deferLater(reactor, 0, lambda: 5)))
    assert helper.get() == 5


def test_hangs_past_ini_deadline():
    never = defer.Deferred()
    txgreen.block_on(never)  # the test hangs here
"""

NO_TWISTED_INI = """
[pytest]
txgreen_mode = auto
txgreen_leak_check = true
timeout = 0.5
"""


@dataclass(frozen=True)
class Run:
    ret: int
    outlines: list[str]
    errlines: list[str]
    results: dict[str, dict[str, Any]]

    def outcome(self, name: str) -> str:
        return str(self.results[name]["outcome"])

    def failure(self, name: str) -> str:
        r = self.results[name]
        assert (r["when"], r["outcome"]) == ("call", "failed"), r
        return str(r["longrepr"])


SCENARIOS: dict[str, tuple[dict[str, str], tuple[str, ...]]] = {
    "strict": (
        {"pytest.ini": "[pytest]\n", "test_strict.py": STRICT_TESTS},
        ("--txgreen-reactor=poll",),
    ),
    "auto": ({"pytest.ini": AUTO_INI, "test_auto.py": AUTO_TESTS}, ()),
    "no-twisted": (
        {"pytest.ini": NO_TWISTED_INI, "test_plain.py": NO_TWISTED_TESTS},
        ("-p", "no:twisted"),
    ),
}
_runs: dict[str, Run] = {}


def run(pytester: pytest.Pytester, scenario: str) -> Run:
    """Run ``scenario`` once per session (later calls return the first run's results)."""
    if scenario not in _runs:
        files, args = SCENARIOS[scenario]
        pytester.makeconftest(RECORDER)
        for name, text in files.items():
            (pytester.path / name).write_text(textwrap.dedent(text))
        result = pytester.runpytest_subprocess(
            "-p", "no:cacheprovider", "--tb=short", *args, timeout=60
        )
        results = json.loads((pytester.path / "txgreen-results.json").read_text())
        _runs[scenario] = Run(result.ret, result.outlines, result.errlines, results)
    return _runs[scenario]


# -- tests that pass in the runs ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("scenario", "names"),
    [
        pytest.param(
            "strict",
            ["test_marked_green_blocks", "test_hypothesis_green"],
            id="strict-marked-green-test-blocks",
        ),
        # in_hub() is right in the hub from the start, before anything made txgreen adopt
        # pytest-twisted's greenlet as its hub.
        pytest.param(
            "strict", ["test_unmarked_first_is_in_hub"], id="strict-in-hub-before-any-green-test"
        ),
        pytest.param("strict", ["test_reactor_option"], id="reactor-option-installs-poll"),
        pytest.param(
            "auto",
            ["test_sync_is_green", "test_hypothesis_auto"],
            id="auto-mode-runs-sync-tests-green",
        ),
        pytest.param(
            "auto",
            ["test_async_def_stays_in_hub", "test_inline_callbacks_stays_in_hub"],
            id="auto-mode-leaves-deferred-tests-in-hub",
        ),
        pytest.param("auto", ["test_in_hub_marker"], id="in-hub-marker"),
    ],
)
def test_passes(pytester: pytest.Pytester, scenario: str, names: list[str]) -> None:
    r = run(pytester, scenario)
    for name in names:
        assert r.outcome(name) == "passed", r.results


# -- strict mode ----------------------------------------------------------------------------------


def test_strict_unmarked_test_runs_in_hub(pytester: pytest.Pytester) -> None:
    r = run(pytester, "strict")
    assert r.outcome("test_unmarked_is_in_hub") == "passed", r.results
    failure = r.failure("test_unmarked_blocks_in_hub")
    assert "txgreen.block_on(defer.Deferred())" in failure
    assert failure.endswith(
        "BlockingInHubError: block_on() was called from the hub (the greenlet running the "
        "reactor), where waiting would stall the reactor for good. Run the code in a green "
        "thread instead: txgreen.spawn(fn, ...) or txgreen.defer_to_green(fn, ...) from reactor "
        "callbacks, or decorate the callback with @txgreen.green so it returns a Deferred. In "
        "tests, mark the test @pytest.mark.green (or set txgreen_mode = auto)."
    )


def assert_deadline_failure(r: Run, name: str, deadline: float) -> None:
    failure = r.failure(name)
    # The reactor's deadline, not pytest-timeout's backstop...
    assert re.search(
        rf"txgreen\.TestDeadlineExceeded: \S+::{name} ran past its {deadline:g} s "
        r"deadline \(pytest-timeout's 'timeout'\); the traceback shows where it was blocked$",
        failure,
    ), failure
    assert "Timeout" not in failure.replace("TestDeadlineExceeded", "")
    # ...which fires on time, long before the backstop would...
    assert deadline * 0.9 <= r.results[name]["duration"] < deadline + BACKSTOP_GRACE / 2
    # ...and the traceback goes through the line of the test where it was blocked.
    assert "block_on(never)  # the test hangs here" in failure


def test_marker_timeout_is_a_reactor_deadline(pytester: pytest.Pytester) -> None:
    r = run(pytester, "strict")
    assert_deadline_failure(r, "test_hangs_past_marker_deadline", 0.5)


def test_leak_check(pytester: pytest.Pytester) -> None:
    r = run(pytester, "strict")
    assert r.outcome("test_clean") == "passed", r.results
    failure = r.failure("test_leaks")
    message = failure.splitlines()[-1]
    assert re.fullmatch(
        r"E\s+txgreen\.pytest_plugin\.LeakError: the test left these behind: "
        r"green threads: \[<GreenThread block_on running at 0x[0-9a-f]+>\]; "
        r"DelayedCalls: \[<DelayedCall 0x[0-9a-f]+ \[[0-9.]+s\] called=0 cancelled=1>\]",
        message,
    ), message


def test_a_green_test_waits_for_the_deferred_it_returns(pytester: pytest.Pytester) -> None:
    r = run(pytester, "strict")
    for name in (
        "test_returns_a_deferred",
        "test_returns_a_coroutine",
        "test_returned_deferreds_were_waited_for",
    ):
        assert r.outcome(name) == "passed", r.results
    assert "ZeroDivisionError" in r.failure("test_returns_a_failing_deferred")


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="sockets are counted on Linux")
def test_leak_check_counts_open_sockets(pytester: pytest.Pytester) -> None:
    r = run(pytester, "strict")
    assert r.outcome("test_closes_its_socket") == "passed", r.results
    message = r.failure("test_leaks_a_socket").splitlines()[-1]
    assert re.fullmatch(
        r"E\s+txgreen\.pytest_plugin\.LeakError: the test left these behind: "
        r"open sockets \(fd, inode\): \[\(\d+, 'socket:\[\d+\]'\)\]",
        message,
    ), message


def test_leak_check_counts_fds_the_green_stdlib_still_watches(pytester: pytest.Pytester) -> None:
    r = run(pytester, "strict")
    message = r.failure("test_leaves_a_green_socket_waiting").splitlines()[-1]
    assert message.startswith("E   txgreen.pytest_plugin.LeakError: the test left these behind: ")
    assert re.search(r"green threads: \[<GreenThread socket.recv running at 0x[0-9a-f]+>", message)
    assert re.search(r"readers: \[<txgreen fd watch (\d+) reader=", message)
    assert re.search(r"green socket fds still watched: \[\d+\]$", message), message


def test_strict_run_summary(pytester: pytest.Pytester) -> None:
    r = run(pytester, "strict")
    outcomes = {name: res["outcome"] for name, res in r.results.items()}
    assert outcomes == {
        "test_unmarked_first_is_in_hub": "passed",
        "test_marked_green_blocks": "passed",
        "test_unmarked_is_in_hub": "passed",
        "test_unmarked_blocks_in_hub": "failed",
        "test_reactor_option": "passed",
        "test_hangs_past_marker_deadline": "failed",
        "test_returns_a_deferred": "passed",
        "test_returns_a_coroutine": "passed",
        "test_returned_deferreds_were_waited_for": "passed",
        "test_returns_a_failing_deferred": "failed",
        "test_leaks": "failed",
        "test_leaks_a_socket": "failed" if os.path.isdir("/proc/self/fd") else "passed",
        "test_leaves_a_green_socket_waiting": "failed",
        "test_closes_its_socket": "passed",
        "test_clean": "passed",
        "test_hypothesis_green": "passed",
    }
    assert r.ret == pytest.ExitCode.TESTS_FAILED


# -- auto mode ------------------------------------------------------------------------------------


def test_ini_timeout_is_a_reactor_deadline(pytester: pytest.Pytester) -> None:
    r = run(pytester, "auto")
    assert_deadline_failure(r, "test_hangs_past_ini_deadline", 0.5)
    assert r.ret == pytest.ExitCode.TESTS_FAILED
    assert sorted(n for n, res in r.results.items() if res["outcome"] != "passed") == [
        "test_hangs_past_ini_deadline"
    ]


# -- without pytest-twisted -----------------------------------------------------------------------


def test_without_pytest_twisted(pytester: pytest.Pytester) -> None:
    r = run(pytester, "no-twisted")
    plugins = next(line for line in r.outlines if line.startswith("plugins:"))
    assert "txgreen" in plugins
    assert "twisted-" not in plugins
    # The first green test starts txgreen's own hub (and the reactor) and blocks; the reactor's
    # own startup is not counted as the test's leak.
    assert r.outcome("test_marked_green") == "passed", r.results
    # The next one (auto mode) blocks and spawns on the same running hub.
    assert r.outcome("test_auto_green_on_the_same_hub") == "passed", r.results
    assert_deadline_failure(r, "test_hangs_past_ini_deadline", 0.5)
    assert r.ret == pytest.ExitCode.TESTS_FAILED
    # txgreen stopped the reactor it started at exit, quietly.
    assert r.errlines == []
