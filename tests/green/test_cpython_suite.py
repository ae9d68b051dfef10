"""CPython's own test suite, patched: every test passing plain passes under ``txgreen.patch()``.

Each module of :data:`cpython_suite.MODULES` runs in subprocesses, plain and through
``python -m txgreen run`` (tests/green/cpython/); the tests that pass plain must pass patched,
except the entries of ``cpython_known_failures.KNOWN_FAILURES``, each of which must still fail
(so the list only shrinks).  Slow (about two minutes for all the modules, two at a time): skip
with ``-m "not cpython_suite"`` for a quick local run; ``make test`` runs them.
"""

from __future__ import annotations

import contextlib
import re
import sys
import textwrap
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent / "cpython"))

from cpython_known_failures import KNOWN_FAILURES, known_failure
from cpython_suite import MODULES, PASSING, Run, regressions, run_all, run_module, table

SLOW = [
    pytest.mark.cpython_suite,
    pytest.mark.single_reactor,  # each run is a process with its own reactor
    pytest.mark.timeout(600),  # the first test runs every selected module (2 at a time)
]


@pytest.fixture(scope="module")
def results(request: pytest.FixtureRequest) -> dict[str, tuple[Run, Run]]:
    """The plain and patched runs of every module the session selected, run two at a time."""
    wanted = [
        item.callspec.params["module"]
        for item in request.session.items
        if getattr(item, "function", None) is test_patched_passes_what_plain_passes
        and hasattr(item, "callspec")
    ]
    modules = [m for m in MODULES if m in wanted] or MODULES
    got = run_all(modules)
    capture = request.config.pluginmanager.getplugin("capturemanager")
    with capture.global_and_fixture_disabled() if capture else contextlib.nullcontext():
        print("\nCPython's test suite, plain and patched (pass / fail / skip):")
        print(table(got))
    return got


def _problems(run: Run) -> str:
    mode = "patched" if run.patched else "plain"
    return "\n".join(f"{run.module} ({mode}): {p}" for p in run.problems)


@pytest.mark.parametrize("module", [pytest.param(m, marks=SLOW) for m in MODULES])
def test_patched_passes_what_plain_passes(module: str, results: dict[str, tuple[Run, Run]]) -> None:
    plain, patched = results[module]
    assert not plain.problems, _problems(plain)
    assert not patched.problems, _problems(patched)
    assert plain.passing(), f"{module}: no test passed plain: {plain.counts()}"
    assert "socket" in patched.parts, f"{module}: the green run did not patch: {patched.parts}"

    unexpected = {
        test_id: f"{got}: {patched.results.get(test_id, {}).get('detail', '')}"
        for test_id, got in regressions(plain, patched).items()
        if known_failure(test_id) is None
    }
    assert not unexpected, (
        f"{module}: {len(unexpected)} tests pass plain but not patched (fix txgreen, or add "
        "them with a reason to tests/green/cpython/cpython_known_failures.py):\n"
        + "\n".join(f"  {t}: {why}" for t, why in unexpected.items())
    )

    listed = {k for k in KNOWN_FAILURES if k.startswith(module + ".")}
    now_passing = sorted(
        t for t in plain.passing() if known_failure(t) is not None and patched.outcome(t) in PASSING
    )
    assert not now_passing, (
        f"{module}: known failures that now pass patched; remove them from "
        f"tests/green/cpython/cpython_known_failures.py: {now_passing}"
    )
    matched = {
        key for key in listed for t in plain.passing() if t == key or t.startswith(key + ".")
    }
    assert matched == listed, (
        f"{module}: known failures that name no test passing plain here (remove them from "
        f"tests/green/cpython/cpython_known_failures.py): {sorted(listed - matched)}"
    )


HANGING = """
    import unittest

    import txgreen
    from txgreen.green import _originals


    class T(unittest.TestCase):
        def test_blocks_the_reactor(self):
            _originals.original("time").sleep(60)

        def test_waits_forever(self):
            never = txgreen.Event()
            txgreen.spawn(lambda: never.wait())  # a helper that a wake-up never reaches
            txgreen.Event().wait()

        def test_ok(self):
            pass
"""


@pytest.mark.single_reactor
@pytest.mark.timeout(60)
def test_a_hanging_test_is_named_and_the_module_runs_on(tmp_path: Path) -> None:
    (tmp_path / "hanging_module.py").write_text(textwrap.dedent(HANGING))
    began = time.monotonic()
    run = run_module("hanging_module", patched=True, deadline=1.0, path=str(tmp_path))
    assert not run.problems
    # The reactor's deadline ends a green wait; the OS watchdog ends a blocked reactor (the
    # run restarts after that test).
    assert run.hung == ["hanging_module.T.test_blocks_the_reactor"]
    assert {t: r["outcome"] for t, r in run.results.items()} == {
        "hanging_module.T.test_blocks_the_reactor": "hung",
        "hanging_module.T.test_waits_forever": "hung",
        "hanging_module.T.test_ok": "passed",
    }
    detail = run.results["hanging_module.T.test_waits_forever"]["detail"]
    assert "txgreen.Timeout" in detail
    assert re.search(r"OS threads: \d+ when the test started, \d+ at its end\n", detail), detail
    # Where the test waited, and where the other green threads waited at that moment.
    where, helper = detail.split("where the test waited:\n")[1].split("green thread <GreenThread")
    assert "in test_waits_forever\n    txgreen.Event().wait()\n" in where
    assert "in <lambda>\n    txgreen.spawn(lambda: never.wait())" in helper
    assert time.monotonic() - began < 30
