"""Fair scheduling: reactor wake-ups and the hub's ready queue share one FIFO order.

A green thread woken by a reactor event (a Deferred fired by the network, a timer) switches in
at once only when nothing else is runnable; otherwise it queues behind the green threads that
were already runnable, so a burst of wake-ups cannot postpone freshly spawned threads.
"""

from __future__ import annotations

from typing import Any

import pytest
from twisted.internet import reactor
from twisted.internet.defer import Deferred

import txgreen
from txgreen._event import Event

R: Any = reactor


@pytest.mark.parametrize("n", [1_000, 10_000])
def test_every_waiter_wakes_when_set_then_cleared_after_a_short_sleep(n: int) -> None:
    # gevent's scenario: N threads wait on an Event; the spawner sleeps 1 ms, then sets and at
    # once clears it.  The sleep's timer fires while most threads have not started yet; if it
    # jumped the queue, set() would run before they wait and clear() would strand them.
    ev = Event()
    woke: list[int] = []

    def waiter(i: int) -> None:
        if ev.wait(timeout=30):
            woke.append(i)

    threads = [txgreen.spawn(waiter, i) for i in range(n)]
    txgreen.sleep(0.001)
    ev.set()
    ev.clear()
    for t in threads:
        t.get(timeout=30)
    assert len(woke) == n
    assert woke == sorted(woke)  # FIFO: they wake in the order they started waiting


def test_a_reactor_wake_up_queues_behind_threads_already_runnable() -> None:
    order: list[str] = []
    d: Deferred[str] = Deferred()

    def blocked() -> None:
        order.append(txgreen.block_on(d))

    waiter = txgreen.spawn(blocked)
    txgreen.sleep(0.01)  # let it park on d

    def in_hub() -> None:
        # Two threads become runnable, then the reactor fires d: its waiter comes third.
        txgreen.spawn(order.append, "first")
        txgreen.spawn(order.append, "second")
        d.callback("woken")

    R.callLater(0, in_hub)
    waiter.get(timeout=5)
    assert order == ["first", "second", "woken"]


def test_a_reactor_wake_up_switches_in_directly_when_nothing_else_is_runnable() -> None:
    order: list[str] = []
    d: Deferred[str] = Deferred()

    def blocked() -> None:
        order.append(txgreen.block_on(d))

    waiter = txgreen.spawn(blocked)
    txgreen.sleep(0.01)

    def in_hub() -> None:
        d.callback("woken")  # nothing runnable: the waiter runs inside this call
        order.append("after callback")

    done: Deferred[None] = Deferred()
    R.callLater(0, in_hub)
    R.callLater(0.01, done.callback, None)
    txgreen.block_on(done)
    assert waiter.dead
    assert order == ["woken", "after callback"]
