"""txgreen.green.ssl: TLS over real sockets on 127.0.0.1 between green threads.

Every test runs as a green thread (``txgreen_mode = auto``) with the plugin's leak check; the
autouse fixture checks that the fd registry is empty afterwards.  Certificates
are made per module (tests/green/certs.py): a CA, a server certificate it signs for localhost
and 127.0.0.1, and an unrelated CA.
"""

from __future__ import annotations

import os
import socket as std_socket
import ssl as std_ssl
import struct
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from certs import Pki, make_pki
from twisted.internet.defer import Deferred, succeed

import txgreen
from support import in_reactor_callback
from txgreen.green import _fdwait
from txgreen.green import socket as gsocket
from txgreen.green import ssl as gssl


@pytest.fixture(autouse=True)
def registry_empty_after() -> Iterator[None]:
    yield
    assert _fdwait.watched_fds() == {}


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


def server_context(pki: Pki) -> gssl.SSLContext:
    ctx = gssl.SSLContext(gssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(pki.cert_file, pki.key_file)
    return ctx


def client_context(pki: Pki) -> gssl.SSLContext:
    return gssl.create_default_context(cafile=str(pki.ca_file))


DEPRECATED = r"ssl\.wrap_socket\(\) is deprecated"

Handler = Callable[[gssl.SSLSocket], None]


class TLSServer:
    """A green TLS server on 127.0.0.1: each connection's handshake and ``handler`` run in a
    green thread of their own; errors they raise are kept in ``errors``."""

    def __init__(self, pki: Pki, handler: Handler, context: Any = None) -> None:
        self.context = context if context is not None else server_context(pki)
        self.listener = self.context.wrap_socket(
            gsocket.create_server(("127.0.0.1", 0), backlog=64),
            server_side=True,
            do_handshake_on_connect=False,
        )
        assert isinstance(self.listener, gssl.SSLSocket)
        self.port: int = self.listener.getsockname()[1]
        self.handler = handler
        self.handlers: list[txgreen.GreenThread[None]] = []
        self.errors: list[BaseException] = []
        self.accepter = txgreen.spawn(self._serve)

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return  # the listener was closed
            self.handlers.append(txgreen.spawn(self._handle, conn))

    def _handle(self, conn: gssl.SSLSocket) -> None:
        with conn:
            try:
                assert isinstance(conn, gssl.SSLSocket)
                conn.do_handshake()
                self.handler(conn)
            except Exception as e:
                self.errors.append(e)

    def close(self) -> None:
        self.listener.close()
        assert self.accepter.join(timeout=5)
        assert txgreen.joinall(self.handlers, timeout=5)

    def __enter__(self) -> TLSServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def echo(conn: gssl.SSLSocket) -> None:
    while data := conn.recv(65536):
        conn.sendall(data)


def connect(pki: Pki, port: int, *, timeout: float | None = 5, **kwargs: Any) -> gssl.SSLSocket:
    """A green TLS client connection to 127.0.0.1:``port`` (handshake done)."""
    sock = gsocket.create_connection(("127.0.0.1", port), timeout=timeout)
    kwargs.setdefault("server_hostname", "localhost")
    conn = client_context(pki).wrap_socket(sock, **kwargs)
    assert isinstance(conn, gssl.SSLSocket)
    return conn


def recv_exactly(conn: Any, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = conn.recv(min(65536, n - len(data)))
        if not chunk:
            break
        data += chunk
    return data


# -- round trips ---------------------------------------------------------------------------------


def test_echo_between_a_green_client_and_a_green_server(pki: Pki) -> None:
    with TLSServer(pki, echo) as server, connect(pki, server.port) as client:
        assert isinstance(client, std_ssl.SSLSocket)  # still the stdlib's type
        assert isinstance(client, gsocket.socket)
        assert client.version() in ("TLSv1.2", "TLSv1.3")
        peer: Any = client.getpeercert()
        assert peer["subject"] == ((("commonName", "localhost"),),)
        client.sendall(b"hello over tls")
        assert recv_exactly(client, 14) == b"hello over tls"
        buf = bytearray(5)
        client.sendall(b"12345")
        assert client.recv_into(buf) == 5
        assert buf == b"12345"
        assert client.write(b"abc") == 3
        assert client.read(3) == b"abc"
        assert client.gettimeout() == 5
        assert not os.get_blocking(client.fileno())  # non-blocking underneath, always
        # A socket without a timeout (blocking, for its user) wraps the same way.
        with connect(pki, server.port, timeout=None) as blocking:
            assert blocking.gettimeout() is None
            assert not os.get_blocking(blocking.fileno())
            blocking.sendall(b"no timeout")
            assert recv_exactly(blocking, 10) == b"no timeout"
    assert server.errors == []


def test_a_megabyte_each_way(pki: Pki) -> None:
    size = 1 << 20
    payload = bytes(range(256)) * (size // 256)
    with TLSServer(pki, echo) as server, connect(pki, server.port) as client:
        writer = txgreen.spawn(client.sendall, payload)  # one writer, one reader at once
        got = recv_exactly(client, size)
        assert writer.join(timeout=10)
        assert got == payload
    assert server.errors == []


def test_fifty_tls_clients_at_once_while_a_ticker_ticks(pki: Pki) -> None:
    n, delay = 50, 0.2

    def slow_answer(conn: gssl.SSLSocket) -> None:
        request = conn.recv(100)
        txgreen.sleep(delay)
        conn.sendall(b"re:" + request)

    def client(i: int, port: int) -> bytes:
        with connect(pki, port, timeout=10) as s:
            s.sendall(b"%d" % i)
            return s.recv(100)

    ticks: list[float] = []
    stop = txgreen.Event()

    def ticker() -> None:
        while not stop.wait(0.01):
            ticks.append(time.monotonic())

    with TLSServer(pki, slow_answer) as server:
        tick = txgreen.spawn(ticker)
        start = time.monotonic()
        clients = [txgreen.spawn(client, i, server.port) for i in range(n)]
        answers = [c.get(timeout=10) for c in clients]
        elapsed = time.monotonic() - start
        stop.set()
        assert tick.join(timeout=5)
    assert answers == [b"re:%d" % i for i in range(n)]
    assert elapsed < n * delay / 5, elapsed  # 10 s if served one by one
    during = [t for t in ticks if start <= t <= start + elapsed]
    assert len(during) >= elapsed / 0.01 / 4, (len(during), elapsed)
    assert server.errors == []


def test_connect_and_connect_ex_on_an_unconnected_ssl_socket(pki: Pki) -> None:
    with TLSServer(pki, echo) as server:
        ctx = client_context(pki)
        with ctx.wrap_socket(gsocket.socket(), server_hostname="localhost") as s:
            assert isinstance(s, gssl.SSLSocket)
            s.settimeout(5)
            s.connect(("127.0.0.1", server.port))  # connects, then shakes hands
            s.sendall(b"ping")
            assert s.recv(10) == b"ping"
        with ctx.wrap_socket(gsocket.socket(), server_hostname="localhost") as s:
            s.settimeout(5)
            assert s.connect_ex(("127.0.0.1", server.port)) == 0
            s.sendall(b"pong")
            assert s.recv(10) == b"pong"
            with pytest.raises(ValueError, match="already-connected"):
                s.connect(("127.0.0.1", server.port))


def test_makefile_readline(pki: Pki) -> None:
    def lines(conn: gssl.SSLSocket) -> None:
        for piece in (b"first ", b"line\nsecond", b" line\n", b"last\n"):
            conn.sendall(piece)
            txgreen.sleep(0.01)
        conn.sendall(b"ack:" + conn.recv(100) + b"\n")

    with (
        TLSServer(pki, lines) as server,
        connect(pki, server.port) as client,
        client.makefile("rb") as f,
        client.makefile("wb") as w,
    ):
        assert f.readline() == b"first line\n"
        assert f.readline() == b"second line\n"
        assert f.readline() == b"last\n"
        w.write(b"through the writer")
        w.flush()
        assert f.readline() == b"ack:through the writer\n"
        assert f.read() == b""  # the server closed


def test_sendfile_goes_through_the_green_send(pki: Pki, tmp_path: Path) -> None:
    data = b"file contents " * 20000
    path = tmp_path / "f.bin"
    path.write_bytes(data)
    with TLSServer(pki, echo) as server, connect(pki, server.port) as client:
        reader = txgreen.spawn(recv_exactly, client, len(data))
        with path.open("rb") as f:
            assert client.sendfile(f) == len(data)
        assert reader.get(timeout=10) == data


def test_unwrap_returns_the_plain_socket(pki: Pki) -> None:
    def unwrap_then_plain(conn: gssl.SSLSocket) -> None:
        assert conn.recv(100) == b"secret"
        plain = conn.unwrap()
        assert plain is conn
        assert plain.recv(100) == b"in clear"
        plain.sendall(b"clear reply")

    with TLSServer(pki, unwrap_then_plain) as server, connect(pki, server.port) as client:
        client.sendall(b"secret")
        plain = client.unwrap()  # waits for the server's close_notify
        assert plain is client
        assert isinstance(plain, gsocket.socket)
        assert client.version() is None  # no TLS any more
        plain.sendall(b"in clear")
        assert recv_exactly(plain, 11) == b"clear reply"
        with pytest.raises(ValueError, match="No SSL wrapper"):
            client.unwrap()
    assert server.errors == []


# -- timeouts and non-blocking mode -------------------------------------------------------------


def test_read_timeout_raises_the_stdlibs_timeout_and_the_socket_still_works(pki: Pki) -> None:
    gate = txgreen.Event()

    def answer_later(conn: gssl.SSLSocket) -> None:
        gate.wait(5)
        conn.sendall(b"late")

    with TLSServer(pki, answer_later) as server, connect(pki, server.port) as client:
        client.settimeout(0.05)
        start = time.monotonic()
        with pytest.raises(std_socket.timeout) as info:
            client.recv(10)
        assert 0.04 <= time.monotonic() - start < 2
        assert type(info.value) is TimeoutError
        assert str(info.value) == "The read operation timed out"
        gate.set()
        client.settimeout(5)
        assert client.recv(10) == b"late"


def silent_server() -> gsocket.socket:
    """A plain listener that accepts (in the kernel) and never answers."""
    return gsocket.create_server(("127.0.0.1", 0))


def test_handshake_timeout_when_the_server_never_answers(pki: Pki) -> None:
    with silent_server() as listener:
        port = listener.getsockname()[1]
        sock = gsocket.create_connection(("127.0.0.1", port), timeout=0.1)
        start = time.monotonic()
        with pytest.raises(TimeoutError, match=r"^The handshake operation timed out$"):
            client_context(pki).wrap_socket(sock, server_hostname="localhost")
        assert 0.09 <= time.monotonic() - start < 2
        assert sock.fileno() == -1  # the stdlib's rule: detached into the SSLSocket, closed

        # The stdlib's blocking socket raises the same type in the same case.
        def stdlib() -> type[BaseException] | None:
            ctx = std_ssl.create_default_context(cafile=str(pki.ca_file))
            with std_socket.create_connection(("127.0.0.1", port), timeout=0.1) as s:
                return outcome(lambda: ctx.wrap_socket(s, server_hostname="localhost"))

        assert txgreen.call_in_thread(stdlib) is TimeoutError


def test_non_blocking_mode_raises_want_read_and_want_write(pki: Pki) -> None:
    gate = txgreen.Event()

    def wait_then_drain(conn: gssl.SSLSocket) -> None:
        gate.wait(5)
        while conn.recv(65536):
            pass

    with TLSServer(pki, wait_then_drain) as server:
        port = server.port
        sock = gsocket.create_connection(("127.0.0.1", port), timeout=5)
        ctx = client_context(pki)
        with ctx.wrap_socket(
            sock, server_hostname="localhost", do_handshake_on_connect=False
        ) as client:
            client.setblocking(False)
            with pytest.raises(gssl.SSLWantReadError):
                client.do_handshake()
            client.do_handshake(block=True)  # the stdlib's block=True in non-blocking mode
            assert client.gettimeout() == 0.0
            with pytest.raises(gssl.SSLWantReadError):
                client.recv(10)
            with pytest.raises(gssl.SSLWantReadError):
                client.read(10)
            # Fill the pipe: the server reads nothing until the gate opens.
            with pytest.raises(gssl.SSLWantWriteError):
                fill(client)
            assert not _fdwait.is_watched(client.fileno())  # non-blocking calls never wait
            gate.set()
            client.setblocking(True)
            client.settimeout(5)
            # OpenSSL wants the refused write retried with the same data: now it waits.
            client.sendall(b"x" * 65536)

        # do_handshake_on_connect with a non-blocking socket: the stdlib's ValueError.
        sock = gsocket.create_connection(("127.0.0.1", port), timeout=5)
        sock.setblocking(False)
        with pytest.raises(ValueError, match="non-blocking"):
            ctx.wrap_socket(sock, server_hostname="localhost")
        assert sock.fileno() == -1


# -- verification and errors -------------------------------------------------------------------


def test_untrusted_certificate_fails_verification(pki: Pki) -> None:
    with TLSServer(pki, echo) as server:
        ctx = gssl.create_default_context(cafile=str(pki.other_ca_file))
        sock = gsocket.create_connection(("127.0.0.1", server.port), timeout=5)
        with pytest.raises(gssl.SSLCertVerificationError) as info:
            ctx.wrap_socket(sock, server_hostname="localhost")
        assert info.value.verify_message == "unable to get local issuer certificate"
        assert isinstance(info.value, std_ssl.SSLError)
    assert len(server.errors) == 1
    assert isinstance(server.errors[0], (std_ssl.SSLError, ConnectionError))


def test_hostname_mismatch_fails_verification(pki: Pki) -> None:
    with TLSServer(pki, echo) as server:
        sock = gsocket.create_connection(("127.0.0.1", server.port), timeout=5)
        with pytest.raises(gssl.SSLCertVerificationError) as info:
            client_context(pki).wrap_socket(sock, server_hostname="other.example")
        assert "Hostname mismatch" in str(info.value.verify_message)
        # The IP address in the certificate matches.
        with connect(pki, server.port, server_hostname="127.0.0.1") as ok:
            ok.sendall(b"ip")
            assert ok.recv(10) == b"ip"


def test_bad_arguments_raise_the_stdlibs_errors(pki: Pki) -> None:
    ctx = client_context(pki)
    with pytest.raises(TypeError, match="does not have a public constructor"):
        gssl.SSLSocket()
    udp = gsocket.socket(gsocket.AF_INET, gsocket.SOCK_DGRAM)
    with udp, pytest.raises(NotImplementedError, match="only stream sockets"):
        ctx.wrap_socket(udp, server_hostname="localhost")
    unconnected = gsocket.socket()
    with unconnected, pytest.raises(ValueError, match="check_hostname requires server_hostname"):
        ctx.wrap_socket(unconnected)
    unconnected = gsocket.socket()
    with unconnected, pytest.raises(ValueError, match="server_hostname can only be specified"):
        server_context(pki).wrap_socket(unconnected, server_side=True, server_hostname="localhost")
    with TLSServer(pki, echo) as server, connect(pki, server.port) as client:
        with pytest.raises(ValueError, match="non-zero flags"):
            client.recv(10, gsocket.MSG_PEEK)
        with pytest.raises(ValueError, match="non-zero flags"):
            client.send(b"x", gsocket.MSG_DONTWAIT)
        with pytest.raises(ValueError, match="non-zero flags"):
            client.sendall(b"x", gsocket.MSG_DONTWAIT)
        with pytest.raises(NotImplementedError):
            client.recvmsg(10)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="Read on closed or unwrapped"):
        client.read(10)  # closed
    with pytest.raises(OSError):
        client.recv(10)


def fill(conn: gssl.SSLSocket) -> None:
    """Send until the kernel's buffers are full (a non-blocking socket raises then)."""
    for _ in range(10000):
        conn.send(b"x" * 65536)


def reset(s: Any) -> None:
    """Close ``s`` with a TCP reset (SO_LINGER 0)."""
    s.setsockopt(std_socket.SOL_SOCKET, std_socket.SO_LINGER, struct.pack("ii", 1, 0))
    s.close()


def outcome(fn: Callable[[], object]) -> type[BaseException] | None:
    try:
        fn()
    except Exception as e:
        return type(e)
    return None


@pytest.mark.parametrize("suppress_ragged_eofs", [True, False])
def test_peer_reset_mid_read_raises_what_the_stdlib_raises(
    pki: Pki, suppress_ragged_eofs: bool
) -> None:
    def send_then_reset(conn: gssl.SSLSocket) -> None:
        conn.sendall(b"partial")
        txgreen.sleep(0.05)
        reset(conn)

    def read_all(client: Any) -> None:
        assert client.recv(100) == b"partial"
        while client.recv(100):
            pass

    with TLSServer(pki, send_then_reset) as server:
        with connect(pki, server.port, suppress_ragged_eofs=suppress_ragged_eofs) as client:
            green = outcome(lambda: read_all(client))

        # The stdlib's blocking socket, in an OS thread, against the same server.
        def stdlib() -> type[BaseException] | None:
            ctx = std_ssl.create_default_context(cafile=str(pki.ca_file))
            raw = std_socket.create_connection(("127.0.0.1", server.port), timeout=5)
            with ctx.wrap_socket(
                raw, server_hostname="localhost", suppress_ragged_eofs=suppress_ragged_eofs
            ) as s:
                assert type(s) is std_ssl.SSLSocket
                return outcome(lambda: read_all(s))

        expected = txgreen.call_in_thread(stdlib)
    # CPython 3.11 reports the reset as a TLS EOF "in violation of protocol" (SSLEOFError),
    # which suppress_ragged_eofs turns into b"" (the end of the stream).
    assert expected in (
        (None,) if suppress_ragged_eofs else (std_ssl.SSLEOFError, ConnectionResetError)
    )
    assert green is expected


@pytest.mark.parametrize("read", [10, 65536], ids=["reset", "eof"])
def test_peer_closing_mid_handshake_raises_what_the_stdlib_raises(pki: Pki, read: int) -> None:
    def close_after_hello(listener: gsocket.socket) -> None:
        for _ in range(2):
            conn, _ = listener.accept()
            with conn:
                # Part of the ClientHello (closing on unread bytes sends a reset), or all of it
                # (a plain end of stream).
                conn.recv(read)

    def green_client(port: int) -> type[BaseException] | None:
        sock = gsocket.create_connection(("127.0.0.1", port), timeout=5)
        return outcome(lambda: client_context(pki).wrap_socket(sock, server_hostname="localhost"))

    def stdlib_client(port: int) -> type[BaseException] | None:
        ctx = std_ssl.create_default_context(cafile=str(pki.ca_file))
        raw = std_socket.create_connection(("127.0.0.1", port), timeout=5)
        with raw:
            return outcome(lambda: ctx.wrap_socket(raw, server_hostname="localhost"))

    with gsocket.create_server(("127.0.0.1", 0)) as listener:
        server = txgreen.spawn(close_after_hello, listener)
        port = listener.getsockname()[1]
        green = green_client(port)
        expected = txgreen.call_in_thread(stdlib_client, port)
        assert server.join(timeout=5)
    assert expected is not None
    # What the stdlib raises here: ConnectionResetError, or SSLEOFError at a plain end.
    assert expected is (ConnectionResetError if read == 10 else std_ssl.SSLEOFError)
    assert green is expected


def test_close_while_another_green_thread_waits_in_a_tls_read(pki: Pki) -> None:
    gate = txgreen.Event()

    def wait_for_the_gate(conn: gssl.SSLSocket) -> None:
        gate.wait(5)

    with TLSServer(pki, wait_for_the_gate) as server:
        client = connect(pki, server.port)
        reader = txgreen.spawn(client.recv, 10)
        txgreen.sleep(0.05)
        assert _fdwait.watched_fds() != {}
        client.close()
        with pytest.raises(OSError) as info:
            reader.get(timeout=5)
        assert info.value.errno == 9  # EBADF
        gate.set()


# -- the stdlib on the other side, OS threads and the hub ----------------------------------------


@pytest.fixture
def stdlib_tls_echo_server(pki: Pki) -> Iterator[int]:
    """A stdlib blocking TLS echo server for one connection, in an OS thread: its port."""
    ctx = std_ssl.SSLContext(std_ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(pki.cert_file, pki.key_file)
    listener = std_socket.create_server(("127.0.0.1", 0))
    listener.settimeout(10)

    def serve() -> None:
        conn, _ = listener.accept()
        with ctx.wrap_socket(conn, server_side=True) as tls:
            assert type(tls) is std_ssl.SSLSocket
            while data := tls.recv(65536):
                tls.sendall(data)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        thread.join(10)
        listener.close()


def test_green_client_against_a_stdlib_server_in_an_os_thread(
    pki: Pki, stdlib_tls_echo_server: int
) -> None:
    with connect(pki, stdlib_tls_echo_server) as client:
        payload = b"interop " * 40000
        writer = txgreen.spawn(client.sendall, payload)
        assert recv_exactly(client, len(payload)) == payload
        assert writer.join(timeout=10)


def test_green_ssl_sockets_used_from_an_os_thread_block_like_the_stdlib(pki: Pki) -> None:
    gate = threading.Event()

    def late_echo(conn: gssl.SSLSocket) -> None:
        data = conn.recv(100)
        while not gate.is_set():
            txgreen.sleep(0.005)
        txgreen.sleep(0.05)
        conn.sendall(data)
        conn.recv(100)  # until the client closes

    with TLSServer(pki, late_echo) as server:
        fds: list[int] = []

        def in_thread() -> tuple[bool, bytes, str]:
            # Made and used entirely in this OS thread: handshake, send, wait, timeout.
            with connect(pki, server.port) as client:
                fds.append(client.fileno())
                is_green = isinstance(client, gssl.SSLSocket)
                client.sendall(b"from a thread")
                gate.set()
                data = client.recv(100)  # blocks this OS thread, not the reactor
                client.settimeout(0.05)
                try:
                    client.recv(100)
                except TimeoutError as e:
                    return is_green, data, str(e)
                return is_green, data, "no timeout"

        job = txgreen.spawn(txgreen.call_in_thread, in_thread)
        while not gate.is_set():
            txgreen.sleep(0.005)
        # The thread waits in the OS, not on the reactor.
        assert not _fdwait.is_watched(fds[0])
        assert job.get(timeout=5) == (True, b"from a thread", "The read operation timed out")
    assert server.errors == []


def test_calls_in_the_hub_block_like_the_stdlib(pki: Pki) -> None:
    with TLSServer(pki, echo) as server, connect(pki, server.port) as client:
        client.sendall(b"ready")
        txgreen.sleep(0.05)  # the echo is back in the client's receive buffer

        def in_hub() -> Deferred[tuple[bytes, str]]:
            data = client.recv(10)
            client.settimeout(0.02)
            try:
                client.recv(10)  # blocks the reactor for 20 ms, like the stdlib's call would
            except TimeoutError as e:
                return succeed((data, str(e)))
            raise AssertionError("no timeout")

        result = txgreen.block_on(in_reactor_callback(in_hub), 5)
        assert result == (b"ready", "The read operation timed out")


# -- contexts: the module's own, and the stdlib's class attribute -----------------------------


def test_the_modules_contexts_make_green_sockets(pki: Pki) -> None:
    ctx = gssl.create_default_context()
    assert isinstance(ctx, gssl.SSLContext)
    assert isinstance(ctx, std_ssl.SSLContext)
    assert ctx.sslsocket_class is gssl.SSLSocket
    assert std_ssl.SSLContext.sslsocket_class is std_ssl.SSLSocket  # nothing patched
    # The same settings as the stdlib's factory.
    std_ctx = std_ssl.create_default_context()
    assert (ctx.verify_mode, ctx.check_hostname, ctx.options, ctx.minimum_version) == (
        std_ctx.verify_mode,
        std_ctx.check_hostname,
        std_ctx.options,
        std_ctx.minimum_version,
    )
    # The stdlib's property setters work on it (no override, no recursion).
    ctx.options |= gssl.OP_NO_COMPRESSION
    ctx.verify_mode = gssl.CERT_REQUIRED
    ctx.minimum_version = gssl.TLSVersion.TLSv1_2
    ctx.verify_flags |= gssl.VERIFY_X509_STRICT
    assert ctx.minimum_version == gssl.TLSVersion.TLSv1_2
    unverified = gssl._create_unverified_context()
    assert isinstance(unverified, gssl.SSLContext)
    assert unverified.verify_mode == gssl.CERT_NONE
    assert gssl.SSLContext(gssl.PROTOCOL_TLS_CLIENT).sslsocket_class is gssl.SSLSocket
    # The module re-exports the stdlib's names unchanged.
    assert gssl.SSLError is std_ssl.SSLError
    assert gssl.CERT_REQUIRED is std_ssl.CERT_REQUIRED
    assert gssl.SSLObject is std_ssl.SSLObject
    assert "SSLSocket" in gssl.__all__
    assert "socket" not in gssl.__all__
    assert "SSLContext" not in gssl.__patched__
    assert "SSLSocket" not in gssl.__patched__


@pytest.mark.filterwarnings("ignore:ssl.PROTOCOL_TLS is deprecated")
def test_wrap_socket_module_function(pki: Pki) -> None:
    if not hasattr(std_ssl, "wrap_socket"):  # pragma: no cover - Python >= 3.12
        assert gssl.__patched__ == []
        return
    assert gssl.__patched__ == ["wrap_socket"]
    with TLSServer(pki, echo) as server:
        sock = gsocket.create_connection(("127.0.0.1", server.port), timeout=5)
        with pytest.warns(DeprecationWarning, match=DEPRECATED):
            wrapped = gssl.wrap_socket(
                sock, cert_reqs=gssl.CERT_REQUIRED, ca_certs=str(pki.ca_file)
            )
        with wrapped:
            assert isinstance(wrapped, gssl.SSLSocket)
            wrapped.sendall(b"old api")
            assert wrapped.recv(10) == b"old api"
    s = gsocket.socket()
    with (
        s,
        pytest.warns(DeprecationWarning, match=DEPRECATED),
        pytest.raises(ValueError, match="certfile must be specified for server-side"),
    ):
        gssl.wrap_socket(s, server_side=True)
    s = gsocket.socket()
    with (
        s,
        pytest.warns(DeprecationWarning, match=DEPRECATED),
        pytest.raises(ValueError, match=r"^certfile must be specified$"),
    ):
        gssl.wrap_socket(s, keyfile=str(pki.key_file))


@contextmanager
def stdlib_contexts_green() -> Iterator[None]:
    """What txgreen.patch() does for ssl: the stdlib's contexts make green SSLSockets, and the
    names in ``__patched__`` are replaced on the stdlib's module.  Restored afterwards."""
    saved_class = std_ssl.SSLContext.sslsocket_class
    saved = {name: getattr(std_ssl, name) for name in gssl.__patched__}
    std_ssl.SSLContext.sslsocket_class = gssl.SSLSocket
    for name in gssl.__patched__:
        setattr(std_ssl, name, getattr(gssl, name))
    try:
        yield
    finally:
        std_ssl.SSLContext.sslsocket_class = saved_class
        for name, value in saved.items():
            setattr(std_ssl, name, value)


@pytest.fixture
def green_sslsocket_class() -> Iterator[None]:
    """:func:`stdlib_contexts_green` for the whole test."""
    with stdlib_contexts_green():
        yield


def test_contexts_made_before_patching_make_green_sockets(pki: Pki) -> None:
    # Made with the stdlib before the class attribute is set (like a library's module-level
    # context made at import, before txgreen.patch()).
    early = std_ssl.create_default_context(cafile=str(pki.ca_file))
    assert type(early) is std_ssl.SSLContext
    with TLSServer(pki, echo) as server, stdlib_contexts_green():
        late = std_ssl.create_default_context(cafile=str(pki.ca_file))
        # The stdlib's property setters still work (the gevent recursion trap).
        for ctx in (early, late):
            ctx.options |= std_ssl.OP_NO_COMPRESSION
            ctx.verify_mode = std_ssl.CERT_REQUIRED
            ctx.minimum_version = std_ssl.TLSVersion.TLSv1_2
        ticks: list[float] = []
        stop = txgreen.Event()

        def ticker() -> None:
            while not stop.wait(0.01):
                ticks.append(time.monotonic())

        tick = txgreen.spawn(ticker)
        for ctx, timeout in ((early, 5.0), (late, None)):
            # A stdlib (blocking) socket handed to wrap_socket: the result is green.
            raw = std_socket.create_connection(("127.0.0.1", server.port), timeout=timeout)
            with ctx.wrap_socket(raw, server_hostname="localhost") as s:
                assert isinstance(s, gssl.SSLSocket)
                assert s.gettimeout() == timeout
                assert not os.get_blocking(s.fileno())
                assert raw.fileno() == -1  # its fd was taken over
                s.sendall(b"early or late")
                # The echo comes from a green thread: a blocking wait would stall it.
                assert recv_exactly(s, 13) == b"early or late"
        # A green listening socket made by a stdlib context accepts green sockets too.
        srv_ctx = std_ssl.SSLContext(std_ssl.PROTOCOL_TLS_SERVER)
        srv_ctx.load_cert_chain(pki.cert_file, pki.key_file)
        with srv_ctx.wrap_socket(
            gsocket.create_server(("127.0.0.1", 0)), server_side=True
        ) as listener:
            assert isinstance(listener, gssl.SSLSocket)
            accepted = txgreen.spawn(listener.accept)
            port = listener.getsockname()[1]
            with connect(pki, port) as c:
                conn, _ = accepted.get(timeout=5)
                with conn:
                    assert isinstance(conn, gssl.SSLSocket)
                    c.sendall(b"hi")
                    assert conn.recv(10) == b"hi"
        stop.set()
        assert tick.join(timeout=5)
        assert ticks  # the ticker ran while the stdlib-made contexts did TLS
    assert std_ssl.SSLContext.sslsocket_class is std_ssl.SSLSocket


@pytest.mark.filterwarnings("ignore:ssl.PROTOCOL_TLS is deprecated")
@pytest.mark.usefixtures("green_sslsocket_class")
def test_the_patched_stdlib_wrap_socket_and_https_context(pki: Pki) -> None:
    with TLSServer(pki, echo) as server:
        sock = gsocket.create_connection(("127.0.0.1", server.port), timeout=5)
        ctx = std_ssl._create_default_https_context(cafile=str(pki.ca_file))
        with ctx.wrap_socket(sock, server_hostname="localhost") as s:
            assert isinstance(s, gssl.SSLSocket)
            s.sendall(b"https")
            assert s.recv(10) == b"https"
        if gssl.__patched__:
            sock = gsocket.create_connection(("127.0.0.1", server.port), timeout=5)
            with pytest.warns(DeprecationWarning, match=DEPRECATED):
                s = std_ssl.wrap_socket(
                    sock, cert_reqs=std_ssl.CERT_REQUIRED, ca_certs=str(pki.ca_file)
                )
            with s:
                assert isinstance(s, gssl.SSLSocket)
                s.sendall(b"wrap")
                assert s.recv(10) == b"wrap"


def test_accept_makes_green_sockets_after_the_class_attribute_is_restored(pki: Pki) -> None:
    # A listener made while patched keeps accepting green sockets after unpatching.
    srv_ctx = std_ssl.SSLContext(std_ssl.PROTOCOL_TLS_SERVER)
    srv_ctx.load_cert_chain(pki.cert_file, pki.key_file)
    with stdlib_contexts_green():
        listener = srv_ctx.wrap_socket(gsocket.create_server(("127.0.0.1", 0)), server_side=True)
    assert srv_ctx.sslsocket_class is std_ssl.SSLSocket
    with listener:
        assert isinstance(listener, gssl.SSLSocket)
        accepted = txgreen.spawn(listener.accept)
        with connect(pki, listener.getsockname()[1]) as client:
            conn, _ = accepted.get(timeout=5)
            with conn:
                assert isinstance(conn, gssl.SSLSocket)
                assert conn.server_side
                conn.sendall(b"green")
                assert client.recv(10) == b"green"
