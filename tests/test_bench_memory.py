"""benchmarks/bench_memory.py --smoke, run as a program: the shape of its report."""

from __future__ import annotations

import re
import sys

import pytest

from support import PROGRAM_TEST_MARKS, run_program

# The program starts its own servers and thread children (Twisted on epoll), and reads /proc.
pytestmark = [
    *PROGRAM_TEST_MARKS,
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/PID/status"),
]

SERVERS = [
    "a. green (txgreen.listen, recv/write)",
    "b. Twisted Protocol (dataReceived)",
    "c. gevent StreamServer",
]
THREADS = ["green (txgreen.spawn, Event.wait)", "gevent (gevent.spawn, Event.wait)"]
ROW = re.compile(r"^  (\S.*?) +(\d+\.\d) MB +(\d+\.\d) MB +(-?\d+\.\d\d) KB$")
RATIO = re.compile(
    r"^  green / (gevent|twisted) +per (connection|thread) += +(\d+\.\d\d)"
    r"  (PASS  \(target <= 1\.00\)|MISS  \(target <= 1\.00\)|\(for reference\))$"
)


def rows(lines: list[str]) -> dict[str, tuple[float, float, float]]:
    figures = {}
    for line in lines:
        m = ROW.match(line)
        assert m is not None, line
        figures[m[1]] = (float(m[2]), float(m[3]), float(m[4]))
    return figures


def test_smoke_report_has_every_server_and_the_ratios() -> None:
    proc = run_program("benchmarks/bench_memory.py", "--smoke")
    assert (proc.returncode, proc.stderr) == (0, ""), proc.stderr
    lines = proc.stdout.splitlines()
    assert len(lines) == 18, lines
    assert lines[0] == (
        "txgreen memory benchmark: idle connections and parked threads "
        "(smoke run: 200 of each, figures are rough)"
    )
    assert re.fullmatch(
        r"Python \d+\.\d+\.\d+ \(\w+\), Twisted \S+, greenlet \S+, gevent \S+, txgreen \S+",
        lines[1],
    ), lines[1]
    assert re.fullmatch(
        r"server RSS \(/proc/PID/status VmRSS\) before and after 200 idle connections "
        r"\(one 1-byte echo each\), median of 1 round; Twisted reactor: epoll; "
        r"\S+ \S+, \d+ CPUs",
        lines[2],
    ), lines[2]
    assert lines[3] == ""
    assert re.fullmatch(r"  server +before +after +per conn", lines[4]), lines[4]
    servers = rows(lines[5:8])
    assert list(servers) == SERVERS
    assert lines[8] == ""
    assert re.fullmatch(r"  200 threads waiting on an Event +before +after +per thread", lines[9])
    threads = rows(lines[10:12])
    assert list(threads) == THREADS
    # Every child ran and reported a plausible resident size (a Python process: MBs, not GBs).
    for before, after, per_item in [*servers.values(), *threads.values()]:
        assert 5 < before < 1000
        assert 5 < after < 1000
        assert per_item == pytest.approx((after - before) * 1024 / 200, abs=0.6)
    assert lines[12:14] == ["", "ratios (same run):"]
    per_conn = {
        k: v[2] for k, v in zip(("green", "twisted", "gevent"), servers.values(), strict=True)
    }
    per_thread = {k: v[2] for k, v in zip(("green", "gevent"), threads.values(), strict=True)}
    seen = []
    for line in lines[14:17]:
        m = RATIO.match(line)
        if m is None:  # a rough figure that is not positive cannot divide
            assert re.fullmatch(r"  green / \w+ +per \w+ += +n/a  \(the \w+ figure .*\)", line)
            continue
        other, what, ratio = m[1], m[2], float(m[3])
        seen.append((other, what))
        figures = per_conn if what == "connection" else per_thread
        assert ratio == pytest.approx(figures["green"] / figures[other], rel=0.05, abs=0.02)
        if (other, what) == ("gevent", "connection"):
            assert m[4] == ("PASS" if ratio <= 1.0 else "MISS") + "  (target <= 1.00)"
        else:
            assert m[4] == "(for reference)"
    assert set(seen) <= {("gevent", "connection"), ("twisted", "connection"), ("gevent", "thread")}
    assert re.fullmatch(r"total time: \d+\.\d s", lines[17]), lines[17]


def test_idle_green_connection_costs_at_most_a_gevent_one() -> None:
    # Issue 9's target, at 2,000 connections to keep the test short (the full benchmark opens
    # 10,000): before the idle Stream stopped allocating its waiter deques up front and the
    # green thread's start-up stopped keeping a nested interpreter frame on the saved stack,
    # this was 10.9 KB against gevent's 9.3 KB (1.16); now 7.7 KB (0.82).
    proc = run_program(
        "benchmarks/bench_memory.py", "--connections", "2000", "--threads", "200", "--rounds", "1"
    )
    assert (proc.returncode, proc.stderr) == (0, ""), proc.stderr
    lines = proc.stdout.splitlines()
    servers = rows(lines[5:8])
    green, gevent = servers[SERVERS[0]][2], servers[SERVERS[2]][2]
    assert 0 < green <= gevent, (green, gevent)
    assert "green / gevent   per connection =" in lines[14]
    assert lines[14].endswith("PASS  (target <= 1.00)"), lines[14]
