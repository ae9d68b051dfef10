"""The examples and the benchmark's smoke mode, each run as a program in a subprocess."""

from __future__ import annotations

import re
import sys

import pytest

from support import PROGRAM_TEST_MARKS, bench_medians, check_says_how_to_install, run_program

pytestmark = PROGRAM_TEST_MARKS

CLIENTS = 5
REQUESTS = 2

# "[ 0.254s] client 3  <- 'REQUEST 1 FROM CLIENT 3'"
EVENT = re.compile(r"^\[ *(\d+\.\d{3})s\] (\S+(?: \d+)?) +(.*)$")
BENCH_LINE = re.compile(
    r"^  ([a-hmr]'?)\. +(.+?) +(\d+(?:\.\d+)?) (ns|µs)  \(best (\d+(?:\.\d+)?) (ns|µs)\)$"
)
RATIO_LINE = re.compile(
    r"^  (round trip|fired fast path): +(.+?) += +(\d+\.\d{3})  <= (\d\.\d\d) (PASS|MISS)$"
)
BOOKKEEPING_LINE = re.compile(
    r"^  bookkeeping: +block_on \(b\) / bare greenlet round trip \(m\) += +(\d+\.\d{3})  "
    r"\(txgreen's own cost\)$"
)


def test_hello_block_on() -> None:
    proc = run_program("examples/hello_block_on.py")
    assert (proc.returncode, proc.stderr) == (0, "")
    assert proc.stdout.splitlines() == [
        "slow_square(7) = 49",
        "three green threads at once: [1, 4, 9]",
    ]


def test_demo_clients_run_concurrently() -> None:
    proc = run_program("examples/demo.py")
    assert (proc.returncode, proc.stderr) == (0, "")
    lines = proc.stdout.splitlines()
    events = []
    for line in lines:
        m = EVENT.match(line)
        assert m is not None, f"not a timestamped event line: {line!r}"
        events.append((float(m[1]), m[2], m[3]))
    stamps = [t for t, _, _ in events]
    assert stamps == sorted(stamps)

    who, what = events[0][1], events[0][2]
    assert who == "server"
    assert re.fullmatch(
        r"listening on 127\.0\.0\.1:\d+; answers each line upper-cased 0\.25s later", what
    )

    # Every client asks its questions in order and gets each answer before asking the next.
    for n in range(1, CLIENTS + 1):
        mine = [what for _, who, what in events if who == f"client {n}"]
        expected = []
        for i in range(1, REQUESTS + 1):
            expected.append(f"-> 'request {i} from client {n}'")
            expected.append(f"<- 'REQUEST {i} FROM CLIENT {n}'")
        assert mine == expected

    # The other green threads: block_on on a Twisted API, call_in_thread, a Timeout.
    others = {who: what for _, who, what in events if who in ("resolver", "thread", "impatient")}
    assert re.fullmatch(
        r"localhost is \S+ \(block_on\(reactor\.resolve\(\.\.\.\)\)\)", others["resolver"]
    )
    assert re.fullmatch(
        r"derived a key in the thread pool: [0-9a-f]{16}\.\.\. \(call_in_thread\)",
        others["thread"],
    )
    assert others["impatient"] == "gave up after 0.1s (Timeout)"
    assert len(events) == 1 + len(others) + CLIENTS * REQUESTS * 2 + 2

    summary = [what for _, who, what in events if who == "main"]
    assert len(summary) == 2
    m = re.fullmatch(
        rf"{CLIENTS} clients x {REQUESTS} requests answered in (\d+\.\d\d)s "
        r"\(one after another: (\d+\.\d\d)s\)",
        summary[0],
    )
    assert m is not None, summary[0]
    elapsed, serial = float(m[1]), float(m[2])
    assert serial == CLIENTS * REQUESTS * 0.25
    # Concurrency: the requests overlapped, so it took less than doing them one by one (about
    # REQUESTS x 0.25 s instead of CLIENTS x REQUESTS x 0.25 s), and at least the one delay.
    assert REQUESTS * 0.25 <= elapsed < serial
    m = re.fullmatch(
        r"the server had up to (\d+) requests in flight at once; "
        r"the heartbeat ticked (\d+) times meanwhile",
        summary[1],
    )
    assert m is not None, summary[1]
    assert 2 <= int(m[1]) <= CLIENTS + 1  # the clients' and the impatient one's requests
    assert int(m[2]) >= 1


def check_bench_output(stdout: str, reactor_class: str | None, reactor_name: str) -> None:
    lines = stdout.splitlines()
    assert lines[0] == "txgreen core benchmarks (smoke run: tiny loops, figures are rough)"
    assert re.fullmatch(
        r"Python \d+\.\d+\.\d+ \(\w+\), Twisted \S+, greenlet \S+, pytest-twisted \S+, "
        r"txgreen \S+",
        lines[1],
    ), lines[1]
    m = re.match(rf"reactor: (\S+) \(--reactor {reactor_name}\); \S+ \S+, \d+ CPUs$", lines[2])
    assert m is not None, lines[2]
    if reactor_class is not None:
        assert m[1] == reactor_class
    assert lines[3].startswith(
        "loops: 2000 iterations (a, f, g), 200 (b, b', c, d, e, h, m, r); 3 "
    )

    figures = bench_medians(lines, BENCH_LINE)
    assert list(figures) == ["a", "b", "b'", "c", "d", "e", "f", "g", "h", "m", "r"]

    ratios = {}
    for line in lines:
        m = RATIO_LINE.match(line)
        if m:
            ratio, limit = float(m[3]), float(m[4])
            assert m[5] == ("PASS" if ratio <= limit else "MISS")
            ratios[m[1]] = (m[2].strip(), ratio, limit)
    assert list(ratios) == ["round trip", "fired fast path"]
    # The hardening issue's targets: round trip <= 1.05 x async def, fired path <= 1.00.
    assert (ratios["round trip"][2], ratios["fired fast path"][2]) == (1.05, 1.00)
    booking = [m for m in map(BOOKKEEPING_LINE.match, lines) if m]
    assert len(booking) == 1
    assert float(booking[0][1]) == pytest.approx(figures["b"] / figures["m"], abs=0.02)
    assert ratios["round trip"][0] == "block_on (b) / async def await (c)"
    assert ratios["fired fast path"][0] == "block_on fired (a) / await fired (f)"
    # The printed ratio is the ratio of the printed medians (to rounding).
    assert ratios["round trip"][1] == pytest.approx(figures["b"] / figures["c"], abs=0.02)
    assert ratios["fired fast path"][1] == pytest.approx(figures["a"] / figures["f"], abs=0.02)


def test_bench_smoke_default_reactor() -> None:
    proc = run_program("benchmarks/bench_core.py", "--smoke")
    assert (proc.returncode, proc.stderr) == (0, "")
    # Twisted's default reactor depends on the platform; on Linux it is epoll.
    default = "twisted.internet.epollreactor.EPollReactor" if sys.platform == "linux" else None
    check_bench_output(proc.stdout, default, "default")


def test_bench_smoke_asyncio_reactor() -> None:
    proc = run_program("benchmarks/bench_core.py", "--smoke", "--reactor", "asyncio")
    assert (proc.returncode, proc.stderr) == (0, "")
    check_bench_output(
        proc.stdout, "twisted.internet.asyncioreactor.AsyncioSelectorReactor", "asyncio"
    )


def test_bench_rejects_unknown_reactor() -> None:
    proc = run_program("benchmarks/bench_core.py", "--smoke", "--reactor", "nope")
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert "argument --reactor: invalid choice: 'nope'" in proc.stderr


COUNT_ROW = re.compile(r"^  ([bc])\.  (.+?) +(\d{1,3}(?:,\d{3})+)$")


def test_bench_instructions_smoke() -> None:
    # Needs valgrind (make services installs it; the test says so when it is missing).
    proc = run_program("benchmarks/bench_core.py", "--instructions", "--smoke")
    assert "needs valgrind" not in proc.stderr, proc.stderr
    assert (proc.returncode, proc.stderr) == (0, ""), proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == (
        "txgreen core benchmarks: instructions per iteration (callgrind) (smoke run: short loops)"
    )
    assert lines[3] == ""
    rows = [COUNT_ROW.match(line) for line in lines[4:6]]
    assert all(rows), lines[4:6]
    counts = {m[1]: int(m[3].replace(",", "")) for m in rows if m}
    # A round trip runs a reactor iteration, a Deferred's callbacks and two switches (or a
    # coroutine's send): tens of thousands of instructions, and about as many either way.
    assert 20_000 < counts["c"] < 200_000
    assert 0.8 < counts["b"] / counts["c"] < 1.3
    assert lines[6:8] == [
        "",
        "ratios of instructions (the targets are on time: see the module's docstring):",
    ]
    ratio = re.fullmatch(
        r"  round trip: +block_on \(b\) / async def await \(c\) += +(\d\.\d{3})"
        r"  \(time: <= 1\.05\)",
        lines[8],
    )
    assert ratio is not None, lines[8]
    assert float(ratio[1]) == pytest.approx(counts["b"] / counts["c"], abs=0.001)
    assert len(lines) == 9


def test_bench_instructions_without_valgrind_says_how_to_install_it() -> None:
    check_says_how_to_install("benchmarks/bench_core.py", ["--instructions"], "valgrind")
