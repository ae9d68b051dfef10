"""benchmarks/bench_green_socket.py --smoke, run as a program: the shape of its report."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from support import PROGRAM_TEST_MARKS, ROOT, echo_tables, run_program

# The program starts its own servers (each in a process of its own; txgreen on epoll).
pytestmark = [
    *PROGRAM_TEST_MARKS,
    pytest.mark.skipif(shutil.which("cc") is None, reason="no C compiler to build echoload"),
    pytest.mark.skipif(
        not (ROOT.parent / "shared" / "bench" / "echoload.c").exists(),
        reason="the load generator's source ../shared/bench/echoload.c is missing",
    ),
]

LABELS = [
    "a. txgreen",
    "b. gevent (monkey.patch_all)",
    "c. eventlet (monkey_patch)",
    "d. OS threads (thread per conn)",
]
TARGET = re.compile(
    r"^  txgreen / (eventlet|gevent) 100 conns: += +(\d+\.\d{3})  >= (\d\.\d\d) (PASS|MISS)"
    r"  \(per round (\d+\.\d\d)-(\d+\.\d\d)\)$"
)
REFERENCE = re.compile(
    r"^  txgreen / (eventlet|gevent|threads) (1 conn|100 conns): += +(\d+\.\d{3})"
    r"  \(for reference\)  \(per round (\d+\.\d\d)-(\d+\.\d\d)\)$"
)


def test_smoke_report_has_every_variant_and_the_targets() -> None:
    proc = run_program("benchmarks/bench_green_socket.py", "--smoke")
    assert (proc.returncode, proc.stderr) == (0, ""), proc.stderr
    lines = proc.stdout.splitlines()
    assert len(lines) == 32, lines
    assert lines[0] == (
        "txgreen green socket benchmark (smoke run: 0.5 s per measurement, figures are rough)"
    )
    assert re.fullmatch(
        r"Python \d+\.\d+\.\d+ \(\w+\), Twisted \S+, greenlet \S+, gevent \S+, txgreen \S+, "
        r"eventlet \S+",
        lines[1],
    ), lines[1]
    assert re.fullmatch(
        r"client: echoload \(C\), 64-byte ping-pong, 0\.5 s per measurement, "
        r"median of 1 interleaved round; \S+ \S+, \d+ CPUs",
        lines[2],
    ), lines[2]
    assert lines[3:5] == ["", "servers (the same plain-socket echo function in each):"]
    # Each child described itself: txgreen's green socket (patched or the module itself),
    # the others patched by their own library; all of them ran (none is unavailable).
    assert re.fullmatch(
        r"  a\. txgreen: (txgreen\.patch\(\)( of socket and dns only \(.+\))?, the stdlib's "
        r"socket module|"
        r"txgreen\.green\.socket \(txgreen has no patch\(\) yet\)); txgreen\.spawn; "
        r"Twisted's epoll reactor",
        lines[5],
    ), lines[5]
    assert re.fullmatch(
        r"  b\. gevent \(monkey\.patch_all\): gevent \S+, monkey\.patch_all\(\); gevent\.spawn; "
        r"\w+ loop",
        lines[6],
    ), lines[6]
    assert re.fullmatch(
        r"  c\. eventlet \(monkey_patch\): eventlet \S+, monkey_patch\(\); eventlet\.spawn; "
        r"\w+ hub",
        lines[7],
    ), lines[7]
    assert lines[8] == (
        "  d. OS threads (thread per conn): the stdlib's blocking sockets; "
        "a threading.Thread per connection"
    )
    assert lines[9] == ""
    figures, _ = echo_tables(lines, 10, LABELS)
    assert lines[21:23] == ["", "ratios (medians of this run; each target at 100 connections):"]
    by_name = dict(zip(("txgreen", "gevent", "eventlet", "threads"), figures.values(), strict=True))
    # The two targets of issue 10, each a PASS or MISS that agrees with its printed ratio.
    targets = {}
    for line in lines[23:25]:
        m = TARGET.match(line)
        assert m is not None, line
        ratio, least = float(m[2]), float(m[3])
        targets[m[1]] = least
        assert ratio == pytest.approx(by_name["txgreen"][1] / by_name[m[1]][1], abs=0.002)
        assert m[4] == ("PASS" if ratio >= least else "MISS")
        # One round: the per-round ratio is the ratio.
        assert float(m[5]) == float(m[6]) == pytest.approx(ratio, abs=0.006)
    assert targets == {"eventlet": 1.0, "gevent": 0.8}
    seen = []
    for line in lines[25:29]:
        m = REFERENCE.match(line)
        assert m is not None, line
        i = 0 if m[2] == "1 conn" else 1
        assert float(m[3]) == pytest.approx(by_name["txgreen"][i] / by_name[m[1]][i], abs=0.002)
        seen.append((m[1], m[2]))
    assert seen == [
        ("eventlet", "1 conn"),
        ("gevent", "1 conn"),
        ("threads", "1 conn"),
        ("threads", "100 conns"),
    ]
    assert lines[29].startswith("note: ")
    assert re.fullmatch(r"total time: \d+\.\d s", lines[31]), lines[31]


ONLY_TXGREEN_EVENTLET = ["--only", "txgreen", "--only", "eventlet"]


def test_an_eventlet_that_cannot_be_imported_is_reported_unavailable(tmp_path: Path) -> None:
    # A package named eventlet that fails to import, ahead of the real one on the path.
    (tmp_path / "eventlet").mkdir()
    (tmp_path / "eventlet" / "__init__.py").write_text('raise ImportError("no eventlet here")\n')
    env = dict(os.environ, PYTHONPATH=str(tmp_path), PYTHONIOENCODING="utf-8")
    proc = subprocess.run(
        [sys.executable, "benchmarks/bench_green_socket.py", "--smoke", *ONLY_TXGREEN_EVENTLET],
        cwd=ROOT,
        env=env,
        capture_output=True,
        encoding="utf-8",
        timeout=60,
        check=False,
    )
    assert (proc.returncode, proc.stderr) == (0, ""), proc.stderr
    lines = proc.stdout.splitlines()
    reason = "eventlet cannot be imported or patched here (ImportError: no eventlet here)"
    assert f"  c. eventlet (monkey_patch): unavailable: {reason}" in lines
    header = [i for i, line in enumerate(lines) if line.endswith("(round trips per second)")]
    assert len(header) == 1, lines
    rows = lines[header[0] :]
    assert re.fullmatch(r"  a\. txgreen +[\d,]+ +[\d,]+", rows[1]), rows
    assert re.fullmatch(r"  c\. eventlet \(monkey_patch\) +- +-   unavailable", rows[2]), rows
    assert "  txgreen / eventlet 100 conns:   unavailable (eventlet did not run)" in lines
    # The target against gevent is not printed as met or missed: gevent was not asked for.
    assert "  txgreen / gevent 100 conns:     unavailable (gevent did not run)" in lines
