"""The lifetime of a GreenThread object: once it has ended and nothing refers to it, it is
freed at once, by reference counting, without waiting for a hub turn or a GC pass."""

from __future__ import annotations

from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import Deferred

import txgreen
from support import freed_without_gc

R: Any = reactor


def _work(d: Deferred[None] | None = None) -> int:
    if d is not None:
        txgreen.block_on(d)
    txgreen.sleep(0)
    return 1


def test_a_joined_thread_is_freed_without_a_gc_pass() -> None:
    def make() -> Any:
        gt = txgreen.spawn(_work)
        gt.join()
        return gt

    assert freed_without_gc(make)


def test_a_thread_that_waited_on_a_deferred_is_freed_without_a_gc_pass() -> None:
    def make() -> Any:
        d: Deferred[None] = Deferred()
        gt = txgreen.spawn(_work, d)
        txgreen.sleep(0)
        R.callLater(0, d.callback, None)
        assert gt.get() == 1
        return gt

    assert freed_without_gc(make)


def test_a_thread_killed_where_it_waits_is_freed_without_a_gc_pass() -> None:
    def make() -> Any:
        d: Deferred[None] = Deferred()
        gt = txgreen.spawn(_work, d)
        txgreen.sleep(0)
        gt.kill()
        return gt

    assert freed_without_gc(make)


def test_a_thread_started_by_spawn_later_is_freed_without_a_gc_pass() -> None:
    def make() -> Any:
        gt = txgreen.spawn_later(0.001, _work)
        gt.join()
        return gt

    assert freed_without_gc(make)
