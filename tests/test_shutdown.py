"""What blocked green threads (and worker threads) get when the reactor stops, on every reactor.

tests/scripts/shutdown_report.py parks green threads in every kind of wait, lets
``txgreen.run`` stop the reactor, and prints a JSON report of what each wait raised; it runs
once per reactor, all reactors at once.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from support import REACTOR_CLASS, REACTORS, SCRIPT_TEST_MARKS, in_parallel, run_script

pytestmark = SCRIPT_TEST_MARKS

STOPPED = (
    "ReactorStopped: the reactor has stopped, so this call can never complete; "
    "green threads cannot block once the reactor is shut down"
)
NO_SPAWN = "ReactorStopped: cannot spawn a green thread: the reactor has stopped"
# The state of a thread that ReactorStopped ended (it did not catch it, or had not started).
ENDED_BY_REACTOR_STOPPED = {
    "dead": True,
    "successful": False,
    "exception": "ReactorStopped",
    "value": None,
}


def shutdown_report(reactor: str) -> dict[str, Any]:
    # A wait that ReactorStopped failed to end shows up as a timeout: returncode None.
    proc = run_script("shutdown_report.py", reactor)
    # Threads that got ReactorStopped (caught or not) log nothing.
    assert (proc.returncode, proc.stderr) == (0, "")
    report: dict[str, Any] = json.loads(proc.stdout.splitlines()[-1])
    assert report["reactor"] == REACTOR_CLASS[reactor]
    return report


@pytest.fixture(scope="module")
def reports() -> dict[str, dict[str, Any]]:
    return in_parallel(shutdown_report, REACTORS)


@pytest.fixture(params=REACTORS)
def report(request: pytest.FixtureRequest, reports: dict[str, dict[str, Any]]) -> dict[str, Any]:
    return reports[request.param]


def test_no_thread_ended_before_the_stop(report: dict[str, Any]) -> None:
    assert report["dead_before_stop"] == []
    assert report["events"] == ["all parked", "before shutdown trigger", "run returned"]


def test_blocked_threads_get_reactor_stopped(report: dict[str, Any]) -> None:
    waits = ["deferred_1", "deferred_2", "deferred_with_timeout", "sleep", "to_thread"]
    assert {k: report[k] for k in waits} == dict.fromkeys(waits, STOPPED)
    # They caught it and returned normally.
    for k in waits:
        assert report["thread_states"][k] == {
            "dead": True,
            "successful": True,
            "exception": None,
            "value": None,
        }


def test_uncaught_reactor_stopped_ends_the_thread(report: dict[str, Any]) -> None:
    assert report["thread_states"]["uncaught"] == ENDED_BY_REACTOR_STOPPED


def test_joiners_get_reactor_stopped(report: dict[str, Any]) -> None:
    # Whether the joiner parked before or after the thread it waits for did, and although that
    # thread then ends normally, a joiner blocked at the stop gets ReactorStopped.
    joins = ["join_before", "join_after", "get_before", "get_after"]
    assert {k: report[k] for k in joins} == dict.fromkeys(joins, STOPPED)
    assert report["thread_states"]["target"]["value"] == "target cleaned up"


def test_blocking_again_after_catching_raises_at_once(report: dict[str, Any]) -> None:
    first, block_on, sleep0, sleep5, spawn = report["catch_and_block_again"]
    assert [first, block_on, sleep0, sleep5] == [STOPPED] * 4
    assert spawn == NO_SPAWN
    # No wait at all: the sleep(5) did not sleep.
    assert report["catch_and_block_again_seconds"] < 1.0


def test_unstarted_thread_finishes_with_reactor_stopped_without_running(
    report: dict[str, Any],
) -> None:
    assert report["unstarted_ran"] == []
    assert report["thread_states"]["unstarted"] == ENDED_BY_REACTOR_STOPPED


def test_block_spawn_run_after_stop(report: dict[str, Any]) -> None:
    assert report["after"] == {
        "block_on": STOPPED,
        # From another OS thread too (not "the reactor is not running, start it first").
        "block_on_from_os_thread": STOPPED,
        "sleep": STOPPED,
        "spawn": NO_SPAWN,
        "spawn_later": NO_SPAWN,
        "run": "ReactorStopped: the reactor has already run and stopped; it cannot be restarted",
    }


def test_block_on_in_thread_worker_gets_reactor_stopped(report: dict[str, Any]) -> None:
    # A deferToThread worker blocked in block_on (like blockingCallFromThread) is released by
    # the shutdown with ReactorStopped, so the thread pool can stop: no thread is left.
    assert report["worker_thread_is_main"] is False
    assert report["worker"] == STOPPED
    assert report["to_thread"] == STOPPED
    assert report["threads_left"] == ["MainThread"]
