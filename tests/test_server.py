"""listen/serve/connect: handlers per connection, their errors, many connections, the example."""

from __future__ import annotations

import resource
from collections.abc import Iterator

import pytest
from twisted.internet.error import CannotListenError, ConnectionLost, ConnectionRefusedError
from twisted.logger import LogEvent

import txgreen
from support import log_events, run_program
from txgreen._stream import Listener, Stream, connect, listen, serve

LOCAL = "tcp:0:interface=127.0.0.1"


def client_of(listener: Listener) -> str:
    return f"tcp:host=127.0.0.1:port={listener.port}"


def is_stream_log(event: LogEvent) -> bool:
    return event.get("log_namespace") == "txgreen.stream"


def test_handler_return_closes_the_connection() -> None:
    def handler(stream: Stream) -> None:
        stream.write(b"hello and goodbye")

    with listen(LOCAL, handler) as listener, connect(client_of(listener)) as s:
        assert s.read() == b"hello and goodbye"  # then EOF: the server closed
        assert listener.join(timeout=5)


def test_handler_exception_is_logged_and_the_connection_aborted() -> None:
    def handler(stream: Stream) -> None:
        line = stream.readline()
        raise ValueError(f"cannot handle {line!r}")

    with log_events(is_stream_log) as events, listen(LOCAL, handler) as listener:
        with connect(client_of(listener)) as s:
            s.write(b"request\n")
            with pytest.raises(ConnectionLost):
                s.read()  # aborted: the client sees a reset, not a clean EOF
        assert listener.join(timeout=5)
    assert len(events) == 1
    event = events[0]
    failure = event["log_failure"]
    assert failure.check(ValueError)
    assert str(failure.value) == "cannot handle b'request\\n'"
    assert "failed on the connection from" in event["log_format"]
    assert "Traceback" in failure.getTraceback()
    assert event["peer"].host == "127.0.0.1"


def test_kill_aborts_handlers_quietly() -> None:
    started = txgreen.Event()

    def handler(stream: Stream) -> None:
        started.set()
        stream.read()  # waits forever: the client sends nothing

    with (
        log_events(is_stream_log) as events,
        listen(LOCAL, handler) as listener,
        connect(client_of(listener)) as s,
    ):
        started.wait()
        assert len(listener.handlers) == 1
        listener.kill()
        assert len(listener.handlers) == 0
        with pytest.raises(ConnectionLost):
            s.read()
    assert events == []


def test_close_stops_accepting_and_handlers_go_on() -> None:
    release = txgreen.Event()
    accepted = txgreen.Event()

    def handler(stream: Stream) -> None:
        accepted.set()
        release.wait()
        stream.write(b"still served")

    listener = listen(LOCAL, handler)
    try:
        with connect(client_of(listener)) as s:
            accepted.wait()
            listener.close()
            with pytest.raises(ConnectionRefusedError):
                connect(client_of(listener))
            assert listener.join(timeout=0.01) is False
            release.set()
            assert s.read() == b"still served"
        assert listener.join(timeout=5) is True
    finally:
        listener.close()
        listener.kill()


def test_listen_on_a_busy_port_raises() -> None:
    with listen(LOCAL, lambda s: None) as listener, pytest.raises(CannotListenError):
        listen(f"tcp:{listener.port}:interface=127.0.0.1", lambda s: None)


def test_serve_blocks_until_the_listener_is_closed() -> None:
    listeners: list[Listener] = []
    got = txgreen.AsyncResult[Listener]()

    def on_listen(listener: Listener) -> None:
        listeners.append(listener)
        got.set(listener)

    def upper(stream: Stream) -> None:
        for line in stream:
            stream.write(line.upper())

    server = txgreen.spawn(serve, LOCAL, upper, on_listen=on_listen)
    listener = got.get(timeout=5)
    with connect(client_of(listener)) as s:
        s.write(b"shout\n")
        assert s.readline() == b"SHOUT\n"
    assert not server.dead
    listener.close()
    assert server.get(timeout=5) is None
    assert listeners == [listener]


def test_serve_ends_when_killed() -> None:
    got = txgreen.AsyncResult[Listener]()
    server = txgreen.spawn(serve, LOCAL, lambda s: None, on_listen=got.set)
    listener = got.get(timeout=5)
    server.kill()
    assert server.dead
    with pytest.raises(ConnectionRefusedError):
        connect(client_of(listener))


@pytest.fixture
def many_fds() -> Iterator[int]:
    """Room for 1,000+ connections (both ends in this process); the select reactor gets fewer."""
    from twisted.internet import reactor

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = 4096 if hard == resource.RLIM_INFINITY else min(4096, hard)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, want), hard))
    try:
        if type(reactor).__name__ == "SelectReactor":
            yield 400  # select() cannot watch descriptors above FD_SETSIZE (1024)
        else:
            yield 1000 if want >= 2100 else (want - 100) // 2
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_many_concurrent_connections(many_fds: int) -> None:
    n = many_fds
    connected = [0]
    all_in = txgreen.Event()
    live = [0]
    peak = [0]

    def handler(stream: Stream) -> None:
        live[0] += 1
        peak[0] = max(peak[0], live[0])
        try:
            echo_lines(stream)
        finally:
            live[0] -= 1

    def echo_lines(stream: Stream) -> None:
        for line in stream:
            stream.write(line)

    def client(i: int, address: str) -> bytes:
        with connect(address, timeout=20) as s:
            connected[0] += 1
            if connected[0] == n:
                all_in.set()
            all_in.wait()  # every connection is open at once
            s.write(b"client %d\n" % i)
            answer = s.readline()
            s.write_eof()
            assert s.read() == b""
            return answer

    with listen(LOCAL + ":backlog=1024", handler) as listener:
        address = client_of(listener)
        clients = [txgreen.spawn(client, i, address) for i in range(n)]
        answers = [c.get(timeout=25) for c in clients]
        assert answers == [b"client %d\n" % i for i in range(n)]
        assert listener.join(timeout=10)
    assert peak[0] == n
    assert live[0] == 0


# -- the example ------------------------------------------------------------------------------


@pytest.mark.single_reactor  # the program runs its own reactor
@pytest.mark.timeout(90)  # run_program's own timeout (60 s) comes first
def test_echo_server_example() -> None:
    proc = run_program("examples/echo_server.py")
    assert (proc.returncode, proc.stderr) == (0, "")
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("echo server listening on 127.0.0.1:")
    assert sorted(lines[1:-1]) == [f"client {i} got b'hello from client {i}\\n'" for i in range(3)]
    assert lines[-1] == "server stopped; 3 connections served"
