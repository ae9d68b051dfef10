"""``Supervisor``: strategies, restart types, intensity, shutdown, requests, trees, services."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from twisted.application.service import MultiService
from twisted.logger import LogEvent

import txgreen
from support import MAIN_LOOPS, SCRIPT_TEST_MARKS, Boom, log_events, run_script
from txgreen import (
    ChildSpec,
    GreenThread,
    RestartIntensityExceeded,
    Supervisor,
    SupervisorError,
    SupervisorNotRunning,
)


class Worker:
    """A child function that records each start and waits until killed (or told to fail)."""

    def __init__(self) -> None:
        self.starts = 0
        self.started = txgreen.Event()

    def __call__(self) -> None:
        self.starts += 1
        self.started.set()
        txgreen.Event().wait()

    def wait_started(self, n: int) -> None:
        while self.starts < n:
            self.started.clear()
            assert self.started.wait(5), f"start {n} never came (starts: {self.starts})"


def crash_soon() -> None:
    txgreen.sleep(0.001)
    raise Boom("crash")


@pytest.fixture
def sup_events() -> Iterator[list[LogEvent]]:
    with log_events(lambda e: e.get("log_namespace") == "txgreen.supervisor") as events:
        yield events


def running(sup: Supervisor) -> dict[Any, GreenThread[Any]]:
    return {c.id: c.thread for c in sup.which_children() if c.thread is not None}


def wait_for(cond: Callable[[], bool], what: str) -> None:
    for _ in range(500):
        if cond():
            return
        txgreen.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}")


def stop(thread: GreenThread[Any]) -> None:
    thread.kill()
    assert thread.dead


def test_starts_children_in_order_and_stops_them_in_reverse() -> None:
    order: list[str] = []

    def child(name: str) -> None:
        order.append(f"start {name}")
        try:
            txgreen.Event().wait()
        finally:
            order.append(f"stop {name}")

    sup = Supervisor([ChildSpec(n, child, (n,)) for n in "abc"])
    t = sup.start()
    wait_for(lambda: len(order) == 3, "three starts")
    assert order == ["start a", "start b", "start c"]
    assert sup.count_children() == {"specs": 3, "active": 3, "supervisors": 0, "workers": 3}
    stop(t)
    assert order[3:] == ["stop c", "stop b", "stop a"]
    assert sup.count_children()["active"] == 0
    assert t.successful()


def test_one_for_one_restarts_only_the_child_that_ended(sup_events: list[LogEvent]) -> None:
    a, b = Worker(), Worker()
    sup = Supervisor([ChildSpec("a", a), ChildSpec("b", b)], intensity=10)
    t = sup.start()
    a.wait_started(1)
    b.wait_started(1)
    old_b = running(sup)["b"]
    running(sup)["a"].kill(Boom("die"))
    a.wait_started(2)
    assert b.starts == 1
    assert running(sup)["b"] is old_b
    texts = [e["log_format"] for e in sup_events]
    assert any("failed" in x for x in texts)
    assert any("restarted child" in x for x in texts)
    failed = next(e for e in sup_events if "failed" in e["log_format"])
    assert failed["child_id"] == "a"
    assert isinstance(failed["reason"], Boom)
    stop(t)


def test_one_for_all_restarts_every_child() -> None:
    ws = [Worker() for _ in range(3)]
    sup = Supervisor(
        [ChildSpec(i, w) for i, w in enumerate(ws)], strategy="one_for_all", intensity=10
    )
    t = sup.start()
    for w in ws:
        w.wait_started(1)
    before = running(sup)
    before[1].kill(Boom())
    for w in ws:
        w.wait_started(2)
    after = running(sup)
    assert all(before[i].dead and after[i] is not before[i] for i in range(3))
    stop(t)


def test_rest_for_one_restarts_the_child_and_those_after_it() -> None:
    ws = [Worker() for _ in range(3)]
    sup = Supervisor(
        [ChildSpec(i, w) for i, w in enumerate(ws)], strategy="rest_for_one", intensity=10
    )
    t = sup.start()
    for w in ws:
        w.wait_started(1)
    before = running(sup)
    before[1].kill(Boom())
    ws[1].wait_started(2)
    ws[2].wait_started(2)
    assert ws[0].starts == 1
    assert running(sup)[0] is before[0]
    stop(t)


def test_restart_types() -> None:
    perm, trans, temp = Worker(), Worker(), Worker()
    sup = Supervisor(
        [
            ChildSpec("perm", perm, restart="permanent"),
            ChildSpec("trans", trans, restart="transient"),
            ChildSpec("temp", temp, restart="temporary"),
        ],
        intensity=10,
    )
    t = sup.start()
    for w in (perm, trans, temp):
        w.wait_started(1)
    # A normal end (GreenletExit): only the permanent child comes back.
    for cid in ("perm", "trans", "temp"):
        running(sup)[cid].kill()
    perm.wait_started(2)
    txgreen.sleep(0.05)
    assert (trans.starts, temp.starts) == (1, 1)
    assert [c.id for c in sup.which_children()] == ["perm", "trans"]  # temporary: forgotten
    assert sup.which_children()[1].thread is None
    # An abnormal end: the transient child comes back.
    sup.restart_child("trans")
    trans.wait_started(2)
    running(sup)["trans"].kill(Boom())
    trans.wait_started(3)
    stop(t)


def test_crash_loop_escalates_after_intensity_restarts(sup_events: list[LogEvent]) -> None:
    other = Worker()
    starts: list[int] = []

    def crasher() -> None:
        starts.append(1)
        crash_soon()

    sup = Supervisor([ChildSpec("ok", other), ChildSpec("bad", crasher)], intensity=3, period=5)
    t = sup.start()
    t.join(10)
    assert isinstance(t.exception, RestartIntensityExceeded)
    assert "more than 3 restarts within 5 s" in str(t.exception)
    assert isinstance(t.exception.__cause__, Boom)
    assert len(starts) == 4  # the first start and three restarts
    assert sup.count_children()["active"] == 0  # the healthy child was stopped too
    assert any("gave up" in e["log_format"] for e in sup_events)


def test_restarts_spread_over_more_than_period_do_not_escalate() -> None:
    w = Worker()
    sup = Supervisor([ChildSpec("w", w)], intensity=1, period=0.2)
    t = sup.start()
    w.wait_started(1)
    for n in range(2, 5):
        txgreen.sleep(0.25)
        running(sup)["w"].kill(Boom())
        w.wait_started(n)
    assert not t.dead
    stop(t)


def test_intensity_zero_gives_up_on_the_first_restart() -> None:
    sup = Supervisor([ChildSpec("bad", crash_soon)], intensity=0)
    with pytest.raises(RestartIntensityExceeded):
        sup.run()
    assert sup.running_thread is None


def test_nested_supervisors_escalate_up_the_tree() -> None:
    inner_starts: list[int] = []

    def crasher() -> None:
        inner_starts.append(1)
        crash_soon()

    inner = Supervisor([ChildSpec("bad", crasher)], intensity=1, period=5, name="inner")
    sibling = Worker()
    outer = Supervisor(
        [ChildSpec("inner", inner, shutdown=None), ChildSpec("sibling", sibling)],
        intensity=1,
        period=5,
        name="outer",
    )
    assert outer.count_children() == {"specs": 2, "active": 0, "supervisors": 1, "workers": 1}
    assert outer.which_children()[0].supervisor
    t = outer.start()
    t.join(10)
    # inner gives up twice (2 starts each); outer restarts it once, then gives up itself.
    assert isinstance(t.exception, RestartIntensityExceeded)
    assert isinstance(t.exception.__cause__, RestartIntensityExceeded)
    assert len(inner_starts) == 4
    assert sibling.starts == 1


def test_a_supervisor_killed_by_its_parent_stops_its_children() -> None:
    leaf = Worker()
    inner = Supervisor([ChildSpec("leaf", leaf)])
    outer = Supervisor([ChildSpec("inner", inner, shutdown=None)])
    t = outer.start()
    leaf.wait_started(1)
    leaf_thread = running(inner)["leaf"]
    stop(t)
    assert leaf_thread.dead
    assert inner.running_thread is None


def test_shutdown_timeout_gives_up_on_a_child_that_will_not_stop(
    sup_events: list[LogEvent],
) -> None:
    stubborn_done = txgreen.Event()

    def stubborn() -> None:
        try:
            txgreen.Event().wait()
        except txgreen.GreenletExit:
            txgreen.sleep(0.3)  # cleanup longer than its shutdown allows
            stubborn_done.set()

    sup = Supervisor([ChildSpec("s", stubborn, shutdown=0.05)])
    t = sup.start()
    wait_for(lambda: bool(running(sup)), "the child")
    txgreen.sleep(0.01)
    stop(t)
    assert any("did not end within 0.05 s" in e["log_format"].format(**e) for e in sup_events)
    assert stubborn_done.wait(5)  # (it ends on its own; nothing is left behind)


def test_start_terminate_restart_delete_child() -> None:
    sup = Supervisor([])
    t = sup.start()
    w = Worker()
    thread = sup.start_child(ChildSpec("w", w))
    w.wait_started(1)
    assert running(sup)["w"] is thread
    with pytest.raises(SupervisorError, match="already exists"):
        sup.start_child(ChildSpec("w", w))
    with pytest.raises(SupervisorError, match="is running: terminate_child"):
        sup.delete_child("w")
    sup.terminate_child("w")
    assert thread.dead
    txgreen.sleep(0.02)
    assert w.starts == 1  # terminated on request: not restarted
    assert sup.which_children()[0].thread is None
    sup.restart_child("w")
    w.wait_started(2)
    with pytest.raises(SupervisorError, match="is running"):
        sup.restart_child("w")
    sup.terminate_child("w")
    sup.delete_child("w")
    assert sup.which_children() == []
    with pytest.raises(SupervisorError, match="no child with id 'nope'"):
        sup.terminate_child("nope")
    with pytest.raises(TypeError, match="takes a ChildSpec"):
        sup.start_child("w")  # type: ignore[arg-type]
    stop(t)


def test_requests_need_a_running_supervisor() -> None:
    sup = Supervisor([])
    with pytest.raises(SupervisorNotRunning, match="not running"):
        sup.start_child(ChildSpec("w", Worker()))
    t = sup.start()
    txgreen.sleep(0)
    with pytest.raises(SupervisorError, match="already running"):
        sup.run()
    stop(t)
    with pytest.raises(SupervisorNotRunning):
        sup.terminate_child("w")


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="strategy must be one of one_for_one"):
        Supervisor([], strategy="one_for_some")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="intensity must be an int >= 0"):
        Supervisor([], intensity=-1)
    with pytest.raises(ValueError, match="period must be seconds > 0"):
        Supervisor([], period=0)
    with pytest.raises(TypeError, match="children are ChildSpec objects"):
        Supervisor([print])  # type: ignore[list-item]
    with pytest.raises(SupervisorError, match="already exists"):
        Supervisor([ChildSpec("a", print), ChildSpec("a", print)])
    with pytest.raises(ValueError, match="restart must be one of permanent"):
        ChildSpec("a", print, restart="sometimes")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="shutdown must be seconds >= 0 or None"):
        ChildSpec("a", print, shutdown=-1)
    with pytest.raises(TypeError, match="fn must be callable"):
        ChildSpec("a", 3)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="id must be hashable"):
        ChildSpec([], print)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="args must be a tuple"):
        ChildSpec("a", print, [1])  # type: ignore[arg-type]


@pytest.mark.in_hub
def test_run_in_the_hub_is_a_named_error() -> None:
    with pytest.raises(txgreen.BlockingInHubError):
        Supervisor([]).run()


def test_a_supervisor_is_a_twisted_service() -> None:
    w = Worker()
    sup = Supervisor([ChildSpec("w", w)], name="tree")
    parent = MultiService()  # type: ignore[no-untyped-call]
    sup.setServiceParent(parent)  # type: ignore[no-untyped-call]
    parent.startService()  # type: ignore[no-untyped-call]
    w.wait_started(1)
    assert sup.running_thread is not None
    assert "tree" in repr(sup)
    child = running(sup)["w"]
    txgreen.block_on(parent.stopService())  # type: ignore[no-untyped-call]
    assert child.dead
    assert sup.running_thread is None
    assert not sup.running


@SCRIPT_TEST_MARKS[0]
@SCRIPT_TEST_MARKS[1]
@pytest.mark.timeout(60)
@pytest.mark.parametrize("reactor_name", MAIN_LOOPS)
@pytest.mark.parametrize("mode", ["service", "plain", "sigterm"])
def test_a_tree_at_program_end(mode: str, reactor_name: str) -> None:
    done = run_script("supervisor_shutdown.py", reactor_name, mode)
    assert "Traceback" not in done.stderr, done.stderr
    lines = done.stdout.splitlines()
    assert lines[1] == "running: 2"
    assert ("main returns" in lines) == (mode != "sigterm")
    if mode == "plain":
        # Every thread gets ReactorStopped at once; nothing is restarted.
        assert sorted(lines[3:7]) == sorted(
            ["a: ReactorStopped", "a cleaned up", "b: ReactorStopped", "b cleaned up"]
        )
    else:
        # Stopped gracefully first, children in reverse start order, cleanup blocking.
        cleanup = [line for line in lines if line.endswith("cleaned up")]
        assert cleanup == ["b cleaned up", "a cleaned up"]
    if mode == "sigterm":
        assert done.returncode == 143
    else:
        assert done.returncode == 0
        assert lines[-1] == "exited; starts {'a': 1, 'b': 1}"


def test_a_supervisor_in_a_task_group_is_stopped_with_it() -> None:
    w = Worker()
    sup = Supervisor([ChildSpec("w", w)])
    with txgreen.move_on_after(0.1), txgreen.TaskGroup() as tg:
        tg.spawn(sup.run)
    assert sup.running_thread is None
    assert w.starts == 1
    assert sup.count_children()["active"] == 0
