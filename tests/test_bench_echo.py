"""benchmarks/bench_echo.py --smoke, run as a program: the shape of its report."""

from __future__ import annotations

import re
import shutil

import pytest

from support import PROGRAM_TEST_MARKS, ROOT, echo_tables, run_program

# The program starts its own servers (each in a process of its own, Twisted on epoll).
pytestmark = [
    *PROGRAM_TEST_MARKS,
    pytest.mark.skipif(shutil.which("cc") is None, reason="no C compiler to build echoload"),
    pytest.mark.skipif(
        not (ROOT.parent / "shared" / "bench" / "echoload.c").exists(),
        reason="the load generator's source ../shared/bench/echoload.c is missing",
    ),
]

LABELS = [
    "a. green (txgreen.listen, recv/write)",
    "b. Twisted Protocol (dataReceived)",
    "c. gevent StreamServer",
    "d. asyncio streams (start_server)",
]
RATIO = re.compile(
    r"^  green / (twisted|gevent) +(1 conn|100 conns) += +(\d+\.\d{3})(  PASS|  MISS)?"
    r"  \(target (.+); per round (\d+\.\d\d)-(\d+\.\d\d), green ahead in (\d) of 1\)$"
)


def test_smoke_report_has_every_server_and_the_ratios() -> None:
    proc = run_program("benchmarks/bench_echo.py", "--smoke")
    assert (proc.returncode, proc.stderr) == (0, ""), proc.stderr
    lines = proc.stdout.splitlines()
    assert len(lines) == 22, lines
    assert lines[0] == (
        "txgreen echo benchmark (smoke run: 0.5 s per measurement, figures are rough)"
    )
    assert re.fullmatch(
        r"Python \d+\.\d+\.\d+ \(\w+\), Twisted \S+, greenlet \S+, gevent \S+, txgreen \S+",
        lines[1],
    ), lines[1]
    assert re.fullmatch(
        r"Twisted reactor: epoll; client: echoload \(C\), 64-byte ping-pong, "
        r"0\.5 s per measurement, median of 1 interleaved round; \S+ \S+, \d+ CPUs",
        lines[2],
    ), lines[2]
    assert lines[3] == ""
    figures, _ = echo_tables(lines, 4, LABELS)
    lines = lines[6:]  # the ratios follow as before
    assert lines[9:11] == ["", "ratios (same run):"]
    green = figures[LABELS[0]]
    others = {"twisted": figures[LABELS[1]], "gevent": figures[LABELS[2]]}
    seen = []
    for line in lines[11:15]:
        m = RATIO.match(line)
        assert m is not None, line
        other, conns, ratio = m[1], m[2], float(m[3])
        seen.append((other, conns))
        i = 0 if conns == "1 conn" else 1
        # The ratio is the one of the printed figures (rounded to whole round trips).
        assert ratio == pytest.approx(green[i] / others[other][i], abs=0.002)
        # One round: its per-round ratio is the ratio, and "won" says which side of 1 it is.
        assert float(m[6]) == float(m[7]) == pytest.approx(ratio, abs=0.006)
        assert m[8] == ("1" if green[i] >= others[other][i] else "0")
        if other == "twisted":
            assert m[4] == ("  PASS" if ratio >= 1.0 else "  MISS")
            assert m[5] == ">= 1.00"
        else:
            assert m[4] is None
            assert m[5] == "as close to 1 as possible"
    assert seen == [
        ("twisted", "1 conn"),
        ("twisted", "100 conns"),
        ("gevent", "1 conn"),
        ("gevent", "100 conns"),
    ]
    assert re.fullmatch(r"total time: \d+\.\d s", lines[15]), lines[15]
