"""txgreen.green.select: select(), poll() and epoll on real sockets, green and not.

Every test runs as a green thread with the plugin's leak check; the autouse fixture also checks
that the fd registry is empty afterwards (no watch left by a select that ended in any way).
"""

from __future__ import annotations

import errno
import math
import os
import select as std_select
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from twisted.internet.defer import Deferred, succeed

import txgreen
from support import in_reactor_callback
from txgreen.green import _fdwait
from txgreen.green import select as _gselect
from txgreen.green import socket as gsocket

gselect: Any = _gselect  # untyped: the green names share the stdlib's stubs' names


@pytest.fixture(autouse=True)
def registry_empty_after() -> Iterator[None]:
    yield
    assert _fdwait.watched_fds() == {}


def send_later(sock: gsocket.socket, data: bytes, delay: float) -> txgreen.GreenThread[None]:
    def send() -> None:
        txgreen.sleep(delay)
        sock.sendall(data)

    return txgreen.spawn(send)


def stdlib_error(fn: Callable[..., Any], *args: Any) -> BaseException:
    """The exception the stdlib's call raises at once for bad arguments."""
    try:
        fn(*args)
    except Exception as e:
        return e
    raise AssertionError(f"the stdlib accepted {args!r}")


def close_later(sock: gsocket.socket, delay: float) -> None:
    txgreen.sleep(delay)
    sock.close()


def fill(sock: gsocket.socket) -> None:
    """Send until the socket's buffers are full."""
    sock.setblocking(False)
    try:
        while True:
            sock.send(b"w" * 65536)
    except BlockingIOError:
        pass


def drain_all(sock: gsocket.socket) -> None:
    """Receive until nothing is left to read."""
    sock.setblocking(False)
    try:
        while True:
            sock.recv(65536)
    except BlockingIOError:
        pass


def closed_fd() -> int:
    s = gsocket.socket()
    fd = s.fileno()
    s.close()
    return fd


# -- the module's surface -------------------------------------------------------------------------


def test_the_module_mirrors_the_stdlib() -> None:
    assert gselect.__patched__ == ["select", "poll", "epoll"]
    for name in dir(std_select):
        if not name.startswith("_") and name not in gselect.__patched__:
            assert getattr(gselect, name) is getattr(std_select, name), name
    assert gselect.select is not std_select.select
    assert gselect.error is OSError
    for name in ("select", "poll", "epoll"):
        assert getattr(gselect, name).__doc__


# -- select() -------------------------------------------------------------------------------------


def test_select_reports_readable_and_writable_with_the_objects_passed_in() -> None:
    a, b = gsocket.socketpair()
    with a, b:
        assert gselect.select([a, b], [a], [], 0) == ([], [a], [])
        b.sendall(b"x")
        assert gselect.select([a, b.fileno()], [], [], 5) == ([a], [], [])
        r, w, x = gselect.select((a,), (b.fileno(),), (), None)  # any sequence, ints too
        assert (r, w, x) == ([a], [b.fileno()], [])


def test_select_waits_until_data_arrives() -> None:
    a, b = gsocket.socketpair()
    with a, b:
        sender = send_later(b, b"late", 0.05)
        start = time.monotonic()
        assert gselect.select([a], [], [], 5) == ([a], [], [])
        assert time.monotonic() - start >= 0.04
        assert a.recv(10) == b"late"
        sender.get(timeout=5)
        # No timeout at all (None): waits as long as it takes.
        sender = send_later(b, b"again", 0.02)
        assert gselect.select([a], [], []) == ([a], [], [])
        sender.get(timeout=5)


def test_select_waits_for_writability() -> None:
    a, b = gsocket.socketpair()
    with a, b:
        fill(a)
        assert gselect.select([], [a], [], 0) == ([], [], [])

        def drain() -> None:
            txgreen.sleep(0.02)
            drain_all(b)

        drainer = txgreen.spawn(drain)
        assert gselect.select([], [a], [], 5) == ([], [a], [])
        drainer.get(timeout=5)


def test_select_timeouts_return_empty_lists_like_the_stdlib() -> None:
    a, b = gsocket.socketpair()
    with a, b:
        for timeout in (0, 0.0, False):
            assert gselect.select([a], [], [], timeout) == ([], [], [])
        start = time.monotonic()
        assert gselect.select([a], [], [], 0.05) == ([], [], [])
        assert time.monotonic() - start >= 0.05
        start = time.monotonic()
        assert gselect.select([], [], [], 0.03) == ([], [], [])  # no fds: a green sleep
        assert time.monotonic() - start >= 0.03


def test_only_the_selecting_green_threads_wait_while_a_ticker_ticks() -> None:
    n, delay = 50, 0.2
    pairs = [gsocket.socketpair() for _ in range(n)]
    ticks: list[float] = []
    stop = txgreen.Event()

    def ticker() -> None:
        while not stop.wait(0.01):
            ticks.append(time.monotonic())

    def selector(sock: gsocket.socket) -> Any:
        return gselect.select([sock], [], [], 10)

    try:
        tick = txgreen.spawn(ticker)
        start = time.monotonic()
        waiting = [txgreen.spawn(selector, a) for a, _ in pairs]
        txgreen.sleep(delay)
        assert len(_fdwait.watched_fds()) == n
        for _, b in pairs:
            b.send(b"!")
        results = [w.get(timeout=10) for w in waiting]
        elapsed = time.monotonic() - start
        stop.set()
        assert tick.join(timeout=5)
        assert results == [([a], [], []) for a, _ in pairs]
        assert elapsed < 2
        during = [t for t in ticks if start <= t <= start + delay]
        assert len(during) >= delay / 0.01 / 3, len(during)
    finally:
        for a, b in pairs:
            a.close()
            b.close()


def test_a_socket_closed_under_a_waiting_select_raises_ebadf() -> None:
    # The stdlib's select in Linux keeps sleeping until its timeout when another thread closes
    # an fd it waits on, then reports the fd ready; the green one wakes at once and answers as
    # the stdlib does for a closed fd: OSError(EBADF).
    a, b = gsocket.socketpair()
    with b:
        waiting: txgreen.GreenThread[Any] = txgreen.spawn(gselect.select, [a], [], [], 5)
        txgreen.sleep(0.01)
        assert _fdwait.watched_fds() == {a.fileno(): (True, False)}
        start = time.monotonic()
        a.close()
        with pytest.raises(OSError) as info:
            waiting.get(timeout=5)
        assert info.value.errno == errno.EBADF
        assert time.monotonic() - start < 1


def test_killed_or_timed_out_select_leaves_nothing_registered() -> None:
    a, b = gsocket.socketpair()
    c, d = gsocket.socketpair()
    with a, b, c, d:
        blocked: txgreen.GreenThread[Any] = txgreen.spawn(gselect.select, [a, c], [], [], None)
        txgreen.sleep(0.01)
        assert _fdwait.watched_fds() == {a.fileno(): (True, False), c.fileno(): (True, False)}
        blocked.kill(block=True)
        assert _fdwait.watched_fds() == {}
        with txgreen.Timeout(0.02, silent=True):
            gselect.select([a, c], [], [], 5)
        assert _fdwait.watched_fds() == {}
        assert gselect.select([a, c], [], [], 0.01) == ([], [], [])
        assert _fdwait.watched_fds() == {}
        # Woken by one fd: the other's watch goes too.
        d.send(b"d")
        assert gselect.select([a, c], [], [], 5) == ([c], [], [])


def test_the_same_fd_twice_and_in_several_lists() -> None:
    a, b = gsocket.socketpair()
    with a, b:
        sender = send_later(b, b"x", 0.02)
        r, w, x = gselect.select([a, a.fileno()], [], [a, a], 5)
        assert r == [a, a.fileno()]
        assert w == x == []
        sender.get(timeout=5)


@pytest.mark.parametrize(
    "rlist",
    [[-1], [object()], ["3"], [1.5], 5, None],
    ids=["negative fd", "no fileno", "str", "float", "not a sequence", "None"],
)
def test_bad_fd_lists_raise_the_stdlibs_errors(rlist: Any) -> None:
    expected = stdlib_error(std_select.select, rlist, [], [], 0)
    with pytest.raises(type(expected)) as info:
        gselect.select(rlist, [], [], 1)
    assert str(info.value) == str(expected)


def test_a_closed_fd_raises_ebadf() -> None:
    fd = closed_fd()
    with pytest.raises(OSError) as info:
        gselect.select([fd], [], [], 1)
    assert info.value.errno == errno.EBADF


def test_fileno_returning_garbage_raises_like_the_stdlib() -> None:
    class Bad:
        def fileno(self) -> str:
            return "nope"

    expected = stdlib_error(std_select.select, [Bad()], [], [], 0)
    with pytest.raises(type(expected)):
        gselect.select([Bad()], [], [], 1)


@pytest.mark.parametrize(
    "timeout",
    ["1", [], object(), math.nan, -1, -0.5, 10**30, math.inf, 1e10],
    ids=["str", "list", "object", "nan", "-1", "-0.5", "huge int", "inf", "1e10"],
)
def test_bad_timeouts_raise_the_stdlibs_errors(timeout: Any) -> None:
    a, b = gsocket.socketpair()
    with a, b:
        expected = stdlib_error(std_select.select, [a], [], [], timeout)
        with pytest.raises(type(expected)) as info:
            gselect.select([a], [], [], timeout)
        assert str(info.value) == str(expected)


def test_select_on_an_fd_another_green_thread_reads_raises_the_named_error() -> None:
    a, b = gsocket.socketpair()
    c, d = gsocket.socketpair()
    with a, b, c, d:
        reader = txgreen.spawn(a.recv, 10)
        txgreen.sleep(0.01)
        with pytest.raises(txgreen.ConcurrentWaitError, match="selects on it"):
            gselect.select([c, a], [], [], 5)
        # Nothing of the failed select stays registered; the reader still waits.
        assert _fdwait.watched_fds() == {a.fileno(): (True, False)}
        # Writing to the same fd is another direction: fine.
        assert gselect.select([], [a], [], 5) == ([], [a], [])
        b.send(b"r")
        assert reader.get(timeout=5) == b"r"


def test_exceptional_conditions_in_xlist_are_noticed() -> None:
    with gsocket.create_server(("127.0.0.1", 0)) as listener:
        client = gsocket.create_connection(listener.getsockname(), timeout=5)
        server, _ = listener.accept()
    with client, server:

        def urgent() -> None:
            txgreen.sleep(0.02)
            client.send(b"!", gsocket.MSG_OOB)

        sender = txgreen.spawn(urgent)
        assert gselect.select([], [], [server], 5) == ([], [], [server])
        sender.get(timeout=5)
        assert server.recv(1, gsocket.MSG_OOB) == b"!"


# -- poll() ---------------------------------------------------------------------------------------


def test_poll_reports_events_and_waits_for_them() -> None:
    a, b = gsocket.socketpair()
    with a, b:
        p = gselect.poll()
        p.register(a, gselect.POLLIN)
        p.register(b.fileno())  # the default mask: POLLIN | POLLPRI | POLLOUT
        assert p.poll(0) == [(b.fileno(), gselect.POLLOUT)]
        p.modify(b, gselect.POLLIN)
        assert p.poll(0) == []
        sender = send_later(b, b"x", 0.03)
        start = time.monotonic()
        assert p.poll(5000) == [(a.fileno(), gselect.POLLIN)]
        assert time.monotonic() - start >= 0.02
        sender.get(timeout=5)
        assert a.recv(1) == b"x"
        for forever in (None, -1, -5.5):  # None and negative: no limit
            sender = send_later(b, b"y", 0.01)
            assert p.poll(forever) == [(a.fileno(), gselect.POLLIN)]
            assert a.recv(1) == b"y"
            sender.get(timeout=5)
        p.unregister(a)
        assert p.poll(0) == []


def test_poll_timeouts_in_milliseconds() -> None:
    a, b = gsocket.socketpair()
    with a, b:
        p = gselect.poll()
        p.register(a, gselect.POLLIN)
        start = time.monotonic()
        assert p.poll(50) == []
        assert time.monotonic() - start >= 0.05
        start = time.monotonic()
        assert p.poll(0.5) == []  # rounded up to 1 ms, like the stdlib
        assert p.poll(0) == []
        assert time.monotonic() - start < 0.5


def test_poll_reports_pollhup_after_the_peer_closes() -> None:
    # POLLIN is watched by the reactor; an empty mask (only the always-reported POLLHUP and
    # POLLERR) is asked again every 50 ms.
    for mask in (gselect.POLLIN, 0):
        a, b = gsocket.socketpair()
        with a:
            p = gselect.poll()
            p.register(a, mask)
            closer = txgreen.spawn(close_later, b, 0.02)
            got = p.poll(5000)
            closer.get(timeout=5)
            expected = std_select.poll()
            expected.register(a, mask)
            assert got == expected.poll(0)
            assert got[0][1] & gselect.POLLHUP


def test_poll_reports_pollnval_for_a_socket_closed_while_waiting() -> None:
    a, b = gsocket.socketpair()
    with b:
        fd = a.fileno()
        p = gselect.poll()
        p.register(a, gselect.POLLIN)
        waiting = txgreen.spawn(p.poll, 5000)
        txgreen.sleep(0.01)
        a.close()
        assert waiting.get(timeout=5) == [(fd, gselect.POLLNVAL)]


def test_poll_registration_errors_are_the_stdlibs() -> None:
    a, b = gsocket.socketpair()
    with a, b:
        p = gselect.poll()
        with pytest.raises(FileNotFoundError):
            p.modify(a, gselect.POLLIN)
        with pytest.raises(KeyError):
            p.unregister(a)
        with pytest.raises(ValueError):
            p.register(-1)
        with pytest.raises(TypeError):
            p.register(object())
        with pytest.raises(OverflowError):
            p.register(a, 1 << 20)


@pytest.mark.parametrize(
    "timeout",
    ["1", object(), math.nan, 10**30, math.inf, 2**31, -(2**31) - 1],
    ids=["str", "object", "nan", "huge", "inf", "2**31 ms", "-2**31-1 ms"],
)
def test_poll_bad_timeouts_raise_the_stdlibs_errors(timeout: Any) -> None:
    expected = stdlib_error(std_select.poll().poll, timeout)
    with pytest.raises(type(expected)) as info:
        gselect.poll().poll(timeout)
    assert str(info.value) == str(expected)


def test_two_green_threads_in_one_poll_object_raise_runtime_error() -> None:
    a, b = gsocket.socketpair()
    with a, b:
        p = gselect.poll()
        p.register(a, gselect.POLLIN)
        first = txgreen.spawn(p.poll, 5000)
        txgreen.sleep(0.01)
        with pytest.raises(RuntimeError, match="concurrent poll"):
            p.poll(10)
        b.send(b"x")
        assert first.get(timeout=5) == [(a.fileno(), gselect.POLLIN)]


# -- epoll --------------------------------------------------------------------------------------


def test_epoll_waits_on_the_reactor() -> None:
    # The epoll fd itself is watched by the reactor (an epoll inside the reactor's epoll, poll
    # or select set).
    a, b = gsocket.socketpair()
    with a, b, gselect.epoll() as ep:
        assert isinstance(ep, gselect.epoll)
        ep.register(a, gselect.EPOLLIN)
        assert ep.poll(0) == []
        sender = send_later(b, b"x", 0.03)
        waiting = txgreen.spawn(ep.poll, 5)
        txgreen.sleep(0.01)
        assert _fdwait.watched_fds() == {ep.fileno(): (True, False)}
        assert waiting.get(timeout=5) == [(a.fileno(), gselect.EPOLLIN)]
        sender.get(timeout=5)
        start = time.monotonic()
        assert ep.poll(0.05) == [(a.fileno(), gselect.EPOLLIN)]  # level-triggered
        assert a.recv(1) == b"x"
        assert ep.poll(0.05) == []
        assert time.monotonic() - start >= 0.05
        ep.modify(a, gselect.EPOLLOUT)
        assert ep.poll(None, 1) == [(a.fileno(), gselect.EPOLLOUT)]
        ep.unregister(a)
        sender = send_later(b, b"y", 0.02)
        ep.register(a.fileno(), gselect.EPOLLIN)
        assert ep.poll(-1) == [(a.fileno(), gselect.EPOLLIN)]
        sender.get(timeout=5)
    assert ep.closed


def test_epoll_maxevents_and_errors_are_the_stdlibs() -> None:
    pairs = [gsocket.socketpair() for _ in range(3)]
    try:
        with gselect.epoll() as ep:
            for a, _ in pairs:
                ep.register(a, gselect.EPOLLOUT)
            assert len(ep.poll(1, 2)) == 2
            assert len(ep.poll(1)) == 3
            with pytest.raises(FileExistsError):
                ep.register(pairs[0][0], gselect.EPOLLIN)
            for bad in (0, -2):
                expected = stdlib_error(std_select.epoll().poll, 0, bad)
                with pytest.raises(ValueError) as bad_info:
                    ep.poll(1, bad)
                assert str(bad_info.value) == str(expected)
            for timeout in ("1", math.nan, math.inf, 2.2e6):
                expected = stdlib_error(std_select.epoll().poll, timeout)
                with pytest.raises(type(expected)) as info:
                    ep.poll(timeout)
                assert str(info.value) == str(expected)
        with pytest.raises(ValueError, match="closed epoll"):
            ep.poll(0)
        with pytest.raises(ValueError, match="closed epoll"):
            ep.fileno()
    finally:
        for a, b in pairs:
            a.close()
            b.close()


def test_epoll_fromfd_and_close_while_waiting() -> None:
    a, b = gsocket.socketpair()
    with a, b:
        with gselect.epoll() as original:
            ep = gselect.epoll.fromfd(os.dup(original.fileno()))
        assert isinstance(ep, gselect.epoll)
        ep.register(a, gselect.EPOLLIN)
        waiting = txgreen.spawn(ep.poll, 5)
        txgreen.sleep(0.01)
        start = time.monotonic()
        ep.close()
        assert _fdwait.watched_fds() == {}
        with pytest.raises(ValueError, match="closed epoll"):
            waiting.get(timeout=5)
        assert time.monotonic() - start < 1
        ep.close()  # twice is fine, as with the stdlib's


def test_killed_epoll_poll_leaves_nothing_registered() -> None:
    with gselect.epoll() as ep:
        waiting = txgreen.spawn(ep.poll)
        txgreen.sleep(0.01)
        assert _fdwait.watched_fds() == {ep.fileno(): (True, False)}
        waiting.kill(block=True)
        assert _fdwait.watched_fds() == {}


# -- outside green threads: OS threads and the hub ------------------------------------------------


def test_calls_from_an_os_thread_block_like_the_stdlib() -> None:
    a, b = gsocket.socketpair()
    with a, b:
        started = threading.Event()

        def in_thread() -> tuple[Any, ...]:
            assert threading.current_thread() is not threading.main_thread()
            started.set()
            p = gselect.poll()
            p.register(a, gselect.POLLIN)
            with gselect.epoll() as ep:
                ep.register(a, gselect.EPOLLIN)
                return (
                    gselect.select([a], [], [], 5),  # blocks until the green thread sends
                    p.poll(5000),
                    ep.poll(5),
                    gselect.select([], [], [], 0.02),
                )

        job = txgreen.spawn(txgreen.call_in_thread, in_thread)
        while not started.is_set():
            txgreen.sleep(0.005)
        txgreen.sleep(0.05)
        assert _fdwait.watched_fds() == {}  # the thread waits in the OS, not on the reactor
        b.sendall(b"from green")
        assert job.get(timeout=5) == (
            ([a], [], []),
            [(a.fileno(), gselect.POLLIN)],
            [(a.fileno(), gselect.EPOLLIN)],
            ([], [], []),
        )


def test_calls_in_the_hub_block_like_the_stdlib() -> None:
    a, b = gsocket.socketpair()
    with a, b:

        def in_hub() -> Deferred[tuple[Any, ...]]:
            p = gselect.poll()
            p.register(a, gselect.POLLIN)
            start = time.monotonic()
            nothing = (gselect.select([a], [], [], 0.02), p.poll(20))  # block the reactor
            blocked = time.monotonic() - start
            b.send(b"ready")
            with gselect.epoll() as ep:
                ep.register(a, gselect.EPOLLIN)
                ready = (gselect.select([a], [], [], 5), p.poll(5000), ep.poll(5))
            return succeed((nothing, ready, blocked >= 0.04))

        assert txgreen.block_on(in_reactor_callback(in_hub), 5) == (
            (([], [], []), []),
            (([a], [], []), [(a.fileno(), gselect.POLLIN)], [(a.fileno(), gselect.EPOLLIN)]),
            True,
        )
        assert _fdwait.watched_fds() == {}
