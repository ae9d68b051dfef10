"""``GreenSite``: the twisted.web ``Site`` every txgreen server uses, and its limits.

A server facing the internet must not be held hostage by careless or hostile clients (slow
headers, idle keep-alive connections, huge headers or bodies, too many requests at once).
:class:`Limits` holds those bounds with defaults that are safe on the internet;
:class:`GreenSite` enforces them and remembers its open connections, so a server can drain and
close them on shutdown.

How each limit is enforced (twisted.web's HTTP/1.1 parser does the parsing; a subclass of its
``HTTPChannel`` sets its bounds and adds the rest at the points where it already looks):

- ``idle_timeout`` is Twisted's own idle timeout (``HTTPFactory.timeOut``, 60 s by default):
  reset by every byte received, switched off while a request is being served.
- ``header_timeout`` is a deadline that starts when a connection opens, or when the first
  byte of the next request arrives on a kept-alive one; unlike the idle timeout, bytes that
  trickle in do not push it back.  It ends when the blank line after the headers arrives.
- ``max_header_line``, ``max_header_count``, ``max_header_size`` are Twisted's own checks
  (``MAX_LENGTH``, ``maxHeaders``, ``totalHeadersSize``), made as each line arrives (so at
  most one line more than the limit is ever buffered), answered 414/431 here instead of a bare
  400 (``_respondToBadRequestAndDisconnect`` tells them apart); ``max_body_size`` is
  checked against ``Content-Length`` before any of the body is read, and for a chunked body
  as each chunk is decoded, before Twisted writes it to ``request.content``.
- A refused request (these limits, or a malformed request: 400) gets a short ``text/plain``
  answer with ``Connection: close``; the server then closes its side for writing and discards
  what the client still sends for at most ``_LINGER`` seconds, so that a client busy sending a
  big body reads the answer instead of a connection reset.
- Over HTTP/2 (negotiated by ALPN, then served by twisted.web's ``H2Connection``) the header
  deadline ends with the negotiation; ``idle_timeout`` is the HTTP/2 connection's idle
  timeout, ``max_body_size`` is enforced by the site's request class (the excess is discarded
  as it arrives, then 413), and the header limits are the h2 library's.
- ``max_concurrency`` is enforced by the site, for every resource (a
  :class:`~txgreen.web.WSGIResource` starts its green thread only once admitted): requests
  beyond it wait in a FIFO queue of at most ``max_queued`` requests; beyond that they get 503.
"""

from __future__ import annotations

import inspect
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from twisted.internet.interfaces import ISSLTransport
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web import resource as _resource
from twisted.web.http import HTTPChannel, _GenericHTTPChannelProtocol
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request, Site
from zope.interface import alsoProvides  # type: ignore[import-untyped]

__all__ = ["GreenSite", "Limits"]

log = Logger(namespace="txgreen.web")

_LINGER = 2.0
"""Seconds a refused connection keeps reading (and discarding) after its answer was sent."""

_REASONS = {
    400: "Bad Request",
    408: "Request Timeout",
    413: "Content Too Large",
    414: "URI Too Long",
    431: "Request Header Fields Too Large",
    503: "Service Unavailable",
}


@dataclass(frozen=True)
class Limits:
    """The bounds a :class:`GreenSite` puts on each client; ``None`` switches one off.

    The defaults are safe for a server facing the internet and generous for ordinary
    browsers and API clients; docs/serving.md ("Limits and hostile clients") says what a
    client gets beyond each limit and when to change it.  Invalid values raise ``ValueError``.
    """

    header_timeout: float | None = 10.0
    """Seconds a client has to send a request's line and headers, from the moment its
    connection opens (or, on a kept-alive connection, from the first byte of the request);
    beyond, 408 (or a plain close if it sent nothing).  Defeats slowloris."""
    idle_timeout: float | None = 60.0
    """Seconds a connection may go without sending a byte while no request of it is being
    served: a kept-alive connection between requests, or a stalled request body."""
    max_header_line: int = 8190
    """Longest request line (414 beyond) or header line (431 beyond), in bytes, without the
    line's CRLF."""
    max_header_count: int = 100
    """Most header lines in one request (431 beyond)."""
    max_header_size: int = 65536
    """Most bytes in a request's line and headers together, line ends not counted (431 beyond)."""
    max_body_size: int | None = 100 * 1024 * 1024
    """Largest request body, in bytes (413 beyond): checked against ``Content-Length`` before
    the body is read, and while a chunked body arrives."""
    max_concurrency: int | None = None
    """Most requests served at once; more wait in a queue (see ``max_queued``)."""
    max_queued: int = 1024
    """With ``max_concurrency``: most requests waiting for their turn; beyond, 503."""

    def __post_init__(self) -> None:
        for name in ("header_timeout", "idle_timeout"):
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise ValueError(f"Limits.{name} must be a positive number of seconds or None")
        for name in ("max_header_line", "max_header_count", "max_header_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"Limits.{name} must be a positive number")
        for name in ("max_body_size", "max_concurrency"):
            value = getattr(self, name)
            if value is not None and value < (0 if name == "max_body_size" else 1):
                raise ValueError(f"Limits.{name} must be a positive number or None")
        if self.max_queued < 0:
            raise ValueError("Limits.max_queued must be 0 (no queue) or more")


def _answer(code: int, detail: str) -> bytes:
    body = f"{code} {_REASONS[code]}: {detail}\n".encode()
    return (
        f"HTTP/1.1 {code} {_REASONS[code]}\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n"
        f"Content-Length: {len(body)}\r\n"
        "Connection: close\r\n\r\n"
    ).encode() + body


def _discard(data: bytes) -> None:
    pass


class _GreenChannel(HTTPChannel):
    """Twisted's HTTP/1.1 channel with a header deadline and txgreen's size limits.

    The size limits are Twisted's own checks (``MAX_LENGTH``, ``maxHeaders``,
    ``totalHeadersSize``), set from the limits; their refusals come through
    ``_respondToBadRequestAndDisconnect`` (or ``lineLengthExceeded``), where they become
    414/431 instead of a bare 400.  So the parser's hot path carries no extra work for them.
    """

    def __init__(self, limits: Limits, reactor: Any) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.limits = limits
        self.MAX_LENGTH = limits.max_header_line
        self.maxHeaders = limits.max_header_count
        self.totalHeadersSize = limits.max_header_size
        self._now: Callable[[], float] = reactor.seconds
        # The header deadline: the time the current request's head started (None: no head
        # pending), and the DelayedCall that checks it.  Ending a deadline only clears the
        # time; the call, when it fires, re-arms itself for the head pending then, if any.  So
        # a kept-alive connection costs one DelayedCall per header_timeout, not per request.
        self._head_since: float | None = None
        self._header_call: Any = None
        self._partial = False  # bytes of the pending head have arrived
        self._body_bytes = 0  # body bytes decoded so far (chunked bodies)
        self._refused = False  # answered with an error: the rest of the input is discarded
        self._closing = False  # closed by a timeout or a refusal
        self._starting = False  # inside allContentReceived (a request starts being served)

    def _peer(self) -> str:
        transport: Any = self.transport
        return str(transport.getPeer()) if transport is not None else "?"

    # -- the header deadline --------------------------------------------------------------------

    def connectionMade(self) -> None:
        super().connectionMade()  # type: ignore[no-untyped-call]
        self._start_header_deadline()

    def _start_header_deadline(self) -> None:
        timeout = self.limits.header_timeout
        if timeout is None or self._refused:
            return
        self._head_since = self._now()
        if self._header_call is None:
            self._header_call = self.callLater(timeout, self._check_header_deadline)  # type: ignore[no-untyped-call]

    def _cancel_header_deadline(self) -> None:
        self._head_since = None
        call, self._header_call = self._header_call, None
        if call is not None and call.active():
            call.cancel()

    def _check_header_deadline(self) -> None:
        self._header_call = None
        since, timeout = self._head_since, self.limits.header_timeout
        if since is None or timeout is None:
            return  # no head pending: dormant until the next one starts
        left = since + timeout - self._now()
        if left > 0:
            self._header_call = self.callLater(left, self._check_header_deadline)  # type: ignore[no-untyped-call]
            return
        self._head_since = None
        if self._partial:
            self._refuse(408, f"the request headers took over {timeout} s")
        else:
            log.debug(
                "Closing {peer}: no request within {timeout} s", peer=self._peer(), timeout=timeout
            )
            self._close()

    def setTimeout(self, period: float | None) -> float | None:
        # Twisted calls setTimeout(None) when it stops caring about this channel's input: a
        # request starts being served (allContentReceived: the head is complete already), the
        # connection is lost, or it switched to HTTP/2 (this channel is dropped): then the
        # header deadline's call must go too.
        if period is None and not self._starting:
            self._cancel_header_deadline()
        return super().setTimeout(period)  # type: ignore[no-any-return,no-untyped-call]

    def timeoutConnection(self) -> None:
        # The idle timeout.  Twisted logs each at info level; an idle keep-alive connection
        # timing out is routine, so debug level here.  A request cut short is answered.
        if self._partial or not (self.line_mode or self._handlingRequest):
            self._refuse(408, f"the client sent nothing for {self.timeOut} s")
            return
        log.debug("Closing {peer}: idle for {timeout} s", peer=self._peer(), timeout=self.timeOut)
        self._close()

    def _close(self) -> None:
        """Close; abort if the client does not let the close finish (as Twisted does)."""
        if self._closing:
            return
        self._closing = True
        self.setTimeout(None)  # the other timer must not fire too
        if self.abortTimeout is not None:
            self._abortingCall = self.callLater(self.abortTimeout, self.forceAbortClient)  # type: ignore[no-untyped-call]
        self.loseConnection()  # type: ignore[no-untyped-call]

    # -- input ----------------------------------------------------------------------------------

    def dataReceived(self, data: bytes) -> None:
        if self._refused:
            return  # lingering after an error answer: discard
        if not self._partial and data and self.line_mode and not self._handlingRequest:
            # The first bytes of a request's head (on a new connection, the deadline runs
            # already; on a kept-alive one, it starts now).
            self._partial = True
            if self._head_since is None:
                self._start_header_deadline()
        super().dataReceived(data)  # type: ignore[no-untyped-call]

    def rawDataReceived(self, data: bytes) -> None:
        super().rawDataReceived(data)
        if (
            self._handlingRequest
            and self._waitingForTransport
            and sum(map(len, self._dataBuffer)) > self._optimisticEagerReadSize
        ):
            # Twisted buffers what a client sends while a request is served, and stops reading
            # beyond 16 KiB, except when the client is also not reading our answers (then it
            # skips the pause: a client that pipelines requests and never reads could make us
            # buffer without end).  Pause here too; requestDone or resumeProducing resumes.
            network: Any = self._networkProducer
            network.pauseProducing()

    def lineLengthExceeded(self, line: bytes) -> None:
        if self._receivedHeaderSize == 0:
            self._refuse(414, f"the request line exceeds {self.limits.max_header_line} bytes")
        else:
            self._refuse(431, f"a header line exceeds {self.limits.max_header_line} bytes")

    def _respondToBadRequestAndDisconnect(self) -> None:
        # Twisted's answer to a request it cannot take (a bare 400, then an immediate close):
        # 431 for the header limits, 400 for the rest, answered and closed like the others.
        if self._receivedHeaderSize > self.totalHeadersSize:
            self._refuse(
                431,
                f"the request line and headers exceed {self.limits.max_header_size} bytes",
            )
        elif self._receivedHeaderCount > self.maxHeaders:
            self._refuse(431, f"more than {self.limits.max_header_count} header fields")
        else:
            self._refuse(400, "the request is malformed")

    def allHeadersReceived(self) -> None:
        self._head_since = None  # the deadline is met (its call stays, and goes dormant)
        self._partial = False
        self._body_bytes = 0
        limit = self.limits.max_body_size
        if limit is not None:
            if self.length is not None and self.length > limit:
                # Before the body is read, and before "100 Continue" could invite it.
                self._refuse(413, f"the request body exceeds {limit} bytes")
                return
            decoder: Any = self._transferDecoder
            if decoder is not None and self.length is None:  # chunked: count as it comes
                decoder.dataCallback = self._counting(decoder.dataCallback, limit)
        super().allHeadersReceived()  # type: ignore[no-untyped-call]

    def _counting(self, write: Callable[[bytes], None], limit: int) -> Callable[[bytes], None]:
        def counted(data: bytes) -> None:
            if self._refused:
                return
            self._body_bytes += len(data)
            if self._body_bytes > limit:
                self._refuse(413, f"the request body exceeds {limit} bytes")
                return
            write(data)

        return counted

    def allContentReceived(self) -> None:
        if self._refused:
            return  # the decoder finished a body that was refused on the way
        self._starting = True
        try:
            super().allContentReceived()  # type: ignore[no-untyped-call]
        finally:
            self._starting = False

    # -- refusing -------------------------------------------------------------------------------

    def _refuse(self, code: int, detail: str) -> None:
        """Answer ``code`` and close; read and discard the client's input for a while first."""
        if self._refused:
            return
        self._refused = True
        # The rest of what is buffered is not parsed (dataReceived drops what comes later).
        self.lineReceived = self.rawDataReceived = _discard  # type: ignore[method-assign]
        self.setTimeout(None)
        log.debug(
            "Refusing {peer}: {code} {detail}",
            peer=self._peer(),
            code=code,
            detail=detail,
        )
        transport: Any = self.transport
        transport.write(_answer(code, detail))
        lose_write = getattr(transport, "loseWriteConnection", None)
        if lose_write is None or ISSLTransport.providedBy(transport):
            # (A TLS transport's loseWriteConnection would be its TCP transport's: no TLS close.)
            self._close()
            return
        network: Any = self._networkProducer
        network.unregisterProducer()
        # Half-close: the client reads our answer and EOF while we keep reading; closing at
        # once with its unread bytes in our buffer would send a reset that can destroy the
        # answer before the client reads it.
        network.resumeProducing()
        lose_write()
        self._abortingCall = self.callLater(_LINGER, self._linger_over)  # type: ignore[no-untyped-call]

    def _linger_over(self) -> None:
        self._abortingCall = None
        transport: Any = self.transport
        transport.abortConnection()


# -- max_concurrency ----------------------------------------------------------------------------


class _Gate:
    """Admission of requests to the resources: at most ``limit`` at once, a bounded queue."""

    def __init__(self, limit: int, max_queued: int, reactor: Any) -> None:
        self.limit = limit
        self.max_queued = max_queued
        self.reactor = reactor
        self.running = 0
        self.waiting: deque[tuple[Any, Resource]] = deque()

    def admit(self, request: Any) -> bool:
        """Take a place for ``request`` if there is one (True); else queue it or refuse it."""
        if self.running < self.limit:
            self._occupy(request)
            return True
        return False

    def _occupy(self, request: Any) -> None:
        self.running += 1
        request._green_admitted = True
        request.notifyFinish().addBoth(self._release)

    def _release(self, _: object) -> None:
        self.running -= 1
        while self.waiting and self.running < self.limit:
            request, resource = self.waiting.popleft()
            if request.channel is None:
                continue  # gone while waiting
            self._occupy(request)
            # Render from the reactor, not from whatever finished the previous request (maybe
            # a green thread).
            self.reactor.callLater(0, _render, request, resource)

    def enqueue(self, request: Any, resource: Resource) -> bool:
        if len(self.waiting) >= self.max_queued:
            return False
        entry = (request, resource)
        self.waiting.append(entry)

        def gone(_: object) -> None:
            if entry in self.waiting:
                self.waiting.remove(entry)

        request.notifyFinish().addErrback(gone)
        return True


def _render(request: Any, resource: Resource) -> None:
    if request.channel is None or request.finished:
        return  # the client went away before its turn came
    try:
        request.render(resource)
    except BaseException:
        request.processingFailed(Failure())  # type: ignore[no-untyped-call]


_BUSY = b"503 Service Unavailable: the server is at its limit of requests; try again shortly\n"


class _Admission(Resource):
    """Stands for the resource a request addressed, and admits the request through the gate."""

    isLeaf = True

    def __init__(self, gate: _Gate, resource: Resource) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.gate = gate
        self.resource = resource
        if _resource._IEncodingResource.providedBy(resource):
            alsoProvides(self, _resource._IEncodingResource)

    def getEncoder(self, request: Any) -> Any:
        return self.resource.getEncoder(request)  # type: ignore[attr-defined]

    def render(self, request: Any) -> Any:
        if getattr(request, "_green_admitted", False):
            # Rendered again (twisted.web answers HEAD with GET when a resource has no HEAD):
            # it holds its place already.
            return self.resource.render(request)  # type: ignore[no-untyped-call]
        if self.gate.admit(request):
            return self.resource.render(request)  # type: ignore[no-untyped-call]
        if self.gate.enqueue(request, self.resource):
            return NOT_DONE_YET
        log.debug("503 for {uri}: max_concurrency reached and the queue is full", uri=request.uri)
        request.setResponseCode(503)
        request.setHeader(b"Content-Type", b"text/plain; charset=utf-8")
        request.setHeader(b"Retry-After", b"1")
        return _BUSY


class _Connection(_GenericHTTPChannelProtocol):
    """twisted.web's per-connection protocol (HTTP/1.1, or HTTP/2 once negotiated), which adds
    its transport to the site's ``transports`` while the connection is open.

    (Its IProtocol methods are proxies to the current channel, which changes when HTTP/2 is
    negotiated: they are overridden here, on the class, not patched on the instance, where
    they would land on the first channel.)
    """

    _transport: Any = None

    def makeConnection(self, transport: Any) -> None:
        self._transport = transport
        self.factory.transports.add(transport)
        self.factory.connections[self] = None
        super().makeConnection(transport)

    def connectionLost(self, reason: Failure) -> None:
        self.factory.transports.discard(self._transport)
        self.factory.connections.pop(self, None)
        super().connectionLost(reason)


class _Request(Request):
    """twisted.web's ``Request``, which also enforces ``max_body_size`` as the body arrives.

    Over HTTP/1.1 the channel refuses a body that is too large before it gets here; over HTTP/2
    (where twisted.web hands each stream's data straight to the request) this is the check: the
    body beyond the limit is discarded as it arrives, and the request is answered 413.
    """

    _body_limit = 0  # set by the subclass GreenSite makes for its max_body_size
    _body_seen = 0
    _body_refused = False

    def gotLength(self, length: int | None) -> None:
        if length is not None and length > self._body_limit:
            self._body_refused = True
            length = 0  # (no temporary file for a body that is discarded)
        super().gotLength(length)  # type: ignore[no-untyped-call]

    def handleContentChunk(self, data: bytes) -> None:
        if self._body_refused:
            return
        self._body_seen += len(data)
        if self._body_seen > self._body_limit:
            self._body_refused = True
            content: Any = self.content
            content.seek(0)
            content.truncate()
            return
        super().handleContentChunk(data)  # type: ignore[no-untyped-call]

    def process(self) -> None:
        if not self._body_refused:
            super().process()  # type: ignore[no-untyped-call]
            return
        channel: Any = self.channel
        self.site = channel.site
        body = f"413 {_REASONS[413]}: the request body exceeds {self._body_limit} bytes\n"
        self.setResponseCode(413)
        self.setHeader(b"Content-Type", b"text/plain; charset=utf-8")  # type: ignore[no-untyped-call]
        self.setHeader(b"Content-Length", b"%d" % len(body))  # type: ignore[no-untyped-call]
        self.write(body.encode())  # type: ignore[no-untyped-call]
        self.finish()  # type: ignore[no-untyped-call]


def _request_class(limit: int) -> type[Request]:
    class _LimitedRequest(_Request):
        _body_limit = limit

    return _LimitedRequest


# -- the site -----------------------------------------------------------------------------------


# twisted.web's Site parses the body of every POST form (URL-encoded or multipart) into
# ``request.args``, in the reactor thread, before the resource sees the request: for a 20 MB
# upload that blocks every other client for about 0.4 s, for a WSGI application that parses the
# body again itself; and a malformed Content-Type makes it raise out of the HTTP parser (a
# traceback per request).  Twisted releases that have the option let a site turn that off.
_CAN_SKIP_FORMS = "parsePOSTFormSubmission" in inspect.signature(Site.__init__).parameters


class GreenSite(Site):
    """A Site that enforces ``limits`` and remembers the transports of its open connections.

    ``transports`` is the set of the transports of its open connections (a server closes them
    on shutdown).  ``limits`` defaults to :class:`Limits()`; the site's idle timeout
    (``timeOut``) is ``limits.idle_timeout``.  Unlike twisted.web's ``Site``, it does not parse
    POST form bodies into ``request.args`` (on Twisted releases with ``parsePOSTFormSubmission``):
    WSGI applications read the body themselves.
    """

    def __init__(self, resource: Resource, reactor: Any, limits: Limits | None = None) -> None:
        options = {"parsePOSTFormSubmission": False} if _CAN_SKIP_FORMS else {}
        super().__init__(resource, reactor=reactor, **options)  # type: ignore[no-untyped-call]
        self.limits = limits if limits is not None else Limits()
        self.timeOut = self.limits.idle_timeout
        self.transports: set[Any] = set()
        # The open connections' protocols, in accept order (to tell idle ones from busy ones).
        self.connections: dict[Any, None] = {}
        if self.limits.max_body_size is not None:
            self.requestFactory = _request_class(self.limits.max_body_size)
        self._gate = (
            None
            if self.limits.max_concurrency is None
            else _Gate(self.limits.max_concurrency, self.limits.max_queued, self.reactor)
        )

    def protocol(self) -> Any:
        """A new connection's protocol (``Factory.buildProtocol`` calls ``self.protocol()``)."""
        return _Connection(_GreenChannel(self.limits, self.reactor))

    def close_idle(self) -> int:
        """Close the connections that are between requests; mark the busy ones to close once
        their response is done (``Connection: close``).  Returns how many are still busy.

        Servers call it while draining (graceful stop, gunicorn's worker exit), again and again,
        since a busy connection becomes idle when its response ends.
        """
        busy = 0
        for protocol in list(self.connections):
            channel = getattr(protocol, "_channel", protocol)
            requests = getattr(channel, "requests", None)
            if requests is None:  # HTTP/2: one connection, many streams
                streams = getattr(channel, "streams", None)
                requests = list(streams) if streams else []
            transport = getattr(channel, "transport", None)
            if transport is None:
                continue
            if not requests:
                transport.loseConnection()
                continue
            busy += 1
            if getattr(channel, "persistent", False):
                channel.persistent = False
                for request in requests:
                    if not getattr(request, "startedWriting", True):
                        request.responseHeaders.setRawHeaders(b"Connection", [b"close"])
        return busy

    def abort_all(self) -> None:
        """Abort every open connection at once."""
        for transport in list(self.transports):
            transport.abortConnection()

    def getResourceFor(self, request: Any) -> Any:
        """The resource ``request`` addresses, behind the ``max_concurrency`` gate if any."""
        resource = super().getResourceFor(request)  # type: ignore[no-untyped-call]
        gate = self._gate
        return resource if gate is None else _Admission(gate, resource)
