"""examples/supervised_service.py: run as a program, and its tree driven from tests in-process."""

from __future__ import annotations

import importlib.util
import sys
from types import ModuleType

import pytest
import twisted.internet.error

import txgreen
from support import ROOT, run_program


def _load_example() -> ModuleType:
    path = ROOT / "examples" / "supervised_service.py"
    spec = importlib.util.spec_from_file_location("supervised_service", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # (dataclasses look their module up there)
    spec.loader.exec_module(module)
    return module


example = _load_example()


@pytest.mark.single_reactor  # (PROGRAM_TEST_MARKS: the program chooses its own reactor)
@pytest.mark.timeout(90)
def test_the_program_heals_each_child_then_escalates() -> None:
    proc = run_program("examples/supervised_service.py")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == [
        "service listening on 127.0.0.1, children: ['acceptor', 'cache', 'metrics']",
        "answer: greeting=hello",
        "killed acceptor: it is back, and the service answers answer=42",
        "killed cache: it is back, and the service answers answer=42",
        "killed metrics: it is back, and the service answers answer=42",
        "metrics reported True; counts {'specs': 3, 'active': 3, 'supervisors': 0, 'workers': 3}",
        "crash loop: the refresher started 3 more times, then the supervisor gave up with "
        "RestartIntensityExceeded",
        "children left running: 0",
    ]
    # Each restart is logged with the child's id and reason.
    for child_id in ("acceptor", "cache", "metrics"):
        assert f"child '{child_id}' failed: RuntimeError('simulated bug in {child_id}')" in (
            proc.stderr
        )


@pytest.mark.timeout(30)
def test_kill_each_child_in_turn_and_the_service_keeps_answering() -> None:
    state = example.State()
    sup = example.build(state)
    tree = sup.start()
    try:
        example.wait_until(lambda: state.port != 0 and state.version > 0)
        port = state.port
        assert example.ask(port, "greeting").startswith("greeting=hello")
        for child_id in ("acceptor", "cache", "metrics"):  # three restarts: the intensity
            old = example.child_thread(sup, child_id)
            new = example.crash(sup, child_id)
            assert new is not old
            assert not new.dead
            assert example.ask(port, "answer").startswith("answer=42")
            if child_id == "cache":
                before = state.version
                example.wait_until(lambda b=before: state.version > b)  # it refreshes again
            if child_id == "metrics":
                reports = len(state.reports)
                example.wait_until(lambda r=reports: len(state.reports) > r)  # it reports again
        assert state.port == port  # the acceptor came back on the same port
        assert sup.count_children()["active"] == 3
        # An open connection is served by the acceptor's handler threads while it lives.
        with txgreen.connect(("127.0.0.1", port), timeout=5) as stream:
            stream.write(b"BAD\n")
            assert stream.readline() == b"ERROR unknown command\n"
    finally:
        tree.kill()
    assert sup.count_children()["active"] == 0


@pytest.mark.timeout(30)
def test_a_crash_loop_escalates_after_intensity_restarts() -> None:
    state = example.State()
    sup = example.build(state)
    tree = sup.start()
    example.wait_until(lambda: state.port != 0 and state.version > 0)
    state.source_broken = True
    refresher = example.child_thread(sup, "cache")
    refresher.kill(RuntimeError("bug"))
    tree.join(10)
    assert isinstance(tree.exception, txgreen.RestartIntensityExceeded)
    assert isinstance(tree.exception.__cause__, ConnectionError)
    assert state.refresher_starts == 4  # the first start, then intensity (3) restarts
    assert sup.count_children()["active"] == 0
    with pytest.raises(twisted.internet.error.ConnectionRefusedError):  # the port is closed
        txgreen.connect(("127.0.0.1", state.port), timeout=5)
