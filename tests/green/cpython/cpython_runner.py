"""Run one module of CPython's ``test`` package with unittest; write each test's outcome as JSON.

Run plain (``python cpython_runner.py test.test_socket --out r.json``) or green, through
``python -m txgreen run cpython_runner.py ...``: then ``txgreen.patch()`` has run before this
file, and the tests run in the main green thread with the reactor running.  ``--patch
socket,dns`` instead patches those parts here, before anything of the ``test`` package is
imported (for a run under ``python -m txgreen run --no-patch``).

The resources of ``test.support`` are the same in both modes and never include ``network`` or
``urlfetch``: nothing tries the internet.

A watchdog OS thread bounds each test (``--deadline`` seconds).  A test that runs longer is
recorded as ``hung``, every thread's stack goes to stderr, the results so far are written and
the process exits with :data:`HUNG_STATUS`; the caller runs the module again with the tests
already done skipped (``--skip``).  A test blocking the reactor's thread, or a green thread that
never wakes, therefore shows up as a named failure, not as a hung run.  In a green run the
reactor's deadline (a ``txgreen.Timeout``) comes first: the test's ``hung`` detail then holds
where the test waited and where every other green thread waited at that moment.

Outcomes: ``passed``, ``failed``, ``error``, ``skipped``, ``expected_failure``,
``unexpected_success``, ``hung``.  Errors of class and module fixtures are recorded under
unittest's own ids (``setUpClass (test.test_x.Case)``).
"""

from __future__ import annotations

import _thread
import argparse
import faulthandler
import importlib
import json
import os
import sys
import time
import traceback
import unittest
from collections.abc import Iterator
from types import TracebackType
from typing import Any

from cpython_known_failures import known_failure

HUNG_STATUS = 3
KNOWN_FAILURE_DEADLINE = 4.0  # seconds, for a known failure in a green run (most hang)
WATCHDOG_GRACE = 5.0  # seconds past the reactor's deadline before the OS watchdog acts
RESOURCES = ["subprocess", "walltime"]  # never "urlfetch"; "network" only as below
# Modules that ask for the "network" resource but only use 127.0.0.1, and get it: module ->
# prefixes of test ids that do reach the internet, recorded as skipped without running.
LOCAL_NETWORK: dict[str, tuple[str, ...]] = {
    "test.test_socketserver": (),
    "test.test_timeout": ("test.test_timeout.TCPTimeoutTestCase.",),  # www.python.org
}
_RANK = {
    "passed": 0,
    "skipped": 1,
    "expected_failure": 1,
    "unexpected_success": 2,
    "failed": 3,
    "error": 4,
    "hung": 5,
}

_ExcInfo = tuple[type[BaseException], BaseException, TracebackType | None]


def _short(err: _ExcInfo | None) -> str:
    if err is None:
        return ""
    lines = traceback.format_exception_only(err[0], err[1])
    return lines[-1].strip()[:300] if lines else ""


class Recorder(unittest.TestResult):
    """Keeps one outcome per test id (the worst of its subtests'), and the running test."""

    def __init__(self, deadline: float, green: Any) -> None:
        super().__init__()
        self.outcomes: dict[str, dict[str, str]] = {}
        self.current: str | None = None
        self.started = 0.0
        self.lock = _thread.allocate_lock()  # real: the watchdog OS thread takes it too
        self.deadline = deadline
        self.green = green  # the txgreen package when the tests run in a green thread
        self.greenlet: Any = None
        self.timeout: Any = None
        self.hang_stacks = ""  # where the current test's green threads waited when it hung
        self.os_threads = 0  # _thread._count() when the current test started
        if green is not None:
            import greenlet

            self.greenlet = greenlet.getcurrent()

    def deadline_for(self, test_id: str) -> float:
        """Seconds ``test_id`` may run: shorter for a known failure in a green run."""
        if self.green is not None and known_failure(test_id) is not None:
            return min(self.deadline, KNOWN_FAILURE_DEADLINE)
        return self.deadline

    def _set(self, test: Any, outcome: str, detail: str = "") -> None:
        test_id = test.id() if hasattr(test, "id") else str(test)
        with self.lock:
            old = self.outcomes.get(test_id)
            if old is None or _RANK[outcome] > _RANK[old["outcome"]]:
                self.outcomes[test_id] = {"outcome": outcome, "detail": detail}
                if test_id == self.current:
                    took = time.monotonic() - self.started
                    self.outcomes[test_id]["seconds"] = f"{took:.3f}"

    def startTest(self, test: unittest.TestCase) -> None:
        super().startTest(test)
        with self.lock:
            self.current = test.id()
            self.started = time.monotonic()
        print(f"-- {test.id()}", file=sys.stderr, flush=True)
        self.os_threads = _thread._count()
        if self.green is not None:
            # The reactor's own deadline: a green wait that never ends raises in the test.
            self.timeout = self.green.Timeout(self.deadline_for(test.id())).start()

    def stopTest(self, test: unittest.TestCase) -> None:
        timeout, self.timeout = self.timeout, None
        if timeout is not None:
            timeout.cancel()
            if timeout.expired:
                detail = (
                    f"a green wait was still blocked after {timeout.seconds:g} s "
                    f"(txgreen.Timeout raised in it); OS threads: {self.os_threads} when the "
                    f"test started, {_thread._count()} at its end"
                )
                if self.hang_stacks:
                    print(self.hang_stacks, file=sys.stderr, flush=True)
                    detail += "\n" + self.hang_stacks
                with self.lock:
                    self.outcomes[test.id()] = {"outcome": "hung", "detail": detail}
        self.hang_stacks = ""
        super().stopTest(test)
        with self.lock:
            self.current = None

    def addSuccess(self, test: unittest.TestCase) -> None:
        self._set(test, "passed")

    def addError(self, test: unittest.TestCase, err: Any) -> None:
        super().addError(test, err)
        if self.timeout is not None and err[1] is self.timeout and not self.hang_stacks:
            self.hang_stacks = self._green_stacks(err)
        self._set(test, "error", _short(err))

    def _green_stacks(self, err: _ExcInfo) -> str:
        """Where the test waited when its deadline raised in it, and where every other green
        thread waits at that moment (a hang is often a thread that a wake-up never reached)."""
        parts = ["where the test waited:\n", *traceback.format_tb(err[2])]
        others = [t for t in self.green.get_hub().threads if t is not self.greenlet]
        for thread in others[:8]:
            frame = getattr(thread, "gr_frame", None)
            parts.append(f"green thread {thread!r}:\n")
            parts.extend(traceback.format_stack(frame) if frame is not None else ["  (no frame)\n"])
        if len(others) > 8:
            parts.append(f"... and {len(others) - 8} more green threads\n")
        return "".join(parts)[-6000:]

    def addFailure(self, test: unittest.TestCase, err: Any) -> None:
        super().addFailure(test, err)
        self._set(test, "failed", _short(err))

    def addSkip(self, test: unittest.TestCase, reason: str) -> None:
        self._set(test, "skipped", reason[:300])

    def addExpectedFailure(self, test: unittest.TestCase, err: Any) -> None:
        self._set(test, "expected_failure")

    def addUnexpectedSuccess(self, test: unittest.TestCase) -> None:
        self._set(test, "unexpected_success")

    def addSubTest(self, test: unittest.TestCase, subtest: unittest.TestCase, err: Any) -> None:
        if err is not None:
            failed = issubclass(err[0], test.failureException)
            self._set(test, "failed" if failed else "error", f"{subtest.id()}: {_short(err)}")


def _flatten(suite: unittest.TestSuite | unittest.TestCase) -> Iterator[unittest.TestCase]:
    if isinstance(suite, unittest.TestSuite):
        for item in suite:
            yield from _flatten(item)
    else:
        yield suite


def _write(path: str, payload: dict[str, Any]) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(payload, f, indent=1, sort_keys=True)
    os.replace(tmp, path)


def _watchdog(recorder: Recorder, report: Any) -> None:
    # In a green run the reactor's deadline comes first; this one catches a blocked hub.
    extra = 0.0 if recorder.green is None else WATCHDOG_GRACE
    while True:
        time.sleep(0.25)
        with recorder.lock:
            current, started = recorder.current, recorder.started
        deadline = 0.0 if current is None else recorder.deadline_for(current) + extra
        if current is not None and time.monotonic() - started > deadline:
            print(
                f"\n*** {current} still running after {deadline:g} s: recorded as hung; "
                "the stacks of every thread follow",
                file=sys.stderr,
                flush=True,
            )
            faulthandler.dump_traceback(file=sys.stderr, all_threads=True)
            frame = getattr(recorder.greenlet, "gr_frame", None)
            if frame is not None:
                print("\nThe green thread running the test:", file=sys.stderr)
                traceback.print_stack(frame, file=sys.stderr)
            with recorder.lock:
                recorder.outcomes[current] = {
                    "outcome": "hung",
                    "detail": f"still running after {deadline:g} s",
                }
            report(current)
            sys.stderr.flush()
            os._exit(HUNG_STATUS)


def main(argv: list[str] | None = None) -> int:
    """Run the module's tests (but those skipped); the exit status (3: a test hung)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("module", help="a module of the test package, e.g. test.test_socket")
    parser.add_argument("--out", required=True, help="the JSON file to write")
    parser.add_argument("--skip", default=None, help="a file of test ids not to run, one a line")
    parser.add_argument("--deadline", type=float, default=10.0, help="seconds a test may run")
    parser.add_argument("--patch", default=None, help="parts to patch here, e.g. socket,dns")
    args = parser.parse_args(argv)

    if args.patch:
        import txgreen

        parts = set(args.patch.split(","))
        flags = ("socket", "dns", "ssl", "select", "selectors", "time")
        txgreen.patch(**{flag: flag in parts for flag in flags})

    # CPython's test package (typeshed has no stubs for it).
    support: Any = importlib.import_module("test.support")

    internet = LOCAL_NETWORK.get(args.module)
    support.use_resources = list(RESOURCES) + (["network"] if internet is not None else [])
    support.verbose = False
    support.failfast = False

    skip: set[str] = set()
    if args.skip:
        with open(args.skip, encoding="utf-8") as f:
            skip = {line.strip() for line in f if line.strip()}

    patched: list[str] = []
    if "txgreen" in sys.modules:
        import txgreen

        patched = sorted(txgreen.patched())

    green = None
    if "txgreen" in sys.modules:
        import greenlet

        import txgreen

        if isinstance(greenlet.getcurrent(), txgreen.GreenThread):
            green = txgreen
    if green is not None:
        # The green resolver's thread pool starts its workers when lookups need them and
        # keeps them. A test during which it grew would end with more OS threads than it
        # began with, and CPython's threading_helper.wait_threads_exit (the cleanup of every
        # ThreadableTest) then waits 30 s for them to go: start them all now.
        from txgreen.green import socket as green_socket

        resolver = green_socket._pool(green.get_hub())
        resolver.adjustPoolsize(minthreads=resolver.max)
    recorder = Recorder(args.deadline, green)
    began = time.monotonic()

    def report(hung: str | None) -> None:
        with recorder.lock:
            outcomes = dict(recorder.outcomes)
        _write(
            args.out,
            {
                "module": args.module,
                "patched": patched,
                "hung": hung,
                "seconds": round(time.monotonic() - began, 2),
                "results": outcomes,
            },
        )

    loader = unittest.TestLoader()
    try:
        module = importlib.import_module(args.module)
        suite = loader.loadTestsFromModule(module)
    except BaseException as e:  # the import itself failed: one error for the whole module
        recorder.outcomes[f"import ({args.module})"] = {
            "outcome": "error",
            "detail": _short((type(e), e, e.__traceback__)),
        }
        report(None)
        return 1
    tests = []
    for test in _flatten(suite):
        if test.id() in skip:
            continue
        if internet and test.id().startswith(internet):
            recorder.outcomes[test.id()] = {"outcome": "skipped", "detail": "needs the internet"}
            continue
        tests.append(test)
    # A real OS thread whatever patch() did to threading.Thread (a green one could not
    # watch a test that blocks the reactor's thread).
    _thread.start_new_thread(_watchdog, (recorder, report))
    unittest.TestSuite(tests).run(recorder)
    # Fixture errors (setUpModule, setUpClass) have no startTest: keep them too.
    for holder, err in recorder.errors:
        if holder.id() not in recorder.outcomes:
            recorder.outcomes[holder.id()] = {"outcome": "error", "detail": err[-300:]}
    report(None)
    return 0


if __name__ == "__main__":
    sys.exit(main())
