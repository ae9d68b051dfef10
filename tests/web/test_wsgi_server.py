"""``txgreen.web.WSGIServer`` in this process: endpoints, the access log, the graceful stop."""

from __future__ import annotations

import contextlib
import io
import re
import socket
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import pytest
from twisted.internet.error import ConnectionClosed, ConnectionRefusedError

import txgreen
from txgreen.web import ListenError, WSGIServer

LOCAL = "tcp:0:interface=127.0.0.1"
CLF = re.compile(
    r'^127\.0\.0\.1 - - \[\d\d/\w{3}/\d{4}:\d\d:\d\d:\d\d \+0000\] "(.*)" (\d+) (\S+)$'
)

Environ = dict[str, Any]
StartResponse = Callable[..., Any]


def hello(environ: Environ, start_response: StartResponse) -> list[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"hello"]


def port_of(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


def connect(url: str) -> txgreen.Stream:
    return txgreen.connect(f"tcp:host=127.0.0.1:port={port_of(url)}", timeout=5)


def request(stream: txgreen.Stream, path: str = "/") -> None:
    stream.write(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())


def read_all(stream: txgreen.Stream) -> bytes:
    data = []
    with contextlib.suppress(txgreen.StreamClosed, ConnectionClosed):
        while chunk := stream.recv():
            data.append(chunk)
    return b"".join(data)


class Gate:
    """An application whose /slow requests wait for ``release`` (and say when they started)."""

    def __init__(self) -> None:
        self.started = txgreen.Event()
        self.release = txgreen.Event()
        self.finished: list[str] = []

    def __call__(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        if environ["PATH_INFO"] == "/slow":
            self.started.set()
            try:
                self.release.wait()
            finally:
                self.finished.append("slow")
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "2")])
        return [b"ok"]


def test_serves_on_several_endpoints_and_logs_each_request(tmp_path: Path) -> None:
    log = io.StringIO()
    sock = tmp_path / "s.sock"
    server = WSGIServer(hello, [LOCAL, f"unix:{sock}"], access_log=log)
    assert repr(server).startswith("<txgreen.web.WSGIServer new on tcp:0")
    urls = server.start()
    assert server.urls == urls
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+", urls[0])
    assert urls[1] == f"unix:{sock}"
    assert len(server.ports) == 2
    assert "listening on http://127.0.0.1:" in repr(server)
    with connect(urls[0]) as s:
        s.write(b"GET /x?y HTTP/1.0\r\n\r\n")
        assert read_all(s).endswith(b"\r\n\r\nhello")
    with txgreen.connect(f"unix:{sock}", timeout=5) as s:
        s.write(b"GET /u HTTP/1.0\r\nHost: x\r\n\r\n")
        assert read_all(s).endswith(b"\r\n\r\nhello")
    server.stop()
    assert server.stopped
    lines = log.getvalue().splitlines()
    m = CLF.match(lines[0])
    assert m is not None, lines
    assert m.groups() == ("GET /x?y HTTP/1.0", "200", "5")
    assert lines[1].startswith("- - - [")
    assert lines[1].endswith('"GET /u HTTP/1.0" 200 5')
    assert "stopped" in repr(server)


def test_a_graceful_stop_lets_requests_finish_and_closes_idle_connections() -> None:
    app = Gate()
    server = WSGIServer(app, [LOCAL])
    (url,) = server.start()
    idle = connect(url)
    request(idle)
    assert idle.readline() == b"HTTP/1.1 200 OK\r\n"
    busy = connect(url)
    request(busy, "/slow")
    assert app.started.wait(timeout=5)
    stopper = txgreen.spawn(server.stop)
    assert read_all(idle).endswith(b"ok")  # closed at once, not after the drain
    idle.close()
    with pytest.raises(ConnectionRefusedError):
        connect(url)
    assert server.stopping
    assert not server.stopped
    app.release.set()
    reply = read_all(busy)  # the response, then the server closes the connection
    busy.close()
    assert reply.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"\r\nConnection: close\r\n" in reply
    assert reply.endswith(b"\r\n\r\nok")
    stopper.join(timeout=10)
    assert server.stopped
    assert app.finished == ["slow"]


def test_requests_still_running_after_the_timeout_are_killed_and_aborted() -> None:
    app = Gate()
    server = WSGIServer(app, [LOCAL], graceful_timeout=0.2)
    (url,) = server.start()
    busy = connect(url)
    request(busy, "/slow")
    assert app.started.wait(timeout=5)
    server.stop()  # waits 0.2 s, then aborts
    assert server.stopped
    assert app.finished == ["slow"]  # its finally ran: it was killed
    assert read_all(busy) == b""  # aborted: nothing sent
    busy.close()
    assert len(server.resource.threads) == 0


def test_close_and_a_second_stop() -> None:
    app = Gate()
    server = WSGIServer(app, [LOCAL])
    (url,) = server.start()
    busy = connect(url)
    request(busy, "/slow")
    assert app.started.wait(timeout=5)
    graceful = txgreen.spawn(server.stop)  # would wait 30 s for /slow
    txgreen.sleep(0.1)
    assert server.stopping
    server.close()  # stop(timeout=0): cuts the graceful stop short
    assert server.stopped
    assert graceful.join(timeout=5)
    assert app.finished == ["slow"]
    assert read_all(busy) == b""
    busy.close()
    server.stop()  # stopped already: returns at once


def test_a_with_block_starts_and_stops() -> None:
    with WSGIServer(hello, [LOCAL], graceful_timeout=1) as server:
        (url,) = server.urls
        with connect(url) as s:
            s.write(b"GET / HTTP/1.0\r\n\r\n")
            assert read_all(s).endswith(b"hello")
    assert server.stopped
    with pytest.raises(ConnectionRefusedError):
        connect(url)


def test_a_port_taken_closes_the_ports_already_open() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        endpoint = f"tcp:{port}:interface=127.0.0.1"
        server = WSGIServer(hello, [LOCAL, endpoint])
        with pytest.raises(ListenError) as info:
            server.start()
    assert str(info.value) == f"cannot listen on {endpoint!r}: Address already in use"
    assert info.value.endpoint == endpoint
    assert info.value.__cause__ is not None
    assert server.stopped
    (first,) = server.urls
    with pytest.raises(ConnectionRefusedError):
        connect(first)


@pytest.mark.parametrize(
    ("endpoint", "words"),
    [
        ("tcpp:80", "invalid endpoint 'tcpp:80': Unknown endpoint type: 'tcpp'"),
        ("tcp:port=x", "invalid endpoint 'tcp:port=x': "),
        (
            "ssl:0:privateKey=/no/such.pem",
            "invalid endpoint 'ssl:0:privateKey=/no/such.pem': No such file or directory",
        ),
    ],
)
def test_invalid_endpoints(endpoint: str, words: str) -> None:
    server = WSGIServer(hello, [endpoint])
    with pytest.raises(ListenError) as info:
        server.start()
    assert str(info.value).startswith(words), str(info.value)
    assert "tcp:8000:interface=127.0.0.1" in str(info.value)  # what one looks like


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="at least one endpoint"):
        WSGIServer(hello, [])
    with pytest.raises(ValueError, match="graceful_timeout must be >= 0"):
        WSGIServer(hello, [LOCAL], graceful_timeout=-1)
    server = WSGIServer(hello, [LOCAL])
    server.start()
    try:
        with pytest.raises(RuntimeError, match="called twice"):
            server.start()
    finally:
        server.close()


def test_the_access_log_file_is_appended_to(tmp_path: Path) -> None:
    path = tmp_path / "access.log"
    path.write_text("earlier line\n")
    with WSGIServer(hello, [LOCAL], access_log=str(path)) as server:
        with connect(server.urls[0]) as s:
            s.write(b"GET /f HTTP/1.0\r\n\r\n")
            read_all(s)
        first, second = path.read_text().splitlines()  # written at once, not at the stop
    assert first == "earlier line"
    m = CLF.match(second)
    assert m is not None, second
    assert m.groups() == ("GET /f HTTP/1.0", "200", "5")
