"""benchmarks/bench_wsgi_cost.py --smoke, run as a program: the shape of its report."""

from __future__ import annotations

import re

from support import PROGRAM_TEST_MARKS, check_says_how_to_install, run_program

# The program starts its servers under valgrind and wrk (each in a process of its own).
pytestmark = PROGRAM_TEST_MARKS

ROW = re.compile(r"^  ([a-d]\. .+?) +(\d{1,3}(?:,\d{3})*) +(\d{1,3}(?:,\d{3})*) +(\d+\.\d{3})$")


def test_smoke_report_counts_instructions_per_answer() -> None:
    proc = run_program("benchmarks/bench_wsgi_cost.py", "--smoke")
    assert (proc.returncode, proc.stderr) == (0, ""), proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == (
        "txgreen WSGI cost per request: instructions per answer (callgrind), hello world "
        "(smoke run: two servers, 1 s of load, figures are rough)"
    )
    assert re.fullmatch(
        r"Python \S+, Twisted \S+, greenlet \S+, txgreen \S+; wrk -t1 -c50, 1 s counted after "
        r"a warm-up; user-space instructions of the server process",
        lines[1],
    ), lines[1]
    header = "  server" + " " * 36 + "answers  instr/answer  x native"
    assert lines[2:4] == ["", header]
    native, served = (ROW.match(line) for line in lines[4:6])
    assert native is not None, lines[4]
    assert served is not None, lines[5]
    assert (native[1], served[1]) == (
        "a. native twisted.web Resource",
        "d. + GreenSite limits (serve_wsgi)",
    )
    assert native[4] == "1.000"
    for row in (native, served):
        assert int(row[2].replace(",", "")) > 0  # answers
        # Some 300,000 instructions of Python and Twisted per answer at the least.
        assert int(row[3].replace(",", "")) > 50_000
    assert float(served[4]) > 1.0  # the WSGI server does more than the native resource
    assert lines[6] == ""
    assert re.fullmatch(r"total time: \d+\.\d s", lines[-1]), lines[-1]


def test_without_valgrind_it_says_how_to_install_it() -> None:
    check_says_how_to_install("benchmarks/bench_wsgi_cost.py", ["--smoke"], "valgrind")
