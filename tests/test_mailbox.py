"""Mailboxes: ``send`` never blocks, ``receive`` is Erlang's selective receive, misuse is named."""

from __future__ import annotations

from typing import Any

import pytest
from twisted.internet import reactor

import txgreen
from support import Boom
from txgreen import Empty, Mailbox, MailboxFull, NotAGreenThread, receive, send

R: Any = reactor


def test_send_then_receive_in_order() -> None:
    me = _me()
    for i in range(5):
        send(me, i)
    assert [receive() for _ in range(5)] == [0, 1, 2, 3, 4]


def _me() -> txgreen.GreenThread[Any]:
    from greenlet import getcurrent

    cur = getcurrent()
    assert isinstance(cur, txgreen.GreenThread)
    return cur


def test_selective_receive_takes_the_first_match_and_keeps_the_order_of_the_rest() -> None:
    me = _me()
    for m in ["a", 1, "b", 2, "c"]:
        send(me, m)
    assert receive(match=lambda m: isinstance(m, int)) == 1
    assert receive(match=lambda m: isinstance(m, int)) == 2
    assert [receive(), receive(), receive()] == ["a", "b", "c"]


def test_selective_receive_waits_for_a_matching_message_and_keeps_the_others() -> None:
    def receiver() -> tuple[Any, list[Any]]:
        got = receive(match=lambda m: m == "wanted")
        return got, [receive(timeout=0) for _ in range(3)]

    t = txgreen.spawn(receiver)
    txgreen.sleep(0)  # it waits now
    send(t, "x")
    txgreen.sleep(0)
    send(t, "y")
    txgreen.sleep(0.01)
    assert not t.dead  # the unmatched messages woke it, but it keeps waiting
    send(t, "wanted")
    send(t, "z")
    assert t.get(timeout=5) == ("wanted", ["x", "y", "z"])


def test_receive_timeout_raises_empty_and_timeout_zero_polls() -> None:
    with pytest.raises(Empty, match="no matching message within 0 seconds"):
        receive(timeout=0)
    send(_me(), "not this")
    with pytest.raises(Empty, match=r"within 0\.05 seconds"):
        receive(timeout=0.05, match=lambda m: m == "that")
    assert receive(timeout=0) == "not this"  # still there


def test_a_message_arriving_before_the_timeout_is_received() -> None:
    me = _me()
    R.callLater(0.02, send, me, "late")  # from the hub: send never switches
    assert receive(timeout=5) == "late"


def test_match_that_raises_propagates_and_the_message_stays() -> None:
    send(_me(), "m")

    def bad(_: object) -> bool:
        raise Boom()

    with pytest.raises(Boom):
        receive(match=bad)
    assert receive(timeout=0) == "m"


def test_send_to_a_dead_thread_is_dropped_and_its_mailbox_freed() -> None:
    t = txgreen.spawn(receive)
    txgreen.sleep(0)
    assert t._mailbox is not None
    send(t, 1)
    assert t.get(timeout=5) == 1
    assert t._mailbox is None  # freed with the thread
    send(t, 2)  # no error, nothing kept
    assert t._mailbox is None


def test_no_mailbox_until_used() -> None:
    t = txgreen.spawn(txgreen.sleep, 0)
    assert t._mailbox is None
    t.join()
    box = Mailbox()
    assert box._messages is None
    assert len(box) == 0


def test_kill_while_receiving_leaves_no_waiter_behind() -> None:
    box = Mailbox()
    t = txgreen.spawn(box.receive)
    txgreen.sleep(0)
    assert box._waiters
    t.kill()
    assert not box._waiters
    box.put("kept")
    assert box.receive(timeout=0) == "kept"


def test_timeout_block_around_receive() -> None:
    with pytest.raises(txgreen.Timeout), txgreen.Timeout(0.02):
        receive()


def test_mailbox_object_shared_by_two_receivers_gives_each_message_once() -> None:
    box = Mailbox()
    got: list[tuple[str, Any]] = []

    def reader(name: str) -> None:
        for _ in range(3):
            got.append((name, box.receive(timeout=5)))

    a = txgreen.spawn(reader, "a")
    b = txgreen.spawn(reader, "b")
    txgreen.sleep(0)
    for i in range(6):
        send(box, i)
        txgreen.sleep(0)
    txgreen.joinall([a, b], raise_error=True)
    assert sorted(m for _, m in got) == list(range(6))


def test_two_receivers_with_different_matches_each_get_theirs() -> None:
    box = Mailbox()
    evens = txgreen.spawn(box.receive, 5, lambda m: m % 2 == 0)
    odds = txgreen.spawn(box.receive, 5, lambda m: m % 2 == 1)
    txgreen.sleep(0)
    box.put(1)
    box.put(2)
    assert (evens.get(timeout=5), odds.get(timeout=5)) == (2, 1)
    assert len(box) == 0


def test_bounded_mailbox_raises_instead_of_blocking() -> None:
    box = Mailbox(maxsize=2)
    box.put(1)
    box.put(2)
    with pytest.raises(MailboxFull, match="already holds 2 messages"):
        box.put(3)
    assert box.receive() == 1
    box.put(3)
    assert box.flush() == [2, 3]


def test_flush_with_match() -> None:
    box = Mailbox()
    for m in [1, "a", 2, "b"]:
        box.put(m)
    assert box.flush(lambda m: isinstance(m, str)) == ["a", "b"]
    assert box.flush() == [1, 2]
    assert box.flush() == []


@pytest.mark.parametrize("bad", [0, -1, 1.5, "3"])
def test_bad_maxsize(bad: Any) -> None:
    with pytest.raises(ValueError, match="maxsize must be a positive int or None"):
        Mailbox(maxsize=bad)


def test_bad_timeout_and_bad_target() -> None:
    with pytest.raises(ValueError, match="timeout must be a non-negative number"):
        receive(timeout=-1)
    with pytest.raises(TypeError, match=r"GreenThread or a txgreen\.Mailbox, not int"):
        send(3, "x")  # type: ignore[arg-type]


@pytest.mark.in_hub
def test_receive_in_the_hub_is_a_named_error() -> None:
    with pytest.raises(NotAGreenThread, match="runs in the hub"):
        receive(timeout=0)
    box = Mailbox()
    box.put(1)
    assert box.receive() == 1  # a ready message needs no wait, even in the hub
    with pytest.raises(txgreen.BlockingInHubError):
        box.receive()


def test_many_messages_keep_order_under_selective_receives() -> None:
    me = _me()
    for i in range(1000):
        send(me, i)
    assert receive(match=lambda m: m == 999) == 999
    assert receive(match=lambda m: m == 500) == 500
    rest = [receive() for _ in range(998)]
    assert rest == [i for i in range(999) if i != 500]


def test_current_thread_is_where_send_reaches() -> None:
    me = txgreen.current_thread()
    assert me is _me()
    send(me, "to myself")
    assert receive(timeout=0) == "to myself"


@pytest.mark.in_hub
def test_current_thread_in_the_hub_is_a_named_error() -> None:
    with pytest.raises(NotAGreenThread, match=r"txgreen\.current_thread\(\) needs a green thread"):
        txgreen.current_thread()


def test_a_cancel_scope_ends_a_receive_and_leaves_no_waiter() -> None:
    box = Mailbox()
    with txgreen.move_on_after(0.02) as scope:
        box.receive()
    assert scope.cancelled_caught
    assert not box._waiters
    with txgreen.move_on_after(0.02) as scope:
        receive(match=lambda m: m == "never")
    assert scope.cancelled_caught
