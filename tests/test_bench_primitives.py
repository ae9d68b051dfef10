"""benchmarks/bench_primitives.py --smoke, run as a program: the shape of its report."""

from __future__ import annotations

import re
import subprocess

import pytest

from support import PROGRAM_TEST_MARKS, ns, run_program

# The program chooses its own reactor (and runs gevent in a child process).
pytestmark = PROGRAM_TEST_MARKS

LABELS = [
    "sleep(0)",
    "spawn + join",
    "Event wake round trip",
    "Queue put/get round trip",
    "Channel ping-pong round trip",
]
FIGURE = r"(\d+(?:\.\d+)?) (ns|µs)"
ROW = re.compile(rf"^  (\S.*?) +{FIGURE} +{FIGURE} +(\d+\.\d\d)  (PASS|MISS)$")
MISSING_ROW = re.compile(rf"^  (\S.*?) +not available +{FIGURE}  \((.+)\)$")


def run_bench(*args: str) -> subprocess.CompletedProcess[str]:
    return run_program("benchmarks/bench_primitives.py", "--smoke", *args)


def check_header(lines: list[str], reactor_name: str) -> None:
    assert lines[0] == "txgreen primitives vs gevent (smoke run: tiny loops, figures are rough)"
    assert re.fullmatch(
        r"Python \d+\.\d+\.\d+ \(\w+\), Twisted \S+, greenlet \S+, gevent \S+, txgreen \S+",
        lines[1],
    ), lines[1]
    assert re.fullmatch(
        rf"txgreen reactor: \S+ \(--reactor {reactor_name}\); gevent loop: \S+; "
        r"\S+ \S+, \d+ CPUs",
        lines[2],
    ), lines[2]
    assert lines[3] == (
        "loops: 200 operations, 3 timed repeats after a warm-up; per operation: median; "
        "target txgreen / gevent <= 1.5"
    )
    assert lines[4] == ""
    assert re.fullmatch(r"  operation +txgreen +gevent +ratio", lines[5]), lines[5]


def test_smoke_report_has_every_operation_with_a_verdict() -> None:
    proc = run_bench()
    assert (proc.returncode, proc.stderr) == (0, ""), proc.stderr
    lines = proc.stdout.splitlines()
    check_header(lines, "default")
    rows = [ROW.match(line) for line in lines[6:11]]
    assert all(rows), lines[6:11]
    assert [m[1] for m in rows if m] == LABELS
    for m in rows:
        assert m is not None
        ours, theirs, ratio = ns(m[2], m[3]), ns(m[4], m[5]), float(m[6])
        assert ours > 0
        assert theirs > 0
        # The ratio is that of the medians (computed before rounding them for print).
        assert ratio == pytest.approx(ours / theirs, rel=0.02, abs=0.01)
        assert m[7] == ("PASS" if ratio <= 1.5 else "MISS")
    passed = sum(1 for m in rows if m and m[7] == "PASS")
    assert lines[11] == ""
    assert lines[12] == f"targets met: {passed} of 5 (0 not available)"
    # Only a warning about a busy machine may follow.
    assert all(line.startswith("warning: the machine was busy") for line in lines[13:])


def test_missing_txgreen_modules_print_not_available() -> None:
    proc = run_bench("--skip-module", "txgreen._queue", "--reactor", "poll")
    assert (proc.returncode, proc.stderr) == (0, ""), proc.stderr
    lines = proc.stdout.splitlines()
    check_header(lines, "poll")
    assert [bool(ROW.match(line)) for line in lines[6:11]] == [True, True, True, False, True]
    m = MISSING_ROW.match(lines[9])
    assert m is not None, lines[9]
    assert m[1] == "Queue put/get round trip"
    assert ns(m[2], m[3]) > 0  # gevent's side is still measured
    assert m[4] == "txgreen._queue skipped with --skip-module"
    assert re.fullmatch(r"targets met: [0-4] of 4 \(1 not available\)", lines[12]), lines[12]


def test_bad_arguments() -> None:
    proc = run_bench("--loops", "0")
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert "--loops and --repeats must be >= 1" in proc.stderr
