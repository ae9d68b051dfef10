"""txgreen.green.socket: real sockets on 127.0.0.1 between green threads.

Every test runs as a green thread (``txgreen_mode = auto``) with the plugin's leak check, so a
reactor reader/writer or a socket left behind fails the test; the autouse fixture also checks
that the fd registry is empty afterwards.
"""

from __future__ import annotations

import errno
import importlib
import socket as std_socket
import struct
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from twisted.internet import reactor
from twisted.internet.defer import Deferred, succeed

import txgreen
from support import in_reactor_callback, log_events
from txgreen.green import _fdwait
from txgreen.green import socket as gsocket

R: Any = reactor  # the installed reactor, untyped


@pytest.fixture(autouse=True)
def registry_empty_after() -> Iterator[None]:
    yield
    assert _fdwait.watched_fds() == {}


def serve_echo(listener: gsocket.socket, handlers: list[txgreen.GreenThread[None]]) -> None:
    """Accept connections until the listener is closed; echo each in a green thread."""

    def echo(conn: gsocket.socket) -> None:
        with conn:
            while data := conn.recv(65536):
                conn.sendall(data)

    while True:
        try:
            conn, _ = listener.accept()
        except OSError:
            return
        assert isinstance(conn, gsocket.socket)
        handlers.append(txgreen.spawn(echo, conn))


def test_echo_client_and_server_in_green_threads() -> None:
    handlers: list[txgreen.GreenThread[None]] = []
    with gsocket.create_server(("127.0.0.1", 0)) as listener:
        assert isinstance(listener, gsocket.socket)
        server = txgreen.spawn(serve_echo, listener, handlers)
        port = listener.getsockname()[1]
        with gsocket.create_connection(("127.0.0.1", port), timeout=5) as client:
            assert isinstance(client, gsocket.socket)
            assert client.gettimeout() == 5
            client.sendall(b"hello " * 10000)  # more than one send's worth
            got = b""
            while len(got) < 60000:
                got += client.recv(65536)
            assert got == b"hello " * 10000
            client.shutdown(gsocket.SHUT_WR)
            assert client.recv(10) == b""
    assert server.join(timeout=5)
    assert txgreen.joinall(handlers, timeout=5)


def test_fifty_clients_are_served_concurrently_while_a_ticker_ticks() -> None:
    n, delay = 50, 0.2

    def slow_answer(conn: gsocket.socket) -> None:
        with conn:
            request = conn.recv(100)
            txgreen.sleep(delay)
            conn.sendall(b"re:" + request)

    def serve(listener: gsocket.socket, handlers: list[txgreen.GreenThread[None]]) -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            handlers.append(txgreen.spawn(slow_answer, conn))

    def client(i: int, port: int) -> bytes:
        with gsocket.create_connection(("127.0.0.1", port), timeout=10) as s:
            s.sendall(b"%d" % i)
            return s.recv(100)

    ticks: list[float] = []
    stop = txgreen.Event()

    def ticker() -> None:
        while not stop.wait(0.01):
            ticks.append(time.monotonic())

    handlers: list[txgreen.GreenThread[None]] = []
    with gsocket.create_server(("127.0.0.1", 0), backlog=n) as listener:
        server = txgreen.spawn(serve, listener, handlers)
        tick = txgreen.spawn(ticker)
        port = listener.getsockname()[1]
        start = time.monotonic()
        clients = [txgreen.spawn(client, i, port) for i in range(n)]
        answers = [c.get(timeout=10) for c in clients]
        elapsed = time.monotonic() - start
        stop.set()
    assert answers == [b"re:%d" % i for i in range(n)]
    assert elapsed < n * delay / 5, elapsed  # 10 s if served one by one
    # The ticker kept running during the calls (one tick per 10 ms, loosely).
    during = [t for t in ticks if start <= t <= start + elapsed]
    assert len(during) >= elapsed / 0.01 / 3, (len(during), elapsed)
    assert tick.join(timeout=5)
    assert server.join(timeout=5)
    assert txgreen.joinall(handlers, timeout=5)


# -- timeouts and blocking modes -----------------------------------------------------------------


def test_recv_timeout_raises_the_stdlib_timeout() -> None:
    a, b = gsocket.socketpair()
    with a, b:
        a.settimeout(0.05)
        assert a.gettimeout() == 0.05
        assert a.getblocking()
        start = time.monotonic()
        with pytest.raises(gsocket.timeout) as info:
            a.recv(10)
        assert 0.04 <= time.monotonic() - start < 2
        assert type(info.value) is TimeoutError
        assert std_socket.timeout is TimeoutError
        assert str(info.value) == "timed out"
        assert info.value.args == ("timed out",)
        b.send(b"x")  # the socket still works after a timeout
        assert a.recv(10) == b"x"


def test_accept_timeout() -> None:
    with gsocket.create_server(("127.0.0.1", 0)) as listener:
        listener.settimeout(0.05)
        with pytest.raises(TimeoutError, match=r"^timed out$"):
            listener.accept()


def test_setdefaulttimeout_is_honoured() -> None:
    old = gsocket.getdefaulttimeout()
    gsocket.setdefaulttimeout(0.05)
    try:
        a, b = gsocket.socketpair()
        s = gsocket.socket()
    finally:
        gsocket.setdefaulttimeout(old)
    with a, b, s:
        assert s.gettimeout() == 0.05
        assert a.gettimeout() == 0.05
        with pytest.raises(TimeoutError, match=r"^timed out$"):
            a.recv(1)


def test_non_blocking_mode_raises_blocking_io_error() -> None:
    a, b = gsocket.socketpair()
    with a, b:
        a.setblocking(False)
        assert a.gettimeout() == 0.0
        assert not a.getblocking()
        with pytest.raises(BlockingIOError) as info:
            a.recv(10)
        assert info.value.errno in (errno.EAGAIN, errno.EWOULDBLOCK)
        a.setblocking(True)
        assert a.gettimeout() is None
        assert a.getblocking()
        b.send(b"y")
        assert a.recv(10) == b"y"


@pytest.mark.skipif(not hasattr(std_socket, "SOCK_NONBLOCK"), reason="Linux's SOCK_NONBLOCK")
def test_a_sock_nonblock_socket_starts_non_blocking_as_the_stdlibs() -> None:
    kind = std_socket.SOCK_STREAM | std_socket.SOCK_NONBLOCK
    with (
        gsocket.socket(std_socket.AF_INET, kind) as s,
        std_socket.socket(std_socket.AF_INET, kind) as std,
    ):
        assert (s.gettimeout(), s.getblocking()) == (std.gettimeout(), std.getblocking())
        assert s.gettimeout() == 0.0
        s.bind(("127.0.0.1", 0))
        s.listen()
        with pytest.raises(BlockingIOError):
            s.accept()


@pytest.mark.skipif(not hasattr(std_socket, "MSG_DONTWAIT"), reason="needs MSG_DONTWAIT")
def test_msg_dontwait_never_waits_even_with_a_timeout() -> None:
    a, b = gsocket.socketpair()
    with a, b:
        a.settimeout(5)
        began = time.monotonic()
        with pytest.raises(BlockingIOError):
            a.recvmsg(10, 0, std_socket.MSG_DONTWAIT)
        with pytest.raises(BlockingIOError):
            a.recvmsg_into([bytearray(10)], 0, std_socket.MSG_DONTWAIT)
        dontwait = std_socket.MSG_DONTWAIT
        for call in (
            lambda: a.recv(10, dontwait),
            lambda: a.recv_into(bytearray(10), 10, dontwait),
            lambda: a.recvfrom(10, dontwait),
            lambda: a.recvfrom_into(bytearray(10), 10, dontwait),
        ):
            with pytest.raises(BlockingIOError):
                call()
        a.setsockopt(std_socket.SOL_SOCKET, std_socket.SO_SNDBUF, 4096)

        def fill() -> None:  # until the buffers are full and a send would block
            while True:
                a.sendmsg([b"x" * 4096], [], std_socket.MSG_DONTWAIT)

        with pytest.raises(BlockingIOError):
            fill()
        for send in (
            lambda: a.send(b"x" * 4096, dontwait),
            lambda: a.sendall(b"x" * 4096, dontwait),
        ):
            with pytest.raises(BlockingIOError):
                send()
        assert time.monotonic() - began < 1
        assert a.gettimeout() == 5


def test_detach_after_the_fd_was_closed_elsewhere_returns_it_as_the_stdlib() -> None:
    with gsocket.socket() as owner:
        fd = owner.fileno()
        borrower = gsocket.socket(fileno=fd)
        borrower.settimeout(None)
    with pytest.raises(OSError) as caught:
        borrower.setblocking(False)  # the fd is closed: the stdlib's EBADF
    assert caught.value.errno == errno.EBADF
    assert borrower.detach() == fd


def test_settimeout_checks_its_argument_as_the_stdlib_does() -> None:
    with gsocket.socket() as g, std_socket.socket() as s:
        for bad in (-1, "x"):
            with pytest.raises(Exception) as std_info:
                s.settimeout(bad)  # type: ignore[arg-type]
            with pytest.raises(type(std_info.value), match=str(std_info.value)):
                g.settimeout(bad)  # type: ignore[arg-type]
        assert g.gettimeout() is None


def test_sendall_times_out_when_the_peer_does_not_read() -> None:
    a, b = gsocket.socketpair()
    with a, b:
        a.settimeout(0.1)
        with pytest.raises(TimeoutError, match=r"^timed out$"):
            a.sendall(b"z" * 50_000_000)


# -- connecting -----------------------------------------------------------------------------------


def free_port() -> int:
    with std_socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def test_connect_refused() -> None:
    port = free_port()
    with gsocket.socket() as s, pytest.raises(ConnectionRefusedError):
        s.connect(("127.0.0.1", port))
    with gsocket.socket() as s:
        assert s.connect_ex(("127.0.0.1", port)) == errno.ECONNREFUSED
    with pytest.raises(ConnectionRefusedError):
        gsocket.create_connection(("127.0.0.1", port), timeout=5)


def test_connect_timeout_to_a_listener_whose_queue_is_full() -> None:
    # Linux drops the SYNs of connections a full accept queue cannot take: connect hangs.
    with gsocket.create_server(("127.0.0.1", 0), backlog=0) as listener:
        address = listener.getsockname()
        fillers = [gsocket.socket() for _ in range(5)]
        try:
            for f in fillers:
                f.setblocking(False)
                f.connect_ex(address)
            txgreen.sleep(0.05)

            def stdlib_connect() -> str:
                with std_socket.socket() as s:
                    s.settimeout(0.1)
                    try:
                        s.connect(address)
                    except TimeoutError as e:
                        return str(e)
                    return "connected"

            assert txgreen.call_in_thread(stdlib_connect) == "timed out"
            with gsocket.socket() as s:
                s.settimeout(0.1)
                start = time.monotonic()
                with pytest.raises(TimeoutError, match=r"^timed out$"):
                    s.connect(address)
                assert 0.09 <= time.monotonic() - start < 2
            with gsocket.socket() as s:
                s.settimeout(0.05)
                assert s.connect_ex(address) == errno.EWOULDBLOCK  # as the stdlib's
        finally:
            for f in fillers:
                f.close()


def test_connect_with_a_host_name_and_connect_ex() -> None:
    with gsocket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]
        with gsocket.socket() as s:
            s.settimeout(5)
            assert s.connect_ex(("localhost", port)) == 0
            conn, addr = listener.accept()
            with conn:
                assert addr == s.getsockname()
                s.sendall(b"hi")
                assert conn.recv(2) == b"hi"


# -- the name service -----------------------------------------------------------------------------


def test_dns_failure_keeps_the_stdlibs_gaierror_code() -> None:
    name = "no-such-host.invalid"
    expected = txgreen.call_in_thread(_gaierror_code, name)
    with pytest.raises(gsocket.gaierror) as info:
        gsocket.getaddrinfo(name, 80)
    assert info.value.errno == expected
    assert gsocket.gaierror is std_socket.gaierror


def _gaierror_code(name: str) -> int | None:
    try:
        std_socket.getaddrinfo(name, 80)
    except std_socket.gaierror as e:
        return e.errno
    raise AssertionError(f"{name} resolved")


def test_numeric_hosts_are_answered_without_the_resolver_pool(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def no_pool(*args: object, **kwargs: object) -> None:
        raise AssertionError("the resolver pool was used for a numeric host")

    monkeypatch.setattr(gsocket, "_call_in_thread", no_pool)
    assert gsocket.getaddrinfo("127.0.0.1", 80, type=gsocket.SOCK_STREAM) == (
        std_socket.getaddrinfo("127.0.0.1", 80, type=std_socket.SOCK_STREAM)
    )
    v6 = gsocket.getaddrinfo("::1", 443, gsocket.AF_INET6, gsocket.SOCK_STREAM)
    assert v6[0][0] == gsocket.AF_INET6
    assert v6[0][4][:2] == ("::1", 443)
    assert gsocket.gethostbyname("127.0.0.1") == "127.0.0.1"
    assert gsocket.getnameinfo(
        ("127.0.0.1", 80), gsocket.NI_NUMERICHOST | gsocket.NI_NUMERICSERV
    ) == ("127.0.0.1", "80")


def test_names_resolve_in_the_pool_like_the_stdlib() -> None:
    assert gsocket.gethostbyname("localhost") == std_socket.gethostbyname("localhost")
    assert gsocket.getaddrinfo("localhost", 80, gsocket.AF_INET) == std_socket.getaddrinfo(
        "localhost", 80, std_socket.AF_INET
    )
    assert gsocket.gethostbyname_ex("localhost")[2] == std_socket.gethostbyname_ex("localhost")[2]
    assert gsocket.getnameinfo(("127.0.0.1", 80), 0) == std_socket.getnameinfo(("127.0.0.1", 80), 0)
    pool = gsocket._dns_pool
    assert pool is not None
    assert pool is not R.getThreadPool()


# -- makefile, datagrams, dup, detach ------------------------------------------------------------


def test_makefile_readline_and_write() -> None:
    a, b = gsocket.socketpair()
    with a, b:
        reader = a.makefile("rb")
        writer = b.makefile("wb")

        def write_later() -> None:
            txgreen.sleep(0.02)
            writer.write(b"first line\nsecond ")
            writer.flush()
            txgreen.sleep(0.02)
            writer.write(b"line\n")
            writer.close()

        w = txgreen.spawn(write_later)
        assert reader.readline() == b"first line\n"
        assert reader.readline() == b"second line\n"
        assert w.join(timeout=5)
        reader.close()
        text = a.makefile("rw", encoding="ascii", newline="")
        b.sendall(b"ping\r\n")
        assert text.readline() == "ping\r\n"
        text.write("pong")
        text.flush()
        assert b.recv(4) == b"pong"
        text.close()


def test_datagrams_recvfrom_and_recv_into() -> None:
    udp = (gsocket.AF_INET, gsocket.SOCK_DGRAM)
    with gsocket.socket(*udp) as a, gsocket.socket(*udp) as b:
        a.bind(("127.0.0.1", 0))
        b.bind(("127.0.0.1", 0))
        got = txgreen.spawn(a.recvfrom, 100)
        txgreen.sleep(0.01)
        b.sendto(b"dgram", a.getsockname())
        assert got.get(timeout=5) == (b"dgram", b.getsockname())
        buf = bytearray(10)
        got2 = txgreen.spawn(a.recvfrom_into, buf)
        txgreen.sleep(0.01)
        b.sendto(b"into", 0, a.getsockname())
        assert got2.get(timeout=5) == (4, b.getsockname())
        assert bytes(buf[:4]) == b"into"
        b.connect(a.getsockname())
        b.send(b"r_i")
        assert a.recv_into(buf) == 3
        assert bytes(buf[:3]) == b"r_i"


def test_sendfile_sends_through_the_green_send(tmp_path: Path) -> None:
    path = tmp_path / "data"
    path.write_bytes(b"0123456789" * 100_000)  # 1 MB: more than the socket buffers hold
    a, b = gsocket.socketpair()
    with a, b, path.open("rb") as f:

        def read_all() -> bytes:
            chunks = []
            while chunk := b.recv(65536):
                chunks.append(chunk)
            return b"".join(chunks)

        reader = txgreen.spawn(read_all)
        assert a.sendfile(f, offset=10) == 999_990
        a.shutdown(gsocket.SHUT_WR)
        assert reader.get(timeout=5) == (b"0123456789" * 100_000)[10:]


def test_dup_fromfd_and_detach_give_working_sockets() -> None:
    a, b = gsocket.socketpair()
    with a, b:
        a.settimeout(3)
        d = a.dup()
        assert isinstance(d, gsocket.socket)
        assert d.gettimeout() == 3
        f = gsocket.fromfd(b.fileno(), b.family, b.type)
        assert isinstance(f, gsocket.socket)
        with d, f:
            f.sendall(b"dup")
            assert d.recv(3) == b"dup"
        fd = a.detach()
        assert a.fileno() == -1
        again = gsocket.socket(fileno=fd)
        with again:
            b.sendall(b"back")
            assert again.recv(4) == b"back"


# -- the fd registry: close while waiting, two readers, reuse ------------------------------------


def test_close_while_another_green_thread_waits_raises_ebadf() -> None:
    a, b = gsocket.socketpair()
    with b:
        fd = a.fileno()
        reader = txgreen.spawn(a.recv, 10)
        txgreen.sleep(0.01)
        assert _fdwait.watched_fds() == {fd: (True, False)}
        a.close()
        assert _fdwait.watched_fds() == {}
        with pytest.raises(OSError) as info:
            reader.get(timeout=5)
        assert info.value.errno == errno.EBADF


def test_close_from_an_os_thread_while_a_green_thread_waits() -> None:
    a, b = gsocket.socketpair()
    with b:
        reader = txgreen.spawn(a.recv, 10)
        txgreen.sleep(0.01)
        txgreen.call_in_thread(a.close)  # unregistered through the reactor's thread first
        assert _fdwait.watched_fds() == {}
        with pytest.raises(OSError) as info:
            reader.get(timeout=5)
        assert info.value.errno == errno.EBADF


def test_two_readers_on_one_socket_raise_the_named_error() -> None:
    a, b = gsocket.socketpair()
    with a, b:
        first = txgreen.spawn(a.recv, 10)
        txgreen.sleep(0.01)
        with pytest.raises(txgreen.ConcurrentWaitError, match="two green threads"):
            a.recv(10)
        # A writer on the same fd is fine at the same time as the reader.
        assert a.send(b"w") == 1
        b.send(b"r")
        assert first.get(timeout=5) == b"r"
        assert b.recv(1) == b"w"


def test_fd_number_reused_after_close_gets_its_events() -> None:
    a, b = gsocket.socketpair()
    old = a.fileno()
    reader = txgreen.spawn(a.recv, 10)
    txgreen.sleep(0.01)
    a.close()
    with pytest.raises(OSError):
        reader.get(timeout=5)
    c, d = gsocket.socketpair()  # the lowest free fd numbers: ``old`` again
    with b, c, d:
        assert old in (c.fileno(), d.fileno())
        mine, other = (c, d) if c.fileno() == old else (d, c)
        got = txgreen.spawn(mine.recv, 10)
        txgreen.sleep(0.01)
        other.send(b"new")
        assert got.get(timeout=5) == b"new"


def test_a_thousand_sockets_at_once() -> None:
    # The select reactor cannot watch fd numbers at or above FD_SETSIZE (1024).
    pairs_n = 450 if "select" in type(R).__module__ else 500
    pairs = [gsocket.socketpair() for _ in range(pairs_n)]
    try:
        readers = [txgreen.spawn(a.recv, 10) for a, _ in pairs]
        txgreen.sleep(0.05)
        assert len(_fdwait.watched_fds()) == pairs_n
        for i, (_, b) in enumerate(pairs):
            b.sendall(b"%d" % i)
        assert [r.get(timeout=10) for r in readers] == [b"%d" % i for i in range(pairs_n)]
    finally:
        for a, b in pairs:
            a.close()
            b.close()


def reset(s: gsocket.socket) -> None:
    """Close ``s`` so that its peer gets a reset (RST), not an orderly end."""
    s.setsockopt(gsocket.SOL_SOCKET, gsocket.SO_LINGER, struct.pack("ii", 1, 0))
    s.close()


def connected_tcp_pair() -> tuple[gsocket.socket, gsocket.socket]:
    with gsocket.create_server(("127.0.0.1", 0)) as listener:
        client = gsocket.create_connection(listener.getsockname(), timeout=5)
        server, _ = listener.accept()
    return client, server


def test_peer_resets_while_a_green_thread_waits_in_recv() -> None:
    client, server = connected_tcp_pair()
    with client:
        reader = txgreen.spawn(client.recv, 10)
        txgreen.sleep(0.01)
        reset(server)
        with pytest.raises(ConnectionResetError):
            reader.get(timeout=5)


def test_peer_resets_while_a_green_thread_waits_to_write() -> None:
    client, server = connected_tcp_pair()
    with client:
        writer = txgreen.spawn(client.sendall, b"w" * 50_000_000)
        txgreen.sleep(0.05)
        assert _fdwait.watched_fds() == {client.fileno(): (False, True)}
        reset(server)
        with pytest.raises((ConnectionResetError, BrokenPipeError)):
            writer.get(timeout=5)


def test_reader_killed_or_timed_out_leaves_nothing_registered() -> None:
    a, b = gsocket.socketpair()
    with a, b:
        reader = txgreen.spawn(a.recv, 10)
        txgreen.sleep(0.01)
        reader.kill(block=True)
        assert _fdwait.watched_fds() == {}
        with txgreen.Timeout(0.02, silent=True):
            a.recv(10)
        assert _fdwait.watched_fds() == {}
        b.send(b"ok")
        assert a.recv(10) == b"ok"


def registered_readers() -> set[int]:
    """The fds of txgreen's watches the reactor reads."""
    return {r.fileno() for r in R.getReaders() if isinstance(r, _fdwait._FdWatch)}


def test_back_to_back_waits_keep_the_reactor_registration(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A thread woken by readiness that waits to read again before giving control back (a
    # ping-pong connection) stays registered: no remove/add pair per message.  One that does
    # not wait again is unregistered as its wake-up ends.
    added: list[int] = []
    add_reader = R.addReader

    def counting_add_reader(reader: Any) -> None:
        added.append(reader.fileno())
        add_reader(reader)

    monkeypatch.setattr(R, "addReader", counting_add_reader)
    a, b = gsocket.socketpair()
    with a, b:

        def echo() -> None:
            while data := b.recv(100):
                b.sendall(data)

        echoer = txgreen.spawn(echo)
        for i in range(50):
            a.sendall(b"%d" % i)
            assert a.recv(100) == b"%d" % i
        # Each side was registered once for its 50 waits.
        assert (added.count(a.fileno()), added.count(b.fileno())) == (1, 1)
        # This thread was woken by ``a``'s readiness and has not given control back since, so
        # ``a`` is still registered; once it does (and does not wait on ``a``), it is not.
        assert registered_readers() == {a.fileno(), b.fileno()}
        assert _fdwait.watched_fds() == {a.fileno(): (False, False), b.fileno(): (True, False)}
        txgreen.sleep(0.01)
        assert registered_readers() == {b.fileno()}  # the echoer waits
        a.shutdown(gsocket.SHUT_WR)
        assert echoer.join(timeout=5)  # woken by the end of stream, it did not wait again
        assert registered_readers() == set()
        assert _fdwait.watched_fds() == {}


def test_a_socket_dropped_unclosed_right_after_its_wake_up_leaves_nothing_behind() -> None:
    # The dropped socket's registration outlives its wake-up; the socket's finaliser takes it
    # off the reactor before the fd is closed (else the reactor would log EBADF).
    a, b = gsocket.socketpair()
    with a, log_events(lambda e: e.get("isError", False)) as errors:

        def handler(conn: gsocket.socket) -> bytes:
            return conn.recv(10)  # then ``conn`` is dropped, unclosed

        thread = txgreen.spawn(handler, b)
        del b
        txgreen.sleep(0.01)

        def wake_it() -> bytes:
            a.send(b"x")
            got = thread.get(timeout=5)
            txgreen.sleep(0.01)  # (the wake-up has surely ended)
            return got

        with pytest.warns(ResourceWarning, match="unclosed"):
            got = wake_it()
        assert got == b"x"
        assert registered_readers() == set()
        assert _fdwait.watched_fds() == {}
        # The fd number is free again, and a new socket on it gets its events.
        c, d = gsocket.socketpair()
        with c, d:
            d.send(b"y")
            assert c.recv(10) == b"y"
    assert errors == []


# -- outside green threads: OS threads and the hub ------------------------------------------------


def test_calls_from_an_os_thread_block_like_the_stdlib() -> None:
    a, b = gsocket.socketpair()
    with a, b:
        started = threading.Event()

        def in_thread() -> tuple[bytes, str]:
            assert threading.current_thread() is not threading.main_thread()
            started.set()
            data = a.recv(10)  # blocks this OS thread until the green thread sends
            a.settimeout(0.05)
            try:
                a.recv(10)
            except TimeoutError as e:
                return data, str(e)
            return data, "no timeout"

        job = txgreen.spawn(txgreen.call_in_thread, in_thread)
        while not started.is_set():
            txgreen.sleep(0.005)
        txgreen.sleep(0.05)
        assert _fdwait.watched_fds() == {}  # the thread waits in the OS, not on the reactor
        b.sendall(b"from green")
        assert job.get(timeout=5) == (b"from green", "timed out")
        assert txgreen.call_in_thread(gsocket.gethostbyname, "localhost") == "127.0.0.1"


def test_calls_in_the_hub_block_like_the_stdlib() -> None:
    a, b = gsocket.socketpair()
    with a, b:

        def in_hub() -> Deferred[tuple[bytes, str]]:
            b.send(b"ready")
            data = a.recv(10)  # ready: no wait
            a.settimeout(0.02)
            try:
                a.recv(10)  # blocks the reactor for 20 ms, like the stdlib's call would
            except TimeoutError as e:
                return succeed((data, str(e)))
            raise AssertionError("no timeout")

        assert txgreen.block_on(in_reactor_callback(in_hub), 5) == (b"ready", "timed out")


def test_txgreen_green_is_both_the_decorator_and_the_package() -> None:
    # txgreen/green/ shares its name with @txgreen.green: the package is callable as the
    # decorator, and every import form of its modules works.
    import txgreen.green.socket as imported_as

    assert imported_as is gsocket
    assert importlib.import_module("txgreen.green.socket") is gsocket
    assert txgreen.green.socket is gsocket  # type: ignore[attr-defined]

    @txgreen.green
    def double(x: int) -> int:
        txgreen.sleep(0)
        return 2 * x

    d = double(21)
    assert isinstance(d, Deferred)
    assert txgreen.block_on(d, 5) == 42
    assert txgreen.block_on(txgreen.green(lambda: "called")(), 5) == "called"  # a plain call
