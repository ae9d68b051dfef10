"""Every getter reads the same: ``get(block=True, timeout=None)``, as ``queue.Queue`` and gevent."""

from __future__ import annotations

import inspect
from typing import Any

import pytest

import txgreen
from txgreen._protocols import CallbackQueue

GETTERS = [
    txgreen.GreenThread.get,
    txgreen.AsyncResult.get,
    txgreen.Queue.get,
    txgreen.ThreadQueue.get,
    CallbackQueue.get,
]


@pytest.mark.in_hub
@pytest.mark.parametrize("get", GETTERS, ids=lambda g: g.__qualname__)
def test_every_getter_takes_block_then_timeout(get: Any) -> None:
    params = list(inspect.signature(get).parameters.values())[1:]
    assert [(p.name, p.default) for p in params] == [("block", True), ("timeout", None)]


def test_green_thread_get_block_false_and_timeout() -> None:
    done = txgreen.Event()
    thread = txgreen.spawn(done.wait)
    with pytest.raises(txgreen.Timeout):
        thread.get(block=False)  # not finished: no wait at all
    with pytest.raises(txgreen.Timeout):
        thread.get(timeout=0.01)
    done.set()
    assert thread.get() is True  # waits for the thread, which now ends
    assert thread.get(block=False) is True  # finished: no wait needed


def test_thread_queue_get_block_false_is_get_nowait() -> None:
    q: txgreen.ThreadQueue[int] = txgreen.ThreadQueue()
    with pytest.raises(txgreen.Empty):
        q.get(block=False)
    q.put(1)
    assert q.get(block=False) == 1
    with pytest.raises(txgreen.Timeout):
        q.get(timeout=0.01)


def test_the_old_positional_timeout_still_works_and_warns() -> None:
    thread = txgreen.spawn(txgreen.sleep, 10)
    q: txgreen.ThreadQueue[int] = txgreen.ThreadQueue()
    try:
        warned = r"write GreenThread\.get\(timeout=0\.01\)"
        with pytest.warns(DeprecationWarning, match=warned), pytest.raises(txgreen.Timeout):
            thread.get(0.01)  # type: ignore[arg-type]
        warned = r"write ThreadQueue\.get\(timeout=0\.01\)"
        with pytest.warns(DeprecationWarning, match=warned), pytest.raises(txgreen.Timeout):
            q.get(0.01)  # type: ignore[arg-type]
        with pytest.raises(TypeError, match=r"block must be True or False, not 'yes'"):
            thread.get("yes")  # type: ignore[arg-type]
    finally:
        thread.kill()
