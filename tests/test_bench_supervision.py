"""benchmarks/bench_supervision.py --smoke, run as a program: the shape of its report."""

from __future__ import annotations

import re
import sys

import pytest

from support import PROGRAM_TEST_MARKS, run_program

# The program runs its own children (txgreen, gevent, asyncio) and reads /proc.
pytestmark = [
    *PROGRAM_TEST_MARKS,
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/status"),
]

MEMORY_ROW = re.compile(r"^  (\S.*?) +(-?\d+\.\d\d) KB +(-?\d+\.\d\d) KB$")
RTT_ROW = re.compile(r"^  (\S.*?) +(\d+\.\d\d) µs$")
RATIO = re.compile(r"^  (\S.*?) += +(-?\d+\.\d\d)  (PASS|MISS|\(for reference)")


def test_smoke_report_has_every_figure_and_the_ratios() -> None:
    proc = run_program("benchmarks/bench_supervision.py", "--smoke")
    assert (proc.returncode, proc.stderr) == (0, ""), proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == (
        "txgreen supervision benchmark: idle processes, message round trips, restarts "
        "(smoke run: 2,000 threads, figures are rough)"
    )
    assert re.fullmatch(
        r"Python \d+\.\d+\.\d+ \(\w+\), Twisted \S+, greenlet \S+, gevent \S+, txgreen \S+",
        lines[1],
    ), lines[1]
    memory = {m[1]: (float(m[2]), float(m[3])) for line in lines if (m := MEMORY_ROW.match(line))}
    assert list(memory) == [
        "a. txgreen thread in receive(), mailbox + monitor",
        "b. txgreen thread waiting on an Event",
        "c. gevent greenlet waiting on an Event",
        "d. asyncio task awaiting an Event",
    ]
    for traced, rss in memory.values():
        assert 0 < traced < 64
        assert rss < 64
    assert "  e. Erlang process (documented, for reference)" in "\n".join(lines)
    rtt = {m[1]: float(m[2]) for line in lines if (m := RTT_ROW.match(line))}
    assert list(rtt) == [
        "a. txgreen send / receive",
        "b. txgreen Queue put / get",
        "c. gevent Queue put / get",
        "d. asyncio Queue put / get",
    ]
    assert all(0 < v < 10_000 for v in rtt.values())
    ratios = [m[1] for line in lines if (m := RATIO.match(line))]
    assert ratios == [
        "a / c (RSS)",
        "a / b (RSS)",
        "a / d (RSS)",
        "a / Erlang (RSS)",
        "a / b",
        "a / c",
        "a / d",
    ]
    assert re.fullmatch(
        r"  restart of a supervised child \(kill -> running again, CPU\), 100 restarts: "
        r"median \d+\.\d µs, p90 \d+\.\d µs",
        lines[-1],
    ), lines[-1]
