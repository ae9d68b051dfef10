"""Green streams: a connection read and written from a green thread, plus servers and clients.

Any stream endpoint works: TCP, TLS (Twisted's TLS layer over TCP; a TLS client's
:func:`connect` also waits for the handshake, so a rejected certificate raises there) and
UNIX sockets.

A :class:`Stream` wraps one connection made by a small Twisted ``Protocol``.  The protocol runs in
the hub (reactor callbacks) and only fills buffers and wakes waiters with ``resume_later``; the
green thread that reads or writes parks with :meth:`Hub.wait`, so per-stream timeouts,
``with txgreen.Timeout``, kills and reactor shutdown end those waits like any other txgreen wait.

Back-pressure works both ways:

- receive: when more than ``high_water`` unread bytes are buffered, the transport stops reading
  (``pauseProducing``) until the reader brings the buffer under ``low_water``;
- send: the protocol registers itself with the transport as a streaming producer, so the
  transport tells it when its send buffer is full; ``write()`` then blocks until it has drained.

:func:`listen` runs a handler per accepted connection in its own green thread; :func:`connect`
opens a client connection.  Both accept a port, a ``(host, port)`` tuple, a Twisted endpoint
description string or an endpoint object (see :mod:`txgreen._endpoints`).
"""

from __future__ import annotations

import contextlib
import errno
import sys
from collections import deque
from collections.abc import Callable, Iterator
from types import TracebackType
from typing import Any

from greenlet import GreenletExit, getcurrent
from greenlet import greenlet as _greenlet
from twisted.internet import abstract
from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.error import (
    ConnectionAborted,
    ConnectionClosed,
    ConnectionDone,
    ConnectionLost,
)
from twisted.internet.interfaces import (
    IAddress,
    IHalfCloseableDescriptor,
    IHalfCloseableProtocol,
    IHandshakeListener,
    IPushProducer,
)
from twisted.internet.protocol import Factory, Protocol, connectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer  # type: ignore[import-untyped]

from txgreen._block import block_on
from txgreen._endpoints import ClientAddress, ServerAddress, client_endpoint, server_endpoint
from txgreen._event import Event, park
from txgreen._greenthread import current_hub_and_greenlet
from txgreen._hub import STOPPED, TIMED_OUT, Hub, Waiter, get_hub
from txgreen._pool import Group
from txgreen._timeout import Timeout
from txgreen._util import failure_of, fresh_copy, own_failure
from txgreen.errors import ReactorStopped, TxgreenError

__all__ = [
    "ConcurrentReadError",
    "HalfCloseNotSupported",
    "IncompleteReadError",
    "LineTooLong",
    "Listener",
    "Stream",
    "StreamClosed",
    "StreamError",
    "StreamTimeout",
    "connect",
    "listen",
    "serve",
]

log = Logger(namespace="txgreen.stream")

HIGH_WATER = 256 * 1024
LOW_WATER = 64 * 1024
DEFAULT_LINE_LIMIT = 65536

# How many streams have a reader parked right now (see _StreamProtocol.dataReceived).
_parked_readers = 0


# -- errors ---------------------------------------------------------------------------------------


class StreamError(TxgreenError):
    """Base class of the errors a :class:`Stream` raises itself."""


class StreamClosed(StreamError):
    """The stream was closed (by :meth:`Stream.close`/:meth:`Stream.abort`) or its connection is
    gone, so it cannot be read or written any more."""


class IncompleteReadError(StreamError):
    """The stream ended before the expected bytes arrived; ``partial`` holds what did arrive."""

    def __init__(self, partial: bytes, expected: int | None) -> None:
        what = f"{expected} bytes" if expected is not None else "the separator"
        super().__init__(f"the stream ended after {len(partial)} bytes, before {what} arrived")
        self.partial = partial
        self.expected = expected


class LineTooLong(StreamError):
    """No separator within ``limit`` bytes; the data stays buffered (read it with ``read``)."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"no line separator within the limit of {limit} bytes")
        self.limit = limit


class StreamTimeout(Timeout):
    """A read or write waited longer than the stream's own ``timeout``.

    A :class:`txgreen.Timeout` (so ``except txgreen.Timeout`` and ``except TimeoutError`` catch
    it), raised by the stream's deadline only: an enclosing ``with txgreen.Timeout(...)`` raises
    its own instance.  A ``listen`` handler that ends with it is logged as a peer error (a
    client that went quiet), in one line without a traceback.
    """


class ConcurrentReadError(StreamError):
    """A second green thread tried to read a stream while another one is reading it."""


class HalfCloseNotSupported(StreamError):
    """:meth:`Stream.write_eof` on a transport that cannot half-close (TLS, for one)."""


def _connection_error(reason: Failure) -> BaseException:
    """The exception a stream raises for the Failure its connection was lost with: a fresh copy.

    Twisted hands the same exception object to every connection lost the same way (a reset:
    ``ConnectionLost``); raising that object would grow its one traceback with every connection
    and keep every finished handler's frames alive.  A copy has the same class, arguments and
    attributes, and a traceback of its own.
    """
    value = reason.value
    assert value is not None
    try:
        return fresh_copy(value)
    except Exception:  # pragma: no cover - an exception class that cannot be copied
        return StreamClosed(f"the connection was lost ({reason.getErrorMessage()})")


# send() errors that only mean "not now": the data then goes through transport.write().
_SEND_RETRY = frozenset({errno.EAGAIN, errno.EWOULDBLOCK, errno.EINTR, errno.ENOBUFS})


def _direct_send_types() -> tuple[type, ...]:
    from twisted.internet import tcp, unix

    return (tcp.Server, tcp.Client, unix.Server, unix.Client)


# Transport classes whose socket Stream.write may send to directly when nothing is queued.
_DIRECT_SEND = frozenset(_direct_send_types())


def _tls_layer(transport: object) -> Any:
    """The transport if it is Twisted's TLS layer (``TLSMemoryBIOProtocol``), else None.

    Looked up in ``sys.modules``: when ``twisted.protocols.tls`` was never imported, no
    connection can be using it (and pyOpenSSL may not even be installed).
    """
    tls = sys.modules.get("twisted.protocols.tls")
    if tls is not None and isinstance(transport, tls.TLSMemoryBIOProtocol):
        return transport
    return None


# -- the protocol ---------------------------------------------------------------------------------


@implementer(IHalfCloseableProtocol, IHandshakeListener, IPushProducer)
class _StreamProtocol(Protocol):
    """Reactor side of a Stream: runs in the hub, forwards everything to the stream."""

    stream: Stream

    def __init__(self, on_made: Callable[[Stream], object] | None = None) -> None:
        self.stream = Stream(self)
        self._on_made = on_made

    def connectionMade(self) -> None:
        transport: Any = self.transport
        assert transport is not None
        self.stream._transport = transport
        self.stream._tls = _tls_layer(transport) is not None
        # Let the transport tell us when its send buffer is full (pauseProducing) and when it
        # has drained (resumeProducing): that is what makes write() block.
        transport.registerProducer(self, True)
        self.stream._producer_registered = True
        if self._on_made is not None:
            self._on_made(self.stream)

    def dataReceived(self, data: bytes) -> None:
        s = self.stream
        s._buf += data
        reader = s._reader
        if reader is not None and len(s._buf) >= s._want:
            s._reader = None
            if _parked_readers > 1:
                # Other streams are waiting too, so this poll has likely more data for them:
                # wake the reader after the reactor has handled the whole batch of events.
                # The replies then go out in a burst, which the peers read in fewer wake-ups
                # (measured with benchmarks/bench_echo.py at 100 connections: the client's
                # context switches per round trip fell, the round trips per second rose).
                reader.resume_later(None)
            else:
                # The only stream waiting: switch straight into its reader (we run in the
                # hub), so that its reply goes out within this same reactor callback
                # instead of one hub turn later.
                reader.resume(None)
        # Stop reading from the socket past the high-water mark, unless a reader is waiting
        # for more than that (then it gets it; the buffer is bounded by what it asked for).
        if len(s._buf) >= s.high_water and s._reader is None and not s._recv_paused and not s._lost:
            s._recv_paused = True
            s._transport.pauseProducing()

    def handshakeCompleted(self) -> None:
        # TLS: also called when the handshake worked but the client's hostname check then
        # failed and aborted the connection; connectionLost (with the error) comes next.
        s = self.stream
        if getattr(s._transport, "disconnecting", False):
            return
        s._secured = True
        waiters = s._secure_waiters
        while waiters:
            waiters.popleft().resume_later(None)

    def readConnectionLost(self) -> None:
        s = self.stream
        s._eof = True
        if s._send_error is not None and not s._closed:
            s._error = s._send_lost()  # that "end of file" was a reset our send() met first
        s._wake_reader()

    def writeConnectionLost(self) -> None:
        pass

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.stream._on_lost(reason)

    # IPushProducer, called by the transport about its send buffer.
    def pauseProducing(self) -> None:
        self.stream._write_paused = True

    def resumeProducing(self) -> None:
        s = self.stream
        s._write_paused = False
        s._wake_writers(None)

    def stopProducing(self) -> None:
        pass


class _ServerFactory(Factory):
    def __init__(self, listener: Listener) -> None:
        self.listener = listener
        self._accepted = listener._accepted  # one bound method for all the connections

    def buildProtocol(self, addr: IAddress | None) -> _StreamProtocol:
        return _StreamProtocol(self._accepted)


class _ClientFactory(Factory):
    def __init__(self) -> None:
        self.protocols: list[_StreamProtocol] = []

    def buildProtocol(self, addr: IAddress | None) -> _StreamProtocol:
        p = _StreamProtocol()
        self.protocols.append(p)
        return p


# -- Stream ----------------------------------------------------------------------------------------


class Stream:
    """One connection, read and written by green threads.

    Made by :func:`connect` or handed to a :func:`listen` handler; not created directly.

    ``timeout`` (seconds, or None) bounds every read and write call as a whole: when it passes
    the call raises :class:`txgreen.Timeout` and the stream stays usable (data already
    received stays buffered).  ``high_water``/``low_water`` (bytes) are the receive buffer's
    marks: past ``high_water`` unread bytes the transport stops reading from the socket, and
    it starts again once the buffer is under ``low_water``.
    """

    timeout: float | None
    high_water: int
    low_water: int
    # The error of a write-through send() that failed (a reset, a broken pipe): set on the
    # instance only when one happens.  The send consumed the socket's pending error, so the
    # transport may then see a clean end of file; _on_lost reports the connection as lost.
    _send_error: OSError | None = None

    def __init__(self, protocol: _StreamProtocol) -> None:
        self._protocol = protocol
        self._transport: Any = None
        self.timeout = None
        self.high_water = HIGH_WATER
        self.low_water = LOW_WATER
        self._buf = bytearray()
        self._eof = False  # the peer will send nothing more (clean EOF or connection lost)
        self._error: BaseException | None = None  # raised once, after the buffered data
        self._reader: Waiter | None = None
        self._want = 0  # wake the reader once this many bytes are buffered
        self._read_owner: _greenlet | None = None
        self._recv_paused = False
        self._write_paused = False
        # The waiter queues are made when first needed: most streams never have a writer
        # blocked, nor anyone in wait_closed() or a TLS handshake wait while they are open,
        # and an empty deque costs 760 bytes (benchmarks/bench_memory.py).
        self._writers: deque[Waiter] | None = None
        self._closed = False  # close() or abort() was called
        self._write_closed = False  # write_eof() was called
        self._lost = False  # connectionLost has run
        self._lost_reason: Failure | None = None
        self._lost_waiters: deque[Waiter] | None = None
        self._tls = False  # the transport is Twisted's TLS layer
        self._producer_registered = False  # our protocol is the transport's producer
        self._secured = False  # TLS: the handshake completed (and the peer was verified)
        self._secure_waiters: deque[Waiter] | None = None

    def __repr__(self) -> str:
        state = "closed" if self._closed else ("lost" if self._lost else "open")
        peer = self._transport.getPeer() if self._transport is not None else None
        return f"<txgreen.Stream {state} peer={peer} buffered={len(self._buf)}>"

    # -- properties ------------------------------------------------------------------------

    @property
    def transport(self) -> Any:
        """The underlying Twisted transport."""
        return self._transport

    @property
    def peer(self) -> IAddress:
        """The remote address (``transport.getPeer()``)."""
        peer: IAddress = self.transport.getPeer()
        return peer

    @property
    def host(self) -> IAddress:
        """The local address (``transport.getHost()``)."""
        host: IAddress = self.transport.getHost()
        return host

    @property
    def buffered(self) -> int:
        """How many received bytes are waiting to be read."""
        return len(self._buf)

    @property
    def closed(self) -> bool:
        """True once :meth:`close` or :meth:`abort` was called or the connection was lost."""
        return self._closed or self._lost

    # -- waiting helpers ---------------------------------------------------------------------

    def _deadline(self, hub: Hub) -> float | None:
        return None if self.timeout is None else hub.reactor.seconds() + self.timeout

    def _park(self, waiter: Waiter, deadline: float | None) -> Any:
        hub = waiter.hub
        if deadline is None:
            return hub.wait(waiter)
        remaining = deadline - hub.reactor.seconds()
        return hub.wait(waiter, max(remaining, 0.0), StreamTimeout(self.timeout))

    def _wake_reader(self) -> None:
        reader = self._reader
        if reader is not None:
            self._reader = None
            reader.resume_later(None)

    def _wake_writers(self, error: Callable[[], BaseException] | None) -> None:
        # Each writer gets an exception object of its own (one object raised in several green
        # threads would collect all their frames in its one traceback).
        writers = self._writers
        while writers:
            writers.popleft().resume_later(None, None if error is None else error())

    def _on_lost(self, reason: Failure) -> None:
        # ``reason`` may be an object Twisted hands to every connection lost the same way
        # (see txgreen._util): it is kept only to be read, never raised nor changed.
        self._lost = True
        if self._send_error is not None and reason.check(ConnectionDone):  # type: ignore[no-untyped-call]
            # Our write-through send() took the socket's error (a reset) before Twisted could
            # see it: the connection did not end cleanly, whatever the transport saw since.
            reason = failure_of(self._send_lost())
        self._lost_reason = reason
        if not self._eof:
            self._eof = True
            clean = reason.check(ConnectionDone, ConnectionAborted)  # type: ignore[no-untyped-call]
            if not self._closed and not clean:
                self._error = _connection_error(reason)
        self._wake_reader()
        self._wake_writers(lambda: self._closed_error("the connection was lost while writing"))
        for waiters in (self._lost_waiters, self._secure_waiters):
            while waiters:
                waiters.popleft().resume_later(None)

    def _send_lost(self) -> ConnectionLost:
        """The error for a connection whose reset our write-through send() met first."""
        e = self._send_error
        return ConnectionLost(e.strerror if e is not None and e.strerror else "send() failed")

    def _closed_error(self, what: str) -> StreamClosed:
        if self._closed:
            return StreamClosed(f"{what}: the stream was closed")
        reason = self._lost_reason
        detail = f" ({reason.getErrorMessage()})" if reason is not None else ""
        err = StreamClosed(f"{what}: the connection is closed{detail}")
        if reason is not None:
            # A copy of the connection's error, without a traceback: its type tells why.
            err.__cause__ = _connection_error(reason)
        return err

    # -- reading ---------------------------------------------------------------------------

    def _begin_read(self, what: str) -> _greenlet:
        cur = getcurrent()
        owner = self._read_owner
        if owner is not None and owner is not cur:
            raise ConcurrentReadError(
                f"{what}: another green thread ({owner!r}) is already reading this "
                "stream; only one green thread may read a stream at a time (one reader and one "
                "writer may work concurrently)"
            )
        if self._closed:
            raise StreamClosed(f"{what}: the stream was closed")
        return cur

    def _wait_for(self, want: int, what: str, deadline: float | None) -> None:
        """Park the reader until ``want`` bytes are buffered or the stream ends."""
        cur, hub = current_hub_and_greenlet(what)
        waiter = Waiter(hub, cur)
        self._reader = waiter
        self._want = want
        self._read_owner = cur
        if self._recv_paused:
            # The reader needs more than the buffer holds: let the transport read again.
            self._recv_paused = False
            self._transport.resumeProducing()
        global _parked_readers
        _parked_readers += 1
        try:
            if deadline is None:
                hub.wait(waiter)
            else:
                self._park(waiter, deadline)
        finally:
            _parked_readers -= 1
            if self._reader is waiter:
                self._reader = None
        if self._closed:
            raise StreamClosed(f"{what}: the stream was closed while reading")

    def _take(self, n: int) -> bytes:
        buf = self._buf
        if n >= len(buf):
            data = bytes(buf)
            buf.clear()
        else:
            with memoryview(buf) as view:
                data = bytes(view[:n])  # one copy (buf[:n] would make two)
            del buf[:n]
        if self._recv_paused and len(buf) < self.low_water and not self._lost:
            self._recv_paused = False
            self._transport.resumeProducing()
        return data

    def _end_of_data(self) -> bytes:
        """At EOF with nothing buffered: raise the pending connection error once, else b""."""
        err = self._error
        if err is not None:
            self._error = None
            raise err
        return b""

    def _loop(self, what: str, ready: Callable[[], int]) -> int:
        """Wait until ``ready()`` (the bytes still wanted, or 0) is 0 or the stream ended.

        Returns 0 when satisfied, else the number of bytes that would satisfy the next wait.
        """
        self._begin_read(what)
        need = ready()
        if need == 0 or self._eof:
            return need
        deadline = self._deadline(get_hub())
        try:
            while need and not self._eof:
                self._wait_for(need, what, deadline)
                need = ready()
        finally:
            self._read_owner = None
        return need

    def recv(self, max_bytes: int = 65536) -> bytes:
        """Return what is buffered (at least one byte, at most ``max_bytes``); b"" at EOF.

        Returns at once when anything is buffered.  A connection error (reset, lost) is raised
        once every byte received before it has been returned.
        """
        if max_bytes <= 0:
            raise ValueError(f"max_bytes must be positive, not {max_bytes!r}")
        if self._read_owner is None and not self._closed:
            if self._buf:
                return self._take(max_bytes)
            if not self._eof and self.timeout is None:
                # The common case (a server loop waiting for the next request): one plain
                # wait for the first byte, without the general loop below.
                try:
                    self._wait_for(1, "Stream.recv()", None)
                finally:
                    self._read_owner = None
                if self._buf:
                    return self._take(max_bytes)
        self._loop("Stream.recv()", lambda: 0 if self._buf else 1)
        if self._buf:
            return self._take(max_bytes)
        return self._end_of_data()

    def read(self, n: int = -1) -> bytes:
        """Read ``n`` bytes, fewer only at EOF; with ``n=-1`` read until EOF.

        Like a file's ``read``: b"" means EOF.  A connection error is raised once every byte
        received before it has been returned.
        """
        if n == 0:
            return b""
        if n < 0:
            self._loop("Stream.read()", lambda: 0 if self._eof else len(self._buf) + 1)
            if self._buf:
                return self._take(len(self._buf))
            return self._end_of_data()
        self._loop("Stream.read()", lambda: max(n - len(self._buf), 0) and n)
        if self._buf:
            return self._take(n)
        return self._end_of_data()

    def read_exactly(self, n: int) -> bytes:
        """Read exactly ``n`` bytes; :class:`IncompleteReadError` (with ``.partial``) at EOF."""
        if n < 0:
            raise ValueError(f"n must be >= 0, not {n!r}")
        if len(self._buf) >= n and self._read_owner is None and not self._closed:
            return self._take(n)
        self._loop("Stream.read_exactly()", lambda: 0 if len(self._buf) >= n else n)
        if len(self._buf) >= n:
            return self._take(n)
        if not self._buf:
            self._end_of_data()
        raise IncompleteReadError(self._take(len(self._buf)), n)

    def read_until(self, separator: bytes = b"\n", limit: int = DEFAULT_LINE_LIMIT) -> bytes:
        """Read up to and including ``separator``.

        :class:`LineTooLong` if the separator is not within ``limit`` bytes (the data stays
        buffered); :class:`IncompleteReadError` (with ``.partial``) if the stream ends first.
        """
        line = self._until(separator, limit, "Stream.read_until()")
        if line is not None:
            return line
        if not self._buf:
            self._end_of_data()
        raise IncompleteReadError(self._take(len(self._buf)), None)

    def readline(self, limit: int = DEFAULT_LINE_LIMIT) -> bytes:
        """Read one line, ending with b"\\n" (or what is left at EOF; b"" at EOF).

        :class:`LineTooLong` if no newline comes within ``limit`` bytes (the data stays
        buffered).
        """
        line = self._until(b"\n", limit, "Stream.readline()")
        if line is not None:
            return line
        if self._buf:
            return self._take(len(self._buf))
        return self._end_of_data()

    def _until(self, sep: bytes, limit: int, what: str) -> bytes | None:
        if not sep:
            raise ValueError("the separator must not be empty")
        if limit < len(sep):
            raise ValueError(f"limit must be at least the separator's length, not {limit!r}")
        buf = self._buf
        seplen = len(sep)
        scanned = 0
        found = -1

        def ready() -> int:
            nonlocal scanned, found
            found = buf.find(sep, scanned)
            if found >= 0:
                return 0
            if len(buf) >= limit:
                return 0
            scanned = max(len(buf) - seplen + 1, 0)
            return len(buf) + 1

        self._loop(what, ready)
        if found >= 0:
            end = found + seplen
            if end > limit:
                raise LineTooLong(limit)
            return self._take(end)
        if len(buf) >= limit:
            raise LineTooLong(limit)
        return None

    def __iter__(self) -> Iterator[bytes]:
        return self

    def __next__(self) -> bytes:
        line = self.readline()
        if not line:
            raise StopIteration
        return line

    # -- writing ---------------------------------------------------------------------------

    def write(self, data: bytes | bytearray | memoryview) -> None:
        """Send ``data``; block while the transport's send buffer is full.

        Raises :class:`StreamClosed` once the stream is closed or its connection lost, or
        after :meth:`write_eof`.
        """
        if type(data) is not bytes:
            if isinstance(data, str):
                raise TypeError("Stream.write() takes bytes, not str; encode it first")
            data = bytes(data)
        if self._closed or self._lost or self._write_closed:
            raise self._write_error("Stream.write()")
        t = self._transport
        if (
            not self._tls
            and type(t) in _DIRECT_SEND
            and not t.dataBuffer
            and not t._tempDataLen
            and not t.disconnecting
        ):
            # Write-through: Twisted's transport has nothing queued, so hand the data to the
            # kernel now instead of queueing it for the next reactor iteration (which costs an
            # epoll modify, a poll and another modify).  Whatever the kernel does not take, and
            # any error, goes through transport.write() and Twisted's normal paths.
            try:
                sent = t.socket.send(data)
            except OSError as e:
                sent = 0
                if e.errno not in _SEND_RETRY:
                    self._send_error = e
            if sent:
                data = data[sent:]
        if data:
            t.write(data)
        if self._write_paused:
            self._wait_writable("Stream.write()")

    def writelines(self, lines: list[bytes]) -> None:
        """Write each of ``lines`` (no separators are added)."""
        for line in lines:
            self.write(line)

    def _write_error(self, what: str) -> StreamClosed:
        if self._write_closed and not self._closed and not self._lost:
            return StreamClosed(f"{what}: write_eof() was called, the stream takes no more data")
        return self._closed_error(what)

    def _wait_writable(self, what: str) -> None:
        cur, hub = current_hub_and_greenlet(what)
        waiter = Waiter(hub, cur)
        writers = self._writers
        if writers is None:
            writers = self._writers = deque()
        writers.append(waiter)
        try:
            self._park(waiter, self._deadline(hub))
        finally:
            if waiter.active or waiter in writers:
                with contextlib.suppress(ValueError):
                    writers.remove(waiter)

    def drain(self) -> None:
        """Wait until the data written so far has been handed to the kernel.

        Over TLS that includes the TLS layer's own buffers (data written before the handshake
        completed waits there).  Raises :class:`StreamClosed` if the connection is gone.
        """
        while True:
            if self._closed or self._lost:
                raise self._closed_error("Stream.drain()")
            if self._write_paused:
                # The transport said its buffer is full: wait until it says it drained.
                self._wait_writable("Stream.drain()")
                continue
            t: Any = self._transport
            producer: Any = self._protocol  # what the socket transport calls back
            tls = _tls_layer(t)
            if tls is not None:
                aggregator = getattr(tls, "_aggregator", None)
                if aggregator is not None:
                    aggregator.flush()  # small writes wait there for the next reactor turn
                if self._write_paused or tls._appSendBuffer:
                    # Buffered until the handshake completes; the layer paused us and will
                    # resume us then.
                    if not self._write_paused:
                        return  # not paused: we would never be woken; cannot tell
                    continue
                t = tls.transport
                producer = tls._producer
            if not isinstance(t, abstract.FileDescriptor) or producer is None:
                return
            if t.producer is not producer:
                return
            if not (t._tempDataLen or len(t.dataBuffer) - t.offset):
                return
            # The transport calls resumeProducing() on its streaming producer once its buffer
            # is empty only if it believes it paused it; say it did (and so for TLS's
            # go-between, which passes resumeProducing() on only after a pauseProducing()).
            t.producerPaused = True
            if producer is not self._protocol:
                membrane: Any = producer
                membrane._producerPaused = True
            self._write_paused = True
            self._wait_writable("Stream.drain()")

    def write_eof(self) -> None:
        """Half-close: send EOF after the buffered data; reading goes on.

        Raises :class:`HalfCloseNotSupported` if the transport cannot half-close (TLS: Twisted
        answers a TLS close by closing both directions); the stream stays usable then.
        """
        if self._closed or self._lost:
            raise self._closed_error("Stream.write_eof()")
        if self._write_closed:
            return
        t = self.transport
        if self._tls or _tls_layer(t) is not None:
            raise HalfCloseNotSupported(
                "Stream.write_eof(): a TLS connection cannot be half-closed (Twisted's TLS "
                "layer answers a TLS close_notify by closing the whole connection); end the "
                "request in the protocol itself (a length, a terminator) or close() the stream"
            )
        if not IHalfCloseableDescriptor.providedBy(t) or not hasattr(
            type(t), "loseWriteConnection"
        ):
            # (A wrapping transport may only forward loseWriteConnection to the socket below
            # it through __getattr__, skipping its own layer: that is not a half-close.)
            raise HalfCloseNotSupported(
                f"Stream.write_eof(): this transport ({type(t).__name__}) cannot half-close"
            )
        self._write_closed = True
        self._release_producer()
        t.loseWriteConnection()

    def _release_producer(self) -> None:
        # A transport with a registered producer never finishes closing: let it go.
        # (Over TLS the socket's producer is TLS's go-between, not us: remember instead.)
        if self._producer_registered:
            self._producer_registered = False
            self._transport.unregisterProducer()
        self._write_paused = False
        self._wake_writers(None)

    # -- closing ---------------------------------------------------------------------------

    def close(self, wait: bool = False, timeout: float | None = None) -> None:
        """Close the connection once the data written so far has been sent.

        With ``wait=True``, block until the connection is closed; if ``timeout`` passes first
        the connection is aborted (and that is waited for).  Reading or writing a closed stream
        raises :class:`StreamClosed`; closing again does nothing.
        """
        if not self._closed:
            self._closed = True
            if not self._lost:
                self._release_producer()
                self.transport.loseConnection()
            self._wake_reader()
            self._wake_writers(lambda: StreamClosed("Stream.write(): the stream was closed"))
        if wait:
            self.wait_closed(timeout)

    def abort(self, wait: bool = False) -> None:
        """Close the connection at once, dropping unsent data (the peer sees a reset)."""
        if not self._lost:
            self._closed = True
            self._release_producer()
            self.transport.abortConnection()
        self._closed = True
        self._wake_reader()
        self._wake_writers(lambda: StreamClosed("Stream.write(): the stream was aborted"))
        if wait:
            self.wait_closed()

    def wait_closed(self, timeout: float | None = None) -> None:
        """Wait until the connection is closed; past ``timeout`` abort it (and wait for that)."""
        if self._lost:
            return
        cur, hub = current_hub_and_greenlet("Stream.wait_closed()")
        waiter = Waiter(hub, cur)
        if self._lost_waiters is None:
            self._lost_waiters = deque()
        if park(self._lost_waiters, waiter, waiter, timeout, timed=True) is TIMED_OUT:
            self.abort(wait=True)

    def __enter__(self) -> Stream:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc is None:
            self.close(wait=True)
        else:
            self.abort(wait=not isinstance(exc, ReactorStopped))


# -- servers -------------------------------------------------------------------------------------

# What a peer can make a handler end with by what it does (resetting or closing the connection,
# sending a line longer than the limit): ordinary network life, not a bug of the server.
_PEER_ERRORS: tuple[type[BaseException], ...] = (
    StreamClosed,
    LineTooLong,
    IncompleteReadError,
    StreamTimeout,  # the stream's own deadline: a peer that went quiet
    ConnectionClosed,  # Twisted's ConnectionLost, ConnectionDone, ConnectionAborted, ...
    ConnectionError,  # ConnectionResetError, BrokenPipeError, ...
)

_MAX_ERROR_TEXT = 200  # characters of a peer error's message in its log line


def _log_handler_failure(exc: BaseException, failed: str, ended: str, **fields: Any) -> None:
    """Log that a connection handler ended with ``exc``: the one place that decides how.

    A peer error (``_PEER_ERRORS``) is logged with the format ``ended`` (which gets the field
    ``error``, the exception's type and message) at info level, in one short line without a
    traceback; the event holds no reference to the exception.  A remote client that resets its
    connections can make the log grow by one such line per connection, no more.  Any other
    exception is a bug of the handler: logged with the format ``failed`` at error level, with
    its traceback.  ``fields`` are the formats' other values.
    """
    if isinstance(exc, _PEER_ERRORS):
        text = f"{type(exc).__name__}: {exc}".replace("\n", " ").rstrip(". ")
        if len(text) > _MAX_ERROR_TEXT:
            text = text[: _MAX_ERROR_TEXT - 3] + "..."
        log.info(ended, error=text, **fields)
    else:
        log.failure(failed, failure_of(exc), **fields)


class PortCloser:
    """Stops a listening port once: when the reactor's shutdown starts, or when its owner says.

    At the start of the shutdown (a "before" trigger) the port stops accepting at once, so a
    server whose shutdown waits (for a thread job, a drain) does not take connections it would
    never answer.  The trigger returns the closing's Deferred: the socket is really closed
    before the shutdown goes on.
    """

    __slots__ = ("_closing", "_trigger", "port", "reactor")

    def __init__(self, reactor: Any, port: Any) -> None:
        self.reactor = reactor
        self.port = port
        self._closing: Deferred[None] | None = None
        self._trigger: Any = reactor.addSystemEventTrigger("before", "shutdown", self._at_shutdown)

    def _at_shutdown(self) -> Deferred[None]:
        self._trigger = None  # it has fired: nothing to remove any more
        return self.stop()

    def stop(self) -> Deferred[None]:
        """Stop listening (the first call does it); a new Deferred that fires once closed."""
        if self._trigger is not None and get_hub().state != STOPPED:
            # Not shutting down: forget the trigger.  (During the shutdown it stays, so that
            # the shutdown waits for the socket to be closed.)
            trigger, self._trigger = self._trigger, None
            with contextlib.suppress(ValueError, KeyError):
                self.reactor.removeSystemEventTrigger(trigger)
        if self._closing is None:
            self._closing = maybeDeferred(self.port.stopListening)
            self._closing.addErrback(
                lambda f: log.failure("txgreen: error closing the port {port!r}", f, port=self.port)
            )
        done: Deferred[None] = Deferred()
        self._closing.addBoth(lambda _: done.callback(None))
        return done


class Listener:
    """A listening port whose accepted connections each run a handler in a green thread.

    ``address`` is the bound address and ``port`` its port number; ``handlers`` is a
    :class:`txgreen.Group` of the handler threads still running.
    """

    def __init__(
        self,
        handler: Callable[[Stream], object],
        close_timeout: float | None,
        reactor: Any,
        handshake_timeout: float | None = 30.0,
    ) -> None:
        self._handler = handler
        self.close_timeout = close_timeout
        self.handshake_timeout = handshake_timeout
        self.reactor = reactor
        self.handlers = Group()
        self.listening_port: Any = None
        self._closer: PortCloser | None = None
        self._address: IAddress | None = None  # kept: a closed port cannot tell it any more
        self._closed = Event()

    def __repr__(self) -> str:
        return f"<txgreen.Listener on {self._address} with {len(self.handlers)} handlers>"

    @property
    def address(self) -> IAddress:
        """The address the port is bound to."""
        assert self._address is not None
        return self._address

    @property
    def port(self) -> int:
        """The bound port number (for TCP: useful after listening on port 0).

        A UNIX socket has no port: this raises AttributeError then (use ``address.name``).
        """
        address = self.address
        port = getattr(address, "port", None)
        if port is None:
            raise AttributeError(
                f"Listener.port: {address!r} has no port number; use Listener.address"
            )
        return int(port)

    def _accepted(self, stream: Stream) -> None:
        # In the hub, from connectionMade.
        if self._closed.is_set() or get_hub().state == STOPPED:
            stream.abort()
            return
        self.handlers.spawn(self._serve_one, stream)

    def _serve_one(self, stream: Stream) -> None:
        try:
            if stream._tls and not self._secure(stream):
                stream.abort()
            else:
                self._handler(stream)
        except GreenletExit:
            stream.abort()
        except ReactorStopped:
            stream.abort()
            return
        except Exception as e:
            _log_handler_failure(
                e,
                failed="txgreen: handler {handler!r} failed on the connection from {peer}; "
                "aborting the connection",
                ended="txgreen: handler {handler!r} on the connection from {peer} ended with "
                "{error}; aborting the connection",
                handler=self._handler,
                peer=stream.peer,
            )
            stream.abort()
        else:
            stream.close()
        # Leave only once the connection is fully closed (the port's owner may be waiting).
        for _ in range(3):
            try:
                stream.wait_closed(self.close_timeout)
                return
            except GreenletExit:
                stream.abort()
            except ReactorStopped:
                return

    def _secure(self, stream: Stream) -> bool:
        """TLS: wait for the handshake; False (logged) if it failed or took too long.

        A handler runs only on a connection whose handshake completed, so it never has to
        tell a client that gave up on the server's certificate (or spoke no TLS at all) from
        an error of its own protocol.
        """
        try:
            _wait_secured(stream, self.handshake_timeout, "listen()")
        except Timeout:
            log.info(
                "txgreen: no TLS handshake from {peer} within {timeout} s; dropping the "
                "connection (listen(handshake_timeout=...))",
                peer=stream.peer,
                timeout=self.handshake_timeout,
            )
            return False
        except Exception as e:
            log.info(
                "txgreen: the TLS handshake with {peer} failed, the handler does not run: "
                "{error!r}",
                peer=stream.peer,
                error=e,
            )
            return False
        return True

    def close(self) -> None:
        """Stop accepting connections; block until the port is closed.

        Running handlers go on (see :meth:`join` and :meth:`kill`).
        """
        if self._closed.is_set():
            return
        self._closed.set()
        if self._closer is not None:
            block_on(self._closer.stop())

    def join(self, timeout: float | None = None) -> bool:
        """Wait until every handler has finished; False if ``timeout`` passed first."""
        return self.handlers.join(timeout)

    def kill(self, block: bool = True, timeout: float | None = None) -> None:
        """Kill the running handlers (their connections are aborted)."""
        self.handlers.kill(block=block, timeout=timeout)

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until :meth:`close` is called; False if ``timeout`` passed first."""
        return self._closed.wait(timeout)

    def __enter__(self) -> Listener:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
        self.kill()


def _reactor_of(reactor: Any) -> Any:
    return reactor if reactor is not None else get_hub().reactor


def listen(
    endpoint: ServerAddress,
    handler: Callable[[Stream], object],
    *,
    reactor: Any = None,
    close_timeout: float | None = 30.0,
    handshake_timeout: float | None = 30.0,
) -> Listener:
    """Listen on ``endpoint`` and run ``handler(stream)`` for each connection in a green thread.

    ``endpoint`` is a port (``8080``: every interface), a ``(host, port)`` tuple, an endpoint
    description (``"tcp:0:interface=127.0.0.1"``) or an ``IStreamServerEndpoint``; anything
    else raises ``TypeError`` naming these forms.  When the handler returns, the connection
    is closed; when it raises, the connection is aborted and the error is logged: one line at
    info level for what a peer causes (:class:`StreamClosed`, :class:`LineTooLong`,
    :class:`IncompleteReadError`, Twisted's ``ConnectionLost``/``ConnectionDone``,
    ``ConnectionError``), with its traceback at error level for anything else.  After the
    handler, its thread waits for the connection to close, at most ``close_timeout`` seconds
    (then it aborts it).  Blocks until the port listens (raising the error if it cannot).
    When the reactor's shutdown starts, the port stops accepting at once.

    Over TLS the handler runs once the handshake has completed; a connection whose handshake
    fails, or does not complete within ``handshake_timeout`` seconds, is dropped (logged at
    info level) without running the handler.
    """
    reactor = _reactor_of(reactor)
    ep: Any = server_endpoint(reactor, endpoint, "listen()")
    listener = Listener(handler, close_timeout, reactor, handshake_timeout)
    port = block_on(ep.listen(_ServerFactory(listener)))
    listener.listening_port = port
    listener._address = port.getHost()
    listener._closer = PortCloser(reactor, port)
    return listener


def serve(
    endpoint: ServerAddress,
    handler: Callable[[Stream], object],
    *,
    reactor: Any = None,
    on_listen: Callable[[Listener], object] | None = None,
    close_timeout: float | None = 30.0,
    handshake_timeout: float | None = 30.0,
) -> None:
    """:func:`listen`, then block until the listener is closed or this green thread is killed.

    ``on_listen(listener)`` is called once the port listens (to learn the port, or to keep the
    listener to close it later).  On the way out the port is closed and the handlers still
    running are killed.
    """
    listener = listen(
        server_endpoint(_reactor_of(reactor), endpoint, "serve()"),
        handler,
        reactor=reactor,
        close_timeout=close_timeout,
        handshake_timeout=handshake_timeout,
    )
    try:
        if on_listen is not None:
            on_listen(listener)
        listener.wait()
    finally:
        try:
            listener.close()
        finally:
            listener.kill()


# -- clients ---------------------------------------------------------------------------------------


def connect(
    endpoint: ClientAddress,
    *,
    timeout: float | None = None,
    reactor: Any = None,
) -> Stream:
    """Connect to ``endpoint`` and return the :class:`Stream`.

    ``endpoint`` is a port on 127.0.0.1 (``8080``), a ``(host, port)`` tuple (the host may be
    a name: IPv4 and IPv6 are tried, as ``HostnameEndpoint`` does), a client endpoint
    description (``"tcp:host=127.0.0.1:port=8080"``) or an ``IStreamClientEndpoint``; anything
    else raises ``TypeError`` naming these forms.  Raises the connection error (for example
    Twisted's ``ConnectionRefusedError``), or :class:`txgreen.Timeout` after ``timeout`` seconds.

    Over TLS (``"tls:host=...:port=..."``) it returns once the handshake has completed and
    the server's certificate was accepted; a rejected certificate raises the TLS error
    (``OpenSSL.SSL.Error``, ``service_identity.VerificationError``).  ``timeout`` covers the
    handshake too.
    """
    reactor = _reactor_of(reactor)
    ep: Any = client_endpoint(reactor, endpoint, "connect()")
    factory = _ClientFactory()
    start = reactor.seconds()
    try:
        # (own_failure: the connection error raised here is never an object Twisted shares.)
        protocol = block_on(ep.connect(factory).addErrback(own_failure), timeout)
        assert isinstance(protocol, _StreamProtocol)
        stream = protocol.stream
        if stream._tls:
            remaining = None if timeout is None else timeout - (reactor.seconds() - start)
            _wait_secured(stream, remaining, "connect()", timeout)
    except BaseException:
        # Interrupted after the connection was made: do not leave it open.
        for p in factory.protocols:
            if p.transport is not None and not p.stream._lost:
                p.transport.abortConnection()
        raise
    return stream


def _wait_secured(
    stream: Stream, remaining: float | None, what: str, timeout: float | None = None
) -> None:
    """Wait for a TLS connection's handshake; raise its error if it failed.

    ``remaining`` bounds the wait (:class:`Timeout` after it, reporting ``timeout``, the
    caller's whole budget, which defaults to ``remaining``).
    """
    if timeout is None:
        timeout = remaining
    if not (stream._secured or stream._lost):
        cur, hub = current_hub_and_greenlet(what)
        waiter = Waiter(hub, cur)
        waiters = stream._secure_waiters
        if waiters is None:
            waiters = stream._secure_waiters = deque()
        waiters.append(waiter)
        try:
            if remaining is None:
                hub.wait(waiter)
            else:
                hub.wait(waiter, max(remaining, 0.0), Timeout(timeout))
        finally:
            with contextlib.suppress(ValueError):
                waiters.remove(waiter)
    if stream._secured:
        return
    # Lost before the handshake completed: the TLS error (certificate verification, ...), or
    # the connection error; a clean close gets a StreamClosed that says what happened.
    error = stream._error
    stream._error = None
    if error is not None:
        raise error
    raise stream._closed_error(f"{what}: the TLS handshake did not complete")
