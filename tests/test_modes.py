"""The three ways a program meets the hub, each in a process of its own, on every reactor.

- implicit: a plain script blocks from its main greenlet; txgreen starts the reactor, and stops
  it again at interpreter exit (tests/scripts/implicit_hub.py);
- ``txgreen.run(main, *args, **kwargs)`` (tests/scripts/run_main.py);
- classic: the script runs ``reactor.run()`` itself (tests/scripts/classic_mode.py).

All scripts for all reactors start at once (one module-scoped fixture) so the module costs about
as much as its slowest process.
"""

from __future__ import annotations

import re

import pytest

from support import (
    MAIN_LOOPS,
    REACTOR_CLASS,
    REACTORS,
    SCRIPT_TEST_MARKS,
    Finished,
    in_parallel,
    run_script,
)

pytestmark = SCRIPT_TEST_MARKS

# main's exception travels the same way whatever the reactor (MAIN_LOOPS: only how the loop stops
# differs).
PLAN = [
    *[("implicit_hub.py", r) for r in REACTORS],
    *[("run_main.py", r, "ok") for r in REACTORS],
    *[("run_main.py", r, "raise") for r in MAIN_LOOPS],
    *[("run_main.py", r, "async") for r in MAIN_LOOPS],
    *[("classic_mode.py", r) for r in REACTORS],
]


@pytest.fixture(scope="module")
def runs() -> dict[tuple[str, ...], Finished]:
    return in_parallel(lambda args: run_script(*args), PLAN)


def assert_lines(text: str, expected: list[str | re.Pattern[str]]) -> None:
    """``text`` has exactly the ``expected`` lines: equal strings, or fully matching patterns."""
    lines = text.splitlines()
    # Where a line matches, show it as is, so the assertion diff points at the real mismatches.
    want = [
        lines[i] if i < len(lines) and _matches(lines[i], w) else _show(w)
        for i, w in enumerate(expected)
    ]
    assert lines == want


def _matches(line: str, want: str | re.Pattern[str]) -> bool:
    return line == want if isinstance(want, str) else want.fullmatch(line) is not None


def _show(want: str | re.Pattern[str]) -> str:
    return want if isinstance(want, str) else f"<regex {want.pattern}>"


# -- implicit hub -------------------------------------------------------------------------------


@pytest.mark.parametrize("reactor", REACTORS)
def test_implicit_hub_starts_and_stops_reactor(
    runs: dict[tuple[str, ...], Finished], reactor: str
) -> None:
    r = runs["implicit_hub.py", reactor]
    assert (r.returncode, r.stderr) == (0, "")
    lines = r.stdout.splitlines()
    assert_lines(
        "\n".join(lines[:5]),
        [
            f"reactor: {REACTOR_CLASS[reactor]}",
            "running before first block: False",
            # The main greenlet blocked and came back with the value, the reactor now running.
            "block_on: deferLater result | running: True | main greenlet: True",
            # A thread spawned from the main greenlet ran as a green thread and blocked itself.
            "get: worker got 5 in GreenThread",
            "main done",
        ],
    )
    # At exit txgreen stopped the reactor it started: shutdown triggers ran, and the green
    # thread still blocked got ReactorStopped.  (The order of the first two is the order in
    # which the triggers were registered.)
    assert sorted(lines[5:7]) == ["lingering: ReactorStopped", "trigger: before shutdown"]
    assert lines[7:] == ["trigger: after shutdown"]


# -- txgreen.run ---------------------------------------------------------------------------------


@pytest.mark.parametrize("reactor", REACTORS)
def test_run_returns_main_result_and_stops_reactor(
    runs: dict[tuple[str, ...], Finished], reactor: str
) -> None:
    r = runs["run_main.py", reactor, "ok"]
    assert (r.returncode, r.stderr) == (0, "")
    assert_lines(
        r.stdout,
        [
            f"reactor: {REACTOR_CLASS[reactor]}",
            "main: running True",
            # txgreen.run while the reactor runs (here: from main itself).
            re.compile(r"main: nested run: ReactorAlreadyRunning - .*already running.*"),
            # main ended: run stopped the reactor, so the shutdown triggers ran...
            "trigger: before shutdown",
            "trigger: after shutdown",
            # ...before run returned main's result (main got 6 and scale=7).
            "run returned: (42, 'done') | running: False",
            # Twisted reactors cannot restart: run after the stop says so.
            re.compile(r"run again: ReactorStopped - .*cannot be restarted"),
        ],
    )


@pytest.mark.parametrize("reactor", MAIN_LOOPS)
def test_run_raises_main_exception(runs: dict[tuple[str, ...], Finished], reactor: str) -> None:
    r = runs["run_main.py", reactor, "raise"]
    assert r.returncode == 1, r.stderr
    assert r.stdout.splitlines() == [
        f"reactor: {REACTOR_CLASS[reactor]}",
        "trigger: before shutdown",
        "trigger: after shutdown",
    ]
    # One traceback on stderr, the uncaught exception's (run() re-raised main's exception, so
    # it is handled and not logged as unhandled too): raised out of txgreen.run at the
    # script's call, and reaching down to the line in the user's main function that raised it.
    assert r.stderr.startswith("Traceback (most recent call last):\n")
    assert r.stderr.count("Traceback") == 1
    frames = re.findall(r'File ".*?([^/]+)", line \d+, in (\S+)', r.stderr)
    assert frames[0] == ("run_main.py", "<module>")
    assert frames[-1] == ("run_main.py", "user_failing_main")
    assert '    raise ValueError(f"main failed with {a * scale}")\n' in r.stderr
    assert r.stderr.endswith("\nValueError: main failed with 42\n")


@pytest.mark.parametrize("reactor", MAIN_LOOPS)
def test_run_awaits_an_async_main(runs: dict[tuple[str, ...], Finished], reactor: str) -> None:
    r = runs["run_main.py", reactor, "async"]
    assert (r.returncode, r.stderr) == (0, "")
    assert r.stdout.splitlines() == [
        f"reactor: {REACTOR_CLASS[reactor]}",
        "wrong: TypeError - txgreen.run() takes the function to run, not its result: write "
        "txgreen.run(main), not txgreen.run(main()) (an async def function is fine)",
        "wrong: TypeError - txgreen.run() takes a function to run in a green thread, not a "
        "'int': txgreen.run(main, *args)",
        # awaited with its arguments, while the reactor ran; then the reactor stopped
        "trigger: before shutdown",
        "trigger: after shutdown",
        "run returned: (42, True)",
    ]


# -- classic mode ---------------------------------------------------------------------------------

HOW_TO_FIX = re.compile(
    r".* was called from the hub \(the greenlet running the reactor\).*"
    r"txgreen\.spawn\(fn, \.\.\.\) or txgreen\.defer_to_green\(fn, \.\.\.\).*@txgreen\.green.*"
)


@pytest.mark.parametrize("reactor", REACTORS)
def test_classic_mode(runs: dict[tuple[str, ...], Finished], reactor: str) -> None:
    r = runs["classic_mode.py", reactor]
    assert (r.returncode, r.stderr) == (0, "")
    assert_lines(
        r.stdout,
        [
            f"reactor: {REACTOR_CLASS[reactor]}",
            # reactor.run() in the main greenlet: reactor callbacks run in it, it is the hub.
            "callWhenRunning: in main greenlet: True",
            # Blocking in a reactor callback is an error that says how to fix it.
            re.compile(r"hub block_on: BlockingInHubError - block_on\(\)" + HOW_TO_FIX.pattern),
            re.compile(r"hub sleep: BlockingInHubError - txgreen\.sleep\(\)" + HOW_TO_FIX.pattern),
            re.compile(r"hub run: ReactorAlreadyRunning - .*already running.*"),
            "hub join: BlockingInHubError",
            # Green threads spawned from the callback block on the reactor.
            "client 1: got 10 in a green thread: GreenThread",
            "client 2: got 20 in a green thread: GreenThread",
            "client 3: got 30 in a green thread: GreenThread",
            "conductor: results [10, 20, 30]",
            # reactor.stop() from a green thread ends reactor.run() normally.
            "trigger: before shutdown",
            "reactor.run returned",
            re.compile(r"spawn after stop: ReactorStopped - .*the reactor has stopped"),
        ],
    )
