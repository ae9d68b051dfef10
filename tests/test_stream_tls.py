"""Streams over TLS, both ways through endpoints, with a certificate made by the test."""

from __future__ import annotations

import contextlib
import datetime
import ipaddress
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import pytest

pytest.importorskip("OpenSSL", reason="TLS needs twisted[tls] (pyOpenSSL, service_identity)")

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from OpenSSL import SSL
from service_identity import VerificationError
from twisted.internet import ssl
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import (
    SSL4ServerEndpoint,
    TCP4ClientEndpoint,
    serverFromString,
    wrapClientTLS,
)
from twisted.internet.error import ConnectionLost
from twisted.internet.interfaces import (
    IListeningPort,
    IProtocolFactory,
    IStreamClientEndpoint,
    IStreamServerEndpoint,
)
from twisted.logger import LogLevel
from twisted.protocols.policies import WrappingFactory

import txgreen
from support import log_events
from txgreen._stream import (
    HalfCloseNotSupported,
    Listener,
    Stream,
    StreamClosed,
    _tls_layer,
    connect,
    listen,
)

# Twisted itself hands pyOpenSSL objects to pyOpenSSL, which deprecates that: not ours to fix.
pytestmark = pytest.mark.filterwarnings("ignore:Passing pyOpenSSL:DeprecationWarning")


@dataclass(frozen=True)
class SelfSigned:
    key_pem: bytes
    cert_pem: bytes
    key_file: Path
    cert_file: Path
    trust_dir: Path  # holds only cert.pem: what the client's trustRoots= points to


def make_certificate(directory: Path) -> SelfSigned:
    """A self-signed certificate for localhost and 127.0.0.1 (an EC key: quick to make)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "txgreen test")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    cert_pem = cert.public_bytes(serialization.Encoding.PEM)
    trust_dir = directory / "trusted"
    trust_dir.mkdir()
    (trust_dir / "cert.pem").write_bytes(cert_pem)
    (directory / "key.pem").write_bytes(key_pem)
    (directory / "cert.pem").write_bytes(cert_pem)
    return SelfSigned(key_pem, cert_pem, directory / "key.pem", directory / "cert.pem", trust_dir)


@pytest.fixture(scope="module")
def cert(tmp_path_factory: pytest.TempPathFactory) -> SelfSigned:
    return make_certificate(tmp_path_factory.mktemp("tls"))


def tls_server(cert: SelfSigned) -> str:
    # Endpoint strings take ':' as a separator: escape it in paths (none here, but be safe).
    key = str(cert.key_file).replace(":", "\\:")
    crt = str(cert.cert_file).replace(":", "\\:")
    return f"ssl:0:interface=127.0.0.1:privateKey={key}:certKey={crt}"


def tls_client(listener: Listener, cert: SelfSigned) -> str:
    return f"tls:host=localhost:port={listener.port}:trustRoots={cert.trust_dir}"


def plain_tcp(port: int) -> IStreamClientEndpoint:
    from twisted.internet import reactor

    return cast(IStreamClientEndpoint, TCP4ClientEndpoint(reactor, "127.0.0.1", port))


def echo(stream: Stream) -> None:
    while chunk := stream.recv(65536):
        stream.write(chunk)


# -- round trips --------------------------------------------------------------------------------


def test_tls_echo_round_trip_through_endpoint_strings(cert: SelfSigned) -> None:
    with listen(tls_server(cert), echo) as listener:
        with connect(tls_client(listener, cert), timeout=5) as s:
            assert _tls_layer(s.transport) is not None  # really TLS
            # connect() returned after the handshake: the server's certificate is known.
            peer_cert = s.transport.getPeerCertificate().to_cryptography()
            assert peer_cert.subject.rfc4514_string() == "CN=txgreen test"
            s.write(b"first line\nsecond ")
            assert s.readline() == b"first line\n"
            s.write(b"line\n")
            assert s.readline() == b"second line\n"
            payload = bytes(range(256)) * 1024  # larger than a TLS record (16 KiB)
            s.write(payload)
            assert s.read_exactly(len(payload)) == payload
            assert s.peer.port == listener.port
            assert s.host.host == "127.0.0.1"
        assert s.closed
        # The client closed with a TLS close: the server read a clean EOF and returned.
        assert listener.join(timeout=5) is True


def test_tls_server_close_gives_the_client_a_clean_eof(cert: SelfSigned) -> None:
    def handler(stream: Stream) -> None:
        stream.write(b"greeting\n")
        stream.write(b"x" * 100_000)
        # returning closes: the data first, then a TLS close_notify

    with listen(tls_server(cert), handler) as listener:
        with connect(tls_client(listener, cert), timeout=5) as s:
            assert s.readline() == b"greeting\n"
            assert s.read() == b"x" * 100_000
            assert s.read() == b""  # clean EOF, no error
        assert listener.join(timeout=5)


def test_tls_with_endpoint_objects(cert: SelfSigned) -> None:
    """An IStreamServerEndpoint built with twisted.internet.ssl, certificates in memory."""
    from twisted.internet import reactor

    private = ssl.PrivateCertificate.loadPEM(cert.key_pem + cert.cert_pem)  # type: ignore[no-untyped-call]
    server = cast(
        IStreamServerEndpoint,
        SSL4ServerEndpoint(reactor, 0, private.options(), interface="127.0.0.1"),  # type: ignore[no-untyped-call]
    )
    with listen(server, echo) as listener:
        trust = ssl.Certificate.loadPEM(cert.cert_pem)
        client = wrapClientTLS(
            ssl.optionsForClientTLS("localhost", trustRoot=trust),
            plain_tcp(listener.port),
        )
        with connect(client, timeout=5) as s:
            s.write(b"in memory\n")
            assert s.readline() == b"in memory\n"
        assert listener.join(timeout=5)


# -- verification -------------------------------------------------------------------------------


def handshake_failures() -> Any:
    return log_events(lambda e: "TLS handshake" in str(e.get("log_format", "")))


def test_tls_client_rejects_an_untrusted_certificate(cert: SelfSigned) -> None:
    ran: list[Stream] = []

    with handshake_failures() as logged, listen(tls_server(cert), ran.append) as listener:
        # No trustRoots: the platform's CAs, which do not include our self-signed certificate.
        with pytest.raises(SSL.Error, match="certificate verify failed"):
            connect(f"tls:host=localhost:port={listener.port}", timeout=5)
        assert listener.join(timeout=5)
    # The server's handler never ran: the handshake failed (the client's alert); that is
    # logged at info level with the TLS error.
    assert ran == []
    assert len(logged) == 1
    assert logged[0]["log_level"] == LogLevel.info
    assert isinstance(logged[0]["error"], SSL.Error)


def test_tls_server_drops_a_client_that_speaks_no_tls(cert: SelfSigned) -> None:
    ran: list[Stream] = []
    with handshake_failures() as logged, listen(tls_server(cert), ran.append) as listener:
        with connect(f"tcp:host=127.0.0.1:port={listener.port}", timeout=5) as plain:
            plain.write(b"GET / HTTP/1.0\r\n\r\n")
            # The server answers with a TLS alert, or nothing, and closes the connection.
            with contextlib.suppress(ConnectionLost, ConnectionResetError):
                while plain.recv():
                    pass
        assert listener.join(timeout=5)
    assert ran == []
    assert len(logged) == 1


def test_tls_server_drops_a_client_that_never_starts_the_handshake(cert: SelfSigned) -> None:
    ran: list[Stream] = []
    with (
        handshake_failures() as logged,
        listen(tls_server(cert), ran.append, handshake_timeout=0.2) as listener,
    ):
        with connect(f"tcp:host=127.0.0.1:port={listener.port}", timeout=5) as silent:
            started = time.monotonic()
            with contextlib.suppress(ConnectionLost, ConnectionResetError):
                assert silent.read() == b""  # the server gives up on it: EOF or a reset
            assert 0.1 < time.monotonic() - started < 5
        assert listener.join(timeout=5)
    assert ran == []
    assert [e["timeout"] for e in logged] == [0.2]


def test_tls_handler_runs_after_the_handshake(cert: SelfSigned) -> None:
    secured_on_entry: list[bool] = []

    def handler(stream: Stream) -> None:
        secured_on_entry.append(stream._secured)
        echo(stream)

    with listen(tls_server(cert), handler) as listener, connect(tls_client(listener, cert)) as s:
        s.write(b"ping")
        assert s.read_exactly(4) == b"ping"
    assert secured_on_entry == [True]


def test_tls_client_rejects_a_certificate_for_another_name(cert: SelfSigned) -> None:

    with listen(tls_server(cert), echo) as listener:
        # The certificate is trusted, but it is for localhost, not for this name.
        client = wrapClientTLS(
            ssl.optionsForClientTLS(
                "other.example", trustRoot=ssl.Certificate.loadPEM(cert.cert_pem)
            ),
            plain_tcp(listener.port),
        )
        with pytest.raises(VerificationError, match=r"other\.example"):
            connect(client, timeout=5)
        listener.kill()


def test_tls_connect_timeout_covers_the_handshake() -> None:
    # A plain TCP server that never answers the ClientHello: the handshake cannot finish.
    accepted = txgreen.Event()

    def silent(stream: Stream) -> None:
        accepted.set()
        stream.read()

    with listen("tcp:0:interface=127.0.0.1", silent) as listener:
        with pytest.raises(txgreen.Timeout):
            connect(f"tls:host=localhost:port={listener.port}", timeout=0.2)
        assert accepted.is_set()
        assert listener.join(timeout=5)  # the client aborted the connection


# -- half-close ---------------------------------------------------------------------------------


def test_tls_write_eof_is_refused_and_the_stream_stays_usable(cert: SelfSigned) -> None:
    with listen(tls_server(cert), echo) as listener, connect(tls_client(listener, cert)) as s:
        s.write(b"before\n")
        with pytest.raises(HalfCloseNotSupported, match="TLS connection cannot be half-closed"):
            s.write_eof()
        s.write(b"after\n")
        assert s.readline() == b"before\n"
        assert s.readline() == b"after\n"


class WrappingServerEndpoint:
    """A TCP server endpoint whose connections go through a plain ``ProtocolWrapper``."""

    def __init__(self, inner: Any) -> None:  # (zope interfaces are not types to mypy)
        self.inner = inner

    def listen(self, factory: IProtocolFactory) -> Deferred[IListeningPort]:
        port: Deferred[IListeningPort] = self.inner.listen(WrappingFactory(factory))  # type: ignore[no-untyped-call]
        return port


def test_write_eof_through_a_wrapping_transport_is_refused() -> None:
    # ProtocolWrapper claims the socket's interfaces (half-close included) but would only
    # forward loseWriteConnection() to the socket under it, skipping its own layer.
    from twisted.internet import reactor

    refused: list[str] = []

    def handler(stream: Stream) -> None:
        try:
            stream.write_eof()
        except HalfCloseNotSupported as e:
            refused.append(str(e))
        stream.write(b"still writable")

    inner = serverFromString(reactor, "tcp:0:interface=127.0.0.1")  # type: ignore[no-untyped-call]
    server = cast(IStreamServerEndpoint, WrappingServerEndpoint(inner))
    with listen(server, handler) as listener:
        with connect(f"tcp:host=127.0.0.1:port={listener.port}", timeout=5) as s:
            assert s.read() == b"still writable"
        assert listener.join(timeout=5)
    assert refused == ["Stream.write_eof(): this transport (ProtocolWrapper) cannot half-close"]


# -- drain and back-pressure --------------------------------------------------------------------


def test_tls_drain_waits_for_every_layer(cert: SelfSigned) -> None:
    left: list[int] = []

    def handler(stream: Stream) -> None:
        # Written at once, before the handshake completed: TLS buffers it first.
        for _ in range(8):
            stream.write(b"d" * 65536)
        stream.drain()
        tls = _tls_layer(stream.transport)
        t = tls.transport
        left.append(
            len(tls._appSendBuffer)
            + len(tls._aggregator._buffer)
            + t._tempDataLen
            + len(t.dataBuffer)
            - t.offset
        )
        stream.drain()  # nothing buffered: returns at once

    with listen(tls_server(cert), handler) as listener:
        with connect(tls_client(listener, cert), timeout=5) as s:
            assert s.read() == b"d" * 8 * 65536
        assert listener.join(timeout=5)
    assert left == [0]


def test_tls_slow_reader_blocks_fast_writer(cert: SelfSigned) -> None:
    chunk = b"z" * 65536
    total = 8 * 1024 * 1024
    progress = [0]

    def handler(stream: Stream) -> None:
        tls = _tls_layer(stream.transport)
        tls.transport.getHandle().setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 65536)
        while progress[0] < total:
            stream.write(chunk)
            progress[0] += len(chunk)

    with listen(tls_server(cert), handler) as listener:
        with connect(tls_client(listener, cert), timeout=5) as s:
            sock = _tls_layer(s.transport).transport.getHandle()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
            # The client does not read: wait until the writer has stalled (its progress stops).
            last = -1
            while progress[0] != last or progress[0] == 0:
                last = progress[0]
                txgreen.sleep(0.05)
            stalled_at = progress[0]
            assert 0 < stalled_at < 4 * 1024 * 1024  # bounded, far below the 8 MiB it wants
            assert s.buffered <= s.high_water + 2 * 65536
            received = 0
            while data := s.recv(1 << 20):
                received += len(data)
            assert received == total == progress[0]
        assert listener.join(timeout=5)


def test_tls_write_after_peer_closed_raises(cert: SelfSigned) -> None:
    def handler(stream: Stream) -> None:
        stream.write(b"bye\n")

    with listen(tls_server(cert), handler) as listener, connect(tls_client(listener, cert)) as s:
        assert s.read() == b"bye\n"
        with pytest.raises(StreamClosed, match=r"^Stream.write\(\): the connection is closed"):
            s.write(b"late")
        assert listener.join(timeout=5)


def test_tls_connect_to_a_server_that_hangs_up_raises() -> None:
    # A plain TCP server that closes at once: the handshake fails, connect() says so.
    with listen("tcp:0:interface=127.0.0.1", lambda stream: None) as listener:
        with pytest.raises(ConnectionLost):
            connect(f"tls:host=localhost:port={listener.port}", timeout=5)
        assert listener.join(timeout=5)
