"""Helpers for the tests of txgreen's primitives (Event, locks, queues, channels)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from twisted.internet.defer import Deferred

import txgreen
from txgreen import GreenThread

T = TypeVar("T")


def settle() -> None:
    """Let every green thread that is runnable now run until it waits or ends.

    Threads woken or spawned before this call are ahead of us on the hub's ready queue; the
    second ``sleep(0)`` covers what they wake in turn.
    """
    txgreen.sleep(0)
    txgreen.sleep(0)


def then_in_hub(fn: Callable[[], Any]) -> Deferred[Any]:
    """Call ``fn()`` in the hub once the green threads spawned so far have started and parked.

    For ``@pytest.mark.in_hub`` tests: they spawn waiters, then return this Deferred (a
    Deferred ``fn`` returns is chained).  ``fn`` runs from a GreenThread link, in the hub.
    """
    driver = txgreen.spawn(txgreen.sleep, 0)
    return driver.to_deferred().addCallback(lambda _: fn())


def all_of(threads: list[GreenThread[T]]) -> Deferred[list[T]]:
    """A Deferred of the threads' results, in order (for tests running in the hub)."""
    from twisted.internet.defer import gatherResults

    return gatherResults([t.to_deferred() for t in threads], consumeErrors=True)


def assert_in_hub() -> None:
    assert txgreen.get_hub().in_hub(), "the check was meant to run in the hub"
