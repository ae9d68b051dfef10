"""``Group``, ``Pool``, ``joinall`` and ``killall`` (txgreen._pool).

Threads are held with Deferred gates that the test fires, never with sleeps, so every order
asserted here is the one the code guarantees.
"""

from __future__ import annotations

import gc
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from typing import Any, NoReturn

import pytest
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.logger import LogEvent

import txgreen
from support import Boom, log_events
from txgreen import GreenletExit, GreenThread
from txgreen._pool import Group, Pool, PoolFull, joinall, killall

R: Any = reactor


def txgreen_failures() -> AbstractContextManager[list[LogEvent]]:
    """Collect the failures txgreen logs (its namespace, with a ``log_failure``)."""
    return log_events(lambda e: e.get("log_namespace") == "txgreen" and "log_failure" in e)


def settle() -> None:
    """Let the hub run what is queued (links, starts) and collect garbage."""
    for _ in range(3):
        txgreen.sleep(0)
    gc.collect()


def waits_for(gate: Deferred[Any], value: Any = None) -> Any:
    got = txgreen.block_on(gate)
    return value if value is not None else got


def fail(exc: BaseException) -> NoReturn:
    raise exc


def gates(n: int) -> list[Deferred[Any]]:
    return [Deferred() for _ in range(n)]


# -- Group: membership --------------------------------------------------------------------------


def test_group_tracks_threads_until_they_end() -> None:
    group = Group()
    g1, g2 = gates(2)
    a = group.spawn(waits_for, g1, "a")
    b = group.spawn(waits_for, g2, "b")
    assert len(group) == 2
    assert a in group
    assert b in group
    assert list(group) == [a, b]
    assert repr(group).startswith("<Group of 2 at 0x")
    g2.callback(None)
    assert b.get() == "b"
    settle()
    assert list(group) == [a]
    assert b not in group
    g1.callback(None)
    assert group.join(timeout=5) is True
    assert len(group) == 0
    assert group.full() is False


def test_group_iteration_is_a_snapshot() -> None:
    group = Group()
    gs = gates(3)
    threads = [group.spawn(waits_for, g) for g in gs]
    seen = []
    for t in group:
        seen.append(t)
        group.discard(t)  # changing the group while iterating is fine
    assert seen == threads
    assert len(group) == 0
    for g in gs:
        g.callback(None)
    assert joinall(threads) == threads


def test_group_add_and_discard() -> None:
    gate: Deferred[None] = Deferred()
    outside = txgreen.spawn(waits_for, gate, "outside")
    group = Group([outside])
    assert list(group) == [outside]
    group.add(outside)  # already there: nothing changes
    assert len(group) == 1
    group.discard(outside)
    group.discard(outside)  # not there: no error
    assert len(group) == 0
    # A discarded thread keeps running; the group just forgets it.
    assert not outside.dead
    group.add(outside)
    gate.callback(None)
    assert group.join(timeout=5) is True
    assert outside.value == "outside"
    # A finished thread is not added.
    group.add(outside)
    assert len(group) == 0


def test_group_add_rejects_other_objects() -> None:
    with pytest.raises(TypeError, match=r"^Group\.add\(\) takes a GreenThread, not 'int'$"):
        Group().add(5)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"^joinall\(\) takes a GreenThread, not 'str'$"):
        joinall(["x"])  # type: ignore[list-item]
    with pytest.raises(TypeError, match=r"^killall\(\) takes a GreenThread, not 'NoneType'$"):
        killall([None])  # type: ignore[list-item]


# -- Group: join --------------------------------------------------------------------------------


def test_group_join_waits_for_all() -> None:
    group = Group()
    gs = gates(3)
    threads = [group.spawn(waits_for, g, i + 1) for i, g in enumerate(gs)]
    assert group.join(timeout=0.01) is False  # all blocked: the timeout passes
    for g in reversed(gs):
        g.callback(None)
    assert group.join() is True
    assert [t.value for t in threads] == [1, 2, 3]


def test_group_join_empty_is_immediate() -> None:
    assert Group().join() is True
    assert Group().join(timeout=0) is True


def test_group_join_raise_error_raises_the_first_failure() -> None:
    group = Group()
    g_ok, g_bad, g_late = gates(3)
    group.spawn(waits_for, g_ok)
    bad = group.spawn(lambda: fail(Boom("first")) if txgreen.block_on(g_bad) is None else 0)
    late = group.spawn(waits_for, g_late, "late")
    R.callLater(0, g_bad.callback, None)
    with txgreen_failures() as logged, pytest.raises(Boom, match=r"^first$"):
        group.join(raise_error=True)
    # The others keep running; the failure counts as handled (not logged).
    assert bad.dead
    assert len(group) == 2
    g_ok.callback(None)
    g_late.callback(None)
    assert group.join(raise_error=True) is True
    assert late.value == "late"
    settle()
    assert logged == []


def test_group_join_without_raise_error_leaves_the_error_unhandled() -> None:
    group = Group()
    with txgreen_failures() as logged:
        group.spawn(fail, Boom("lost"))
        assert group.join() is True
        settle()
    assert len(logged) == 1
    assert "Unhandled error in green thread" in str(logged[0]["log_format"])


def test_group_join_raise_error_ignores_greenletexit_kills() -> None:
    group = Group()
    g_victim, gate = gates(2)
    g_victim.addErrback(lambda _: None)  # cancelled by the kill
    victim = group.spawn(waits_for, g_victim)
    other = group.spawn(waits_for, gate, "other")
    txgreen.sleep(0)
    R.callLater(0, victim.kill, GreenletExit, False)
    R.callLater(0.001, gate.callback, None)
    assert group.join(raise_error=True) is True
    assert isinstance(victim.value, GreenletExit)
    assert other.value == "other"


def test_group_join_from_a_member_is_an_error() -> None:
    group = Group()
    box: list[BaseException] = []

    def member() -> None:
        try:
            group.join()
        except RuntimeError as e:
            box.append(e)

    group.spawn(member)
    assert group.join(timeout=5) is True
    assert [str(e) for e in box] == [
        "Group.join(): a green thread cannot join a group it belongs to (it would wait forever)"
    ]


def test_group_join_inside_an_enclosing_timeout() -> None:
    group = Group()
    gate: Deferred[None] = Deferred()
    group.spawn(waits_for, gate)
    with pytest.raises(txgreen.Timeout) as excinfo, txgreen.Timeout(0.01) as t:
        group.join()
    assert excinfo.value is t
    assert group._joiners == deque_empty()
    gate.callback(None)
    assert group.join() is True


def deque_empty() -> Any:
    from collections import deque

    return deque()


@pytest.mark.in_hub
def test_group_join_and_map_in_the_hub_raise() -> Deferred[None]:
    group = Group()
    assert group.join() is True  # empty: nothing to wait for
    gate: Deferred[None] = Deferred()
    t = group.spawn(waits_for, gate)
    with pytest.raises(txgreen.BlockingInHubError) as excinfo:
        group.join()
    assert str(excinfo.value).startswith("Group.join() was called from the hub")
    with pytest.raises(txgreen.BlockingInHubError) as excinfo:
        group.map(str, [1, 2])
    assert str(excinfo.value).startswith("Group.map() was called from the hub")
    with pytest.raises(txgreen.BlockingInHubError) as excinfo:
        next(group.imap(str, [1, 2]))
    assert str(excinfo.value).startswith("Group.imap() was called from the hub")
    with pytest.raises(txgreen.BlockingInHubError) as excinfo:
        next(Pool(2).imap_unordered(str, [1, 2]))
    assert str(excinfo.value).startswith("Pool.imap_unordered() was called from the hub")
    assert list(group) == [t]  # map started nothing
    with pytest.raises(txgreen.BlockingInHubError):
        joinall([t])
    gate.callback(None)
    return t.to_deferred().addCallback(lambda _: None).addTimeout(5, R)


# -- Group: kill and killall --------------------------------------------------------------------


def test_group_kill_kills_every_thread_and_waits() -> None:
    group = Group()
    gs = gates(3)
    threads = [group.spawn(waits_for, g) for g in gs]
    txgreen.sleep(0)  # started and parked
    unstarted = group.spawn(waits_for, Deferred())
    group.kill()
    assert len(group) == 0
    assert all(t.dead for t in [*threads, unstarted])
    assert all(isinstance(t.value, GreenletExit) for t in threads)
    # The Deferreds they waited on were cancelled.
    for g in gs:
        assert g.called
        g.addErrback(lambda _: None)


def test_group_kill_with_an_exception_and_no_block() -> None:
    group = Group()
    gate: Deferred[None] = Deferred()
    gate.addErrback(lambda _: None)
    t = group.spawn(waits_for, gate)
    txgreen.sleep(0)
    group.kill(Boom("stop"), block=False)
    assert not t.dead  # not yet: the kill is delivered on the hub's turn
    assert group.join() is True
    assert isinstance(t.exception, Boom)
    assert str(t.exception) == "stop"


def test_group_kill_timeout_returns_while_a_thread_resists() -> None:
    group = Group()
    release: Deferred[None] = Deferred()

    def stubborn() -> str:
        try:
            txgreen.block_on(Deferred())
        except GreenletExit:
            txgreen.block_on(release)  # cleanup that takes a while
            return "cleaned up"
        return "not killed"

    t = group.spawn(stubborn)
    txgreen.sleep(0)
    group.kill(timeout=0.01)
    assert not t.dead
    assert list(group) == [t]
    release.callback(None)
    assert t.get() == "cleaned up"


def test_group_kill_from_a_member_kills_the_others_then_itself() -> None:
    group = Group()
    gate: Deferred[None] = Deferred()
    other = group.spawn(waits_for, gate)
    order: list[str] = []

    def killer() -> str:
        try:
            group.kill()
        except GreenletExit:
            order.append(f"killer got GreenletExit; other dead: {other.dead}")
            raise
        return "survived"

    k = group.spawn(killer)
    assert group.join(timeout=5) is True
    assert order == ["killer got GreenletExit; other dead: True"]
    assert isinstance(k.value, GreenletExit)
    assert isinstance(other.value, GreenletExit)


def test_killall_and_joinall() -> None:
    gs = gates(3)
    threads = [txgreen.spawn(waits_for, g) for g in gs]
    txgreen.sleep(0)
    killall(threads[:2], Boom)
    assert [t.dead for t in threads] == [True, True, False]
    assert [type(t.exception) for t in threads[:2]] == [Boom, Boom]
    assert threads[0].exception is not threads[1].exception  # one instance each
    gs[2].callback(None)
    assert joinall(threads) == threads
    killall(threads)  # all dead: nothing to do
    killall([])


def test_joinall_order_timeout_and_errors() -> None:
    g1, g2, g3 = gates(3)
    done_first = txgreen.spawn(lambda: 0)
    a = txgreen.spawn(waits_for, g1, "a")
    b = txgreen.spawn(waits_for, g2, "b")
    c = txgreen.spawn(waits_for, g3, "c")
    txgreen.sleep(0)
    assert done_first.dead
    g2.callback(None)
    # Finished ones come first (in the order given), then in the order they finished.
    assert joinall([a, b, c, done_first], timeout=0.01) == [done_first, b]
    g3.callback(None)
    g1.callback(None)
    assert joinall([a, b, c]) == [b, c, a]
    assert joinall([]) == []


def test_joinall_raise_error() -> None:
    gate: Deferred[None] = Deferred()
    slow = txgreen.spawn(waits_for, gate)
    bad = txgreen.spawn(fail, Boom("bad"))
    with txgreen_failures() as logged:
        with pytest.raises(Boom, match=r"^bad$"):
            joinall([slow, bad], raise_error=True)
        assert not slow.dead
        # An already-failed thread raises at once too.
        with pytest.raises(Boom, match=r"^bad$"):
            joinall([bad, slow], raise_error=True)
        gate.callback(None)
        assert joinall([slow], raise_error=True) == [slow]
        settle()
    assert logged == []


def test_joinall_self_is_an_error() -> None:
    box: list[str] = []

    def me() -> None:
        cur = txgreen.get_hub().entered
        assert isinstance(cur, GreenThread)
        try:
            joinall([cur])
        except RuntimeError as e:
            box.append(str(e))

    txgreen.spawn(me).join()
    assert box == ["joinall(): a green thread cannot wait for itself (it would wait forever)"]


# -- Pool: size and slots -----------------------------------------------------------------------


def test_pool_size_is_checked() -> None:
    with pytest.raises(ValueError, match=r"^Pool size must be >= 1, not 0$"):
        Pool(0)
    with pytest.raises(TypeError, match=r"^Pool size must be an int, not 'float'$"):
        Pool(2.5)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"^Pool size must be an int, not 'bool'$"):
        Pool(True)


def test_pool_spawn_waits_for_a_free_slot_fifo() -> None:
    pool = Pool(2)
    g1, g2 = gates(2)
    assert (pool.free_count(), pool.full()) == (2, False)
    a = pool.spawn(waits_for, g1, "a")
    b = pool.spawn(waits_for, g2, "b")
    assert (pool.free_count(), pool.full()) == (0, True)
    assert repr(pool).startswith("<Pool 2/2 at 0x")
    order: list[str] = []

    def spawner(name: str) -> None:
        order.append(f"{name} waits")
        pool.spawn(order.append, f"{name}'s task runs")
        order.append(f"{name} got a slot")

    s1 = txgreen.spawn(spawner, "s1")
    s2 = txgreen.spawn(spawner, "s2")
    txgreen.sleep(0)
    assert order == ["s1 waits", "s2 waits"]
    g2.callback(None)  # b ends: its slot goes to s1, the first waiter
    assert b.get() == "b"
    s1.join()
    assert order == ["s1 waits", "s2 waits", "s1 got a slot"]
    assert not s2.dead
    g1.callback(None)
    assert joinall([a, s2]) == [a, s2]
    assert pool.join(timeout=5) is True
    assert order == [
        "s1 waits",
        "s2 waits",
        "s1 got a slot",
        "s1's task runs",
        "s2 got a slot",
        "s2's task runs",
    ]
    assert pool.free_count() == 2


def test_a_reserved_slot_is_not_taken_by_a_later_caller() -> None:
    pool = Pool(1)
    gate: Deferred[None] = Deferred()
    holder = pool.spawn(waits_for, gate)
    got: list[str] = []
    waiter = txgreen.spawn(lambda: got.append(pool.spawn(lambda: "w").get()))
    txgreen.sleep(0)
    gate.callback(None)  # the slot is handed to `waiter`, which has not run yet
    holder.join()
    assert pool.full()  # reserved: a newcomer would wait
    assert pool.free_count() == 0
    waiter.join()
    assert got == ["w"]
    assert pool.join(timeout=5) is True
    assert pool.free_count() == 1


def test_killing_a_thread_blocked_in_spawn_keeps_the_accounting() -> None:
    pool = Pool(1)
    gate: Deferred[None] = Deferred()
    pool.spawn(waits_for, gate)
    ran: list[str] = []
    blocked = txgreen.spawn(lambda: pool.spawn(ran.append, "never"))
    later = txgreen.spawn(lambda: pool.spawn(ran.append, "later").join())
    txgreen.sleep(0)
    blocked.kill()
    assert isinstance(blocked.value, GreenletExit)
    assert (len(pool), pool.free_count(), pool._reserved, len(pool._slot_waits)) == (1, 0, 0, 1)
    gate.callback(None)
    later.join()
    assert ran == ["later"]
    assert pool.join(timeout=5) is True
    assert (pool.free_count(), pool._reserved, len(pool._slot_waits)) == (1, 0, 0)


def test_a_waiter_killed_after_its_slot_was_granted_still_spawns() -> None:
    # The slot is handed over (resume_later) before the kill arrives: the hand-over wins, the
    # spawn happens, and the kill is raised at the killed thread's next blocking call.
    pool = Pool(1)
    gate: Deferred[None] = Deferred()
    holder = pool.spawn(waits_for, gate)
    task_gate: Deferred[None] = Deferred()
    spawned: list[GreenThread[Any]] = []
    after: list[str] = []

    def spawner() -> None:
        spawned.append(pool.spawn(waits_for, task_gate, "task"))
        try:
            txgreen.sleep(0)
        except GreenletExit:
            after.append("killed at the next wait")
            raise

    s = txgreen.spawn(spawner)
    txgreen.sleep(0)
    holder.link(lambda _: s.kill(block=False))  # runs after the pool's own link
    gate.callback(None)
    s.join()
    assert after == ["killed at the next wait"]
    assert len(spawned) == 1
    assert list(pool) == spawned
    assert (pool.free_count(), pool._reserved) == (0, 0)
    task_gate.callback(None)
    assert spawned[0].get() == "task"
    assert pool.join(timeout=5) is True
    assert pool.free_count() == 1


def test_pool_spawn_inside_a_timeout() -> None:
    pool = Pool(1)
    gate: Deferred[None] = Deferred()
    pool.spawn(waits_for, gate)
    with pytest.raises(txgreen.Timeout), txgreen.Timeout(0.01):
        pool.spawn(lambda: None)
    assert (len(pool), pool.free_count(), pool._reserved, len(pool._slot_waits)) == (1, 0, 0, 0)
    gate.callback(None)
    assert pool.join(timeout=5) is True
    assert pool.free_count() == 1


def test_wait_available() -> None:
    pool = Pool(2)
    assert pool.wait_available() == 2
    gate: Deferred[None] = Deferred()
    pool.spawn(waits_for, gate)
    pool.spawn(waits_for, gate)
    assert pool.wait_available(timeout=0.01) == 0
    assert len(pool._slot_waits) == 0
    R.callLater(0, gate.callback, None)
    assert pool.wait_available(timeout=5) >= 1
    assert pool.join(timeout=5) is True
    assert pool.wait_available() == 2


def test_wait_available_waiters_do_not_take_the_slot() -> None:
    pool = Pool(1)
    gate: Deferred[None] = Deferred()
    pool.spawn(waits_for, gate)
    seen: list[int] = []
    watchers = [txgreen.spawn(lambda: seen.append(pool.wait_available())) for _ in range(3)]
    txgreen.sleep(0)
    gate.callback(None)
    joinall(watchers)
    assert seen == [1, 1, 1]  # all told; the slot is still free
    assert pool.free_count() == 1


def test_killing_a_thread_in_wait_available() -> None:
    pool = Pool(1)
    gate: Deferred[None] = Deferred()
    pool.spawn(waits_for, gate)
    w = txgreen.spawn(pool.wait_available)
    txgreen.sleep(0)
    assert len(pool._slot_waits) == 1
    w.kill()
    assert len(pool._slot_waits) == 0
    gate.callback(None)
    assert pool.join(timeout=5) is True
    assert pool.free_count() == 1


@pytest.mark.in_hub
def test_pool_spawn_in_the_hub() -> Deferred[None]:
    pool = Pool(1)
    gate: Deferred[None] = Deferred()
    t = pool.spawn(waits_for, gate, "ok")  # a free slot: no wait, fine in the hub
    with pytest.raises(txgreen.BlockingInHubError) as excinfo:
        pool.spawn(lambda: None)
    assert str(excinfo.value).startswith("Pool.spawn() on a full pool was called from the hub")
    with pytest.raises(txgreen.BlockingInHubError) as excinfo:
        pool.wait_available()
    assert str(excinfo.value).startswith("Pool.wait_available() on a full pool was called")
    assert list(pool) == [t]
    assert pool._slot_waits == deque_empty()
    pool.kill()  # from the hub: never waits
    gate.addErrback(lambda _: None)
    return t.to_deferred().addCallback(lambda _: None).addTimeout(5, R)


def test_pool_add() -> None:
    pool = Pool(1)
    gate: Deferred[None] = Deferred()
    # b waits on the gate first, so it wakes (and ends) before a's end frees the slot.
    b = txgreen.spawn(waits_for, gate, "b")
    a = txgreen.spawn(waits_for, gate, "a")
    pool.add(a)
    pool.add(a)  # already in: no slot needed
    with pytest.raises(PoolFull, match=r"^Pool\.add\(\): the pool is full \(1 of 1 slots used\)$"):
        pool.add(b, blocking=False)
    with pytest.raises(txgreen.Timeout, match=r"^timed out after 0\.01 seconds$"):
        pool.add(b, timeout=0.01)
    assert (list(pool), pool._reserved) == ([a], 0)
    R.callLater(0, gate.callback, None)
    pool.add(b)  # waits for a's slot; b has ended by then, so it is not added
    assert b.dead
    assert list(pool) == []
    with pytest.raises(TypeError, match=r"^Pool\.add\(\) takes a GreenThread, not 'str'$"):
        pool.add("x")  # type: ignore[arg-type]
    with pytest.raises(PoolFull):
        Pool(1, [txgreen.spawn(waits_for, gate), txgreen.spawn(waits_for, gate)])
    settle()


# -- map, imap, imap_unordered, apply -----------------------------------------------------------


def test_map_keeps_input_order() -> None:
    pool = Pool(3)

    def slow_square(x: int) -> int:
        txgreen.sleep(0.001 * (5 - x))  # later items finish first
        return x * x

    assert pool.map(slow_square, range(5)) == [0, 1, 4, 9, 16]
    assert pool.map(slow_square, []) == []
    assert Group().map(pow, [2, 3], [3, 2]) == [8, 9]  # several iterables, zipped
    assert pool.map(pow, [2, 3, 4], [1, 2]) == [2, 9]  # the shortest one wins


def test_imap_unordered_yields_in_completion_order() -> None:
    pool = Pool(3)
    gs = gates(3)
    it = pool.imap_unordered(waits_for, gs, ["a", "b", "c"])

    def fire() -> None:
        txgreen.sleep(0)  # the calls start (on next(it) below) and park on their gates
        for i in [2, 0, 1]:
            gs[i].callback(None)

    firer = txgreen.spawn(fire)
    assert list(it) == ["c", "a", "b"]
    assert firer.dead
    assert list(it) == []  # exhausted


def test_imap_in_flight_is_bounded() -> None:
    cases: list[tuple[Group, int]] = [(Pool(3), 3), (Group(), 10)]
    for group, expected_peak in cases:
        in_flight = 0
        peak = 0

        def task(x: int) -> int:
            nonlocal in_flight, peak
            in_flight += 1
            peak = max(peak, in_flight)
            txgreen.sleep(0)
            return x

        got = []
        for x in group.imap(task, range(10)):
            got.append(x)
            in_flight -= 1  # the result is taken: no longer in flight
            txgreen.sleep(0)  # a slow consumer: finished calls pile up unless bounded
        assert got == list(range(10))
        assert peak == expected_peak


def test_imap_maxsize() -> None:
    group = Group()
    started: list[int] = []

    def task(x: int) -> int:
        started.append(x)
        return x

    it = group.imap(task, range(10), maxsize=2)
    assert started == []  # lazy: nothing starts before the first next()
    assert next(it) == 0
    assert it.in_flight == 1
    settle()
    assert started == [0, 1]
    assert next(it) == 1
    settle()
    assert started == [0, 1, 2]
    assert list(it) == list(range(2, 10))
    with pytest.raises(ValueError, match=r"^maxsize must be >= 1, not 0$"):
        group.imap(task, [], maxsize=0)
    with pytest.raises(TypeError, match=r"^maxsize must be an int or None, not 'float'$"):
        group.imap(task, [], maxsize=1.5)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"^imap\(\) needs at least one iterable$"):
        group.imap(task)


def test_map_error_propagates_and_the_rest_is_killed_or_never_started() -> None:
    pool = Pool(2)
    started: list[int] = []
    killed: list[int] = []
    hold: Deferred[None] = Deferred()

    def task(x: int) -> int:
        started.append(x)
        if x == 1:
            raise Boom(f"item {x}")
        try:
            txgreen.block_on(hold)
        except GreenletExit:
            killed.append(x)
            raise
        return x

    with txgreen_failures() as logged:
        with pytest.raises(Boom, match=r"^item 1$"):
            pool.map(task, range(6))
        settle()
    # map fails fast: item 1's error is raised while item 0 is still in flight; item 0 is
    # killed (and waited for); 2.. were never started.
    assert started == [0, 1]
    assert killed == [0]
    assert len(pool) == 0
    assert logged == []
    hold.addErrback(lambda _: None)


def test_imap_error_comes_in_input_order() -> None:
    group = Group()
    g0: Deferred[None] = Deferred()

    def task(x: int) -> int:
        if x == 0:
            txgreen.block_on(g0)
            return 0
        raise Boom(f"item {x}")

    it = group.imap(task, range(3))
    R.callLater(0.001, g0.callback, None)
    with txgreen_failures() as logged:
        assert next(it) == 0  # item 1 failed already, but item 0 comes first
        with pytest.raises(Boom, match=r"^item 1$"):
            next(it)
        with pytest.raises(StopIteration):
            next(it)  # closed after the error
        settle()
    assert logged == []  # item 2's error is dropped with the rest
    assert len(group) == 0


def test_imap_unordered_error_in_completion_order() -> None:
    pool = Pool(3)
    gs = gates(3)

    def task(i: int) -> int:
        txgreen.block_on(gs[i])
        if i == 2:
            raise Boom("two")
        return i

    it = pool.imap_unordered(task, range(3))
    R.callLater(0, gs[2].callback, None)
    with pytest.raises(Boom, match=r"^two$"):
        next(it)
    assert len(pool) == 0  # 0 and 1 were killed
    for g in gs[:2]:
        g.addErrback(lambda _: None)


def test_imap_consumer_timeout_and_close() -> None:
    pool = Pool(2)
    gs = gates(4)
    it = pool.imap(waits_for, gs)
    with pytest.raises(txgreen.Timeout), txgreen.Timeout(0.01):
        next(it)
    # The consumer gave up: the calls in flight are killed, the iterator is closed.
    assert pool.join(timeout=5) is True
    assert list(it) == []
    assert [g.called for g in gs] == [True, True, False, False]
    for g in gs[:2]:
        g.addErrback(lambda _: None)

    it2 = pool.imap_unordered(waits_for, gates(3))
    with pytest.raises(txgreen.Timeout), txgreen.Timeout(0.01):
        next(it2)
    it2.close()
    assert pool.join(timeout=5) is True

    hold: Deferred[None] = Deferred()
    hold.addErrback(lambda _: None)
    it3 = pool.imap(lambda x: x if x == 0 else waits_for(hold), range(5))
    assert next(it3) == 0
    assert it3.in_flight == 1
    it3.close()
    assert (len(pool), it3.in_flight) == (0, 0)
    assert list(it3) == []


def test_imap_input_iterable_error() -> None:
    group = Group()

    def items() -> Iterator[int]:
        yield 1
        raise Boom("input")

    it = group.imap(lambda x: x, items(), maxsize=1)
    assert next(it) == 1
    with pytest.raises(Boom, match=r"^input$"):
        next(it)
    assert list(it) == []
    assert group.join(timeout=5) is True


def test_apply() -> None:
    pool = Pool(1)
    assert pool.apply(pow, (2, 5)) == 32
    assert pool.apply(lambda *, x: x * 2, kwargs={"x": 4}) == 8
    with txgreen_failures() as logged:
        with pytest.raises(Boom, match=r"^applied$"):
            pool.apply(fail, [Boom("applied")])
        settle()
    assert logged == []

    # From a thread of the pool itself it runs directly (waiting for a slot would hang).
    def outer() -> int:
        return pool.apply(lambda: 40) + 2

    assert pool.spawn(outer).get() == 42


def test_many_threads() -> None:
    pool = Pool(50)
    running = 0
    peak = 0

    def task(x: int) -> int:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        txgreen.sleep(0)
        running -= 1
        return x * 2

    assert pool.map(task, range(2000)) == [x * 2 for x in range(2000)]
    assert peak == 50
    assert sorted(pool.imap_unordered(task, range(500))) == [x * 2 for x in range(500)]
    group = Group()
    threads = [group.spawn(task, x) for x in range(1000)]
    assert group.join(timeout=10) is True
    assert joinall(threads) == threads  # all finished: in the order given
    assert sum(t.get() for t in threads) == 2 * sum(range(1000))


def test_pool_spawned_threads_count_callables() -> None:
    # Every callable form spawns (keyword arguments go to the function).
    pool = Pool(2)
    fns: list[Callable[..., Any]] = [dict, sorted]
    assert pool.spawn(fns[0], a=1).get() == {"a": 1}
    assert pool.spawn(fns[1], [3, 1, 2], reverse=True).get() == [3, 2, 1]
    assert pool.join() is True


def test_kill_of_unstarted_threads_is_accounted_at_once() -> None:
    pool = Pool(2)
    threads = [pool.spawn(lambda: "never runs") for _ in range(2)]
    assert pool.full()
    pool.kill()
    assert all(t.dead and isinstance(t.value, GreenletExit) for t in threads)
    assert (len(pool), pool.free_count()) == (0, 2)
    settle()  # their links run later and find them gone: nothing changes
    assert (len(pool), pool.free_count()) == (0, 2)


def test_pool_add_waits_then_adds_a_live_thread() -> None:
    pool = Pool(1)
    g1, g2 = gates(2)
    pool.spawn(waits_for, g1)
    outsider = txgreen.spawn(waits_for, g2, "outsider")
    R.callLater(0, g1.callback, None)
    pool.add(outsider)  # waits for the slot
    assert list(pool) == [outsider]
    assert pool.full()
    g2.callback(None)
    assert pool.join(timeout=5) is True
    assert outsider.value == "outsider"


def test_imap_on_a_pool_filled_by_others_waits_for_a_slot() -> None:
    pool = Pool(2)
    gate: Deferred[None] = Deferred()
    others = [pool.spawn(waits_for, gate) for _ in range(2)]
    it = pool.imap(lambda x: x * 10, range(3))
    R.callLater(0, gate.callback, None)
    assert list(it) == [0, 10, 20]  # the first next() waited in Pool.spawn
    assert joinall(others) == others
    assert pool.join(timeout=5) is True


SHUTDOWN_SCRIPT = """
from twisted.internet.defer import Deferred

import txgreen
from txgreen._pool import Pool

got = []


def blocked(pool):
    try:
        pool.spawn(print, "never")
    except txgreen.ReactorStopped as e:
        got.append(type(e).__name__)
        raise


def main():
    pool = Pool(1)
    pool.spawn(txgreen.block_on, Deferred())
    waiter = txgreen.spawn(blocked, pool)
    txgreen.sleep(0)
    return pool, waiter


pool, waiter = txgreen.run(main)
print(got, waiter.dead, len(pool), pool.free_count(), pool._reserved, len(pool._slot_waits))
"""


@pytest.mark.single_reactor  # a subprocess with its own (default) reactor
@pytest.mark.in_hub  # it only waits for the subprocess
def test_shutdown_wakes_threads_blocked_in_pool_spawn() -> None:
    proc = subprocess.run(
        [sys.executable, "-c", SHUTDOWN_SCRIPT],
        capture_output=True,
        text=True,
        timeout=20,
        check=False,
    )
    assert (proc.returncode, proc.stderr) == (0, ""), proc.stderr
    assert proc.stdout == "['ReactorStopped'] True 0 1 0 0\n"
