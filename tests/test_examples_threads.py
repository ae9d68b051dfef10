"""examples/blocking_db.py and benchmarks/bench_threads.py --smoke, each run as a program."""

from __future__ import annotations

import re

import pytest

from support import PROGRAM_TEST_MARKS, bench_medians, run_program

pytestmark = PROGRAM_TEST_MARKS


def test_blocking_db_serves_clients_concurrently() -> None:
    proc = run_program("examples/blocking_db.py")
    assert (proc.returncode, proc.stderr) == (0, "")
    lines = proc.stdout.splitlines()
    assert len(lines) == 4, lines
    assert lines[0] == (
        "blocking_db: SQLite behind a dedicated pool of 4 threads, "
        "10 ms of simulated latency per query"
    )
    m = re.fullmatch(
        r"served 20 clients x 5 requests \(220 queries\) in (\d+\.\d\d) s; every answer checked",
        lines[1],
    )
    assert m is not None, lines[1]
    elapsed = float(m[1])
    m = re.fullmatch(
        r"queries at once: peak (\d) \(pool size 4\); one at a time they would take 2\.20 s",
        lines[2],
    )
    assert m is not None, lines[2]
    # Several queries ran at once, never more than the dedicated pool allows; so the whole
    # run took less than the queries one after the other.
    assert 2 <= int(m[1]) <= 4
    assert elapsed < 2.2
    m = re.fullmatch(r"reactor heartbeat: largest gap between 10 ms ticks (\d+) ms", lines[3])
    assert m is not None, lines[3]
    assert 10 <= int(m[1]) < 1000  # the reactor never waited for the database


BENCH_LINE = re.compile(
    r"^  ([a-f])\. (.+?) +(\d+(?:\.\d+)?) (ns|µs)  \(best (\d+(?:\.\d+)?) (ns|µs)\)$"
)
SKIPPED_LINE = re.compile(r"^  ([a-f])\. (.+?) +skipped: crochet is not installed$")
RATIO_LINE = re.compile(r"^  (.+) \(([a-f])/([a-f])\): +(\d+\.\d{3}|skipped: .+)$")


def test_bench_threads_smoke() -> None:
    proc = run_program("benchmarks/bench_threads.py", "--smoke")
    assert (proc.returncode, proc.stderr) == (0, "")
    lines = proc.stdout.splitlines()
    assert lines[0] == "txgreen thread benchmarks (smoke run: tiny loops, figures are rough)"
    assert re.fullmatch(
        r"Python \S+ \(\w+\), Twisted \S+, greenlet \S+, crochet (\S+|not installed), "
        r"txgreen \S+",
        lines[1],
    ), lines[1]
    assert lines[2].startswith("reactor: twisted.internet.")
    assert lines[3] == "loops: 200 calls per loop, 3 repeats; median per call (best loop)"

    figures = bench_medians(lines, BENCH_LINE)
    skipped = [s[1] for line in lines if (s := SKIPPED_LINE.match(line))]
    assert sorted([*figures, *skipped]) == ["a", "b", "c", "d", "e", "f"]
    assert set(skipped) <= {"e", "f"}  # only crochet's may be missing

    ratios = [m.groups() for line in lines if (m := RATIO_LINE.match(line))]
    assert [r[:3] for r in ratios] == [
        ("call_in_thread vs plain Twisted", "a", "b"),
        ("call_in_thread vs asyncio.to_thread", "a", "c"),
        ("call_in_green vs crochet @wait_for", "d", "e"),
    ]
    for _, num, den, value in ratios:
        if value.startswith("skipped"):
            assert den in skipped
        else:
            # The printed ratio is the ratio of the printed medians (to rounding).
            assert float(value) == pytest.approx(figures[num] / figures[den], abs=0.02)
