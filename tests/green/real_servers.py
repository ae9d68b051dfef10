"""Real servers on 127.0.0.1 for the real-program tests, run by Twisted in the test's process.

Each server is a context manager used from a green thread (a test body): it listens on a free
port when entered, and when left it stops listening, closes the connections still open and
waits until they are gone, so the plugin's leak check finds nothing behind.

- :func:`slow_http_server`: a ``twisted.web`` site whose every answer comes ``delay`` seconds
  after the request (``reactor.callLater``), over TLS when given a certificate.
- :func:`slow_smtp_server`: ``twisted.mail.smtp``'s ESMTP server, storing every message it
  accepts; it acknowledges each message (the reply to the end of ``DATA``) ``delay`` seconds
  after receiving it.

Importing this module does not import the reactor (the plugin installs the one chosen with
``--txgreen-reactor`` after test modules are collected); the servers import it when started.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from twisted.internet import defer
from twisted.internet.interfaces import IAddress
from twisted.mail import smtp
from twisted.protocols import policies
from twisted.web import http, resource, server
from zope.interface import implementer  # type: ignore[import-untyped]

import txgreen


def _reactor() -> Any:
    from twisted.internet import reactor

    return reactor


@dataclass
class Served:
    """What a running server tells its test: its port and what it has handled so far."""

    port: int
    requests: list[bytes] = field(default_factory=list)  # HTTP: the paths answered
    messages: list[tuple[bytes, list[bytes], bytes]] = field(default_factory=list)  # SMTP
    connections: int = 0  # connections accepted so far

    def reset(self) -> None:
        """Forget what was handled so far (before a test measures again)."""
        self.requests.clear()
        self.messages.clear()
        self.connections = 0


def _wait_until(done: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} still not done after {timeout} s")
        txgreen.sleep(0.005)


# Room for a hundred clients connecting at once: a full accept queue drops SYNs, and the
# client's retransmission comes a whole second later.
BACKLOG = 1024


@contextmanager
def listening(
    factory: Any, served_factory: Callable[[int], Served] = Served, tls: Any = None
) -> Iterator[Served]:
    """Serve ``factory`` on 127.0.0.1 (TLS with the ``tls`` context factory); drain after.

    Leaving stops listening, aborts the connections still open and waits until they are gone.
    """
    reactor = _reactor()
    tracked: Any = policies.WrappingFactory(factory)  # type: ignore[no-untyped-call]
    if tls is None:
        port = reactor.listenTCP(0, tracked, backlog=BACKLOG, interface="127.0.0.1")
    else:
        port = reactor.listenSSL(0, tracked, tls, backlog=BACKLOG, interface="127.0.0.1")
    served = served_factory(port.getHost().port)
    original_build = tracked.buildProtocol

    def build(addr: IAddress) -> Any:
        served.connections += 1
        return original_build(addr)

    tracked.buildProtocol = build
    try:
        yield served
    finally:
        txgreen.block_on(defer.maybeDeferred(port.stopListening), 5)
        for wrapper in list(tracked.protocols):
            wrapper.transport.abortConnection()
        _wait_until(lambda: not tracked.protocols, 5, "closing the server's connections")


# -- HTTP ---------------------------------------------------------------------------------------


class _SlowResource(resource.Resource):
    """Answers every GET with ``hello <path>`` after ``delay`` seconds."""

    isLeaf = True

    def __init__(self, served: Served, delay: float) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.served = served
        self.delay = delay

    def render_GET(self, request: server.Request) -> int:
        call = _reactor().callLater(self.delay, self._answer, request)

        def gone(_: object) -> None:
            if call.active():
                call.cancel()

        request.notifyFinish().addErrback(gone)
        return server.NOT_DONE_YET

    def _answer(self, request: Any) -> None:
        path = request.path
        body = b"hello " + path
        request.setHeader(b"content-type", b"text/plain")
        request.setHeader(b"content-length", b"%d" % len(body))
        request.write(body)
        request.finish()
        self.served.requests.append(path)


class _QuietSite(server.Site):
    """A site without the access log (a hundred lines per test is noise)."""

    def log(self, request: http.Request) -> None:
        """Log nothing."""


@contextmanager
def slow_http_server(
    delay: float, cert_file: Path | None = None, key_file: Path | None = None
) -> Iterator[Served]:
    """A twisted.web server answering every GET after ``delay`` seconds (HTTPS with a cert)."""
    site = _QuietSite(resource.Resource(), timeout=None)  # type: ignore[no-untyped-call]
    tls = None
    if cert_file is not None and key_file is not None:
        from twisted.internet import ssl as tssl

        tls = tssl.DefaultOpenSSLContextFactory(str(key_file), str(cert_file))  # type: ignore[no-untyped-call]
    with listening(site, Served, tls) as served:
        site.resource = _SlowResource(served, delay)
        yield served


# -- SMTP ---------------------------------------------------------------------------------------


@implementer(smtp.IMessage)
class _Message:
    """One message being received; stored when it ends, acknowledged ``delay`` s later."""

    def __init__(self, served: Served, delay: float, sender: bytes, recipient: bytes) -> None:
        self.served = served
        self.delay = delay
        self.sender = sender
        self.recipient = recipient
        self.lines: list[bytes] = []

    def lineReceived(self, line: bytes) -> None:
        """A line of the message's text."""
        self.lines.append(line)

    def eomReceived(self) -> defer.Deferred[bytes]:
        """The message ended: store it, and answer after the delay."""
        self.served.messages.append((self.sender, [self.recipient], b"\n".join(self.lines)))
        done: defer.Deferred[bytes] = defer.Deferred()
        call = _reactor().callLater(self.delay, done.callback, b"stored")
        done.addErrback(lambda f: call.cancel() if call.active() else f)
        return done

    def connectionLost(self) -> None:
        """The connection ended before the message did."""
        self.lines = []


@implementer(smtp.IMessageDelivery)
class _Delivery:
    """Accepts every sender and recipient."""

    def __init__(self, served: Served, delay: float) -> None:
        self.served = served
        self.delay = delay

    def receivedHeader(
        self, helo: tuple[bytes, bytes], origin: smtp.Address, recipients: Any
    ) -> bytes:
        """The Received: header added to each message."""
        return b"Received: from " + helo[0] + b" by the txgreen test server"

    def validateFrom(self, helo: tuple[bytes, bytes], origin: smtp.Address) -> smtp.Address:
        """Every sender is fine."""
        return origin

    def validateTo(self, user: smtp.User) -> Callable[[], _Message]:
        """Every recipient is fine: its message is stored."""
        sender = str(user.orig).encode()
        recipient = str(user.dest).encode()
        return lambda: _Message(self.served, self.delay, sender, recipient)


class _SMTPFactory(smtp.SMTPFactory):
    protocol = smtp.ESMTP
    timeout = None  # type: ignore[assignment] # no idle timer (a DelayedCall per connection)

    def __init__(self) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.domain = b"txgreen.test"
        self.delivery: _Delivery | None = None

    def buildProtocol(self, addr: IAddress | None) -> Any:
        """An ESMTP server protocol delivering to this test's store."""
        p = super().buildProtocol(addr)  # type: ignore[no-untyped-call]
        p.delivery = self.delivery
        return p


@contextmanager
def slow_smtp_server(delay: float) -> Iterator[Served]:
    """An ESMTP server (twisted.mail) that acknowledges each message after ``delay`` s."""
    factory = _SMTPFactory()

    def make(port: int) -> Served:
        served = Served(port)
        factory.delivery = _Delivery(served, delay)
        return served

    with listening(factory, make, None) as served:
        yield served
