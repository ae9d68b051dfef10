"""benchmarks/bench_requests.py --smoke, run as a program: the shape of its report."""

from __future__ import annotations

import re

import pytest

from support import PROGRAM_TEST_MARKS, run_program

# The program starts its own server and clients (each in a process of its own).
pytestmark = PROGRAM_TEST_MARKS

LABELS = ["a. txgreen (patch)", "b. gevent (monkey.patch_all)", "c. ThreadPoolExecutor(100)"]
ROW = re.compile(r"^  (\S.*?) +(\d{1,3}(?:,\d{3})*) +(\d+) us +(\d+) %$")
RATIO = re.compile(
    r"^  txgreen / (gevent|threads) (requests/s|CPU/request): +=  ?(\d+\.\d{3})  "
    r"(>= 0\.90 (?:PASS|MISS)|\(for reference\))  \(per round (\d+\.\d\d)-(\d+\.\d\d)\)$"
)


def figure(text: str) -> float:
    return float(text.replace(",", ""))


def test_smoke_report_has_every_variant_and_the_target() -> None:
    proc = run_program("benchmarks/bench_requests.py", "--smoke")
    assert (proc.returncode, proc.stderr) == (0, ""), proc.stderr
    lines = proc.stdout.splitlines()
    assert len(lines) == 26, lines
    assert lines[0] == (
        "txgreen requests benchmark (smoke run: one round of 400 requests, figures are rough)"
    )
    assert re.fullmatch(
        r"Python \d+\.\d+\.\d+ \(\w+\), Twisted \S+, greenlet \S+, gevent \S+, txgreen \S+, "
        r"requests \d\S+",
        lines[1],
    ), lines[1]
    assert re.fullmatch(
        r"load: 400 requests\.get, 100 at a time, to a twisted\.web server answering after "
        r"50 ms \(a process of its own\); median of 1 interleaved round; \S+ \S+, \d+ CPUs",
        lines[2],
    ), lines[2]
    assert lines[3] == "ceiling: 2,000 requests/s (the server's delay alone)"
    assert lines[4:6] == [
        "",
        "clients (each a process of its own, a new one per round; the same requests.get):",
    ]
    # Each client described itself: the patching and the pool it ran under.
    assert lines[6] == (
        "  a. txgreen (patch): txgreen.patch(); a txgreen.Pool(100) of green threads; "
        "Twisted's epoll reactor"
    )
    assert re.fullmatch(
        r"  b\. gevent \(monkey\.patch_all\): gevent \S+, monkey\.patch_all\(\); "
        r"a gevent\.pool\.Pool\(100\); \w+ loop",
        lines[7],
    ), lines[7]
    assert lines[8] == (
        "  c. ThreadPoolExecutor(100): the stdlib's blocking sockets; "
        "concurrent.futures.ThreadPoolExecutor(100)"
    )
    assert lines[9] == ""
    assert re.fullmatch(r"  client +requests/s +CPU/request +server busy", lines[10])
    figures: dict[str, tuple[float, float, float]] = {}
    for line in lines[11:14]:
        m = ROW.match(line)
        assert m is not None, line
        figures[m[1]] = (figure(m[2]), float(m[3]), float(m[4]))
    assert list(figures) == LABELS
    # Every client made its 400 requests concurrently: one at a time they would take 400 x 50 ms
    # = 20 s (20 requests/s); all at once no faster than the server's ceiling (2,000/s), and
    # each request costs some CPU.
    for rate, cpu, busy in figures.values():
        assert 100 < rate <= 2000, figures
        assert 0 < cpu < 1e6, figures
        assert 0 <= busy < 200, figures
    assert lines[14].startswith("  (CPU/request: ")
    assert lines[17:19] == ["", "ratios (medians of this run):"]
    by_kind = dict(zip(("txgreen", "gevent", "threads"), figures.values(), strict=True))
    seen = []
    for line in lines[19:23]:
        m = RATIO.match(line)
        assert m is not None, line
        ratio = float(m[3])
        column = 0 if m[2] == "requests/s" else 1
        # The ratio of the printed figures (rounded: CPU per request to the microsecond).
        assert ratio == pytest.approx(by_kind["txgreen"][column] / by_kind[m[1]][column], rel=0.01)
        if m[4].startswith(">="):
            assert (m[1], m[2]) == ("gevent", "requests/s")
            assert m[4].endswith("PASS" if ratio >= 0.9 else "MISS")
        # One round: the per-round ratio is the ratio.
        assert float(m[5]) == float(m[6]) == pytest.approx(ratio, abs=0.006)
        seen.append((m[1], m[2], m[4].startswith(">=")))
    assert seen == [
        ("gevent", "requests/s", True),
        ("threads", "requests/s", False),
        ("gevent", "CPU/request", False),
        ("threads", "CPU/request", False),
    ]
    assert lines[23].startswith("note: ")
    assert re.fullmatch(r"total time: \d+\.\d s", lines[25]), lines[25]


def test_only_one_variant_reports_the_ratios_unavailable() -> None:
    proc = run_program("benchmarks/bench_requests.py", "--smoke", "--only", "txgreen")
    assert (proc.returncode, proc.stderr) == (0, ""), proc.stderr
    lines = proc.stdout.splitlines()
    assert re.fullmatch(r"  a\. txgreen \(patch\) +[\d,]+ +\d+ us +\d+ %", lines[9]), lines
    assert not any(line.startswith("  b. ") or line.startswith("  c. ") for line in lines)
    assert "  txgreen / gevent requests/s:         unavailable (gevent did not run)" in lines
    assert "  txgreen / threads CPU/request:       unavailable (threads did not run)" in lines


@pytest.mark.parametrize(
    "args", [["--requests", "0"], ["--concurrency", "0"], ["--rounds", "0"], ["--only", "nope"]]
)
def test_bad_arguments_are_refused(args: list[str]) -> None:
    proc = run_program("benchmarks/bench_requests.py", *args)
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert "error:" in proc.stderr
