"""txgreen.green.selectors: the stdlib's selectors, green, with several real sockets registered.

Every test runs as a green thread with the plugin's leak check; the autouse fixture also checks
that the fd registry is empty afterwards.
"""

from __future__ import annotations

import selectors as std_selectors
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from twisted.internet.defer import Deferred, succeed

import txgreen
from support import in_reactor_callback
from txgreen.green import _fdwait
from txgreen.green import selectors as gselectors
from txgreen.green import socket as gsocket

GREEN = [gselectors.SelectSelector, gselectors.PollSelector, gselectors.EpollSelector]
ids = ["select", "poll", "epoll"]


@pytest.fixture(autouse=True)
def registry_empty_after() -> Iterator[None]:
    yield
    assert _fdwait.watched_fds() == {}


@pytest.fixture
def pairs() -> Iterator[list[tuple[gsocket.socket, gsocket.socket]]]:
    made = [gsocket.socketpair() for _ in range(3)]
    yield made
    for a, b in made:
        a.close()
        b.close()


def ready_fds(ready: list[tuple[std_selectors.SelectorKey, int]]) -> set[tuple[int, int]]:
    return {(key.fd, events) for key, events in ready}


def send_later(sock: gsocket.socket, data: bytes, delay: float) -> txgreen.GreenThread[None]:
    def send() -> None:
        txgreen.sleep(delay)
        sock.sendall(data)

    return txgreen.spawn(send)


def test_the_module_mirrors_the_stdlib() -> None:
    assert gselectors.__patched__ == [
        "DefaultSelector",
        "SelectSelector",
        "PollSelector",
        "EpollSelector",
    ]
    assert gselectors.DefaultSelector is gselectors.EpollSelector
    for name in ("SelectSelector", "PollSelector", "EpollSelector"):
        green, std = getattr(gselectors, name), getattr(std_selectors, name)
        assert issubclass(green, std)
        assert green is not std
        assert green.__doc__
        assert green.select.__doc__
    for name in ("EVENT_READ", "EVENT_WRITE", "SelectorKey", "BaseSelector"):
        assert getattr(gselectors, name) is getattr(std_selectors, name)


@pytest.mark.parametrize("cls", GREEN, ids=ids)
def test_select_with_several_registered_sockets(
    cls: type[std_selectors.BaseSelector], pairs: list[tuple[gsocket.socket, gsocket.socket]]
) -> None:
    with cls() as sel:
        for i, (a, _) in enumerate(pairs):
            key = sel.register(a, gselectors.EVENT_READ, data=i)
            assert key.fd == a.fileno()
        assert sel.select(0) == []
        assert sel.select(-1) == []  # a negative timeout only checks, as the stdlib's
        start = time.monotonic()
        assert sel.select(0.05) == []
        assert time.monotonic() - start >= 0.05
        # Data for the second socket, later: select(None) waits for it.
        sender = send_later(pairs[1][1], b"x", 0.03)
        ready = sel.select(None)
        assert [(key.fileobj, key.data, events) for key, events in ready] == [
            (pairs[1][0], 1, gselectors.EVENT_READ)
        ]
        sender.get(timeout=5)
        pairs[2][1].send(b"y")
        ready = sel.select(5)
        assert ready_fds(ready) == {
            (pairs[1][0].fileno(), gselectors.EVENT_READ),
            (pairs[2][0].fileno(), gselectors.EVENT_READ),
        }
        # modify, unregister and get_map are the stdlib's.
        sel.modify(pairs[0][0], gselectors.EVENT_WRITE, data="w")
        sel.unregister(pairs[2][0])
        assert set(sel.get_map()) == {pairs[0][0].fileno(), pairs[1][0].fileno()}
        assert ready_fds(sel.select(5)) == {
            (pairs[0][0].fileno(), gselectors.EVENT_WRITE),
            (pairs[1][0].fileno(), gselectors.EVENT_READ),
        }
        with pytest.raises(KeyError):
            sel.unregister(pairs[2][0])
        with pytest.raises(ValueError):
            sel.register(-1, gselectors.EVENT_READ)
    assert sel.get_map() is None


@pytest.mark.parametrize("cls", GREEN, ids=ids)
def test_selectors_wait_in_many_green_threads_while_a_ticker_ticks(
    cls: type[std_selectors.BaseSelector],
) -> None:
    n, delay = 30, 0.2
    pairs = [gsocket.socketpair() for _ in range(n)]
    ticks: list[float] = []
    stop = txgreen.Event()

    def ticker() -> None:
        while not stop.wait(0.01):
            ticks.append(time.monotonic())

    def wait_one(sock: gsocket.socket) -> list[Any]:
        with cls() as sel:
            sel.register(sock, gselectors.EVENT_READ)
            return [key.fileobj for key, _ in sel.select(10)]

    try:
        tick = txgreen.spawn(ticker)
        start = time.monotonic()
        waiting = [txgreen.spawn(wait_one, a) for a, _ in pairs]
        txgreen.sleep(delay)
        for _, b in pairs:
            b.send(b"!")
        results = [w.get(timeout=10) for w in waiting]
        stop.set()
        assert tick.join(timeout=5)
        assert results == [[a] for a, _ in pairs]
        during = [t for t in ticks if start <= t <= start + delay]
        assert len(during) >= delay / 0.01 / 3, len(during)
    finally:
        for a, b in pairs:
            a.close()
            b.close()


@pytest.mark.parametrize("cls", GREEN, ids=ids)
def test_a_killed_select_leaves_nothing_registered(
    cls: type[std_selectors.BaseSelector], pairs: list[tuple[gsocket.socket, gsocket.socket]]
) -> None:
    with cls() as sel:
        for a, _ in pairs:
            sel.register(a, gselectors.EVENT_READ)
        blocked = txgreen.spawn(sel.select)
        txgreen.sleep(0.01)
        assert _fdwait.watched_fds() != {}
        blocked.kill(block=True)
        assert _fdwait.watched_fds() == {}
        with txgreen.Timeout(0.02, silent=True):
            sel.select(5)
        assert _fdwait.watched_fds() == {}


def test_select_selector_on_a_socket_another_green_thread_reads_raises_the_named_error(
    pairs: list[tuple[gsocket.socket, gsocket.socket]],
) -> None:
    a, b = pairs[0]
    reader = txgreen.spawn(a.recv, 10)
    txgreen.sleep(0.01)
    for cls in (gselectors.SelectSelector, gselectors.PollSelector):
        with cls() as sel:
            sel.register(a, gselectors.EVENT_READ)
            with pytest.raises(txgreen.ConcurrentWaitError):
                sel.select(1)
    # The epoll selector waits on its own fd: no conflict.
    with gselectors.EpollSelector() as sel:
        sel.register(a, gselectors.EVENT_READ)
        assert sel.select(0.02) == []
    b.send(b"r")
    assert reader.get(timeout=5) == b"r"


def test_closing_an_epoll_selector_under_a_waiter_answers_at_once(
    pairs: list[tuple[gsocket.socket, gsocket.socket]],
) -> None:
    sel = gselectors.EpollSelector()
    sel.register(pairs[0][0], gselectors.EVENT_READ)
    waiting = txgreen.spawn(sel.select, 5)
    txgreen.sleep(0.01)
    start = time.monotonic()
    sel.close()
    assert _fdwait.watched_fds() == {}
    with pytest.raises(ValueError, match="closed epoll"):
        waiting.get(timeout=5)
    assert time.monotonic() - start < 1
    sel.close()  # twice is fine


@pytest.mark.parametrize("cls", GREEN, ids=ids)
def test_bad_timeouts_raise_type_error_like_the_stdlib(
    cls: type[std_selectors.BaseSelector],
) -> None:
    std_cls = getattr(std_selectors, cls.__name__)
    with std_cls() as std_sel, pytest.raises(TypeError):
        std_sel.select("1")
    with cls() as sel, pytest.raises(TypeError):
        sel.select("1")  # type: ignore[arg-type]


# -- outside green threads: OS threads and the hub ------------------------------------------------


@pytest.mark.parametrize("cls", GREEN, ids=ids)
def test_calls_from_an_os_thread_block_like_the_stdlib(
    cls: type[std_selectors.BaseSelector], pairs: list[tuple[gsocket.socket, gsocket.socket]]
) -> None:
    a, b = pairs[0]
    started = threading.Event()

    def in_thread() -> tuple[list[Any], list[Any]]:
        assert threading.current_thread() is not threading.main_thread()
        with cls() as sel:
            sel.register(a, gselectors.EVENT_READ)
            started.set()
            ready = [key.fileobj for key, _ in sel.select(5)]  # blocks this OS thread
            sel.unregister(a)
            return ready, sel.select(0.02)

    job = txgreen.spawn(txgreen.call_in_thread, in_thread)
    while not started.is_set():
        txgreen.sleep(0.005)
    txgreen.sleep(0.05)
    assert _fdwait.watched_fds() == {}  # the thread waits in the OS, not on the reactor
    b.sendall(b"x")
    assert job.get(timeout=5) == ([a], [])


@pytest.mark.parametrize("cls", GREEN, ids=ids)
def test_calls_in_the_hub_block_like_the_stdlib(
    cls: type[std_selectors.BaseSelector], pairs: list[tuple[gsocket.socket, gsocket.socket]]
) -> None:
    a, b = pairs[0]

    def in_hub() -> Deferred[tuple[Any, list[Any], bool]]:
        with cls() as sel:
            sel.register(a, gselectors.EVENT_READ)
            start = time.monotonic()
            nothing = sel.select(0.02)  # blocks the reactor, as the stdlib's would
            blocked = time.monotonic() - start >= 0.02
            b.send(b"x")
            ready = [key.fileobj for key, _ in sel.select(5)]
        return succeed((nothing, ready, blocked))

    assert txgreen.block_on(in_reactor_callback(in_hub), 5) == ([], [a], True)
