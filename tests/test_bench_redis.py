"""benchmarks/bench_redis.py --smoke, run as a program: the shape of its report, and what it
says when redis-server is missing.

The smoke run needs Redis's server (``apt-get install redis-server``): without it the benchmark
exits with an error saying how to install it, and the test fails with that message (it is
never skipped)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from support import PROGRAM_TEST_MARKS, ROOT, run_program

# The program starts its own redis-server and clients (each in a process of its own).
pytestmark = PROGRAM_TEST_MARKS

LABELS = ["a. txgreen (patch)", "b. gevent (monkey.patch_all)", "c. OS threads"]
ROW = re.compile(
    r"^  (\S.*?) +(\d{1,3}(?:,\d{3})*) +(\d+\.\d) us   (\d{1,3}(?:,\d{3})*)-(\d{1,3}(?:,\d{3})*)$"
)
RATIO = re.compile(
    r"^  txgreen / (gevent|threads) (ops/s|CPU/op): +=  ?(\d+\.\d{3})  "
    r"(>= 0\.90 (?:PASS|MISS)|\(for reference\))  \(per round (\d+\.\d\d)-(\d+\.\d\d)\)$"
)


def figure(text: str) -> float:
    return float(text.replace(",", ""))


def test_smoke_report_has_every_variant_and_the_target() -> None:
    proc = run_program("benchmarks/bench_redis.py", "--smoke")
    assert (proc.returncode, proc.stderr) == (0, ""), proc.stderr
    lines = proc.stdout.splitlines()
    assert len(lines) == 25, lines
    assert lines[0] == "txgreen redis benchmark (smoke run: one round of 0.5 s, figures are rough)"
    assert re.fullmatch(
        r"Python \d+\.\d+\.\d+ \(\w+\), Twisted \S+, greenlet \S+, gevent \S+, txgreen \S+, "
        r"redis-py \d\S+, redis-server \d\S+",
        lines[1],
    ), lines[1]
    assert re.fullmatch(
        r"load: 50 clients, each SET then GET of its own key \(100-byte value\) in a loop, "
        r"0\.5 s per measurement after 0\.3 s of warm-up; median of 1 interleaved round; "
        r"\S+ \S+, \d+ CPUs",
        lines[2],
    ), lines[2]
    assert lines[3:5] == [
        "",
        "clients (each a process of its own, a new one per round; the same redis-py code):",
    ]
    assert lines[5] == (
        "  a. txgreen (patch): txgreen.patch(); txgreen.spawn per client; Twisted's epoll reactor"
    )
    assert re.fullmatch(
        r"  b\. gevent \(monkey\.patch_all\): gevent \S+, monkey\.patch_all\(\); "
        r"gevent\.spawn per client; \w+ loop",
        lines[6],
    ), lines[6]
    assert lines[7] == (
        "  c. OS threads: the stdlib's blocking sockets; a threading.Thread per client"
    )
    assert lines[8] == ""
    assert re.fullmatch(r"  client +ops/s +CPU/op   one client: least-most ops", lines[9])
    figures: dict[str, tuple[float, float]] = {}
    for line in lines[10:13]:
        m = ROW.match(line)
        assert m is not None, line
        figures[m[1]] = (figure(m[2]), float(m[3]))
        least, most = figure(m[4]), figure(m[5])
        # Every one of the 50 clients ran in the measured window: they ran concurrently (one
        # that kept the process to itself would leave the others at 0).
        assert 0 < least <= most, line
    assert list(figures) == LABELS
    for rate, cpu in figures.values():
        assert rate > 500, figures
        assert 0 < cpu < 1e5, figures
    assert lines[13].startswith("  (an op: ")
    assert lines[16:18] == ["", "ratios (medians of this run):"]
    by_kind = dict(zip(("txgreen", "gevent", "threads"), figures.values(), strict=True))
    seen = []
    for line in lines[18:22]:
        m = RATIO.match(line)
        assert m is not None, line
        ratio = float(m[3])
        column = 0 if m[2] == "ops/s" else 1
        assert ratio == pytest.approx(by_kind["txgreen"][column] / by_kind[m[1]][column], rel=0.01)
        if m[4].startswith(">="):
            assert m[4].endswith("PASS" if ratio >= 0.9 else "MISS")
        # One round: the per-round ratio is the ratio.
        assert float(m[5]) == float(m[6]) == pytest.approx(ratio, abs=0.006)
        seen.append((m[1], m[2], m[4].startswith(">=")))
    assert seen == [
        ("gevent", "ops/s", True),
        ("threads", "ops/s", False),
        ("gevent", "CPU/op", False),
        ("threads", "CPU/op", False),
    ]
    assert lines[22].startswith("note: ")
    assert re.fullmatch(r"total time: \d+\.\d s", lines[24]), lines[24]


def test_a_missing_redis_server_is_an_error_saying_how_to_install_it(tmp_path: Path) -> None:
    # The benchmark told to run a redis-server that is not there.
    missing = tmp_path / "redis-server"
    env = dict(os.environ, REDIS_SERVER=str(missing), PYTHONIOENCODING="utf-8")
    proc = subprocess.run(
        [sys.executable, "benchmarks/bench_redis.py", "--smoke"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        encoding="utf-8",
        timeout=60,
        check=False,
    )
    assert proc.returncode == 2
    assert proc.stdout == (
        "txgreen redis benchmark (smoke run: one round of 0.5 s, figures are rough)\n"
    )
    assert proc.stderr == (
        "cannot run: redis-server is not installed: install it with "
        "`apt-get install redis-server` (Debian/Ubuntu; `brew install redis` on macOS), "
        "or put a redis-server binary on PATH\n"
    )


def test_a_redis_server_that_does_not_start_is_an_error(tmp_path: Path) -> None:
    # A redis-server that exits at once.
    fake = tmp_path / "redis-server"
    fake.write_text("#!/bin/sh\necho 'v=0.0.0 no luck'\nexit 1\n")
    fake.chmod(0o755)
    env = dict(os.environ, REDIS_SERVER=str(fake), PYTHONIOENCODING="utf-8")
    proc = subprocess.run(
        [sys.executable, "benchmarks/bench_redis.py", "--smoke"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        encoding="utf-8",
        timeout=60,
        check=False,
    )
    assert proc.returncode == 2
    # What it printed (the last lines of its log) comes with the error.
    assert proc.stderr == (
        f"cannot run: redis-server ({fake}) did not start on 127.0.0.1\n"
        + "  v=0.0.0 no luck\n" * 3
    )


def test_only_one_variant_reports_the_ratios_unavailable() -> None:
    proc = run_program("benchmarks/bench_redis.py", "--smoke", "--only", "gevent")
    assert (proc.returncode, proc.stderr) == (0, ""), proc.stderr
    lines = proc.stdout.splitlines()
    assert re.fullmatch(r"  b\. gevent \(monkey\.patch_all\) +[\d,]+ +\d+\.\d us   .*", lines[8])
    assert not any(line.startswith("  a. ") or line.startswith("  c. ") for line in lines)
    assert "  txgreen / gevent ops/s:         unavailable (txgreen did not run)" in lines


@pytest.mark.parametrize(
    "args",
    [["--seconds", "0"], ["--clients", "0"], ["--rounds", "0"], ["--only", "nope"]],
)
def test_bad_arguments_are_refused(args: list[str]) -> None:
    proc = run_program("benchmarks/bench_redis.py", *args)
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert "error:" in proc.stderr
