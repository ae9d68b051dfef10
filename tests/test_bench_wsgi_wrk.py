"""benchmarks/bench_wsgi_wrk.py --smoke, run as a program: the shape of its report."""

from __future__ import annotations

import re

from support import PROGRAM_TEST_MARKS, check_says_how_to_install, run_program

# The program starts its own servers and wrk (each in a process of its own).
pytestmark = PROGRAM_TEST_MARKS

ROW = re.compile(r"^  ([a-g]\. .+?) +(\d{1,3}(?:,\d{3})*) +(\d{1,3}(?:,\d{3})*)$")
RATIO = re.compile(
    r"^  (hello|10 ms): (.+?) += +(\d+\.\d{3})  (>= \d\.\d\d (?:PASS|MISS)|\(for reference\))  "
    r"\(per round (\d+\.\d\d)-(\d+\.\d\d)\)$"
)
HELLO = [
    "a. twisted.web Resource (native)",
    "b. txgreen serve_wsgi",
    "c. eventlet.wsgi",
    "d. twisted.web.wsgi (thread pool)",
    "e. gunicorn + gevent, 1 worker",
]
SLEEPY = ["b. txgreen serve_wsgi", "e. gunicorn + gevent, 1 worker"]
GREEN = ["f. gunicorn + GreenWorker, 1 worker", "g. gunicorn + GreenWorker, 2 workers"]


def rows(lines: list[str]) -> list[str]:
    labels = []
    for line in lines:
        m = ROW.match(line)
        assert m is not None, line
        assert int(m[2].replace(",", "")) > 0, line  # answers per second
        labels.append(m[1])
    return labels


def test_smoke_report_has_every_server_and_the_targets() -> None:
    proc = run_program("benchmarks/bench_wsgi_wrk.py", "--smoke")
    assert (proc.returncode, proc.stderr) == (0, ""), proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == (
        "txgreen WSGI benchmark under wrk: hello world, and an app that sleeps 10 ms "
        "(smoke run: one round of 1 s, figures are rough)"
    )
    assert re.fullmatch(
        r"Python \S+, Twisted \S+, greenlet \S+, txgreen \S+, eventlet \S+, gevent \S+, "
        r"gunicorn \S+, wrk \S+",
        lines[1],
    ), lines[1]
    assert re.fullmatch(
        r"load: wrk -t1, keep-alive GETs, 1 s per measurement, median of 1 interleaved round; "
        r"\S+ \S+, \d+ CPUs",
        lines[2],
    ), lines[2]
    # txgreen's gunicorn worker is measured when it can be imported, else the report says why.
    green = not lines[3].startswith("GreenWorker rows skipped: ")
    if not green:
        assert "txgreen.web.gunicorn" in lines[3], lines[3]
        del lines[3]
    assert lines[3:5] == ["", "1. hello world, wrk -c50                   answers/s  CPU µs/answer"]
    n = len(HELLO) + green
    assert rows(lines[5 : 5 + n]) == HELLO + GREEN[:1] * green
    at = 5 + n
    assert lines[at : at + 2] == [
        "",
        "2. app sleeping 10 ms, wrk -c256 (ideal 25,600/s, if the CPU allows)",
    ]
    m = len(SLEEPY) + 2 * green
    assert rows(lines[at + 2 : at + 2 + m]) == SLEEPY + GREEN * green
    at += 2 + m
    assert lines[at : at + 2] == ["", "ratios (same run):"]
    ratios = []
    for line in lines[at + 2 : -1]:
        r = RATIO.match(line)
        assert r is not None, line
        assert float(r[3]) > 0, line
        ratios.append((r[1], r[2], r[4].split(" PASS")[0].split(" MISS")[0]))
    expected = [
        ("hello", "txgreen / native", ">= 0.85"),
        ("hello", "txgreen / eventlet.wsgi", ">= 1.20"),
        ("hello", "txgreen / thread pool", ">= 2.50"),
        ("hello", "txgreen / gunicorn+gevent", "(for reference)"),
        ("10 ms", "txgreen / gunicorn+gevent", ">= 0.90"),
        ("10 ms", "txgreen / ideal", ">= 0.80"),
    ]
    if green:
        expected += [
            ("10 ms", "GreenWorker / gunicorn+gevent", ">= 0.90"),
            ("10 ms", "GreenWorker 2 / 1 workers", "(for reference)"),
        ]
    assert ratios == expected
    assert re.fullmatch(r"total time: \d+\.\d s", lines[-1]), lines[-1]


def test_without_wrk_it_says_how_to_install_it() -> None:
    check_says_how_to_install("benchmarks/bench_wsgi_wrk.py", ["--smoke"], "wrk")
