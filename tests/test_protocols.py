"""Existing Twisted protocols from green threads: connect_protocol, blocking, callback_queue,
and sync-style AMP responders through txgreen.green, on real sockets over 127.0.0.1."""

from __future__ import annotations

import struct
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, ClassVar, cast

import pytest
from greenlet import getcurrent
from twisted.internet import endpoints
from twisted.internet.defer import Deferred, succeed
from twisted.internet.error import ConnectionDone, ConnectionLost, ConnectionRefusedError
from twisted.internet.protocol import Factory, Protocol, connectionDone
from twisted.names import client, dns, hosts, server
from twisted.protocols import amp
from twisted.protocols.basic import Int32StringReceiver, LineReceiver
from twisted.python.failure import Failure
from twisted.web import client as web_client
from twisted.web import server as web_server
from twisted.web.client import readBody
from twisted.web.resource import Resource
from twisted.web.server import Request

import txgreen
from support import Boom, exception_state, later, shared_by_twisted, tb_frames
from txgreen._protocols import (
    CallbackQueueClosed,
    blocking,
    callback_queue,
    connect_protocol,
)
from txgreen._stream import Listener, Stream, listen

LOCAL = "tcp:0:interface=127.0.0.1"

# The parts of Twisted used here that have no type annotations, used through Any.
serverFromString: Any = endpoints.serverFromString
TCP4ClientEndpoint: Any = endpoints.TCP4ClientEndpoint
DNSClient: Any = client.Resolver
HostsResolver: Any = hosts.Resolver
DNSServerFactory: Any = server.DNSServerFactory
DNSDatagramProtocol: Any = dns.DNSDatagramProtocol
Integer: Any = amp.Integer
Unicode: Any = amp.Unicode
Boolean: Any = amp.Boolean
Site: Any = web_server.Site
Agent: Any = web_client.Agent


def client_of(listener: Listener) -> str:
    return f"tcp:host=127.0.0.1:port={listener.port}"


def reactor() -> Any:
    return txgreen.get_hub().reactor


class Lines(LineReceiver):
    """A LineReceiver that records connectionMade/connectionLost and lets a test wait for them."""

    delimiter = b"\n"

    def __init__(self) -> None:
        self.made = False
        self.lost: Deferred[None] = Deferred()
        self.reason: Failure | None = None
        self.pauses = txgreen.Event()
        self.received: list[bytes] = []

    def connectionMade(self) -> None:
        self.made = True

    def lineReceived(self, line: bytes) -> None:
        self.received.append(line)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.reason = reason
        self.lost.callback(None)

    def pauseProducing(self) -> None:
        self.pauses.set()
        super().pauseProducing()  # type: ignore[no-untyped-call]


def close(proto: Lines) -> None:
    transport: Any = proto.transport
    transport.loseConnection()
    txgreen.block_on(proto.lost, timeout=5)


def line_server(
    lines: list[bytes], hold: txgreen.Event | None = None, *, then_close: bool = False
) -> Listener:
    """A server that sends ``lines``, then closes (``then_close``) or echoes what it reads
    upper-cased and closes at EOF.

    With ``then_close`` it sends only once the client has sent one byte (see :func:`go`), so
    that nothing can arrive and be lost before the client's ``callback_queue`` exists."""

    def handler(stream: Stream) -> None:
        if then_close:
            stream.read_exactly(1)
        stream.write(b"".join(line + b"\n" for line in lines))
        if then_close:
            return
        if hold is not None:
            hold.wait()
        for line in stream:
            stream.write(line.upper())

    return listen(LOCAL, handler)


def go(proto: Any) -> None:
    """Tell a ``then_close`` :func:`line_server` to send its lines."""
    proto.transport.write(b"!")


# -- connect_protocol ---------------------------------------------------------------------------


@pytest.mark.parametrize("form", ["instance", "class", "factory"])
def test_connect_protocol_returns_the_connected_protocol(form: str) -> None:
    with line_server([b"hello"]) as listener:
        given: Any
        if form == "instance":
            given = Lines()
        elif form == "class":
            given = Lines
        else:
            given = Factory.forProtocol(Lines)
        proto = connect_protocol(client_of(listener), given, timeout=5)
        assert isinstance(proto, Lines)
        if form == "instance":
            assert proto is given
        if form == "factory":
            assert proto.factory is given
        assert proto.made is True  # returned only after connectionMade
        assert proto.transport is not None
        assert proto.transport.getPeer().port == listener.port
        lines = callback_queue(proto, "lineReceived")
        assert lines.get(timeout=5) == b"hello"
        proto.sendLine(b"shout")
        assert lines.get(timeout=5) == b"SHOUT"
        close(proto)


def test_connect_protocol_takes_an_endpoint_object() -> None:
    with line_server([b"via endpoint"]) as listener:
        ep = TCP4ClientEndpoint(reactor(), "127.0.0.1", listener.port)
        proto = connect_protocol(ep, Lines())
        assert callback_queue(proto, "lineReceived").get(timeout=5) == b"via endpoint"
        close(proto)


def test_connect_protocol_refused_raises_promptly() -> None:
    listener = line_server([])
    port = listener.port
    listener.close()
    start = time.monotonic()
    with pytest.raises(ConnectionRefusedError):
        connect_protocol(f"tcp:host=127.0.0.1:port={port}", Lines(), timeout=5)
    assert time.monotonic() - start < 2


def test_connect_protocol_timeout_cancels_the_attempt() -> None:
    cancelled: list[bool] = []

    class NeverConnects:
        def connect(self, factory: object) -> Deferred[object]:
            return Deferred(lambda d: cancelled.append(True))

    start = time.monotonic()
    with pytest.raises(txgreen.Timeout, match=r"^timed out after 0\.05 seconds$"):
        connect_protocol(NeverConnects(), Lines(), timeout=0.05)
    assert cancelled == [True]
    assert time.monotonic() - start < 2


def test_killing_a_connecting_thread_cancels_the_attempt() -> None:
    cancelled: list[bool] = []

    class NeverConnects:
        def connect(self, factory: object) -> Deferred[object]:
            return Deferred(lambda d: cancelled.append(True))

    gt = txgreen.spawn(connect_protocol, cast(Any, NeverConnects()), Lines())
    txgreen.sleep(0)  # let it start and block
    gt.kill()
    assert gt.dead
    assert cancelled == [True]


def test_connect_protocol_argument_errors() -> None:
    with pytest.raises(TypeError, match=r"factory class Factory; pass an instance"):
        connect_protocol("tcp:host=127.0.0.1:port=1", cast(Any, Factory))
    with pytest.raises(TypeError, match=r"not 'int'"):
        connect_protocol("tcp:host=127.0.0.1:port=1", 42)  # type: ignore[call-overload]


def test_connect_protocol_callable_must_return_a_protocol() -> None:
    with line_server([]) as listener:
        with pytest.raises(TypeError, match=r"returned 'nope', which is not a protocol"):
            connect_protocol(client_of(listener), cast(Any, lambda: "nope"))
        listener.join(timeout=5)


@pytest.mark.in_hub
def test_connect_protocol_in_the_hub_raises_before_connecting() -> None:
    built: list[object] = []
    with pytest.raises(txgreen.BlockingInHubError, match=r"^connect_protocol\(\) was called"):
        connect_protocol("tcp:host=127.0.0.1:port=1", lambda: built.append(1) or Lines())  # type: ignore[func-returns-value]
    assert built == []


# -- blocking() ---------------------------------------------------------------------------------


class Thing:
    """Methods of every kind blocking() must handle."""

    def __init__(self) -> None:
        self.label = "thing"
        self.calls: list[str] = []
        self.cancelled = False

    def plain(self, x: int) -> int:
        self.calls.append("plain")
        return x * 2

    def deferred(self, x: int) -> Deferred[int]:
        self.calls.append("deferred")
        return later(x + 1)

    def already(self) -> Deferred[str]:
        return succeed("fired")

    def failing(self) -> Deferred[None]:
        return later(None).addCallback(lambda _: (_ for _ in ()).throw(Boom("remote said no")))

    async def coro(self, x: int) -> int:
        return await later(x * 10)

    def forever(self) -> Deferred[None]:
        def cancel(d: Deferred[None]) -> None:
            self.cancelled = True

        return Deferred(cancel)

    def returns_deferred_unfired(self) -> list[Deferred[None]]:
        return [Deferred()]  # not a Deferred itself: passes through


def test_blocking_waits_for_deferreds_and_passes_the_rest_through() -> None:
    thing = Thing()
    b = blocking(thing)
    assert b.deferred(1) == 2
    assert b.already() == "fired"
    assert b.coro(4) == 40
    assert b.plain(21) == 42
    assert b.label == "thing"
    listed = b.returns_deferred_unfired()
    assert isinstance(listed, list)
    assert isinstance(listed[0], Deferred)
    assert thing.calls == ["deferred", "plain"]
    b.label = "renamed"  # attributes are set on the object itself
    assert thing.label == "renamed"
    assert "plain" in dir(b)
    assert repr(b) == f"<txgreen.blocking {thing!r}>"
    with pytest.raises(AttributeError):
        _ = b.missing


def test_blocking_raises_the_failure_of_the_deferred() -> None:
    with pytest.raises(Boom, match=r"^remote said no$"):
        blocking(Thing()).failing()


class SharedFailure:
    """A library whose calls fail with one Failure object, as AMP fails every pending call
    with the ``connectionLost`` reason Twisted may share between connections."""

    def __init__(self) -> None:
        self.error = ConnectionLost("lost, shared by every connection")
        self.shared: Failure = Failure(self.error)  # type: ignore[no-untyped-call]

    def call(self) -> Deferred[None]:
        return later(None).addCallback(lambda _: self.shared)

    def connect(self, factory: object) -> Deferred[None]:  # as an IStreamClientEndpoint
        return self.call()


@pytest.mark.parametrize("via", ["blocking", "connect_protocol", "connect"])
def test_a_connection_error_twisted_may_share_is_raised_as_a_copy(via: str) -> None:
    lib = SharedFailure()
    endpoint: Any = lib
    calls: dict[str, Callable[[], object]] = {
        "blocking": lambda: blocking(lib).call(),
        "connect_protocol": lambda: connect_protocol(endpoint, Lines),
        "connect": lambda: txgreen.connect(endpoint),
    }
    raised: list[BaseException] = []
    for _ in range(2):
        with pytest.raises(ConnectionLost, match="shared by every connection") as info:
            calls[via]()
        raised.append(info.value)
    first, second = raised
    assert first is not second
    assert lib.error not in (first, second)
    assert tb_frames(first.__traceback__) == tb_frames(second.__traceback__)
    assert exception_state([lib.error]) == [(None, None, None)]  # never raised


def test_blocking_takes_the_result_out_of_the_deferred(unhandled: list[object]) -> None:
    seen: list[object] = []

    class Library:
        def call(self, fail: bool) -> Deferred[str]:
            d = later("ok")
            if fail:
                d.addCallback(lambda _: (_ for _ in ()).throw(Boom("bad")))
            # Like AMP: look at the outcome after the caller had its chance to handle it.
            later(None).addCallback(lambda _: d.addBoth(seen.append))
            return d

    lib = blocking(Library())
    assert lib.call(False) == "ok"
    with pytest.raises(Boom, match=r"^bad$"):
        lib.call(True)
    txgreen.sleep(0.01)
    assert seen == [None, None]
    assert unhandled == []


def test_blocking_timeout_cancels_and_raises() -> None:
    thing = Thing()
    with pytest.raises(txgreen.Timeout, match=r"^timed out after 0\.05 seconds$"):
        blocking(thing, timeout=0.05).forever()
    assert thing.cancelled is True


def test_blocking_respects_an_enclosing_timeout_block() -> None:
    thing = Thing()
    with pytest.raises(txgreen.Timeout), txgreen.Timeout(0.05):
        blocking(thing).forever()
    assert thing.cancelled is True


def test_blocking_of_a_proxy_wraps_the_object_once() -> None:
    thing = Thing()
    b = blocking(blocking(thing, timeout=1), timeout=2)
    assert repr(b) == f"<txgreen.blocking {thing!r}>"
    assert b.deferred(5) == 6
    with pytest.raises(ValueError, match=r"timeout must be None or >= 0, not -1"):
        blocking(thing, timeout=-1)


@pytest.mark.in_hub
def test_blocking_in_the_hub_raises_without_calling_the_method() -> None:
    thing = Thing()
    b = blocking(thing)
    assert b.label == "thing"  # attributes are fine anywhere
    with pytest.raises(
        txgreen.BlockingInHubError, match=r"^blocking\(Thing\)\.deferred\(\) was called from"
    ):
        b.deferred(1)
    assert thing.calls == []


def test_blocking_from_another_os_thread_raises_without_calling_the_method() -> None:
    thing = Thing()
    b = blocking(thing)
    with pytest.raises(
        txgreen.NotInReactorThreadError, match=r"^blocking\(Thing\)\.deferred\(\) was called from"
    ):
        txgreen.call_in_thread(b.deferred, 1)
    assert thing.calls == []


def test_blocking_twisted_names_resolver_over_udp(tmp_path: Path) -> None:
    hosts_file = tmp_path / "hosts"
    hosts_file.write_text("10.1.2.3 example.test\n")
    authority = HostsResolver(file=str(hosts_file).encode())
    # The hosts-file resolver is itself a twisted.names resolver: its Deferreds fire at once.
    answers, _, _ = blocking(authority).lookupAddress("example.test")
    assert [a.payload.dottedQuad() for a in answers] == ["10.1.2.3"]
    # A real DNS server on 127.0.0.1 answering from it, queried by twisted.names' client.
    factory = DNSServerFactory(authorities=[authority])
    port = reactor().listenUDP(0, DNSDatagramProtocol(factory), interface="127.0.0.1")
    try:
        resolver = blocking(DNSClient(servers=[("127.0.0.1", port.getHost().port)]), timeout=5)
        answers, _, _ = resolver.lookupAddress("example.test")
        assert [a.payload.dottedQuad() for a in answers] == ["10.1.2.3"]
        assert [str(a.name) for a in answers] == ["example.test"]
    finally:
        txgreen.block_on(port.stopListening())


# -- AMP, with a sync-style responder -----------------------------------------------------------


class Sum(amp.Command):
    arguments: ClassVar = [(b"a", Integer()), (b"b", Integer())]
    response: ClassVar = [(b"total", Integer())]


class SlowUpper(amp.Command):
    arguments: ClassVar = [(b"text", Unicode())]
    response: ClassVar = [(b"text", Unicode()), (b"green", Boolean())]
    errors: ClassVar = {Boom: b"BOOM"}


class Calculator(amp.AMP):
    lost: Deferred[None] | None = None

    @Sum.responder
    def sum(self, a: int, b: int) -> dict[str, int]:
        return {"total": a + b}

    @SlowUpper.responder
    @txgreen.green
    def slow_upper(self, text: str) -> dict[str, Any]:
        # Runs in a green thread: it may wait like plain sync code.
        txgreen.sleep(0.01)
        word = txgreen.block_on(later(text.upper()))
        if text == "fail":
            raise Boom("no failing allowed")
        return {"text": word, "green": isinstance(getcurrent(), txgreen.GreenThread)}

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        super().connectionLost(reason)  # type: ignore[no-untyped-call]
        if self.lost is not None:
            self.lost.callback(None)


@pytest.fixture
def amp_server() -> Iterator[tuple[str, list[Calculator]]]:
    served: list[Calculator] = []

    def build() -> Calculator:
        p = Calculator()  # type: ignore[no-untyped-call]
        p.lost = Deferred()
        served.append(p)
        return p

    port = txgreen.block_on(serverFromString(reactor(), LOCAL).listen(Factory.forProtocol(build)))
    yield f"tcp:host=127.0.0.1:port={port.getHost().port}", served
    txgreen.block_on(port.stopListening())
    for p in served:
        assert p.lost is not None
        txgreen.block_on(p.lost, timeout=5)


def test_amp_client_and_green_responder(amp_server: tuple[str, list[Calculator]]) -> None:
    address, served = amp_server
    proto = connect_protocol(address, amp.AMP, timeout=5)
    remote = blocking(proto, timeout=5)
    assert remote.callRemote(Sum, a=1, b=2) == {"total": 3}
    assert remote.callRemote(SlowUpper, text="quiet") == {"text": "QUIET", "green": True}
    # Many calls in flight at once, from green threads, each answered by its own green thread.
    calls = [txgreen.spawn(remote.callRemote, SlowUpper, text=f"w{i}") for i in range(20)]
    assert [c.get()["text"] for c in calls] == [f"W{i}" for i in range(20)]
    # An error the responder raises arrives as the declared exception.
    with pytest.raises(Boom, match=r"^no failing allowed$"):
        remote.callRemote(SlowUpper, text="fail")
    # ...which counts as handled: AMP does not drop the connection, later calls work.
    assert remote.callRemote(Sum, a=20, b=22) == {"total": 42}
    assert len(served) == 1
    transport: Any = proto.transport
    transport.loseConnection()


# -- HTTP ---------------------------------------------------------------------------------------


class Hello(Resource):
    isLeaf = True

    def render_GET(self, request: Request) -> bytes:
        request.setHeader(b"content-type", b"text/plain")  # type: ignore[no-untyped-call]
        return b"hello " + request.path


# Twisted's readBody warns when the body was delivered before it could see the transport.
@pytest.mark.filterwarnings("ignore:Using readBody with a transport:DeprecationWarning")
def test_http_get_with_agent_and_readbody() -> None:
    site = Site(Hello(), timeout=None)  # type: ignore[no-untyped-call]
    port = txgreen.block_on(serverFromString(reactor(), LOCAL).listen(site))
    try:
        agent = blocking(Agent(reactor()), timeout=5)
        url = f"http://127.0.0.1:{port.getHost().port}/greeting".encode()
        response = agent.request(b"GET", url)
        assert response.code == 200
        assert response.headers.getRawHeaders(b"content-type") == [b"text/plain"]
        assert txgreen.block_on(readBody(response), timeout=5) == b"hello /greeting"
    finally:
        txgreen.block_on(port.stopListening())


# -- callback_queue -----------------------------------------------------------------------------


def test_queue_iteration_ends_at_connection_lost() -> None:
    sent = [f"line {i}".encode() for i in range(5)]
    with line_server(sent, then_close=True) as listener:
        proto = connect_protocol(client_of(listener), Lines())
        lines = callback_queue(proto, "lineReceived")
        go(proto)
        assert list(lines) == sent  # every line that arrived, then the end
        assert lines.closed is True
        assert lines.reason is not None
        assert isinstance(lines.reason.value, ConnectionDone)
        assert proto.received == []  # the queue replaced lineReceived on this instance
        assert proto.lost.called  # the protocol's own connectionLost still ran
        with pytest.raises(CallbackQueueClosed, match=r"connection was lost .* every item"):
            lines.get()
        assert list(lines) == []
        lines._on_call(b"late")  # calls after the end are dropped
        assert lines.qsize() == 0


def test_queue_get_wakes_at_connection_lost() -> None:
    hold = txgreen.Event()
    with line_server([b"first"], hold) as listener:
        proto = connect_protocol(client_of(listener), Lines())
        lines = callback_queue(proto, "lineReceived")
        assert lines.get(timeout=5) == b"first"
        getter = txgreen.spawn(lines.get)
        txgreen.sleep(0.01)  # the getter is blocked: nothing more comes until hold is set
        assert not getter.dead
        transport: Any = proto.transport
        transport.abortConnection()
        with pytest.raises(CallbackQueueClosed) as info:
            getter.get(timeout=5)
        assert info.value.reason is lines.reason
        assert lines.reason is not None
        assert not isinstance(lines.reason.value, ConnectionDone)  # aborted, not closed cleanly
        hold.set()


def test_queue_reason_is_never_an_object_twisted_shares() -> None:
    shared = shared_by_twisted()
    before = exception_state(shared)
    reasons: list[Failure] = []
    protocols: list[Lines] = []
    for _ in range(2):
        with line_server([b"x"], then_close=True) as listener:
            proto = connect_protocol(client_of(listener), Lines())
            lines = callback_queue(proto, "lineReceived")
            go(proto)
            assert list(lines) == [b"x"]
            with pytest.raises(CallbackQueueClosed) as info:
                lines.get()
            assert lines.reason is not None
            assert info.value.reason is lines.reason
            reasons.append(lines.reason)
            protocols.append(proto)
    first, second = reasons
    assert isinstance(first.value, ConnectionDone)
    assert first.value is not second.value
    assert all(r.value is not o for r in reasons for o in shared)
    # The protocol's own connectionLost still got what Twisted gave.
    for p in protocols:
        assert p.reason is not None
        assert isinstance(p.reason.value, ConnectionDone)
    assert exception_state(shared) == before


def test_queue_get_timeout_and_nowait() -> None:
    hold = txgreen.Event()
    with line_server([], hold) as listener:
        proto = connect_protocol(client_of(listener), Lines())
        lines = callback_queue(proto, "lineReceived")
        with pytest.raises(txgreen.Empty, match=r"no lineReceived\(\) call within 0\.02 seconds"):
            lines.get(timeout=0.02)
        with pytest.raises(txgreen.Empty, match=r"no lineReceived\(\) call is queued"):
            lines.get_nowait()
        hold.set()
        proto.sendLine(b"ping")  # type: ignore[no-untyped-call]
        assert lines.get(timeout=5) == b"PING"
        close(proto)


def test_queue_hands_items_to_waiting_getters_in_order() -> None:
    q = callback_queue(Lines(), "lineReceived")
    gone = txgreen.spawn(q.get, timeout=0.01)
    first = txgreen.spawn(q.get)
    second = txgreen.spawn(q.get)
    with pytest.raises(txgreen.Empty):
        gone.get()  # its wait ended: it must not swallow an item
    q._on_call(b"a")
    q._on_call(b"b")
    q._on_call(b"c")
    assert (first.get(), second.get()) == (b"a", b"b")
    assert q.qsize() == 1
    assert q.get_nowait() == b"c"


def test_full_queue_pauses_an_int_n_string_receiver_exactly_at_maxsize() -> None:
    sent = [b"message %d" % i for i in range(20)]

    def handler(stream: Stream) -> None:
        stream.write(b"".join(struct.pack("!I", len(m)) + m for m in sent))

    class Strings(Int32StringReceiver):
        def __init__(self) -> None:
            self.pauses = txgreen.Event()

        def pauseProducing(self) -> None:
            self.pauses.set()
            super().pauseProducing()  # type: ignore[no-untyped-call]

    with listen(LOCAL, handler) as listener:
        proto = connect_protocol(client_of(listener), Strings())
        strings = callback_queue(proto, "stringReceived", maxsize=3, low_water=0)
        assert proto.pauses.wait(timeout=5)
        assert proto.paused is True
        assert strings.qsize() == 3
        got = [strings.get() for _ in range(3)]
        assert strings.paused is True
        got += list(strings)  # the server has closed: all of them, then the end
        assert got == sent
        assert strings.reason is not None
        assert isinstance(strings.reason.value, ConnectionDone)


def test_queue_of_a_method_with_several_arguments_yields_tuples() -> None:
    class Pairs(Protocol):
        def pairReceived(self, a: int, b: int) -> None:
            raise AssertionError("replaced by the queue")

    p = Pairs()
    q = callback_queue(p, "pairReceived")
    p.pairReceived(1, 2)
    p.pairReceived(3, 4)
    assert [q.get(), q.get()] == [(1, 2), (3, 4)]
    p.connectionLost(connectionDone)
    assert list(q) == []


def test_queue_argument_errors() -> None:
    p = Lines()
    with pytest.raises(ValueError, match=r"maxsize must be >= 1, not 0"):
        callback_queue(p, "lineReceived", maxsize=0)
    with pytest.raises(ValueError, match=r"low_water must be >= 0 and < maxsize, not 5"):
        callback_queue(p, "lineReceived", maxsize=5, low_water=5)
    with pytest.raises(AttributeError, match=r"Lines has no method 'nope'"):
        callback_queue(p, "nope")


@pytest.mark.in_hub
def test_queue_get_in_the_hub_raises() -> None:
    q = callback_queue(Lines(), "lineReceived")
    with pytest.raises(txgreen.BlockingInHubError, match=r"^CallbackQueue\.get\(\)"):
        q.get()


def test_full_queue_pauses_a_line_receiver_exactly_at_maxsize() -> None:
    sent = [f"line {i}".encode() for i in range(50)]
    with line_server(sent) as listener:
        proto = connect_protocol(client_of(listener), Lines())
        lines = callback_queue(proto, "lineReceived", maxsize=5)
        assert proto.pauses.wait(timeout=5)
        assert lines.paused is True
        assert proto.paused is True  # LineReceiver holds back the lines it has read
        assert proto.transport not in reactor().getReaders()  # and the socket is not read
        txgreen.sleep(0.05)  # nothing more is queued while paused
        assert lines.qsize() == 5
        assert repr(lines) == "<txgreen.CallbackQueue Lines.lineReceived 5/5 items, paused>"
        got = [lines.get() for _ in range(3)]  # down to low_water (2): resume
        proto.pauses.clear()
        assert proto.pauses.wait(timeout=5)  # ...and refilled to maxsize, paused again
        assert lines.qsize() == 5
        most = 0
        assert proto.transport is not None
        while len(got) < len(sent):
            most = max(most, lines.qsize())
            got.append(lines.get(timeout=5))
        assert got == sent
        assert most <= 5
        txgreen.sleep(0)  # the last resume, scheduled in the hub, runs first
        assert lines.paused is False
        close(proto)
        assert list(lines) == []


def test_full_queue_pauses_the_transport_and_stalls_the_writer() -> None:
    chunk = b"x" * 65536
    total = 64 * 1024 * 1024
    progress = [0]

    def flood(stream: Stream) -> None:
        while progress[0] < total:
            stream.write(chunk)
            progress[0] += len(chunk)

    class Raw(Protocol):
        def __init__(self) -> None:
            self.lost: Deferred[None] = Deferred()

        def connectionLost(self, reason: Failure = connectionDone) -> None:
            self.lost.callback(None)

    with listen(LOCAL, flood) as listener:
        proto = connect_protocol(client_of(listener), Raw())
        chunks = callback_queue(proto, "dataReceived", maxsize=4, low_water=1)
        deadline = time.monotonic() + 5
        while not chunks.paused and time.monotonic() < deadline:
            txgreen.sleep(0.005)
        assert chunks.paused is True
        assert proto.transport not in reactor().getReaders()
        txgreen.sleep(0.2)  # the consumer does not read: the writer must stall meanwhile
        stalled = progress[0]
        assert 0 < stalled < 16 * 1024 * 1024  # bounded, far below the 64 MiB it wants
        assert chunks.qsize() == 4  # one read after the transport is paused: no more calls
        received = 0
        while received < total:
            received += len(chunks.get(timeout=5))
        assert received == total == progress[0]
        transport: Any = proto.transport
        transport.loseConnection()
        txgreen.block_on(proto.lost, timeout=5)
        assert list(chunks) == []


def test_connect_protocol_returns_before_the_reactor_delivers_anything() -> None:
    # The connection's Deferred fires while another green thread is runnable, and the
    # "reactor" delivers a line in the same callback right after: connect_protocol must have
    # returned (and the queue been made) before that, not queue behind the runnable thread.
    from twisted.internet import reactor
    from twisted.internet.testing import StringTransport

    clock: Any = reactor

    class Endpoint:
        def connect(self, factory: Any) -> Deferred[Any]:
            proto = factory.buildProtocol(None)
            d: Deferred[Any] = Deferred()

            def connected() -> None:
                proto.makeConnection(StringTransport())  # type: ignore[no-untyped-call]
                txgreen.spawn(lambda: None)  # the ready queue is not empty
                d.callback(proto)
                proto.dataReceived(b"first\n")

            clock.callLater(0, connected)
            return d

    endpoint: Any = Endpoint()
    proto = connect_protocol(endpoint, Lines())
    lines = callback_queue(proto, "lineReceived")
    assert lines.get(timeout=5) == b"first"
    assert proto.received == []
    proto.connectionLost(Failure(ConnectionDone()))  # type: ignore[no-untyped-call]
    assert list(lines) == []
