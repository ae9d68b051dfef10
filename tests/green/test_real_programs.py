"""Real programs, unmodified, made cooperative by ``txgreen.patch()`` (issue 10's proof).

The client code below is plain stdlib code (``urllib.request``, ``http.client``, ``smtplib``,
``socket``, ``socketserver``) with no txgreen call in it; the tests run it in green threads with
the stdlib patched, against real servers on 127.0.0.1 that the test starts and stops (Twisted's
``twisted.web`` and ``twisted.mail`` in this process, or ``socketserver`` servers).

The concurrency proof, for each program: N = 100 clients, each in its own green thread, whose
server answers 0.2 s after the request, all finish in a fraction of N x 0.2 s, while a ticker
green thread keeps its period. The ticker proves that the calls yield rather than block: a call
that blocked the reactor while its server took 0.2 s would leave a gap of 0.2 s between ticks.

The faults go through the same libraries and must come out as the stdlib's exception types.
Each test leaves nothing behind: the plugin's leak check (reactor readers and writers,
DelayedCalls, green threads, open sockets) and an empty fd registry.
"""

from __future__ import annotations

import _thread
import http.client
import smtplib
import socket
import socketserver
import ssl
import struct
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import pytest
from certs import Pki, make_pki
from concurrency_proof import DELAY, TLS_JITTER, concurrently, patched_for_test
from real_servers import listening, slow_http_server, slow_smtp_server
from twisted.internet import protocol, reactor

import txgreen
from txgreen.green import _fdwait
from txgreen.green import selectors as gselectors
from txgreen.green import socket as gsocket

R: Any = reactor
V = TypeVar("V")

N = 100  # clients per concurrency proof


@pytest.fixture(autouse=True)
def patched_stdlib() -> Iterator[None]:
    """Every test runs with the stdlib patched, and unpatched after; the fd registry is empty."""
    with patched_for_test():
        yield


# -- the clients: plain stdlib code --------------------------------------------------------------


def get_with_urllib(url: str, timeout: float = 10, **kwargs: Any) -> tuple[int, bytes]:
    with urllib.request.urlopen(url, timeout=timeout, **kwargs) as response:
        return response.status, response.read()


def get_with_http_client(conn: http.client.HTTPConnection, path: str) -> tuple[int, bytes]:
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def expected_pages(n: int = N) -> list[tuple[int, bytes]]:
    return [(200, b"hello /page/%d" % i) for i in range(n)]


# -- HTTP -----------------------------------------------------------------------------------------


def test_urllib_hundred_clients_at_once() -> None:
    with slow_http_server(DELAY) as server:
        pages, proof = concurrently(
            "urllib.request.urlopen (HTTP)",
            lambda i: get_with_urllib(f"http://127.0.0.1:{server.port}/page/{i}"),
            reset=server.reset,
        )
        assert pages == expected_pages()
        assert sorted(server.requests) == sorted(b"/page/%d" % i for i in range(N))
    proof.check()


def test_http_client_hundred_clients_at_once() -> None:
    with slow_http_server(DELAY) as server:
        pages, proof = concurrently(
            "http.client.HTTPConnection",
            lambda i: get_with_http_client(
                http.client.HTTPConnection("127.0.0.1", server.port, timeout=10), f"/page/{i}"
            ),
            reset=server.reset,
        )
        assert pages == expected_pages()
        assert server.connections == N
    proof.check()


# -- HTTPS -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """A test CA and a server certificate it signed for localhost and 127.0.0.1."""
    return make_pki(tmp_path_factory.mktemp("pki"))


def test_https_with_urllib_hundred_clients_at_once(pki: Pki) -> None:
    # The program installs one opener trusting the test CA, then calls urlopen(url) as usual
    # (urlopen(url, context=...) would build a new opener, a dozen handlers, on every call).
    context = ssl.create_default_context(cafile=str(pki.ca_file))
    urllib.request.install_opener(
        urllib.request.build_opener(urllib.request.HTTPSHandler(context=context))
    )
    try:
        with slow_http_server(DELAY, pki.cert_file, pki.key_file) as server:
            pages, proof = concurrently(
                "urllib.request.urlopen (HTTPS)",
                lambda i: get_with_urllib(f"https://127.0.0.1:{server.port}/page/{i}"),
                reset=server.reset,
                jitter=TLS_JITTER,
            )
            assert pages == expected_pages()
            assert server.connections == N
    finally:
        urllib.request.install_opener(None)
    proof.check(TLS_JITTER)


def test_https_with_http_client_hundred_clients_at_once(pki: Pki) -> None:
    context = ssl.create_default_context(cafile=str(pki.ca_file))
    with slow_http_server(DELAY, pki.cert_file, pki.key_file) as server:
        pages, proof = concurrently(
            "http.client.HTTPSConnection",
            lambda i: get_with_http_client(
                http.client.HTTPSConnection("127.0.0.1", server.port, timeout=10, context=context),
                f"/page/{i}",
            ),
            reset=server.reset,
            jitter=TLS_JITTER,
        )
        assert pages == expected_pages()
        assert server.connections == N
    proof.check(TLS_JITTER)


def test_https_refuses_a_server_the_context_does_not_trust(pki: Pki) -> None:
    untrusting = ssl.create_default_context(cafile=str(pki.other_ca_file))
    with slow_http_server(DELAY, pki.cert_file, pki.key_file) as server:
        with pytest.raises(urllib.error.URLError) as caught:
            get_with_urllib(f"https://127.0.0.1:{server.port}/", context=untrusting)
        assert isinstance(caught.value.reason, ssl.SSLCertVerificationError)
        conn = http.client.HTTPSConnection("localhost", server.port, context=untrusting)
        with pytest.raises(ssl.SSLCertVerificationError, match="CERTIFICATE_VERIFY_FAILED"):
            get_with_http_client(conn, "/")


# -- SMTP -----------------------------------------------------------------------------------------


def send_mail(port: int, i: int) -> dict[str, tuple[int, bytes]]:
    text = (
        f"From: sender@example.com\r\nTo: user{i}@example.com\r\nSubject: message {i}\r\n"
        f"\r\nHello number {i}.\r\n"
    )
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
        return client.sendmail("sender@example.com", [f"user{i}@example.com"], text)


def test_smtplib_hundred_clients_at_once() -> None:
    with slow_smtp_server(DELAY) as server:
        refused, proof = concurrently(
            "smtplib.SMTP", lambda i: send_mail(server.port, i), reset=server.reset
        )
        assert refused == [{}] * N  # every recipient accepted
        # The server stored every message, each to its own recipient with its own text.
        assert len(server.messages) == N
        by_recipient = {to[0]: text for _, to, text in server.messages}
        assert sorted(by_recipient) == sorted(b"user%d@example.com" % i for i in range(N))
        for i in range(N):
            text = by_recipient[b"user%d@example.com" % i]
            assert b"Subject: message %d" % i in text
            assert b"Hello number %d." % i in text
        assert {sender for sender, _, _ in server.messages} == {b"sender@example.com"}
    proof.check()


# -- socketserver ----------------------------------------------------------------------------


class SlowUpper(socketserver.StreamRequestHandler):
    """A handler written for plain sockets: reads a line, takes its time, answers it upper-cased."""

    def handle(self) -> None:
        line = self.rfile.readline()
        time.sleep(DELAY)
        self.wfile.write(line.upper())
        served_by.append((_thread.get_ident(), threading.get_ident(), type(self.request)))


# (OS thread, thread -- a green thread's own after patch() --, request socket type) per request
served_by: list[tuple[int, int, type]] = []


class GreenThreadingMixIn:
    """A socketserver mix-in handling each request in a green thread (ThreadingMixIn's shape)."""

    handlers: list[txgreen.GreenThread[None]]

    def process_request(self, request: Any, client_address: Any) -> None:
        """Start a green thread for the request and return to ``serve_forever`` at once."""
        self.handlers.append(txgreen.spawn(self.process_request_green, request, client_address))

    def process_request_green(self, request: Any, client_address: Any) -> None:
        """What ThreadingMixIn.process_request_thread does, in a green thread."""
        server: Any = self
        try:
            server.finish_request(request, client_address)
        except Exception:
            server.handle_error(request, client_address)
        finally:
            server.shutdown_request(request)


class GreenTCPServer(GreenThreadingMixIn, socketserver.TCPServer):
    """socketserver.TCPServer with a green thread per request."""

    request_queue_size = 1024  # a hundred clients connect at once
    allow_reuse_address = True


def ask(port: int, i: int) -> bytes:
    """A client written for plain sockets."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(b"hello %d\n" % i)
        with s.makefile("rb") as answer:
            return answer.readline()


def expected_answers(n: int = N) -> list[bytes]:
    return [b"HELLO %d\n" % i for i in range(n)]


def test_socketserver_tcp_server_with_green_threads() -> None:
    # serve_forever runs in a green thread: its selector (socketserver._ServerSelector, bound
    # at import) is the green one after patch(), so it parks instead of blocking the reactor.
    assert socketserver._ServerSelector is gselectors.PollSelector  # type: ignore[attr-defined]
    server = GreenTCPServer(("127.0.0.1", 0), SlowUpper)
    server.handlers = []
    port = server.server_address[1]
    serving = txgreen.spawn(server.serve_forever, 0.05)
    try:
        answers, proof = concurrently(
            "socketserver.TCPServer, green", lambda i: ask(port, i), reset=served_by.clear
        )
    finally:
        txgreen.call_in_thread(server.shutdown)  # from another thread, as the stdlib wants
        server.server_close()
    assert serving.join(timeout=5)
    assert txgreen.joinall(server.handlers, timeout=5)
    assert answers == expected_answers()
    assert len(served_by) == N
    assert {os_thread for os_thread, _, _ in served_by} == {_thread.get_ident()}  # the reactor's
    assert {kind for _, _, kind in served_by} == {gsocket.socket}
    proof.check()


def test_stdlib_threading_tcp_server_in_green_threads() -> None:
    # The stdlib's own ThreadingTCPServer, unmodified, with serve_forever in a threading.Thread
    # and a thread per request: after patch() those are green threads (one per request, all in
    # the reactor's OS thread), with green sockets, selector and time.sleep.
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), SlowUpper, bind_and_activate=False)
    server.request_queue_size = 1024  # before listen(): a hundred clients connect at once
    server.server_bind()
    server.server_activate()
    port = server.server_address[1]
    serving = threading.Thread(target=server.serve_forever, args=(0.05,), name="serve_forever")
    serving.start()
    try:
        answers, proof = concurrently(
            "socketserver.ThreadingTCPServer, green threads",
            lambda i: ask(port, i),
            reset=served_by.clear,
        )
    finally:
        txgreen.call_in_thread(server.shutdown)
        txgreen.call_in_thread(server.server_close)  # joins the request threads
        txgreen.call_in_thread(serving.join, 5)
    assert not serving.is_alive()
    assert answers == expected_answers()
    assert len(served_by) == N
    assert {os_thread for os_thread, _, _ in served_by} == {_thread.get_ident()}
    threads = {thread for _, thread, _ in served_by}
    assert threading.get_ident() not in threads
    assert len(threads) == N  # a thread per request
    assert {kind for _, _, kind in served_by} == {gsocket.socket}
    proof.check()


# -- faults ---------------------------------------------------------------------------------------


@pytest.fixture
def refusing_port() -> Iterator[int]:
    """A port on 127.0.0.1 that refuses connections: bound (so nobody else takes it), not
    listening."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        yield s.getsockname()[1]


def test_connection_refused(refusing_port: int) -> None:
    with pytest.raises(urllib.error.URLError) as caught:
        get_with_urllib(f"http://127.0.0.1:{refusing_port}/")
    assert isinstance(caught.value.reason, ConnectionRefusedError)
    with pytest.raises(ConnectionRefusedError):
        get_with_http_client(http.client.HTTPConnection("127.0.0.1", refusing_port), "/")


@pytest.fixture
def full_backlog_port() -> Iterator[int]:
    """A port on 127.0.0.1 whose accept queue is full: the kernel drops new SYNs, so a connect
    waits (retransmitting) until its timeout."""
    with socket.create_server(("127.0.0.1", 0), backlog=0) as listener:
        address = listener.getsockname()
        held: list[socket.socket] = []
        try:
            while len(held) < 8:  # fill the queue (one connection with backlog 0 on Linux)
                s = socket.socket()
                held.append(s)
                s.settimeout(0.1)
                try:
                    s.connect(address)
                except TimeoutError:
                    break
            else:
                pytest.fail("the accept queue never filled")
            yield address[1]
        finally:
            for s in held:
                s.close()


def test_connect_timeout(full_backlog_port: int) -> None:
    timeout = 0.2
    started = time.monotonic()
    with pytest.raises(urllib.error.URLError) as caught:
        get_with_urllib(f"http://127.0.0.1:{full_backlog_port}/", timeout=timeout)
    assert isinstance(caught.value.reason, socket.timeout)  # TimeoutError: the same class
    assert timeout * 0.9 < time.monotonic() - started < timeout + 1
    started = time.monotonic()
    conn = http.client.HTTPConnection("127.0.0.1", full_backlog_port, timeout=timeout)
    with pytest.raises(socket.timeout, match="timed out"):
        get_with_http_client(conn, "/")
    assert timeout * 0.9 < time.monotonic() - started < timeout + 1


class Silent(protocol.Protocol):
    """Reads the request and never answers."""


class ResetMidResponse(protocol.Protocol):
    """Sends the head of a response and part of its body, then resets the connection."""

    def dataReceived(self, data: bytes) -> None:
        transport: Any = self.transport
        transport.write(
            b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\nContent-Type: text/plain\r\n\r\n"
            + b"x" * 100
        )
        # SO_LINGER 0: close() sends a reset; wait a moment so the client is in recv by then.
        transport.getHandle().setsockopt(
            socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
        )
        R.callLater(0.05, transport.abortConnection)


def test_read_timeout() -> None:
    timeout = 0.2
    with listening(protocol.Factory.forProtocol(Silent)) as server:
        started = time.monotonic()
        with pytest.raises(socket.timeout):
            get_with_urllib(f"http://127.0.0.1:{server.port}/", timeout=timeout)
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=timeout)
        with pytest.raises(socket.timeout, match="timed out"):
            get_with_http_client(conn, "/")
        assert 2 * timeout * 0.9 < time.monotonic() - started < 2 * timeout + 1


def test_dns_failure() -> None:
    with pytest.raises(urllib.error.URLError) as caught:
        get_with_urllib("http://no-such-host.invalid/")
    assert isinstance(caught.value.reason, socket.gaierror)
    with pytest.raises(socket.gaierror) as failed:
        get_with_http_client(http.client.HTTPConnection("no-such-host.invalid", 80), "/")
    assert failed.value.errno in (socket.EAI_NONAME, socket.EAI_AGAIN)


def test_peer_reset_mid_response() -> None:
    with listening(protocol.Factory.forProtocol(ResetMidResponse)) as server:
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
        conn.request("GET", "/")
        response = conn.getresponse()
        assert response.status == 200
        with pytest.raises(ConnectionResetError):
            response.read()  # waiting in recv for the rest of the body when the reset comes
        conn.close()
        with (
            pytest.raises(ConnectionResetError),
            urllib.request.urlopen(f"http://127.0.0.1:{server.port}/", timeout=5) as r,
        ):
            r.read()


def test_a_thousand_sockets_at_once() -> None:
    # A plain-socket server and its clients, both through the patched module: n connections
    # are 2n sockets, and n green threads wait on them at once in each phase. The select
    # reactor cannot watch fd numbers at or above FD_SETSIZE (1024): a little less there.
    n = 450 if "select" in type(R).__module__ else 500
    go = txgreen.Event()
    handlers: list[txgreen.GreenThread[None]] = []

    def handle(conn: socket.socket) -> None:
        with conn:
            request = conn.recv(100)
            go.wait()
            conn.sendall(b"re:" + request)

    def serve(listener: socket.socket) -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            handlers.append(txgreen.spawn(handle, conn))

    def waiting_readers() -> set[int]:
        return {fd for fd, (reading, _) in _fdwait.watched_fds().items() if reading}

    def until(condition: Callable[[], bool]) -> None:
        deadline = time.monotonic() + 10
        while not condition():
            assert time.monotonic() < deadline
            txgreen.sleep(0.01)

    with socket.create_server(("127.0.0.1", 0), backlog=1024) as listener:
        server = txgreen.spawn(serve, listener)
        clients: list[socket.socket] = []
        try:
            for _ in range(n):
                clients.append(socket.create_connection(listener.getsockname(), timeout=10))
            client_fds = {c.fileno() for c in clients}
            # Every server-side socket has a green thread waiting in recv (and the listener).
            until(lambda: len(waiting_readers() - client_fds) == n + 1)
            assert all(isinstance(c, gsocket.socket) for c in clients)

            def exchange(i: int) -> bytes:
                clients[i].sendall(b"%d" % i)
                return clients[i].recv(100)

            exchanges = [txgreen.spawn(exchange, i) for i in range(n)]
            # Now every client socket has a green thread waiting in recv.
            until(lambda: waiting_readers() == client_fds | {listener.fileno()})
            go.set()
            assert [e.get(timeout=10) for e in exchanges] == [b"re:%d" % i for i in range(n)]
        finally:
            for c in clients:
                c.close()
            listener.close()
        assert server.join(timeout=5)
        assert txgreen.joinall(handlers, timeout=5)
