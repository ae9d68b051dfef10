"""Helpers shared by the thread helpers' tests (test_threads.py, test_thread_queue.py).

Like support.py, importing this module must not import ``twisted.internet.reactor``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from twisted.internet.defer import Deferred

import txgreen

T = TypeVar("T")


def _reactor() -> Any:
    from twisted.internet import reactor

    return reactor


class OSThread(Generic[T]):
    """Run ``fn`` in a new ``threading.Thread``; a green thread can wait for its outcome."""

    def __init__(self, fn: Callable[[], T], name: str = "test OS thread") -> None:
        self.done: Deferred[tuple[bool, Any]] = Deferred()
        self.thread = threading.Thread(target=self._run, args=(fn,), name=name)
        self.thread.start()

    def _run(self, fn: Callable[[], T]) -> None:
        try:
            outcome: tuple[bool, Any] = (True, fn())
        except BaseException as e:
            outcome = (False, e)
        _reactor().callFromThread(self.done.callback, outcome)

    def result(self) -> T:
        """Wait (green) for the thread's end; return its value or raise its exception."""
        ok, value = txgreen.block_on(self.done, timeout=10)
        txgreen.call_in_thread(self.thread.join, 10)
        if not ok:
            raise value
        return value  # type: ignore[no-any-return]


def in_os_thread(fn: Callable[[], T]) -> T:
    """Run ``fn`` in a new OS thread; the green caller waits for its outcome and its end."""
    return OSThread(fn).result()


def wait_until(condition: Callable[[], bool], what: str, seconds: float = 10.0) -> None:
    """Let the reactor run until ``condition()`` holds (bounded by ``seconds``)."""
    with txgreen.Timeout(seconds):
        while not condition():
            txgreen.sleep(0.001)
    assert condition(), what
