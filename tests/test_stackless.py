"""txgreen.stackless: tasklets and channels with Stackless's scheduling, on the reactor.

Each test body runs in a green thread (txgreen_mode = auto), which is the main tasklet of a
scheduler of its own, so tests do not see each other's tasklets.  Orders of events are recorded
in lists and asserted exactly.
"""

from __future__ import annotations

import os
import sys
import traceback
from collections.abc import Callable
from typing import Any, cast

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet import task
from twisted.internet.defer import Deferred

import txgreen
import txgreen.stackless as stackless
from support import Boom, log_events
from txgreen.stackless import TaskletExit, bomb, channel, tasklet


def _reactor() -> Any:
    from twisted.internet import reactor

    return reactor


def ring() -> list[tasklet]:
    """The runnables, from the current tasklet on, following next links (checking prev)."""
    cur = stackless.getcurrent()
    out = [cur]
    t = cur.next
    while t is not cur:
        assert t is not None
        assert t.prev is out[-1]
        out.append(t)
        t = t.next
    assert cur.prev is out[-1]
    assert len(out) == stackless.getruncount()
    return out


def recorder(log: list[Any], name: str) -> Callable[[], None]:
    def body() -> None:
        log.append(name)

    return body


# -- runnables: order and links ----------------------------------------------------------------


def test_main_tasklet_alone() -> None:
    main = stackless.getcurrent()
    assert main is stackless.getmain() is stackless.current is stackless.main
    assert main.is_main
    assert main.is_current
    assert main.alive
    assert main.scheduled
    assert not main.blocked
    assert stackless.getruncount() == stackless.runcount == 1
    assert main.next is main
    assert main.prev is main


def test_spawn_appends_to_the_runnables_in_order() -> None:
    log: list[str] = []
    main = stackless.getcurrent()
    a = tasklet(recorder(log, "a"))()
    b = tasklet(recorder(log, "b"))()
    c = tasklet(recorder(log, "c"))()
    assert ring() == [main, a, b, c]
    assert (a.prev, a.next, c.next) == (main, b, main)
    assert all(t.alive and t.scheduled and not t.blocked and not t.is_main for t in (a, b, c))
    assert log == []  # nothing runs before the main tasklet lets it
    stackless.run()
    assert log == ["a", "b", "c"]
    assert ring() == [main]
    assert not a.alive
    assert not a.scheduled
    assert a.next is None
    assert a.prev is None


def test_kill_remove_insert_relink_the_ring() -> None:
    log: list[str] = []
    main = stackless.getcurrent()
    a, b, c, d = (tasklet(recorder(log, n))() for n in "abcd")
    b.remove()
    b.kill()  # paused and never started: it is run (at the end), ends at once, main is next
    assert log == []
    assert not b.alive
    assert b.next is None
    assert ring() == [main, a, c, d]
    assert c.remove() is c
    assert c.alive
    assert not c.scheduled
    assert c.paused
    assert c.next is None
    assert ring() == [main, a, d]
    c.insert()  # back at the end
    assert ring() == [main, a, d, c]
    c.insert()  # already there: no change
    assert ring() == [main, a, d, c]
    stackless.run()
    assert log == ["a", "d", "c"]


def test_round_robin_with_schedule() -> None:
    log: list[str] = []

    def worker(name: str, n: int) -> None:
        for i in range(n):
            log.append(f"{name}{i}")
            stackless.schedule()

    tasklet(worker)("a", 3)
    tasklet(worker)("b", 2)
    tasklet(worker)("c", 1)
    stackless.run()
    assert log == ["a0", "b0", "c0", "a1", "b1", "a2"]


def test_main_schedule_takes_its_turn_in_the_ring() -> None:
    log: list[str] = []
    main = stackless.getcurrent()

    def worker(name: str) -> None:
        log.append(f"{name}1")
        stackless.schedule()
        log.append(f"{name}2")

    a = tasklet(worker)("a")
    b = tasklet(worker)("b")
    stackless.schedule()  # main goes to the end: a and b run once, then main again
    log.append("main")
    assert ring() == [main, a, b]
    stackless.schedule()
    log.append("main again")
    assert log == ["a1", "b1", "main", "a2", "b2", "main again"]
    assert ring() == [main]


def test_run_method_rotates_the_ring() -> None:
    log: list[str] = []
    main = stackless.getcurrent()
    a = tasklet(recorder(log, "a"))()
    b = tasklet(recorder(log, "b"))()
    tasklet(recorder(log, "c"))()
    b.run()  # b runs now; then the ring goes on from b: c, main, a
    log.append("main")
    assert log == ["b", "c", "main"]
    assert ring() == [main, a]
    stackless.run()
    assert log == ["b", "c", "main", "a"]


def test_run_of_a_removed_tasklet_then_caller_continues() -> None:
    log: list[str] = []
    a = tasklet(recorder(log, "a"))()
    b = tasklet(recorder(log, "b"))()
    a.remove()
    a.run()  # inserted at the end, then run: next comes main (a was the last)
    log.append("main")
    assert log == ["a", "main"]
    stackless.run()
    assert log == ["a", "main", "b"]
    assert not b.alive


def test_schedule_remove_pauses_until_inserted() -> None:
    log: list[Any] = []

    def pauser() -> None:
        log.append("paused")
        log.append(stackless.schedule_remove("back"))

    t = tasklet(pauser)()
    stackless.run()
    assert log == ["paused"]
    assert t.alive
    assert t.paused
    assert not t.scheduled
    assert not t.blocked
    t.insert()
    stackless.run()
    assert log == ["paused", "back"]
    assert not t.alive


def test_tasklet_switch_pauses_the_caller() -> None:
    log: list[str] = []
    main = stackless.getcurrent()

    def body() -> None:
        log.append("t")
        main.insert()

    t = tasklet(body)()
    t.switch()
    log.append("main")
    assert log == ["t", "main"]
    assert not t.alive


# -- tempval ----------------------------------------------------------------------------------


def test_schedule_returns_retval_or_the_current_tasklet() -> None:
    log: list[Any] = []

    def body() -> None:
        me = stackless.getcurrent()
        log.append(stackless.schedule() is me)
        log.append(stackless.schedule("x"))
        log.append(stackless.schedule(None))

    tasklet(body)()
    stackless.run()
    assert log == [True, "x", None]


def test_tempval_set_while_scheduled_is_what_schedule_returns() -> None:
    log: list[Any] = []

    def body() -> None:
        log.append(stackless.schedule("mine"))

    t = tasklet(body)()
    stackless.schedule()  # t runs and schedules: it is runnable with tempval "mine"
    assert t.tempval == "mine"
    t.tempval = "changed"
    stackless.run()
    assert log == ["changed"]


def test_schedule_remove_tempval() -> None:
    log: list[Any] = []

    def body() -> None:
        log.append(stackless.schedule_remove(42))

    t = tasklet(body)()
    stackless.run()
    assert t.tempval == 42
    t.tempval = "resumed"
    t.insert()
    stackless.run()
    assert log == ["resumed"]
    assert t.tempval is None


def test_bomb_in_tempval_is_raised_by_schedule() -> None:
    log: list[Any] = []

    def body() -> None:
        try:
            stackless.schedule()
        except Boom as e:
            log.append(("raised", str(e)))

    t = tasklet(body)()
    stackless.schedule()
    t.tempval = bomb(Boom, Boom("from tempval"))
    stackless.run()
    assert log == [("raised", "from tempval")]


def test_bomb_raise_keeps_type_value_traceback() -> None:
    try:
        raise Boom("orig")
    except Boom:
        b = bomb(*sys.exc_info())
    assert b.type is Boom
    with pytest.raises(Boom, match="orig") as info:
        b.raise_()
    names = [f.name for f in traceback.extract_tb(info.value.__traceback__)]
    assert "test_bomb_raise_keeps_type_value_traceback" in names
    assert isinstance(bomb(Boom("x")).value, Boom)


# -- channels: transfers and preference ------------------------------------------------------


def _transfer(pref: int, receiver_first: bool, schedule_all: bool = False) -> tuple[list[str], int]:
    """One transfer between a sender and a receiver tasklet; the event order and the balance
    while the first one waited."""
    ch = channel()
    ch.preference = pref
    ch.schedule_all = schedule_all
    log: list[str] = []

    def sender() -> None:
        log.append("send")
        ch.send("v")
        log.append("sender continues")

    def receiver() -> None:
        log.append("receive")
        log.append(f"got {ch.receive()}")

    def other() -> None:
        log.append("other")

    first, second = (receiver, sender) if receiver_first else (sender, receiver)
    tasklet(first)()
    stackless.schedule()  # the first blocks
    balance = ch.balance
    tasklet(second)()
    tasklet(other)()
    stackless.run()
    assert ch.balance == 0
    return log, balance


@pytest.mark.parametrize(
    ("pref", "expected"),
    [
        # -1 prefers the receiver: it runs at once, the ring going on from it, so the sender
        # (just before it) comes last
        (-1, ["receive", "send", "got v", "other", "sender continues"]),
        # 0 and 1: the sender continues; the receiver is scheduled at the end
        (0, ["receive", "send", "sender continues", "other", "got v"]),
        (1, ["receive", "send", "sender continues", "other", "got v"]),
    ],
)
def test_preference_on_send_to_a_waiting_receiver(pref: int, expected: list[str]) -> None:
    log, balance = _transfer(pref, receiver_first=True)
    assert balance == -1
    assert log == expected


@pytest.mark.parametrize(
    ("pref", "expected"),
    [
        # -1 and 0: the receiver continues; the sender is scheduled at the end
        (-1, ["send", "receive", "got v", "other", "sender continues"]),
        (0, ["send", "receive", "got v", "other", "sender continues"]),
        # 1 prefers the sender: it runs at once; the receiver comes last
        (1, ["send", "receive", "sender continues", "other", "got v"]),
    ],
)
def test_preference_on_receive_from_a_waiting_sender(pref: int, expected: list[str]) -> None:
    log, balance = _transfer(pref, receiver_first=False)
    assert balance == 1
    assert log == expected


def test_schedule_all_makes_the_caller_yield() -> None:
    log, _ = _transfer(-1, receiver_first=True, schedule_all=True)
    # the sender yields: "other" (next in the ring) runs, then the receiver (put at the end)
    assert log == ["receive", "send", "other", "got v", "sender continues"]


def test_ping_pong_order() -> None:
    ch = channel()
    log: list[Any] = []

    def ping() -> None:
        for i in range(3):
            ch.send(i)
            log.append(("sent", i))

    def pong() -> None:
        for _ in range(3):
            log.append(("got", ch.receive()))

    tasklet(ping)()
    tasklet(pong)()
    stackless.run()
    assert log == [("got", 0), ("sent", 0), ("got", 1), ("sent", 1), ("got", 2), ("sent", 2)]


def test_balance_and_queue_links() -> None:
    ch = channel()
    receivers = [tasklet(ch.receive)() for _ in range(3)]
    stackless.run()
    assert ch.balance == -3
    assert ch.queue is receivers[0]
    assert [t.blocked for t in receivers] == [True, True, True]
    assert [t.scheduled for t in receivers] == [True, True, True]  # Stackless: blocked counts
    assert receivers[0].next is receivers[1]
    assert receivers[1].prev is receivers[0]
    assert receivers[2].next is None  # as in Stackless: a channel queue ends at the channel
    assert receivers[0].prev is None
    assert stackless.getruncount() == 1
    for i in range(3):
        ch.send(i)
    assert ch.balance == 0
    assert ch.queue is None
    assert not any(t.alive for t in receivers)


def test_channel_balance_after_killing_a_blocked_tasklet() -> None:
    ch = channel()
    log: list[Any] = []

    def receiver(name: str) -> None:
        try:
            log.append((name, ch.receive()))
        except TaskletExit:
            log.append((name, "TaskletExit"))
            raise

    r1 = tasklet(receiver)("r1")
    r2 = tasklet(receiver)("r2")
    stackless.run()
    assert ch.balance == -2
    r1.kill()  # runs r1 at once: it sees TaskletExit and ends silently
    assert log == [("r1", "TaskletExit")]
    assert not r1.alive
    assert not r1.blocked
    assert ch.balance == -1
    assert ch.queue is r2
    ch.send("x")  # goes to r2, the one still waiting
    assert log == [("r1", "TaskletExit"), ("r2", "x")]
    assert ch.balance == 0


def test_balance_after_killing_a_blocked_sender() -> None:
    ch = channel()
    senders = [tasklet(ch.send)(i) for i in range(3)]
    stackless.run()
    assert ch.balance == 3
    senders[1].kill()
    assert ch.balance == 2
    assert [ch.receive(), ch.receive()] == [0, 2]
    assert ch.balance == 0


def test_send_sequence_and_iteration_until_closed() -> None:
    ch = channel()
    for i in range(3):
        tasklet(ch.send)(i)
    stackless.run()
    assert ch.balance == 3
    ch.close()
    assert ch.closing
    assert not ch.closed
    assert list(ch) == [0, 1, 2]  # transfers to waiting senders still work
    assert ch.closed
    with pytest.raises(ValueError, match="closed channel"):
        ch.receive()
    with pytest.raises(ValueError, match="closed channel"):
        ch.send(1)
    ch.open()
    assert not ch.closing

    out = channel()
    got: list[int] = []

    def consumer() -> None:
        got.extend(out)  # iterates until the channel is closed and drained

    c = tasklet(consumer)()
    assert out.send_sequence(range(4)) == 4
    assert got == [0, 1, 2, 3]
    assert c.blocked  # a receiver blocked before close() stays blocked (as in Stackless)
    out.close()
    assert out.closing
    assert not out.closed
    c.kill()
    assert out.closed


def test_send_exception_raises_in_receiver_with_args() -> None:
    ch = channel()
    log: list[Any] = []

    def receiver() -> None:
        try:
            ch.receive()
        except Boom as e:
            log.append(e.args)

    tasklet(receiver)()
    stackless.run()
    ch.send_exception(Boom, "a", 1)
    assert log == [("a", 1)]


def _raise_boom() -> None:
    raise Boom("deep")


def test_send_exception_keeps_the_traceback() -> None:
    ch = channel()
    caught: list[BaseException] = []

    def receiver() -> None:
        try:
            ch.receive()
        except Boom as e:
            caught.append(e)

    senders: list[Callable[[Boom], None]] = [
        ch.send_exception,
        lambda e: ch.send_throw(Boom, e, e.__traceback__),
        lambda e: ch.send(bomb(*sys.exc_info())),
    ]
    for send in senders:
        tasklet(receiver)()
        stackless.run()
        try:
            _raise_boom()
        except Boom as e:
            send(e)
    assert len(caught) == 3
    for exc in caught:
        names = [f.name for f in traceback.extract_tb(exc.__traceback__)]
        assert "_raise_boom" in names, names  # where it was first raised
        assert "receiver" in names, names  # where it was received


def test_receive_from_waiting_sender_of_a_bomb() -> None:
    ch = channel()
    tasklet(ch.send_exception)(Boom, "queued")
    stackless.run()
    assert ch.balance == 1
    with pytest.raises(Boom, match="queued"):
        ch.receive()
    assert ch.balance == 0


# -- exceptions and kills -------------------------------------------------------------------


def test_kill_raises_tasklet_exit_where_it_waits() -> None:
    log: list[str] = []

    def body() -> None:
        try:
            stackless.schedule()
            log.append("not reached")
        except TaskletExit:
            log.append("TaskletExit")
            raise
        finally:
            log.append("finally")

    t = tasklet(body)()
    stackless.schedule()
    t.kill()
    assert log == ["TaskletExit", "finally"]
    assert not t.alive
    t.kill()  # dead: no effect
    stackless.run()  # a TaskletExit end is silent


def test_kill_of_unstarted_tasklet_never_runs_it() -> None:
    log: list[str] = []
    t = tasklet(recorder(log, "ran"))()
    t.kill()
    stackless.run()
    assert log == []
    assert not t.alive
    assert not t.scheduled


def test_raise_exception_runs_the_tasklet_at_once() -> None:
    log: list[Any] = []
    ch = channel()

    def body() -> None:
        try:
            ch.receive()
        except Boom as e:
            log.append(("caught", e.args))
        log.append("t ends")

    t = tasklet(body)()
    stackless.run()
    assert ch.balance == -1
    t.raise_exception(Boom, 1, 2)
    log.append("caller continues")
    assert log == [("caught", (1, 2)), "t ends", "caller continues"]
    assert ch.balance == 0


def test_throw_pending_only_schedules() -> None:
    log: list[Any] = []

    def body() -> None:
        try:
            stackless.schedule_remove()
        except Boom as e:
            log.append(("caught", str(e)))

    t = tasklet(body)()
    stackless.run()
    t.throw(Boom("later"), pending=True)
    log.append("caller first")
    assert t.scheduled
    stackless.run()
    assert log == ["caller first", ("caught", "later")]


def test_throw_on_current_raises_here() -> None:
    with pytest.raises(Boom, match="self"):
        stackless.getcurrent().throw(Boom, "self")


def test_uncaught_exception_is_raised_in_main_by_run() -> None:
    log: list[str] = []

    def bad() -> None:
        _raise_boom()

    tasklet(bad)()
    tasklet(recorder(log, "after"))()
    with pytest.raises(Boom, match="deep") as info:
        stackless.run()
    names = [f.name for f in traceback.extract_tb(info.value.__traceback__)]
    assert "_raise_boom" in names
    assert log == []  # the main tasklet got the error before the next tasklet ran
    stackless.run()
    assert log == ["after"]


def test_uncaught_exception_reaches_main_blocked_on_a_channel() -> None:
    ch = channel()

    def bad() -> None:
        raise Boom("to main")

    tasklet(bad)()
    with pytest.raises(Boom, match="to main"):
        ch.receive()
    assert ch.balance == 0


# -- misuse -----------------------------------------------------------------------------------


def test_misuse_errors() -> None:
    def f() -> None:
        pass

    t = tasklet(f)()
    with pytest.raises(RuntimeError, match=r"cannot bind .* tasklet is scheduled"):
        t.bind(f)
    with pytest.raises(RuntimeError, match="tasklet is alive"):
        t.setup()
    with pytest.raises(RuntimeError, match="current tasklet cannot be removed"):
        stackless.getcurrent().remove()
    with pytest.raises(RuntimeError, match="not bound to a function"):
        tasklet().setup()
    with pytest.raises(RuntimeError, match="not set up"):
        tasklet(f).insert()
    with pytest.raises(TypeError, match="must be a callable"):
        tasklet(42)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="needs an exception class"):
        t.raise_exception(Boom("instance"))  # type: ignore[arg-type]
    stackless.run()
    assert not t.alive
    with pytest.raises(RuntimeError, match="is dead"):
        t.insert()
    with pytest.raises(RuntimeError, match="is dead"):
        t.run()
    with pytest.raises(RuntimeError, match="not alive"):
        t.throw(Boom)
    with pytest.raises(RuntimeError, match="not bound to a function"):
        t.setup()  # the run consumed the function: it must be bound again


def test_rebinding_a_tasklet_that_is_not_set_up_is_allowed() -> None:
    log: list[str] = []
    t = tasklet(recorder(log, "first"))
    t.bind(recorder(log, "second"))
    t.bind(None)
    assert not t.alive
    t.bind(recorder(log, "third"), ())  # bound and set up, not inserted
    assert t.alive
    assert not t.scheduled
    t.insert()
    stackless.run()
    assert log == ["third"]


def test_blocked_tasklets_cannot_be_inserted_or_removed() -> None:
    ch = channel()
    t = tasklet(ch.receive)()
    stackless.run()
    with pytest.raises(RuntimeError, match="blocked on a channel"):
        t.insert()
    with pytest.raises(RuntimeError, match="blocked on a channel"):
        t.remove()
    with pytest.raises(RuntimeError, match="blocked on a channel"):
        t.run()
    ch.send(None)


def test_run_from_a_tasklet_is_refused() -> None:
    caught: list[str] = []

    def body() -> None:
        try:
            stackless.run()
        except RuntimeError as e:
            caught.append(str(e))

    tasklet(body)()
    stackless.run()
    assert len(caught) == 1
    assert caught[0].startswith("stackless.run() must be called from the main tasklet")


@pytest.mark.in_hub
def test_blocking_calls_in_the_hub_are_refused() -> None:
    assert stackless.getcurrent().is_main
    with pytest.raises(txgreen.BlockingInHubError, match=r"stackless.schedule\(\)"):
        stackless.schedule()
    with pytest.raises(txgreen.BlockingInHubError, match=r"stackless.run\(\)"):
        stackless.run()
    ch = channel()
    with pytest.raises(txgreen.BlockingInHubError, match="nobody on the other side"):
        ch.send(1)
    assert ch.balance == 0


# -- the reactor --------------------------------------------------------------------------------


def test_reactor_callback_sends_to_a_waiting_tasklet() -> None:
    ch = channel()
    done = channel()
    log: list[Any] = []

    def receiver() -> None:
        log.append(("got", ch.receive()))
        done.send("finished")

    tasklet(receiver)()
    stackless.run()  # the receiver is blocked: run() returns
    assert ch.balance == -1
    _reactor().callLater(0, ch.send, "from the reactor")  # in the hub: never blocks there
    assert done.receive() == "finished"  # the main tasklet waits; the reactor runs
    assert log == [("got", "from the reactor")]


def test_tasklet_created_by_a_reactor_callback() -> None:
    ch = channel()
    _reactor().callLater(0, lambda: tasklet(ch.send)("hello"))
    assert ch.receive() == "hello"


def test_schedule_lets_the_reactor_run() -> None:
    fired: list[bool] = []
    _reactor().callLater(0, fired.append, True)
    while not fired:  # the only runnable tasklet still lets timers fire
        stackless.schedule()
    assert fired == [True]


def test_tasklet_waiting_in_block_on_is_blocked_and_run_waits_for_it() -> None:
    d: Deferred[str] = Deferred()
    log: list[Any] = []

    def waiter() -> None:
        log.append(txgreen.block_on(d))
        log.append(stackless.getruncount())

    t = tasklet(waiter)()
    stackless.schedule()  # t runs until block_on
    assert t.alive
    assert t.blocked
    assert not t.scheduled
    assert stackless.getruncount() == 1
    _reactor().callLater(0, d.callback, "fired")
    stackless.run()  # returns only once t has finished
    assert log == ["fired", 1]
    assert not t.alive


def test_kill_of_a_tasklet_waiting_in_block_on() -> None:
    d: Deferred[None] = Deferred()
    log: list[str] = []

    def waiter() -> None:
        try:
            txgreen.block_on(d)
        except TaskletExit:
            log.append("TaskletExit")
            raise

    t = tasklet(waiter)()
    stackless.schedule()
    t.kill()  # delivered on the hub's next turn
    stackless.run()
    assert log == ["TaskletExit"]
    assert not t.alive
    assert d.called  # block_on cancelled the Deferred it no longer waits for
    d.addErrback(lambda f: None)


def test_timeout_around_receive_restores_the_balance() -> None:
    ch = channel()
    with pytest.raises(txgreen.Timeout), txgreen.Timeout(0.01):
        ch.receive()
    assert ch.balance == 0
    assert stackless.getcurrent().scheduled  # back in the runnables once it uses the API
    assert stackless.getruncount() == 1


def test_sleeping_tasklets_interleave_with_channels() -> None:
    clock = task.Clock()
    ch = channel()
    log: list[Any] = []

    def ticker() -> None:
        for i in range(3):
            txgreen.block_on(task.deferLater(cast(Any, clock), 1, lambda: None))
            ch.send(i)

    tasklet(ticker)()
    for _ in range(3):
        _reactor().callLater(0, clock.advance, 1)
        log.append(ch.receive())
    assert log == [0, 1, 2]
    stackless.run()


def test_atomic_is_a_compatible_no_op() -> None:
    t = stackless.getcurrent()
    assert t.set_atomic(True) is False
    assert t.atomic
    assert t.set_atomic(False) is True
    with stackless.atomic():
        pass
    assert not t.restorable


def test_kill_pending_takes_the_tasklet_off_the_channel() -> None:
    ch = channel()
    log: list[str] = []

    def receiver() -> None:
        try:
            ch.receive()
        except TaskletExit:
            log.append("TaskletExit")
            raise

    t = tasklet(receiver)()
    stackless.run()
    t.kill(pending=True)
    assert ch.balance == 0  # off the channel at once
    assert t.scheduled
    assert not t.blocked
    log.append("killer continues")
    stackless.run()
    assert log == ["killer continues", "TaskletExit"]
    assert not t.alive


def test_uncaught_exception_reaches_main_waiting_in_block_on() -> None:
    d: Deferred[None] = Deferred()

    def bad() -> None:
        raise Boom("while main waits")

    tasklet(bad)()
    with pytest.raises(Boom, match="while main waits"):
        txgreen.block_on(d)  # the hub runs the tasklet meanwhile
    assert d.called  # block_on cancelled it
    d.addErrback(lambda f: None)


def test_uncaught_exception_of_a_hub_tasklet_is_logged() -> None:
    ch = channel()

    def bad() -> None:
        ch.send("before")
        raise Boom("in a hub tasklet")

    with log_events(lambda e: "Unhandled error in tasklet" in (e.get("log_format") or "")) as ev:
        _reactor().callLater(0, lambda: tasklet(bad)())
        assert ch.receive() == "before"
        txgreen.sleep(0)
        txgreen.sleep(0)
    assert len(ev) == 1
    assert isinstance(ev[0]["log_failure"].value, Boom)


def test_each_green_thread_is_the_main_tasklet_of_its_own_scheduler() -> None:
    ch = channel()
    me = stackless.getcurrent()
    seen: list[Any] = []

    def other_thread() -> None:
        main = stackless.getcurrent()
        seen.append((main.is_main, main is me, stackless.getruncount()))
        t = tasklet(recorder(seen, "its tasklet"))()
        stackless.run()
        seen.append(t.alive)
        ch.send("from another green thread")  # a channel works across schedulers

    g = txgreen.spawn(other_thread)
    assert ch.receive() == "from another green thread"
    g.join()
    assert seen == [(True, False, 1), "its tasklet", False]
    assert stackless.getruncount() == 1
    assert me.thread_id == txgreen.get_hub().thread_ident


# -- Stackless's own behaviour, as its documentation, source and tests give it (issue 9) ----------


def test_preference_is_clamped_to_its_sign() -> None:
    # Stackless's channel_set_preference: val > 0 ? 1 : val < 0 ? -1 : 0
    ch = channel()
    for value, expected in [(5, 1), (-7, -1), (0, 0), (1, 1), (True, 1)]:
        ch.preference = value
        assert ch.preference == expected
    with pytest.raises(TypeError, match="integer"):
        ch.preference = "1"  # type: ignore[assignment]
    ch.schedule_all = 3
    assert ch.schedule_all
    # preference 5 behaves as 1 (prefer the sender), not as 0
    log, _ = _transfer(5, receiver_first=False)
    assert log == _transfer(1, receiver_first=False)[0]
    assert log == ["send", "receive", "sender continues", "other", "got v"]


def test_bind_without_a_function_keeps_the_bound_one() -> None:
    got: list[Any] = []

    def f(*args: Any, **kwargs: Any) -> None:
        got.append((args, kwargs))

    t = tasklet(f)
    assert t.bind(None, (1, 2), {"k": 3}) is t  # sets the arguments, keeps f
    assert t.alive
    assert not t.scheduled
    t.run()
    u = tasklet(f).bind(args=())
    u.insert()
    v = tasklet(f).bind(kwargs={"only": "kw"})
    v.insert()
    stackless.run()
    assert got == [((1, 2), {"k": 3}), ((), {}), ((), {"only": "kw"})]
    with pytest.raises(RuntimeError, match="not bound to a function"):
        tasklet().bind(None, ())


def test_a_tasklet_that_has_ended_can_be_bound_again() -> None:
    # Stackless's bind docstring: "re-bind a tasklet, after it has been run, in order to keep
    # its identity" (syncless's testLateBind does it)
    log: list[str] = []
    t = tasklet(recorder(log, "first"))()
    stackless.run()
    assert not t.alive
    t.bind(recorder(log, "second"))()
    assert t.alive
    stackless.run()
    assert log == ["first", "second"]
    # set up but never inserted: bind drops that set-up
    u = tasklet(recorder(log, "dropped"), ())
    u.bind(recorder(log, "kept"), ())
    u.insert()
    stackless.run()
    assert log == ["first", "second", "kept"]


def test_throw_tasklet_exit_or_kill_on_a_tasklet_that_has_ended_is_a_silent_no_op() -> None:
    t = tasklet(lambda: None)()
    stackless.run()
    assert not t.alive
    assert t.throw(TaskletExit) is None
    assert t.throw(TaskletExit("an instance"), pending=True) is None
    assert t.raise_exception(TaskletExit) is None
    assert t.kill() is None
    assert tasklet().throw(TaskletExit) is None  # never set up: nothing to end either
    assert tasklet(recorder([], "x")).kill() is None
    with pytest.raises(RuntimeError, match="not alive"):
        t.throw(Boom)  # any other exception is an error
    with pytest.raises(RuntimeError, match="not alive"):
        t.raise_exception(Boom)


def test_insert_returns_the_tasklet_and_run_kill_raise_exception_the_callers_tempval() -> None:
    main = stackless.getcurrent()

    def setter(value: str) -> None:
        main.tempval = value  # what the main tasklet's pending call returns when it resumes

    t = tasklet(setter)("t")
    assert t.remove() is t
    assert t.insert() is t
    assert t.insert() is t  # already there
    assert main.insert() is main  # the current one: no change
    # run() returns the caller's tempval once it runs again: after t, whoever follows it
    tasklet(setter)("after t")
    assert t.run() == "after t"
    assert main.tempval is None  # claimed
    main.tempval = "mine"
    assert main.run() == "mine"  # running the current tasklet returns its own tempval
    assert tasklet(lambda: None)().run() is None

    doomed = tasklet(lambda: None)()
    tasklet(setter)("back")
    assert doomed.kill() == "back"  # syncless's testRaiseException

    def waits() -> None:
        with pytest.raises(Boom):
            stackless.schedule()

    w = tasklet(waits)()
    stackless.schedule()
    tasklet(setter)("back2")
    assert w.raise_exception(Boom) == "back2"
    assert w.kill() is None  # ended meanwhile
    p = tasklet(waits)()
    stackless.schedule()
    assert p.throw(Boom, pending=True) is None  # pending: no switch, returns None
    stackless.run()
    assert stackless.getruncount() == 1


def test_next_and_prev_of_tasklets_blocked_on_a_channel_end_at_the_channel() -> None:
    # syncless's testChannelReceiveLinkedList, run by it against Stackless
    ch = channel()
    t1 = tasklet(ch.receive)()
    assert t1.next is stackless.getcurrent()  # in the runnables: a ring
    stackless.schedule()
    assert ch.queue is t1
    assert t1.next is None  # alone on the channel
    assert t1.prev is None
    t2 = tasklet(ch.receive)()
    stackless.schedule()
    t3 = tasklet(ch.receive)()
    stackless.schedule()
    assert [t1.prev, t1.next, t2.prev, t2.next, t3.prev, t3.next] == [None, t2, t1, t3, t2, None]
    for i in range(3):
        ch.send(i)
    assert t1.next is None
    assert t1.prev is None


def test_kill_jumps_in_the_runnables_list() -> None:
    # syncless's testKillJumpsInRunnablesList: killing a runnable tasklet switches to it where
    # it stands in the ring, so the tasklets after it run before the killer resumes
    items: list[str] = []
    main = stackless.getcurrent()
    dead = tasklet(recorder(items, "dead"))()
    worker = tasklet(recorder(items, "worker"))()
    assert ring() == [main, dead, worker]
    items.append("before")
    dead.kill()
    items.append("after")
    assert items == ["before", "worker", "after"]
    assert ring() == [main]
    assert not worker.alive

    # a started tasklet too: b, then c (after it), then the killer
    log: list[str] = []

    def looper(name: str) -> None:
        try:
            while True:
                log.append(name)
                stackless.schedule()
        except TaskletExit:
            log.append(f"{name} killed")
            raise

    a, b, c = (tasklet(looper)(n) for n in "abc")
    stackless.schedule()
    assert ring() == [main, a, b, c]
    log.clear()
    b.kill()
    assert log == ["b killed", "c"]
    assert ring() == [main, a, c]
    a.kill()
    c.kill()


def test_error_types_as_stackless_raises_them() -> None:
    t = tasklet(lambda: None)()
    # TypeError for a function that is not callable, even on a tasklet that is set up
    # (Stackless checks that first)
    with pytest.raises(TypeError, match="must be a callable"):
        t.bind(42)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="must be a callable"):
        tasklet().bind("f")  # type: ignore[arg-type]
    # calling a tasklet that is set up: RuntimeError "tasklet is alive" (Stackless issue 106)
    with pytest.raises(RuntimeError, match="tasklet is alive"):
        t()
    with pytest.raises(RuntimeError, match="tasklet is alive"):
        t.setup(1)
    # the current tasklet cannot be rebound
    with pytest.raises(RuntimeError, match="current tasklet"):
        stackless.getcurrent().bind(None)
    # throw() takes what `raise` takes
    with pytest.raises(TypeError):
        t.throw(None)
    with pytest.raises(TypeError, match="separate value"):
        t.throw(Boom("x"), "y")
    with pytest.raises(TypeError):
        t.raise_exception(Boom("an instance"))  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="integer"):
        channel().schedule_all = None  # type: ignore[assignment]
    stackless.run()


def _frames(exc: BaseException) -> list[tuple[str, bool]]:
    """(function name, is txgreen's) for each entry of the exception's traceback."""
    package = os.path.dirname(txgreen.__file__) + os.sep
    return [
        (f.name, f.filename.startswith(package)) for f in traceback.extract_tb(exc.__traceback__)
    ]


def _assert_starts_at_user_frame(exc: BaseException, origin: str) -> None:
    """The traceback starts at the user's frames, then at most 3 of txgreen's, then only the
    frames the exception carried, ending where it was raised."""
    frames = _frames(exc)
    assert not frames[0][1], frames
    first = next(n for n, (_, ours) in enumerate(frames) if ours)
    end = next(n for n in range(first, len(frames)) if not frames[n][1])
    assert end - first <= 3, f"{end - first} txgreen frames in front: {frames}"
    assert not any(ours for _, ours in frames[end:]), frames  # no hub or tasklet frames
    assert frames[-1] == (origin, False), frames


def test_a_bombs_re_raised_traceback_starts_at_the_users_frame() -> None:
    ch = channel()

    def receiver() -> None:
        try:
            ch.receive()
        except Boom as e:
            caught.append(e)

    # a bomb received on a channel: send_exception with an instance, send of a bomb
    caught: list[BaseException] = []
    senders: list[Callable[[Boom], None]] = [
        ch.send_exception,
        lambda e: ch.send(bomb(type(e), e, e.__traceback__)),
    ]
    for send in senders:
        tasklet(receiver)()
        stackless.run()
        try:
            _raise_boom()
        except Boom as e:
            send(e)
    assert len(caught) == 2
    for exc in caught:
        _assert_starts_at_user_frame(exc, "_raise_boom")
        assert _frames(exc)[0] == ("receiver", False)

    # a bomb in the tempval, raised by schedule() (here: schedule's own retval)
    try:
        _raise_boom()
    except Boom:
        b = bomb(*sys.exc_info())
    with pytest.raises(Boom) as info:
        stackless.schedule(b)
    _assert_starts_at_user_frame(info.value, "_raise_boom")

    # a tasklet's uncaught exception, raised in the main tasklet: by run(), by a blocked
    # receive(), by t.run(), by t.kill()
    def bad() -> None:
        _raise_boom()

    def bad_at_exit() -> None:
        try:
            stackless.schedule()
        finally:
            _raise_boom()

    def in_run() -> None:
        tasklet(bad)()
        stackless.run()

    def in_receive() -> None:
        tasklet(bad)()
        channel().receive()

    def in_tasklet_run() -> None:
        tasklet(bad)().run()

    for start in [in_run, in_receive, in_tasklet_run]:
        with pytest.raises(Boom) as info:
            start()
        frames = _frames(info.value)
        assert ("bad", False) in frames
        assert ("_body", True) not in frames
        _assert_starts_at_user_frame(info.value, "_raise_boom")
    t = tasklet(bad_at_exit)()
    stackless.schedule()
    with pytest.raises(Boom) as info:
        t.kill()
    _assert_starts_at_user_frame(info.value, "_raise_boom")
    assert stackless.getruncount() == 1


# -- a model check ------------------------------------------------------------------------------

OPS = st.lists(
    st.one_of(
        st.tuples(st.just("send"), st.integers(0, 99)),
        st.tuples(st.just("recv"), st.just(0)),
        st.tuples(st.just("kill"), st.integers(0, 5)),
        st.tuples(st.just("main_send"), st.integers(100, 199)),
        st.tuples(st.just("main_recv"), st.just(0)),
    ),
    max_size=25,
)


@settings(max_examples=40, deadline=None)
@given(ops=OPS, pref=st.sampled_from([-1, 0, 1]))
def test_channel_against_a_fifo_model(ops: list[tuple[str, int]], pref: int) -> None:
    """Random senders, receivers and kills: nothing lost or duplicated, FIFO, right balance."""
    ch = channel()
    ch.preference = pref
    delivered: list[tuple[int, int]] = []  # (receiver id, value)
    tasklets: dict[int, tasklet] = {}
    # the model: blocked tasklets in FIFO order, as (id, kind, value)
    queue: list[tuple[int, str, int]] = []
    expected: list[tuple[int, int]] = []

    def receiver(rid: int) -> None:
        delivered.append((rid, ch.receive()))

    for n, (op, arg) in enumerate(ops):
        if op == "send":
            tasklets[n] = tasklet(ch.send)(arg)
            if queue and queue[0][1] == "recv":
                expected.append((queue.pop(0)[0], arg))
            else:
                queue.append((n, "send", arg))
        elif op == "recv":
            tasklets[n] = tasklet(receiver)(n)
            if queue and queue[0][1] == "send":
                expected.append((n, queue.pop(0)[2]))
            else:
                queue.append((n, "recv", 0))
        elif op == "kill":
            if queue:
                victim = queue.pop(arg % len(queue))[0]
                tasklets[victim].kill()
                assert not tasklets[victim].alive
        elif op == "main_send":
            if not queue or queue[0][1] != "recv":
                continue  # the main tasklet would block for good
            expected.append((queue.pop(0)[0], arg))
            ch.send(arg)
        else:
            if not queue or queue[0][1] != "send":
                continue
            value = queue.pop(0)[2]
            expected.append((-1, value))
            delivered.append((-1, ch.receive()))
        stackless.run()
        assert delivered == expected  # each transfer is done by the time run() returns
        sign = 1 if queue and queue[0][1] == "send" else -1
        assert ch.balance == sign * len(queue)
        blocked = [t for t in tasklets.values() if t.blocked]
        assert [id(t) for t in blocked] == [id(tasklets[i]) for i, _, _ in sorted(queue)]
        chain = []
        t = ch.queue
        for _ in range(len(queue)):
            assert t is not None
            chain.append(t)
            t = t.next
        assert chain == [tasklets[i] for i, _, _ in queue]  # FIFO, linked in order
    for t in list(tasklets.values()):
        t.kill()
    assert ch.balance == 0
    assert stackless.getruncount() == 1
