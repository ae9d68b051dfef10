"""txgreen.patch(): the stdlib made cooperative, Twisted kept on the originals, thread-aware.

Patching is process-wide, so each test patches through the ``patched_stdlib`` fixture and
unpatches at its end; the tests that need a fresh interpreter (imports after patching) run a
small program in a subprocess.
"""

from __future__ import annotations

import importlib
import socket
import ssl
import subprocess
import sys
import textwrap
import threading
import time
import types
import warnings
from collections.abc import Iterator
from typing import Any

import pytest
from twisted.internet import defer, protocol, reactor, threads
from twisted.internet import endpoints as _endpoints

import txgreen
from support import in_reactor_callback, log_events
from txgreen.green import _fdwait, _originals
from txgreen.green import socket as gsocket

R: Any = reactor
endpoints: Any = _endpoints  # untyped in parts


def T(p: protocol.Protocol) -> Any:
    """A protocol's transport, untyped (Twisted's stubs make it Optional)."""
    return p.transport


PARTS = {"socket", "dns", "ssl", "select", "selectors", "time", "subprocess", "threading", "queue"}
# (the default patch())
STD_SOCKET_NAMES = ["socket", "create_connection", "create_server", "fromfd", "socketpair"]


@pytest.fixture
def patched_stdlib() -> Iterator[None]:
    """Patch everything for the test, then unpatch (PatchWarnings about pytest's own
    modules, which imported names before the test patched, are expected here)."""
    before = {name: getattr(socket, name) for name in STD_SOCKET_NAMES}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", txgreen.PatchWarning)
        txgreen.patch()
    try:
        yield
    finally:
        txgreen.unpatch()
        assert {name: getattr(socket, name) for name in STD_SOCKET_NAMES} == before
        assert _fdwait.watched_fds() == {}


def _others_off() -> dict[str, bool]:
    return {
        part: False
        for part in ("ssl", "select", "selectors", "time", "subprocess", "threading", "queue")
    }


class Echo(protocol.Protocol):
    def dataReceived(self, data: bytes) -> None:
        T(self).write(data)


# -- what is patched ------------------------------------------------------------------------------


def test_patch_replaces_the_names_patched_tells_and_unpatch_restores_them() -> None:
    originals = {name: getattr(socket, name) for name in STD_SOCKET_NAMES}
    assert txgreen.patched() == frozenset()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", txgreen.PatchWarning)
        txgreen.patch(socket=True, dns=False, **_others_off())
        assert txgreen.patched() == {"socket"}
        assert socket.socket is gsocket.socket
        assert socket.create_connection is gsocket.create_connection
        assert socket.getaddrinfo is not gsocket.getaddrinfo  # dns=False
        txgreen.patch(socket=True, dns=True, **_others_off())  # adds dns, keeps socket
        assert txgreen.patched() == {"socket", "dns"}
        assert socket.getaddrinfo is gsocket.getaddrinfo
        txgreen.patch(socket=True, dns=True, **_others_off())  # idempotent
        assert txgreen.patched() == {"socket", "dns"}
    txgreen.unpatch()
    assert txgreen.patched() == frozenset()
    assert {name: getattr(socket, name) for name in STD_SOCKET_NAMES} == originals
    assert socket.SocketType is originals["socket"].__mro__[1]  # the stdlib's, never changed


def test_patch_with_everything_off_changes_nothing() -> None:
    txgreen.patch(
        socket=False,
        dns=False,
        ssl=False,
        select=False,
        selectors=False,
        time=False,
        subprocess=False,
        threading=False,
        queue=False,
    )
    assert txgreen.patched() == frozenset()
    assert socket.socket is not gsocket.socket


@pytest.mark.usefixtures("patched_stdlib")
def test_the_default_patch_covers_every_part() -> None:
    import select
    import selectors

    from txgreen.green import select as gselect
    from txgreen.green import selectors as gselectors
    from txgreen.green import ssl as gssl
    from txgreen.green import time as gtime

    assert txgreen.patched() == PARTS
    assert select.select is gselect.select
    assert select.poll is gselect.poll
    assert selectors.DefaultSelector is gselectors.DefaultSelector
    assert time.sleep is gtime.sleep
    assert ssl.SSLContext.sslsocket_class is gssl.SSLSocket
    # Twisted's and asyncio's modules keep the originals of every copied module.
    import asyncio.selector_events

    import twisted.internet.selectreactor

    kept = {
        "select": vars(twisted.internet.selectreactor)["select"],
        "selectors": vars(asyncio.selector_events)["selectors"],
        "socket": vars(asyncio.selector_events)["socket"],
    }
    assert kept == {name: _originals.original(name) for name in kept}


def test_a_tls_context_made_before_patching_makes_green_sockets() -> None:
    from txgreen.green import ssl as gssl

    context = ssl.create_default_context()  # made with the stdlib, before patching
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", txgreen.PatchWarning)
        txgreen.patch()
    try:
        a, b = socket.socketpair()
        with a, b:
            tls = context.wrap_socket(a, server_hostname="x", do_handshake_on_connect=False)
            with tls:
                assert isinstance(tls, gssl.SSLSocket)
    finally:
        txgreen.unpatch()
    assert ssl.SSLContext.sslsocket_class is ssl.SSLSocket


def test_unknown_part_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="curses"):
        txgreen.patch(curses=True)  # type: ignore[call-arg]
    assert txgreen.patched() == frozenset()


@pytest.mark.usefixtures("patched_stdlib")
def test_an_unmodified_library_becomes_cooperative() -> None:
    # http.client looks socket.create_connection up at call time: after patch() it parks only
    # the calling green thread while the server takes its time.
    import http.client

    delay = 0.2

    def slow_server(listener: gsocket.socket) -> None:
        conn, _ = listener.accept()
        with conn:
            conn.recv(65536)
            txgreen.sleep(delay)
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")

    ticks: list[float] = []

    def ticker() -> None:
        while True:
            ticks.append(time.monotonic())
            txgreen.sleep(0.02)

    with gsocket.create_server(("127.0.0.1", 0)) as listener:
        server = txgreen.spawn(slow_server, listener)
        tick = txgreen.spawn(ticker)
        try:
            conn = http.client.HTTPConnection("127.0.0.1", listener.getsockname()[1], timeout=5)
            conn.request("GET", "/")
            response = conn.getresponse()
            assert (response.status, response.read()) == (200, b"ok")
            assert isinstance(conn.sock, gsocket.socket) or conn.sock is None
            conn.close()
        finally:
            tick.kill()
            server.kill()
    assert len(ticks) >= delay / 0.02 * 0.6  # the ticker kept ticking during the call


# -- Twisted keeps the originals -------------------------------------------------------------------


@pytest.mark.usefixtures("patched_stdlib")
def test_twisted_modules_are_pointed_at_pristine_copies() -> None:
    import twisted.internet.base
    import twisted.internet.tcp

    import txgreen._threads

    copy = _originals.original("socket")
    # The green modules themselves are left alone; txgreen's core is re-pointed.
    assert vars(gsocket)["_std"] is socket
    assert vars(txgreen._threads)["time"] is _originals.original("time")
    assert twisted.internet.tcp.socket is copy  # type: ignore[attr-defined]
    assert twisted.internet.base.socket is copy  # type: ignore[attr-defined]
    assert copy.socket is not socket.socket
    assert not issubclass(copy.socket, gsocket.socket)
    # The copy's own functions make copy sockets, never green ones.
    a, b = copy.socketpair()
    with a, b:
        assert type(a) is copy.socket


@pytest.mark.usefixtures("patched_stdlib")
def test_twisted_tcp_servers_and_clients_keep_working_with_plain_sockets() -> None:
    port = txgreen.block_on(
        endpoints.TCP4ServerEndpoint(R, 0, interface="127.0.0.1").listen(
            protocol.Factory.forProtocol(Echo)
        )
    )
    try:
        assert not isinstance(port.socket, gsocket.socket)
        got: defer.Deferred[bytes] = defer.Deferred()

        class Client(protocol.Protocol):
            def connectionMade(self) -> None:
                T(self).write(b"ping")

            def dataReceived(self, data: bytes) -> None:
                got.callback(data)
                T(self).loseConnection()

        client = txgreen.block_on(
            endpoints.TCP4ClientEndpoint(R, "127.0.0.1", port.getHost().port).connect(
                protocol.Factory.forProtocol(Client)
            )
        )
        assert txgreen.block_on(got) == b"ping"
        assert not isinstance(client.transport.socket, gsocket.socket)
        # A green client against the Twisted server, side by side.
        with socket.create_connection(("127.0.0.1", port.getHost().port)) as s:
            assert isinstance(s, gsocket.socket)
            s.sendall(b"green")
            assert s.recv(10) == b"green"
    finally:
        txgreen.block_on(port.stopListening())


@pytest.mark.usefixtures("patched_stdlib")
def test_reactor_thread_pool_waker_and_resolver_keep_working() -> None:
    # deferToThread: the reactor's pool, the waker (callFromThread) and the job's result.
    assert txgreen.block_on(threads.deferToThread(lambda: threading.get_ident())) != (
        threading.get_ident()
    )
    # Twisted's resolver runs getaddrinfo in its pool.
    assert txgreen.block_on(R.resolve("localhost")) in ("127.0.0.1", "::1")
    # A call_in_thread job using the patched module blocks like the stdlib (it is an OS thread).
    a, b = socket.socketpair()

    def job() -> bytes:
        assert isinstance(a, gsocket.socket)
        a.settimeout(5)
        return a.recv(10)

    with a, b:
        reactor_side = txgreen.spawn(lambda: txgreen.call_in_thread(job))
        txgreen.sleep(0.05)
        b.sendall(b"from green")
        assert reactor_side.get() == b"from green"


@pytest.mark.usefixtures("patched_stdlib")
def test_a_patched_call_in_a_reactor_callback_blocks_like_the_original_and_is_reported() -> None:
    a, b = socket.socketpair()

    def in_hub() -> defer.Deferred[tuple[str, float]]:
        a.settimeout(0.1)
        started = time.monotonic()
        try:
            a.recv(10)
        except TimeoutError as e:
            return defer.succeed((str(e), time.monotonic() - started))
        return defer.succeed(("no timeout", 0.0))

    reports: list[txgreen.BlockingReport] = []
    with (
        a,
        b,
        log_events(lambda e: e.get("log_namespace") == "txgreen.monitor"),
        txgreen.watch_blocking(0.03, on_block=reports.append),
    ):
        message, waited = txgreen.block_on(in_reactor_callback(in_hub))
        txgreen.sleep(0.05)  # the watch's "block ended" report
    assert message == "timed out"
    assert 0.09 <= waited < 1
    assert reports  # the blocking detector saw the reactor stall in the patched call
    assert any("in_hub" in report.stack for report in reports)


# -- import order ---------------------------------------------------------------------------------


def test_stdlib_modules_that_bound_names_at_import_get_the_green_ones() -> None:
    # ssl did `from socket import create_connection` long before: patching rebinds it (the
    # stdlib is what patch() means to change), and unpatch() puts it back.
    original = ssl.create_connection  # type: ignore[attr-defined]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", txgreen.PatchWarning)
        txgreen.patch(socket=True, dns=False, **_others_off())
    try:
        assert ssl.create_connection is gsocket.create_connection  # type: ignore[attr-defined]
    finally:
        txgreen.unpatch()
    assert ssl.create_connection is original  # type: ignore[attr-defined]


def test_patch_warns_about_other_modules_holding_originals() -> None:
    holder = types.ModuleType("user_library_imported_early")
    holder.socket = socket.socket  # type: ignore[attr-defined] # `from socket import socket`
    holder.create_connection = socket.create_connection  # type: ignore[attr-defined]
    sys.modules[holder.__name__] = holder
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            txgreen.patch(socket=True, dns=False, **_others_off())
        messages = [str(w.message) for w in caught if w.category is txgreen.PatchWarning]
        assert len(messages) == 1
        assert "user_library_imported_early.socket (socket.socket)" in messages[0]
        assert "before importing them" in messages[0]
        assert holder.socket is not gsocket.socket  # warned about, not changed
        assert caught[0].filename == __file__  # points at the patch() call
    finally:
        txgreen.unpatch()
        del sys.modules[holder.__name__]


# -- a fresh interpreter ---------------------------------------------------------------------


def run_python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.single_reactor
def test_twisted_modules_imported_after_patch_still_get_the_originals() -> None:
    done = run_python(
        """
        import sys, socket, txgreen
        assert "twisted.names.dns" not in sys.modules
        txgreen.patch(socket=True, dns=True, ssl=False, select=False, selectors=False,
                      time=False)
        import twisted.names.dns as dns
        from txgreen.green import _originals
        assert dns.socket is _originals.original("socket"), dns.socket
        assert dns.__loader__.__class__.__name__ != "_KeepOriginalsLoader"
        import json  # an ordinary module imported after patch sees the green module
        import http.client
        assert http.client.socket.socket is txgreen.green.socket.socket
        print("ok")
        """
    )
    assert (done.returncode, done.stdout, done.stderr) == (0, "ok\n", "")


@pytest.mark.single_reactor
def test_patched_calls_before_run_and_after_it_block_like_the_stdlib() -> None:
    # Set-up code before txgreen.run() and code at exit must not start (or need) the reactor.
    done = run_python(
        """
        import socket, time, txgreen
        txgreen.patch()
        time.sleep(0.01)
        a, b = socket.socketpair()
        a.settimeout(0.01)
        try:
            a.recv(1)
        except TimeoutError:
            print("before: timed out like the stdlib")
        print("run:", txgreen.run(lambda: (time.sleep(0.01), b.sendall(b"x"), a.recv(1))[2]))
        time.sleep(0.01)
        b.sendall(b"y")
        print("after:", a.recv(1))
        """
    )
    assert (done.returncode, done.stderr) == (0, "")
    assert done.stdout.splitlines() == [
        "before: timed out like the stdlib",
        "run: b'x'",
        "after: b'y'",
    ]


def test_originals_are_only_kept_for_the_copied_modules() -> None:
    with pytest.raises(ValueError, match="copies"):
        _originals.original("ssl")
    assert importlib.import_module("socket") is socket
