"""``Channel``: rendezvous, FIFO, ``balance``, ``send_exception``, ``close``, iteration,
timeouts, kills, the hub and misuse."""

from __future__ import annotations

import gc
import weakref
from typing import Any

import pytest
from twisted.internet.defer import Deferred

import txgreen
from primitives_support import all_of, assert_in_hub, settle, then_in_hub
from support import Boom
from txgreen import GreenletExit, GreenThread
from txgreen._channel import Channel, ChannelClosed

HUB_MESSAGE = "was called from the hub (the greenlet running the reactor)"


def test_send_blocks_until_a_receiver_takes_the_value() -> None:
    ch: Channel[str] = Channel()
    log: list[str] = []

    def sender() -> None:
        ch.send("hello")
        log.append("sent")

    s = txgreen.spawn(sender)
    settle()
    assert log == []
    assert ch.balance == 1
    assert repr(ch) == "<txgreen.Channel open balance=1>"
    assert ch.receive() == "hello"  # a sender is waiting: no wait, and it is woken
    assert ch.balance == 0
    assert log == []
    s.join()
    assert log == ["sent"]


def test_send_to_a_waiting_receiver_completes_at_once_without_switching() -> None:
    ch: Channel[int] = Channel()
    got: list[int] = []
    r = txgreen.spawn(lambda: got.append(ch.receive()))
    settle()
    assert ch.balance == -1
    ch.send(1)
    assert got == []  # the receiver has not run yet
    assert ch.balance == 0
    r.join()
    assert got == [1]


def test_fifo_senders_and_receivers() -> None:
    ch: Channel[int] = Channel()
    senders = [txgreen.spawn(ch.send, i) for i in range(4)]
    settle()
    assert ch.balance == 4
    assert [ch.receive() for _ in range(4)] == [0, 1, 2, 3]
    for s in senders:
        s.join()
    receivers = [txgreen.spawn(ch.receive) for _ in range(3)]
    settle()
    assert ch.balance == -3
    for v in (10, 11, 12):
        ch.send(v)
    assert [r.get() for r in receivers] == [10, 11, 12]
    assert ch.balance == 0


def test_send_exception_is_raised_by_the_receiver() -> None:
    ch: Channel[int] = Channel()
    boom = Boom("via channel")
    r = txgreen.spawn(ch.receive)
    settle()
    ch.send_exception(boom)
    with pytest.raises(Boom) as excinfo:
        r.get()
    assert excinfo.value is boom
    # A waiting sender of an exception: the receiver raises it; a class is instantiated.
    s = txgreen.spawn(ch.send_exception, KeyError)
    settle()
    assert ch.balance == 1
    with pytest.raises(KeyError):
        ch.receive()
    s.join()
    assert s.successful()
    with pytest.raises(TypeError) as excinfo2:
        ch.send_exception("nope")  # type: ignore[arg-type]
    assert str(excinfo2.value) == (
        "Channel.send_exception() takes an exception instance or class, not 'str'"
    )


def test_close_wakes_everyone_with_channel_closed() -> None:
    ch: Channel[int] = Channel()
    receivers = [txgreen.spawn(ch.receive) for _ in range(2)]
    settle()
    ch.close()
    assert ch.closed
    assert ch.balance == 0
    assert repr(ch) == "<txgreen.Channel closed balance=0>"
    for r in receivers:
        with pytest.raises(ChannelClosed) as excinfo:
            r.get()
        assert str(excinfo.value) == "Channel.receive(): the channel was closed while waiting"
        assert isinstance(excinfo.value, txgreen.TxgreenError)

    ch2: Channel[int] = Channel()
    senders = [txgreen.spawn(ch2.send, i) for i in range(2)]
    settle()
    ch2.close()
    for s in senders:
        with pytest.raises(ChannelClosed) as excinfo:
            s.get()
        assert str(excinfo.value) == (
            "Channel.send(): the channel was closed before a receiver took the value"
        )
    ch2.close()  # closing twice is a no-op
    assert ch2.balance == 0


def test_closed_channel_refuses_calls() -> None:
    ch: Channel[int] = Channel()
    ch.close()
    with pytest.raises(ChannelClosed) as excinfo:
        ch.send(1)
    assert str(excinfo.value) == "Channel.send() on a closed channel"
    with pytest.raises(ChannelClosed) as excinfo:
        ch.send_exception(Boom())
    assert str(excinfo.value) == "Channel.send_exception() on a closed channel"
    with pytest.raises(ChannelClosed) as excinfo:
        ch.receive()
    assert str(excinfo.value) == "Channel.receive() on a closed channel"
    assert list(ch) == []


def test_iteration_until_closed() -> None:
    ch: Channel[int] = Channel()

    def producer() -> None:
        for i in range(4):
            ch.send(i)
        ch.close()

    p = txgreen.spawn(producer)
    assert list(ch) == [0, 1, 2, 3]
    p.join()
    assert p.successful()


def test_timeouts() -> None:
    ch: Channel[int] = Channel()
    with pytest.raises(txgreen.Timeout) as excinfo:
        ch.send(1, timeout=0.01)
    assert str(excinfo.value) == "timed out after 0.01 seconds"
    assert ch.balance == 0
    with pytest.raises(txgreen.Timeout):
        ch.send_exception(Boom(), timeout=0.01)
    with pytest.raises(txgreen.Timeout):
        ch.receive(timeout=0.01)
    assert ch.balance == 0
    # The timed-out value was not delivered: a new receiver waits for a new send.
    r = txgreen.spawn(ch.receive)
    settle()
    assert ch.balance == -1
    ch.send(2)
    assert r.get() == 2
    with pytest.raises(ValueError) as excinfo2:
        ch.receive(timeout=-1)
    assert str(excinfo2.value) == "timeout must be a non-negative number of seconds or None, not -1"


def test_enclosing_timeout() -> None:
    ch: Channel[int] = Channel()
    with pytest.raises(txgreen.Timeout) as excinfo, txgreen.Timeout(0.01) as deadline:
        ch.receive(timeout=10)
    assert excinfo.value is deadline
    with pytest.raises(txgreen.Timeout) as excinfo, txgreen.Timeout(0.01) as deadline:
        ch.send(3)
    assert excinfo.value is deadline
    assert ch.balance == 0


def test_killed_sender_keeps_balance_and_its_value_is_not_delivered() -> None:
    ch: Channel[str] = Channel()
    a = txgreen.spawn(ch.send, "a")
    b = txgreen.spawn(ch.send, "b")
    settle()
    assert ch.balance == 2
    a.kill()
    assert ch.balance == 1
    assert isinstance(a.value, GreenletExit)
    assert ch.receive() == "b"
    b.join()
    assert ch.balance == 0


def test_kill_without_waiting_still_gives_the_right_balance() -> None:
    ch: Channel[str] = Channel()
    a = txgreen.spawn(ch.send, "a")
    r = txgreen.spawn(ch.receive)  # takes "a" once a is parked
    s = txgreen.spawn(ch.send, "s")
    settle()
    assert r.get() == "a"
    assert ch.balance == 1
    s.kill(block=False)  # s has not run yet: its entry is still queued, but inactive
    assert ch.balance == 0
    s.join()
    assert a.successful()


def test_killed_receiver_keeps_balance_and_the_next_one_gets_the_value() -> None:
    ch: Channel[str] = Channel()
    a = txgreen.spawn(ch.receive)
    b = txgreen.spawn(ch.receive)
    settle()
    assert ch.balance == -2
    a.kill()
    assert ch.balance == -1
    ch.send("x")
    assert b.get() == "x"


def test_receiver_killed_after_hand_over_still_returns_the_value() -> None:
    ch: Channel[str] = Channel()
    got: list[str] = []

    def receiver() -> None:
        got.append(ch.receive())
        txgreen.sleep(0)
        got.append("not reached")

    r = txgreen.spawn(receiver)
    settle()
    ch.send("x")
    r.kill()
    assert got == ["x"]
    assert ch.balance == 0


def test_sender_killed_after_hand_over_returns_normally_first() -> None:
    ch: Channel[str] = Channel()
    log: list[str] = []

    def sender() -> None:
        ch.send("x")
        log.append("sent")
        txgreen.sleep(0)

    s = txgreen.spawn(sender)
    settle()
    assert ch.receive() == "x"
    s.kill()
    assert log == ["sent"]
    assert isinstance(s.value, GreenletExit)


@pytest.mark.in_hub
def test_channel_in_the_hub() -> Deferred[Any]:
    ch: Channel[int] = Channel()
    with pytest.raises(txgreen.BlockingInHubError) as excinfo:
        ch.send(1)
    assert str(excinfo.value).startswith(f"Channel.send() with no receiver waiting {HUB_MESSAGE}")
    with pytest.raises(txgreen.BlockingInHubError) as excinfo:
        ch.receive()
    assert str(excinfo.value).startswith(f"Channel.receive() with no sender waiting {HUB_MESSAGE}")
    assert ch.balance == 0
    got: list[int] = []
    receivers: list[GreenThread[None]] = [
        txgreen.spawn(lambda: got.append(ch.receive())) for _ in range(2)
    ]
    sent: list[str] = []

    def sender() -> None:
        ch.send(7)
        sent.append("done")

    senders = [txgreen.spawn(sender)]

    def fire() -> Deferred[Any]:
        assert_in_hub()
        # The sender found receiver 0 waiting and handed 7 over; receiver 1 still waits.
        assert got == [7]
        assert sent == ["done"]
        assert ch.balance == -1
        ch.send(8)  # to receiver 1: completes at once, without switching
        assert got == [7]
        return all_of([*receivers, *senders]).addCallback(lambda _: check())

    def check() -> None:
        assert got == [7, 8]

    return then_in_hub(fire)


@pytest.mark.in_hub
def test_channel_hand_over_in_the_hub_does_not_run_the_other_side() -> Deferred[Any]:
    ch: Channel[int] = Channel()
    got: list[int] = []
    r = txgreen.spawn(lambda: got.append(ch.receive()))
    sent: list[str] = []

    def sender() -> None:
        ch.send(2)
        sent.append("done")

    def fire() -> Deferred[Any]:
        assert_in_hub()
        ch.send(1)
        assert got == []  # the receiver has not run
        s = txgreen.spawn(sender)
        return then_in_hub(lambda: take(s))

    def take(s: GreenThread[None]) -> Deferred[Any]:
        assert_in_hub()
        assert ch.balance == 1
        assert ch.receive() == 2  # a sender waits: fine in the hub, and no switch
        assert sent == []
        ch.close()  # close from the hub is fine too
        return all_of([r, s]).addCallback(lambda _: check())

    def check() -> None:
        assert got == [1]
        assert sent == ["done"]

    return then_in_hub(fire)


def test_value_skips_a_receiver_killed_but_not_yet_run() -> None:
    ch: Channel[str] = Channel()
    a = txgreen.spawn(ch.receive)
    b = txgreen.spawn(ch.receive)
    settle()
    a.kill(block=False)  # a's wait is over, but a has not run: its entry is still queued
    assert ch.balance == -1
    ch.send("x")  # must go to b, not to the stale entry of a
    assert b.get() == "x"
    a.join()
    assert isinstance(a.value, GreenletExit)
    assert ch.balance == 0


def test_receive_skips_a_sender_killed_but_not_yet_run() -> None:
    ch: Channel[str] = Channel()
    a = txgreen.spawn(ch.send, "a")
    b = txgreen.spawn(ch.send, "b")
    settle()
    a.kill(block=False)
    assert ch.balance == 1
    assert ch.receive() == "b"
    b.join()
    a.join()
    assert ch.balance == 0


def test_channel_accepts_weak_references() -> None:
    # gevent's Channel does (its Cython declaration has __weakref__)
    ch: Channel[int] = Channel()
    ref = weakref.ref(ch)
    assert ref() is ch
    del ch
    gc.collect()
    assert ref() is None
