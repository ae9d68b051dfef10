"""Stream: reading, writing, back-pressure, errors, timeouts and closing, on real sockets."""

from __future__ import annotations

import contextlib
import socket
import time

import pytest
from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectionLost, ConnectionRefusedError, DNSLookupError

import txgreen
from txgreen._stream import (
    ConcurrentReadError,
    IncompleteReadError,
    LineTooLong,
    Listener,
    Stream,
    StreamClosed,
    connect,
    listen,
)

LOCAL = "tcp:0:interface=127.0.0.1"


def client_of(listener: Listener) -> str:
    return f"tcp:host=127.0.0.1:port={listener.port}"


def echo(stream: Stream) -> None:
    while chunk := stream.recv(65536):
        stream.write(chunk)


def serving(payload: bytes, hold: txgreen.Event | None = None) -> Listener:
    def handler(stream: Stream) -> None:
        stream.write(payload)
        if hold is not None:
            hold.wait()

    return listen(LOCAL, handler)


# -- round trips and reading -------------------------------------------------------------------


def test_echo_round_trip() -> None:
    with listen(LOCAL, echo) as listener:
        with connect(client_of(listener)) as s:
            for i in range(3):
                msg = f"message {i}".encode()
                s.write(msg)
                assert s.read_exactly(len(msg)) == msg
            s.write_eof()
            assert s.read() == b""
        assert listener.join(timeout=5) is True
        assert len(listener.handlers) == 0


def test_read_helpers_on_one_payload() -> None:
    with serving(b"line one\nline two\nabcdefghij") as listener, connect(client_of(listener)) as s:
        assert s.readline() == b"line one\n"
        assert s.read_until(b"two") == b"line two"
        assert s.readline() == b"\n"
        assert s.read(3) == b"abc"
        assert s.recv(2) == b"de"
        assert s.read() == b"fghij"
        assert s.read() == b""
        assert s.recv() == b""
        assert s.readline() == b""


def test_read_n_waits_for_n_bytes_or_eof() -> None:
    with serving(b"0123456789") as listener, connect(client_of(listener)) as s:
        assert s.read(4) == b"0123"
        assert s.read(100) == b"456789"  # fewer only at EOF
        assert s.read(0) == b""
        assert s.read(5) == b""


def test_reads_larger_than_the_high_water_mark() -> None:
    payload = bytes(range(256)) * 8192  # 2 MiB, eight times the high-water mark
    with serving(payload + b"\n" + payload) as listener, connect(client_of(listener)) as s:
        s.timeout = 10
        assert s.read_exactly(len(payload)) == payload
        assert s.readline(limit=len(payload) + 1) == b"\n"
        assert s.read(len(payload)) == payload
        assert s.read() == b""


def test_read_exactly_at_eof_carries_partial() -> None:
    with serving(b"abc") as listener, connect(client_of(listener)) as s:
        with pytest.raises(IncompleteReadError) as info:
            s.read_exactly(10)
        assert info.value.partial == b"abc"
        assert info.value.expected == 10
        assert str(info.value) == "the stream ended after 3 bytes, before 10 bytes arrived"
        with pytest.raises(IncompleteReadError) as again:
            s.read_exactly(1)
        assert again.value.partial == b""


def test_read_until_at_eof_raises_incomplete() -> None:
    with serving(b"no separator") as listener, connect(client_of(listener)) as s:
        with pytest.raises(IncompleteReadError) as info:
            s.read_until(b"\r\n")
        assert info.value.partial == b"no separator"
        assert info.value.expected is None


def test_iteration_over_lines() -> None:
    with serving(b"a\nbb\n\nccc") as listener, connect(client_of(listener)) as s:
        assert list(s) == [b"a\n", b"bb\n", b"\n", b"ccc"]


def test_line_too_long_keeps_data_buffered() -> None:
    with serving(b"x" * 100 + b"\nrest") as listener, connect(client_of(listener)) as s:
        with pytest.raises(LineTooLong) as info:
            s.readline(limit=50)
        assert info.value.limit == 50
        assert str(info.value) == "no line separator within the limit of 50 bytes"
        assert s.readline(limit=101) == b"x" * 100 + b"\n"
        assert s.read() == b"rest"


def test_line_too_long_on_an_endless_line_does_not_buffer_it() -> None:
    # The peer sends 4 MiB without a newline; readline gives up at its limit, and the stream
    # never buffers more than the high-water mark plus one read.
    total = 4 * 1024 * 1024

    outcome: list[type[BaseException]] = []

    def handler(stream: Stream) -> None:
        chunk = b"y" * 65536
        try:
            for _ in range(total // len(chunk)):
                stream.write(chunk)  # blocks once the client stops reading, until it aborts
        except StreamClosed as e:
            outcome.append(type(e))

    with listen(LOCAL, handler) as listener:
        s = connect(client_of(listener))
        with pytest.raises(LineTooLong):
            s.readline(limit=100_000)
        assert 100_000 <= s.buffered <= s.high_water + 65536
        s.abort(wait=True)
        assert listener.join(timeout=5)
    assert outcome == [StreamClosed]


def test_recv_returns_leftovers_without_waiting() -> None:
    hold = txgreen.Event()
    with serving(b"abcdef", hold) as listener, connect(client_of(listener)) as s:
        s.timeout = 5
        assert s.read_exactly(2) == b"ab"
        # The server is still holding the connection open: recv must not wait for more.
        assert s.recv(100) == b"cdef"
        assert s.buffered == 0
        hold.set()
        assert s.recv(100) == b""


@pytest.mark.in_hub
def test_buffered_data_is_returned_even_in_the_hub() -> None:
    # A read that can complete from the buffer never waits, so it works anywhere; one that
    # must wait raises BlockingInHubError in the hub.
    from txgreen._stream import _StreamProtocol

    p = _StreamProtocol()
    p.dataReceived(b"hello\nworld")
    s = p.stream
    assert s.readline() == b"hello\n"
    assert s.recv(3) == b"wor"
    assert s.read_exactly(2) == b"ld"
    with pytest.raises(txgreen.BlockingInHubError):
        s.recv()


# -- errors ---------------------------------------------------------------------------------------


def test_data_buffered_before_a_reset_is_read_then_the_error_once() -> None:
    go = txgreen.Event()

    def handler(stream: Stream) -> None:
        stream.write(b"hello\ntail")
        stream.drain()
        go.wait()
        stream.abort()  # SO_LINGER 0: the peer gets a reset

    with listen(LOCAL, handler) as listener, connect(client_of(listener)) as s:
        assert s.readline() == b"hello\n"
        go.set()
        assert s.read() == b"tail"  # to EOF: the reset ends the data
        with pytest.raises(ConnectionLost):
            s.read()
        assert s.read() == b""  # raised once
        assert s.recv() == b""
        with pytest.raises(StreamClosed, match=r"^Stream.write\(\): the connection is closed"):
            s.write(b"late")


def test_connect_refused_raises_promptly() -> None:
    listener = listen(LOCAL, echo)
    port = listener.port
    listener.close()
    start = time.monotonic()
    with pytest.raises(ConnectionRefusedError):
        connect(f"tcp:host=127.0.0.1:port={port}")
    assert time.monotonic() - start < 2


def test_connect_dns_failure_raises_promptly() -> None:
    # ".invalid" never resolves (RFC 2606), so this needs no network.
    start = time.monotonic()
    with pytest.raises(DNSLookupError, match=r"no-such-host\.invalid"):
        txgreen.connect("tcp:host=no-such-host.invalid:port=80", timeout=10)
    assert time.monotonic() - start < 5


def test_connect_timeout_cancels_the_attempt() -> None:
    cancelled: list[bool] = []

    class NeverConnects:
        def connect(self, factory: object) -> Deferred[object]:
            return Deferred(lambda d: cancelled.append(True))

    with pytest.raises(txgreen.Timeout):
        connect(NeverConnects(), timeout=0.05)
    assert cancelled == [True]


# -- back-pressure ------------------------------------------------------------------------------


def _small_buffers(stream: Stream, which: int) -> None:
    # Fixed kernel buffers (no autotuning) make the bound below tight and deterministic.
    stream.transport.getHandle().setsockopt(socket.SOL_SOCKET, which, 64 * 1024)


def test_slow_reader_blocks_fast_writer_with_bounded_memory() -> None:
    chunk = b"z" * 65536
    total = 32 * 1024 * 1024
    progress = [0]
    server_streams: list[Stream] = []

    def handler(stream: Stream) -> None:
        _small_buffers(stream, socket.SO_SNDBUF)
        server_streams.append(stream)
        while progress[0] < total:
            stream.write(chunk)
            progress[0] += len(chunk)

    with listen(LOCAL, handler) as listener, connect(client_of(listener)) as s:
        _small_buffers(s, socket.SO_RCVBUF)
        txgreen.sleep(0.3)  # the reader does not read: the writer must stall meanwhile
        stalled_at = progress[0]
        assert 0 < stalled_at < 4 * 1024 * 1024  # bounded, far below the 32 MiB it wants
        assert s.buffered <= s.high_water + 65536  # receive side paused at its high-water mark
        t = server_streams[0].transport
        assert t._tempDataLen + len(t.dataBuffer) <= t.bufferSize + len(chunk)
        received = 0
        while data := s.recv(1 << 20):
            received += len(data)
        assert received == total == progress[0]


def test_drain_waits_until_the_transport_buffer_is_empty() -> None:
    left: list[int] = []

    def handler(stream: Stream) -> None:
        for _ in range(16):
            stream.write(b"d" * 65536)
        stream.drain()
        t = stream.transport
        left.append(t._tempDataLen + len(t.dataBuffer) - t.offset)
        stream.drain()  # nothing buffered: returns at once

    with listen(LOCAL, handler) as listener, connect(client_of(listener)) as s:
        assert len(s.read()) == 16 * 65536
        assert listener.join(timeout=5)
    assert left == [0]


def test_write_timeout_when_the_peer_does_not_read() -> None:
    outcome: list[BaseException] = []
    done = txgreen.Event()

    def handler(stream: Stream) -> None:
        stream.timeout = 0.2
        try:
            while True:
                stream.write(b"w" * 65536)
        except txgreen.Timeout as e:
            outcome.append(e)
        done.set()

    with listen(LOCAL, handler) as listener, connect(client_of(listener)) as s:
        _small_buffers(s, socket.SO_RCVBUF)
        done.wait()
        assert [type(e) for e in outcome] == [txgreen.StreamTimeout]
        assert str(outcome[0]) == "timed out after 0.2 seconds"
        s.abort(wait=True)


# -- timeouts -------------------------------------------------------------------------------------


def test_read_timeout_leaves_the_stream_usable() -> None:
    hold = txgreen.Event()

    def handler(stream: Stream) -> None:
        hold.wait()
        stream.write(b"late\n")

    with listen(LOCAL, handler) as listener, connect(client_of(listener)) as s:
        s.timeout = 0.05
        with pytest.raises(txgreen.Timeout):
            s.readline()
        with pytest.raises(txgreen.Timeout):
            s.recv()
        hold.set()
        s.timeout = 5
        assert s.readline() == b"late\n"


def test_enclosing_timeout_block_bounds_reads() -> None:
    hold = txgreen.Event()
    with serving(b"", hold) as listener, connect(client_of(listener)) as s:
        with pytest.raises(txgreen.Timeout) as info, txgreen.Timeout(0.05) as deadline:
            s.read_exactly(1)
        assert info.value is deadline
        hold.set()
        assert s.read() == b""


# -- concurrency ----------------------------------------------------------------------------------


def test_two_concurrent_readers_get_a_clear_error() -> None:
    hold = txgreen.Event()

    def handler(stream: Stream) -> None:
        hold.wait()
        stream.write(b"data")

    with listen(LOCAL, handler) as listener, connect(client_of(listener)) as s:
        first = txgreen.spawn(s.recv)
        txgreen.sleep(0)
        with pytest.raises(
            ConcurrentReadError, match=r"another green thread .* is already reading"
        ):
            s.recv()
        with pytest.raises(ConcurrentReadError):
            s.readline()
        hold.set()
        assert first.get(timeout=5) == b"data"


def test_one_reader_and_one_writer_concurrently() -> None:
    with listen(LOCAL, echo) as listener, connect(client_of(listener)) as s:
        n = 200
        reader = txgreen.spawn(lambda: [s.readline() for _ in range(n)])
        for i in range(n):
            s.write(b"%d\n" % i)
        assert reader.get(timeout=5) == [b"%d\n" % i for i in range(n)]


# -- closing --------------------------------------------------------------------------------------


def test_close_then_use_raises_stream_closed() -> None:
    seen: list[bytes] = []

    def handler(stream: Stream) -> None:
        seen.append(stream.read())

    with listen(LOCAL, handler) as listener:
        s = connect(client_of(listener))
        s.write(b"bye")
        s.close(wait=True)
        assert s.closed
        with pytest.raises(StreamClosed, match=r"^Stream.recv\(\): the stream was closed$"):
            s.recv()
        with pytest.raises(StreamClosed, match=r"^Stream.write\(\): the stream was closed$"):
            s.write(b"x")
        s.close()  # again: nothing
        assert listener.join(timeout=5)
        assert seen == [b"bye"]


def test_close_wakes_a_blocked_reader() -> None:
    hold = txgreen.Event()
    with serving(b"", hold) as listener:
        s = connect(client_of(listener))
        reader = txgreen.spawn(s.recv)
        txgreen.sleep(0)
        s.close(wait=True)
        with pytest.raises(StreamClosed, match="closed while reading"):
            reader.get(timeout=5)
        hold.set()


def test_abort_resets_the_peer() -> None:
    outcome: list[type[BaseException]] = []
    ready = txgreen.Event()

    def handler(stream: Stream) -> None:
        ready.set()
        try:
            while stream.recv():
                pass
        except ConnectionLost as e:
            outcome.append(type(e))

    with listen(LOCAL, handler) as listener:
        s = connect(client_of(listener))
        ready.wait()
        s.write(b"unsent?")
        s.abort(wait=True)
        assert listener.join(timeout=5)
        assert outcome == [ConnectionLost]


def test_write_eof_half_closes() -> None:
    def handler(stream: Stream) -> None:
        request = stream.read()
        stream.write(b"got " + request)

    with listen(LOCAL, handler) as listener, connect(client_of(listener)) as s:
        s.write(b"ping")
        s.write_eof()
        with pytest.raises(StreamClosed, match=r"write_eof\(\) was called"):
            s.write(b"more")
        assert s.read() == b"got ping"


def test_addresses_and_transport() -> None:
    with listen(LOCAL, echo) as listener, connect(client_of(listener)) as s:
        assert s.peer.port == listener.port
        assert s.host.host == "127.0.0.1"
        assert listener.address.host == "127.0.0.1"
        assert s.transport.getPeer() == s.peer
        assert repr(s).startswith("<txgreen.Stream open peer=IPv4Address(")


def test_close_wait_timeout_aborts_when_data_cannot_be_sent() -> None:
    finished: list[bool] = []

    def handler(stream: Stream) -> None:
        _small_buffers(stream, socket.SO_SNDBUF)
        stream.timeout = 0.1
        with contextlib.suppress(txgreen.Timeout):
            while True:
                stream.write(b"q" * 65536)  # until the unread data fills every buffer
        stream.close(wait=True, timeout=0.1)  # cannot flush: aborted after 0.1 s
        finished.append(stream.closed)

    with listen(LOCAL, handler) as listener, connect(client_of(listener)) as s:
        _small_buffers(s, socket.SO_RCVBUF)
        assert listener.join(timeout=5)
        assert finished == [True]
        errors: list[type[BaseException]] = []
        try:
            while s.recv(1 << 20):
                pass
        except ConnectionLost as e:  # the abort reached us as a reset
            errors.append(type(e))
        assert errors == [ConnectionLost]


def test_killed_client_thread_aborts_its_connection() -> None:
    outcome: list[type[BaseException]] = []
    accepted = txgreen.Event()

    def handler(stream: Stream) -> None:
        accepted.set()
        try:
            stream.read()
        except ConnectionLost as e:
            outcome.append(type(e))

    def client(address: str) -> None:
        with connect(address) as s:
            s.read()  # waits for ever: the server sends nothing

    with listen(LOCAL, handler) as listener:
        thread = txgreen.spawn(client, client_of(listener))
        accepted.wait()
        thread.kill()
        assert thread.dead
        assert listener.join(timeout=5)
    assert outcome == [ConnectionLost]


def test_argument_errors() -> None:
    with listen(LOCAL, echo) as listener, connect(client_of(listener)) as s:
        with pytest.raises(TypeError, match="takes bytes, not str"):
            s.write("text")  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="max_bytes must be positive"):
            s.recv(0)
        with pytest.raises(ValueError, match="separator must not be empty"):
            s.read_until(b"")
        s.write(bytearray(b"ok"))
        s.write(memoryview(b"!"))
        assert s.read_exactly(3) == b"ok!"


def test_many_waiting_readers_are_woken_after_the_batch_and_counted_back() -> None:
    # With several readers parked, dataReceived wakes them through the hub's ready queue
    # (after the reactor's batch of events) instead of switching into each at once; with one,
    # it switches straight in.  Both must deliver every byte in order, and the count of
    # parked readers that picks the path must come back to zero however the waits end.
    from txgreen import _stream

    with listen(LOCAL, echo) as listener:

        def client(i: int) -> bytes:
            with connect(client_of(listener)) as s:
                got = b""
                for j in range(20):
                    msg = f"{i}:{j};".encode()
                    s.write(msg)
                    got += s.read_exactly(len(msg))
                return got

        threads = [txgreen.spawn(client, i) for i in range(30)]
        for i, t in enumerate(threads):
            assert t.get(timeout=10) == b"".join(f"{i}:{j};".encode() for j in range(20))

        # A reader that times out and one that is killed are counted back too.
        with connect(client_of(listener)) as quiet:
            quiet.timeout = 0.01
            with pytest.raises(txgreen.Timeout):
                quiet.recv()
            quiet.timeout = None
            reader = txgreen.spawn(quiet.recv)
            txgreen.sleep(0.01)
            assert _stream._parked_readers >= 1
            reader.kill()
            assert reader.dead
        assert listener.join(timeout=5) is True
    assert _stream._parked_readers == 0
