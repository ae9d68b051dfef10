"""Run modules of CPython's own test suite plain and patched; compare; print a summary.

``python tests/green/cpython/cpython_suite.py [test.test_socket ...]`` runs each module (all of
:data:`MODULES` by default) twice in subprocesses, plain and through ``python -m txgreen run``,
and prints per module the passed/failed/skipped counts of both modes and the tests that pass
plain but not patched.  tests/green/test_cpython_suite.py asserts on the same comparison.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cpython_known_failures import NOT_RUN_PATCHED

HERE = Path(__file__).resolve().parent
RUNNER = HERE / "cpython_runner.py"
MODULES = [
    "test.test_socket",
    "test.test_select",
    "test.test_selectors",
    "test.test_timeout",
    "test.test_httplib",
    "test.test_urllib2_localnet",
    "test.test_socketserver",
    "test.test_ssl",
    "test.test_subprocess",
    "test.test_threading",
    "test.test_queue",
    "test.test_threading_local",
]
PARTS = (
    "socket",
    "dns",
    "ssl",
    "select",
    "selectors",
    "time",
    "subprocess",
    "threading",
    "queue",
)
DEADLINE = 10.0  # seconds one test may run before it is recorded as hung (slowest: 3.2)
RUN_TIMEOUT = 150.0  # seconds one run of a module may take in all (restarts included)
HUNG_STATUS = 3  # cpython_runner's exit status when a test hung
PASSING = frozenset({"passed", "expected_failure"})


def available_parts() -> list[str]:
    """The parts of ``txgreen.patch()`` whose green module exists on this branch."""
    found = []
    for part in PARTS:
        module = "socket" if part == "dns" else part
        if importlib.util.find_spec(f"txgreen.green.{module}") is not None:
            found.append(part)
    return found


def command(
    module: str, patched: bool, out: Path, skip: Path, deadline: float = DEADLINE
) -> list[str]:
    """The command line running ``module`` once (plain or patched)."""
    runner = [str(RUNNER), module, "--out", str(out), "--skip", str(skip)]
    runner += ["--deadline", str(deadline)]
    if not patched:
        return [sys.executable, *runner]
    parts = available_parts()
    if len(parts) == len(PARTS):  # the default patch(), as users get it
        return [sys.executable, "-m", "txgreen", "run", *runner]
    return [
        sys.executable,
        "-m",
        "txgreen",
        "run",
        "--no-patch",
        *runner,
        "--patch",
        ",".join(parts),
    ]


@dataclass
class Run:
    """The outcome of running one module in one mode."""

    module: str
    patched: bool
    results: dict[str, dict[str, str]] = field(default_factory=dict)
    parts: list[str] = field(default_factory=list)
    hung: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # the runner crashed or timed out
    seconds: float = 0.0

    def outcome(self, test_id: str) -> str | None:
        """The test's outcome, None if it did not run."""
        entry = self.results.get(test_id)
        return None if entry is None else entry["outcome"]

    def passing(self) -> set[str]:
        """The ids of the tests that passed (or failed as expected)."""
        return {t for t, r in self.results.items() if r["outcome"] in PASSING}

    def counts(self) -> Counter[str]:
        """Outcome -> number of tests."""
        return Counter(r["outcome"] for r in self.results.values())


def run_module(
    module: str,
    patched: bool,
    skip: Sequence[str] = (),
    *,
    deadline: float = DEADLINE,
    path: str | None = None,
) -> Run:
    """Run ``module`` to its end, restarting past each test that hangs (``skip``: not run).

    ``deadline``: the seconds each test may run; ``path``: a folder to import it from.
    """
    run = Run(module, patched)
    began = time.monotonic()
    env = dict(os.environ, PYTHONIOENCODING="utf-8", PYTHONUNBUFFERED="1")
    env.pop("PYTHONWARNINGS", None)
    if path is not None:
        env["PYTHONPATH"] = path
    with tempfile.TemporaryDirectory(prefix="txgreen-cpython-") as tmp:
        out, skipfile = Path(tmp, "out.json"), Path(tmp, "skip.txt")
        while True:
            skipfile.write_text("\n".join([*skip, *run.results]) + "\n", encoding="utf-8")
            out.unlink(missing_ok=True)
            left = RUN_TIMEOUT - (time.monotonic() - began)
            try:
                proc = subprocess.run(
                    command(module, patched, out, skipfile, deadline),
                    cwd=tmp,
                    env=env,
                    capture_output=True,
                    encoding="utf-8",
                    errors="replace",
                    timeout=max(left, 1.0),
                    check=False,
                )
            except subprocess.TimeoutExpired:
                run.problems.append(f"the run took over {RUN_TIMEOUT:g} s in all: killed")
                break
            if not out.exists():
                run.problems.append(
                    f"exit status {proc.returncode}, no results; stderr ends:\n"
                    + proc.stderr[-3000:]
                )
                break
            payload: dict[str, Any] = json.loads(out.read_text(encoding="utf-8"))
            run.results.update(payload["results"])
            run.parts = payload["patched"]
            if proc.returncode == HUNG_STATUS and payload["hung"]:
                run.hung.append(payload["hung"])
                continue
            if proc.returncode != 0:
                run.problems.append(
                    f"exit status {proc.returncode}; stderr ends:\n" + proc.stderr[-3000:]
                )
            break
    run.seconds = time.monotonic() - began
    return run


def run_both(module: str) -> tuple[Run, Run]:
    """``module`` plain, then patched (the tests that hung plain, and the known failures that
    hang patched, are not run patched)."""
    plain = run_module(module, patched=False)
    not_run = [t for t in sorted(NOT_RUN_PATCHED) if t.startswith(module + ".")]
    return plain, run_module(module, patched=True, skip=[*plain.hung, *not_run])


def run_all(modules: Sequence[str], workers: int = 2) -> dict[str, tuple[Run, Run]]:
    """:func:`run_both` for every module, ``workers`` modules at a time (slowest first)."""
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return dict(zip(modules, pool.map(run_both, modules), strict=True))


def regressions(plain: Run, patched: Run) -> dict[str, str]:
    """Test id -> patched outcome, for each test that passes plain but not patched."""
    out = {}
    for test_id in sorted(plain.passing()):
        got = patched.outcome(test_id)
        if got not in PASSING:
            out[test_id] = got or "not run"
    return out


def _cell(run: Run) -> str:
    c = run.counts()
    bad = c["failed"] + c["error"] + c["unexpected_success"] + c["hung"]
    text = f"{c['passed'] + c['expected_failure']} / {bad} / {c['skipped']}"
    return text + (" !" if run.problems else "")


def table(results: dict[str, tuple[Run, Run]]) -> str:
    """A Markdown table: per module, passed / failed / skipped plain and patched."""
    rows = [
        "| module | plain: pass / fail / skip | patched: pass / fail / skip "
        "| seconds (plain, patched) |",
        "|---|---|---|---|",
    ]
    for module, (plain, patched) in results.items():
        rows.append(
            f"| {module} | {_cell(plain)} | {_cell(patched)} | "
            f"{plain.seconds:.0f}, {patched.seconds:.0f} |"
        )
    return "\n".join(rows)


def main(argv: Sequence[str] | None = None, emit: Callable[[str], None] = print) -> int:
    """Run the modules named (all by default), print the table and what regressed."""
    modules = list(argv if argv is not None else sys.argv[1:]) or MODULES
    began = time.monotonic()
    results = run_all(modules)
    emit(table(results))
    emit(f"\nparts patched: {results[modules[0]][1].parts}; {time.monotonic() - began:.0f} s")
    for module, (plain, patched) in results.items():
        for run in (plain, patched):
            for problem in run.problems:
                emit(f"\n{module} ({'patched' if run.patched else 'plain'}): {problem}")
            for hung in run.hung:
                emit(f"{module} ({'patched' if run.patched else 'plain'}): hung: {hung}")
        for test_id, got in regressions(plain, patched).items():
            detail = patched.results.get(test_id, {}).get("detail", "")
            emit(f"{test_id}: {got}: {detail}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
