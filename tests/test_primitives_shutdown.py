"""Reactor shutdown wakes green threads blocked on any primitive with ReactorStopped, and leaves
the primitives consistent (no stale waiter, counts right); blocking afterwards raises at once.

The reactor can only stop once per process, so this runs a small program in a subprocess.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

# The program uses the default reactor: the per-reactor runs skip it.
pytestmark = pytest.mark.single_reactor

PROGRAM = textwrap.dedent(
    """
    import json

    import txgreen
    from txgreen._channel import Channel
    from txgreen._event import AsyncResult, Event
    from txgreen._lock import Lock, Semaphore
    from txgreen._queue import Queue

    ev, ar, lock, sem = Event(), AsyncResult(), Lock(), Semaphore(0)
    q, full, ch = Queue(), Queue(1), Channel()
    full.put_nowait("x")
    outcomes = {}

    def blocked(name, fn, *args):
        try:
            fn(*args)
            outcomes[name] = "returned"
        except txgreen.ReactorStopped:
            outcomes[name] = "ReactorStopped"
            try:
                fn(*args)
                outcomes[name] += ", then returned"
            except txgreen.ReactorStopped:
                outcomes[name] += ", again at once"

    def holder():
        with lock:
            txgreen.sleep(10)

    def main():
        txgreen.spawn(holder)
        txgreen.sleep(0)
        for name, fn, args in [
            ("Event.wait", ev.wait, ()),
            ("AsyncResult.get", ar.get, ()),
            ("Lock.acquire", lock.acquire, ()),
            ("Semaphore.acquire", sem.acquire, ()),
            ("Queue.get", q.get, ()),
            ("Queue.put", full.put, ("y",)),
            ("Channel.receive", ch.receive, ()),
        ]:
            txgreen.spawn(blocked, name, fn, *args)
        txgreen.sleep(0.01)
        # main returns: txgreen.run stops the reactor while they are all blocked

    txgreen.run(main)
    state = {
        "event": repr(ev),
        "lock_waiting": lock.waiting,
        "sem": repr(sem),
        "q": repr(q),
        "full": repr(full),
        "channel": repr(ch),
    }
    print(json.dumps({"outcomes": outcomes, "state": state}))
    """
)


def test_shutdown_wakes_threads_blocked_on_primitives() -> None:
    proc = subprocess.run(
        [sys.executable, "-c", PROGRAM], capture_output=True, text=True, timeout=30, check=False
    )
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    got = json.loads(proc.stdout)
    expected = "ReactorStopped, again at once"
    assert got["outcomes"] == {
        "Event.wait": expected,
        "AsyncResult.get": expected,
        # The holder got ReactorStopped too and released the lock on its way out of its
        # ``with`` block; the acquirer's wait had already ended, so the lock was not handed to
        # it but became free, and its second acquire() took it without waiting.
        "Lock.acquire": "ReactorStopped, then returned",
        "Semaphore.acquire": expected,
        "Queue.get": expected,
        "Queue.put": expected,
        "Channel.receive": expected,
    }
    assert got["state"] == {
        "event": "<txgreen.Event unset, 0 waiting>",
        "lock_waiting": 0,
        "sem": "<txgreen.Semaphore value=0, 0 waiting>",
        "q": "<txgreen.Queue 0 items, 0 getters, 0 putters waiting>",
        "full": "<txgreen.Queue 1/1 items, 0 getters, 0 putters waiting>",
        "channel": "<txgreen.Channel open balance=0>",
    }
