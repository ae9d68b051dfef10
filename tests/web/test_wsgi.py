"""WSGIResource and serve_wsgi: PEP 3333 semantics, errors, back-pressure, on real sockets."""

from __future__ import annotations

import contextlib
import contextvars
import io
import json
import re
import socket
import struct
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from wsgiref.validate import validator

import pytest
from greenlet import getcurrent
from twisted.internet import task
from twisted.internet.endpoints import serverFromString
from twisted.internet.error import ConnectionClosed, ConnectionRefusedError
from twisted.logger import LogEvent, LogLevel
from twisted.web.client import Agent, FileBodyProducer, readBody
from twisted.web.http_headers import Headers
from twisted.web.resource import Resource
from twisted.web.server import Site

import txgreen
from support import Boom, exception_state, log_events, shared_by_twisted, tb_frames
from txgreen._hub import get_hub
from txgreen.web import WSGIResource, _container, serve_wsgi

LOCAL = "tcp:0:interface=127.0.0.1:backlog=512"

# Twisted's readBody warns when the body was delivered before it could see the transport (the
# Agent's proxy of it has no abortConnection); that only matters when cancelling readBody.
pytestmark = pytest.mark.filterwarnings("ignore:Using readBody with a transport:DeprecationWarning")

Environ = dict[str, Any]
StartResponse = Callable[..., Callable[[bytes], object]]
App = Callable[[Environ, StartResponse], Iterable[bytes]]


def _reactor() -> Any:
    from twisted.internet import reactor

    return reactor


def listen_site(root: Any, endpoint: str = LOCAL) -> Any:
    """Listen with a twisted.web Site over ``root``; the IListeningPort."""
    site = Site(root)  # type: ignore[no-untyped-call]
    ep = serverFromString(_reactor(), endpoint)  # type: ignore[no-untyped-call]
    return txgreen.block_on(ep.listen(site))


# -- helpers --------------------------------------------------------------------------------------


@dataclass
class Server:
    port: int
    resource: WSGIResource

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@contextlib.contextmanager
def serving(app: App, *, validate: bool = True, root: Resource | None = None) -> Iterator[Server]:
    """Serve ``app`` (through wsgiref's validator unless told not to) on a local port."""
    resource = WSGIResource(validator(app) if validate else app)
    port = listen_site(root if root is not None else resource)
    try:
        yield Server(port.getHost().port, resource)
    finally:
        txgreen.block_on(port.stopListening())
        assert resource.threads.join(timeout=5)


@dataclass
class Reply:
    code: int
    headers: Headers
    body: bytes

    def header(self, name: str) -> list[str] | None:
        values = self.headers.getRawHeaders(name.encode())
        return None if values is None else [v.decode("latin-1") for v in values]


def fetch(
    url: str,
    method: bytes = b"GET",
    headers: dict[bytes, list[bytes]] | None = None,
    body: bytes | None = None,
) -> Reply:
    """One request through twisted.web's Agent (a new connection, closed after the response)."""
    agent = txgreen.blocking(Agent(_reactor()))  # type: ignore[no-untyped-call]
    producer = None
    if body is not None:
        producer = FileBodyProducer(io.BytesIO(body))  # type: ignore[no-untyped-call]
    response = agent.request(method, url.encode(), Headers(headers or {}), producer)
    data = txgreen.block_on(readBody(response))
    return Reply(response.code, response.headers, data)


def raw(server: Server, request: bytes) -> bytes:
    """Send ``request`` as is, return every byte received until the server closes or resets."""
    received = []
    with txgreen.connect(f"tcp:host=127.0.0.1:port={server.port}", timeout=5) as s:
        s.write(request)
        with contextlib.suppress(txgreen.StreamClosed, ConnectionClosed):
            while chunk := s.recv():
                received.append(chunk)
    return b"".join(received)


def cut_short(answer: bytes) -> bool:
    """True if ``answer`` is an incomplete response: nothing, or headers and part of a body.

    When an application fails after the headers went out, the server aborts the connection,
    which also drops what Twisted had not yet handed to the kernel.
    """
    if not answer:
        return True
    head, _, body = answer.partition(b"\r\n\r\n")
    if b"\r\nTransfer-Encoding: chunked" in head:
        return not body.endswith(b"\r\n0\r\n\r\n")
    length = re.search(rb"\r\nContent-Length: (\d+)", head)
    return length is not None and len(body) < int(length[1])


def wsgi_log(level: LogLevel | None = None) -> contextlib.AbstractContextManager[list[LogEvent]]:
    """Collect txgreen.wsgi's log events (of ``level`` only, if given)."""
    return log_events(
        lambda e: (
            e.get("log_namespace") == "txgreen.wsgi"
            and (level is None or e.get("log_level") == level)
        )
    )


def error_log() -> contextlib.AbstractContextManager[list[LogEvent]]:
    """Collect every event logged at error level or above, whoever logs it."""
    return log_events(lambda e: e.get("log_level") in (LogLevel.error, LogLevel.critical))


def text_of(event: LogEvent) -> str:
    from twisted.logger import formatEvent

    return formatEvent(event)


class Body:
    """An iterable response body that counts the chunks taken and the close() calls."""

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self._chunks = iter(chunks)
        self.taken = 0
        self.closed = 0

    def __iter__(self) -> Body:
        return self

    def __next__(self) -> bytes:
        chunk = next(self._chunks)
        self.taken += 1
        return chunk

    def close(self) -> None:
        self.closed += 1


def hello(environ: Environ, start_response: StartResponse) -> list[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"hello ", b"world"]


# -- the environ ----------------------------------------------------------------------------------


def environ_as_json(environ: Environ, start_response: StartResponse) -> list[bytes]:
    shown = {k: v for k, v in environ.items() if isinstance(v, str | bool | int | tuple)}
    shown["twisted.request"] = type(environ["twisted.request"]).__name__
    shown["input"] = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH", 0)))
    start_response("200 OK", [("Content-Type", "application/json")])
    return [json.dumps(shown, default=lambda b: b.decode("latin-1")).encode()]


def test_environ_of_a_get_request() -> None:
    with serving(environ_as_json) as server, error_log() as errors:
        reply = fetch(
            server.url + "/caf%C3%A9/a%20b?x=1&y=%20",
            headers={b"X-Forwarded-Thing": [b"one", b"two"], b"Cookie": [b"a=1", b"b=2"]},
        )
    assert reply.code == 200
    env = json.loads(reply.body)
    assert env["REQUEST_METHOD"] == "GET"
    assert env["SCRIPT_NAME"] == ""
    # unquoted, as native str decoded latin-1 (PEP 3333): the UTF-8 bytes of "é" as 2 chars
    assert env["PATH_INFO"] == "/caf\xc3\xa9/a b"
    assert env["QUERY_STRING"] == "x=1&y=%20"
    assert env["SERVER_NAME"] == "127.0.0.1"
    assert env["SERVER_PORT"] == str(server.port)
    assert env["SERVER_PROTOCOL"] == "HTTP/1.1"
    assert env["REMOTE_ADDR"] == "127.0.0.1"
    assert int(env["REMOTE_PORT"]) > 0
    assert env["HTTP_HOST"] == f"127.0.0.1:{server.port}"
    assert env["HTTP_X_FORWARDED_THING"] == "one, two"
    assert env["HTTP_COOKIE"] == "a=1; b=2"
    assert "CONTENT_LENGTH" not in env
    assert "HTTP_CONTENT_LENGTH" not in env
    assert env["wsgi.version"] == [1, 0]
    assert env["wsgi.url_scheme"] == "http"
    assert env["wsgi.multithread"] is True
    assert env["wsgi.multiprocess"] is False
    assert env["wsgi.run_once"] is False
    assert env["wsgi.input_terminated"] is True
    assert env["twisted.request"] == "Request"
    assert env["input"] == ""
    assert errors == []


def test_environ_per_request_on_a_kept_alive_connection() -> None:
    # The part of the environ that depends only on the connection is built once per
    # connection: an application (a proxy-fixing middleware) that changes its environ must not
    # change the next request's, and each request gets its own method, path and headers.
    seen: list[tuple[str, str, str, str, str, str]] = []

    def rewriting(environ: Environ, start_response: StartResponse) -> list[bytes]:
        seen.append(
            (
                environ["REQUEST_METHOD"],
                environ["PATH_INFO"],
                environ["wsgi.url_scheme"],
                environ["REMOTE_ADDR"],
                environ["SERVER_NAME"],
                environ.get("HTTP_X_ONE", "-"),
            )
        )
        environ["wsgi.url_scheme"] = "https"  # as ProxyFix does from X-Forwarded-Proto
        environ["REMOTE_ADDR"] = "203.0.113.7"
        environ["HTTP_X_ONE"] = "changed"
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]

    with serving(rewriting) as server:
        answer = raw(
            server,
            b"GET /a HTTP/1.1\r\nHost: one.example:80\r\nX-One: 1\r\n\r\n"
            b"HEAD /b HTTP/1.1\r\nHost: two.example\r\n\r\n"
            b"POST /c HTTP/1.1\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        )
    assert answer.count(b"HTTP/1.1 200 OK") == 3
    assert seen == [
        ("GET", "/a", "http", "127.0.0.1", "one.example", "1"),
        ("HEAD", "/b", "http", "127.0.0.1", "two.example", "-"),
        ("POST", "/c", "http", "127.0.0.1", "127.0.0.1", "-"),  # no Host: the address
    ]


def test_long_client_strings_are_served_but_not_cached() -> None:
    # The container caches the short strings clients send (header names, Host headers,
    # methods) and the application's status lines and header names; long ones are served the
    # same but never kept, so 1,024 cache entries cannot hold megabytes.
    from txgreen.web import _container

    host = "h" * 300 + ".example"
    name = "X-" + "n" * 300
    method = "M" * 300
    status = "299 " + "r" * 300
    header = "X-App-" + "a" * 300

    def echo(environ: Environ, start_response: StartResponse) -> list[bytes]:
        start_response(status, [("Content-Type", "text/plain"), (header, "1")])
        seen = (environ["REQUEST_METHOD"], environ["SERVER_NAME"], environ["HTTP_X_" + "N" * 300])
        return [repr(seen).encode()]

    with serving(echo, validate=False) as server:
        answer = raw(
            server,
            f"{method} / HTTP/1.1\r\nHost: {host}\r\n{name}: v\r\n"
            "Connection: close\r\n\r\n".encode(),
        )
    assert answer.startswith(f"HTTP/1.1 {status}\r\n".encode()), answer[:100]
    assert f"\r\n{header}: 1\r\n".lower().encode() in answer.lower()  # (Twisted's casing)
    assert repr((method, host, "v")).encode() in answer
    caches: list[Any] = [
        _container._ENV_NAMES,
        _container._SERVER_NAMES,
        _container._TEXT,
        _container._GOOD_STATUSES,
        _container._GOOD_NAMES,
    ]
    for cache in caches:
        assert all(len(key) <= _container._CACHED_LEN_MAX for key in cache), cache.keys()
    assert method.encode() not in _container._TEXT
    assert host.encode() not in _container._SERVER_NAMES


def test_environ_asks_a_request_class_that_overrides_the_connection_methods() -> None:
    # A Site whose request class answers isSecure / getClientAddress itself (behind a TLS
    # proxy, say) is asked for every request, not once per connection.
    from twisted.internet.address import IPv4Address
    from twisted.web.server import Request as WebRequest

    answers = iter([("198.51.100.1", True), ("198.51.100.2", False)])

    class ProxiedRequest(WebRequest):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)  # type: ignore[no-untyped-call]
            self.proxied = next(answers)

        def isSecure(self) -> bool:
            return self.proxied[1]

        def getClientAddress(self) -> Any:
            return IPv4Address("TCP", self.proxied[0], 1234)

    def who(environ: Environ, start_response: StartResponse) -> list[bytes]:
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [f"{environ['REMOTE_ADDR']} {environ['wsgi.url_scheme']};".encode()]

    site = Site(WSGIResource(validator(who)))  # type: ignore[no-untyped-call]
    site.requestFactory = ProxiedRequest
    endpoint = serverFromString(_reactor(), LOCAL)  # type: ignore[no-untyped-call]
    port = txgreen.block_on(endpoint.listen(site))
    try:
        server = Server(port.getHost().port, WSGIResource(who))
        answer = raw(
            server,
            b"GET / HTTP/1.1\r\nHost: x\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n"
            b"Connection: close\r\n\r\n",
        )
    finally:
        txgreen.block_on(port.stopListening())
    assert b"198.51.100.1 https;" in answer
    assert b"198.51.100.2 http;" in answer


def test_script_name_and_path_info_inside_a_resource_tree() -> None:
    def paths(environ: Environ, start_response: StartResponse) -> list[bytes]:
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [f"{environ['SCRIPT_NAME']!r} {environ['PATH_INFO']!r}".encode()]

    root: Any = Resource()  # type: ignore[no-untyped-call]
    apps: Any = Resource()  # type: ignore[no-untyped-call]
    root.putChild(b"apps", apps)
    apps.putChild(b"one", WSGIResource(validator(paths)))
    with serving(paths, root=root) as server:
        assert fetch(server.url + "/apps/one/x/y").body == b"'/apps/one' '/x/y'"
        assert fetch(server.url + "/apps/one/").body == b"'/apps/one' '/'"
        assert fetch(server.url + "/apps/one").body == b"'/apps/one' ''"
    with serving(paths) as server:  # the Site's root: everything is PATH_INFO
        assert fetch(server.url + "/").body == b"'' '/'"
        assert fetch(server.url + "/a/b/").body == b"'' '/a/b/'"


def test_request_body_and_content_headers() -> None:
    def upload(environ: Environ, start_response: StartResponse) -> list[bytes]:
        stream = environ["wsgi.input"]
        first = stream.readline()
        rest = stream.read(int(environ["CONTENT_LENGTH"]) - len(first))
        start_response("200 OK", [("Content-Type", "text/plain")])
        seen = [environ.get("CONTENT_TYPE", "-"), environ["CONTENT_LENGTH"]]
        return [f"{seen!r} {first!r} {rest!r}".encode()]

    with serving(upload) as server:
        reply = fetch(
            server.url,
            b"POST",
            {b"Content-Type": [b"text/x-lines"]},
            body=b"line 1\nline 2\n",
        )
        assert reply.body == b"['text/x-lines', '14'] b'line 1\\n' b'line 2\\n'"
        # A chunked upload has no Content-Length header; twisted.web has read it all, so the
        # environ gets its length.
        answer = raw(
            server,
            b"PUT / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n5\r\nab\ncd\r\n3\r\nefg\r\n0\r\n\r\n",
        )
        assert answer.endswith(b"\r\n\r\n1b\r\n['-', '8'] b'ab\\n' b'cdefg'\r\n0\r\n\r\n")


# Twisted itself hands pyOpenSSL objects to pyOpenSSL, which deprecates that: not ours to fix.
@pytest.mark.filterwarnings("ignore:Passing pyOpenSSL:DeprecationWarning")
def test_https_url_scheme(tmp_path: Path) -> None:
    pytest.importorskip("OpenSSL", reason="TLS needs twisted[tls]")
    from test_stream_tls import make_certificate

    cert = make_certificate(tmp_path)

    def scheme(environ: Environ, start_response: StartResponse) -> list[bytes]:
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [environ["wsgi.url_scheme"].encode()]

    resource = WSGIResource(validator(scheme))
    endpoint = f"ssl:0:interface=127.0.0.1:privateKey={cert.key_file}:certKey={cert.cert_file}"
    port = listen_site(resource, endpoint)
    try:
        address = f"tls:host=localhost:port={port.getHost().port}:trustRoots={cert.trust_dir}"
        with txgreen.connect(address, timeout=5) as s:
            s.write(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            answer = s.read()
    finally:
        txgreen.block_on(port.stopListening())
    assert answer.startswith(b"HTTP/1.1 200 OK\r\n")
    assert answer.endswith(b"\r\n\r\n5\r\nhttps\r\n0\r\n\r\n")


def test_each_request_runs_in_its_own_context_copy() -> None:
    var: contextvars.ContextVar[str] = contextvars.ContextVar("var", default="unset")

    def app(environ: Environ, start_response: StartResponse) -> list[bytes]:
        before = var.get()
        var.set(environ["PATH_INFO"])
        txgreen.sleep(0.01)  # the other requests run meanwhile
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [f"{before} {var.get()}".encode()]

    with serving(app) as server:
        clients = [txgreen.spawn(fetch, f"{server.url}/{n}") for n in range(5)]
        # No request sees what another one set, while they all run at once.
        assert [c.get().body for c in clients] == [f"unset /{n}".encode() for n in range(5)]


def test_green_threads_are_reused_then_end_when_idle(monkeypatch: pytest.MonkeyPatch) -> None:
    var: contextvars.ContextVar[str] = contextvars.ContextVar("var", default="unset")
    seen: list[tuple[Any, str]] = []

    def app(environ: Environ, start_response: StartResponse) -> list[bytes]:
        seen.append((getcurrent(), var.get()))
        var.set(environ["PATH_INFO"])
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]

    # Long enough for the next request to come on a loaded machine.
    monkeypatch.setattr(_container, "IDLE_SECONDS", 2.0)
    hub = get_hub()
    with serving(app) as server:
        for n in range(3):
            assert fetch(f"{server.url}/{n}").body == b"ok"
        # One green thread served the three requests in turn, each in a fresh context copy.
        assert len({id(thread) for thread, _ in seen}) == 1
        assert [before for _, before in seen] == ["unset"] * 3
        worker = seen[0][0]
        assert worker in hub.threads
        assert worker not in server.resource.threads
        # Killed while it waits for a request, it ends quietly; the next request gets another.
        worker.kill()
        assert worker.dead
        assert worker.successful()
        assert fetch(f"{server.url}/again").body == b"ok"
        waiting = seen[-1][0]
        assert waiting is not worker
        assert seen[-1][1] == "unset"
        # A thread that has waited IDLE_SECONDS for a request ends on its own.
        monkeypatch.setattr(_container, "IDLE_SECONDS", 0.05)
        assert waiting.join(timeout=10)
        assert waiting.successful()
        assert waiting not in hub.threads


# -- start_response -------------------------------------------------------------------------------


def test_start_response_checks_its_arguments() -> None:
    bad: list[tuple[Any, Any]] = [
        (200, []),
        ("200", []),
        ("200OK", []),
        ("20 OK", []),
        ("200 OK\r\nX: y", []),
        ("200 \u2603", []),
        ("200 OK", ()),
        ("200 OK", [["A", "b"]]),
        ("200 OK", [("A", "b", "c")]),
        ("200 OK", [(b"A", "b")]),
        ("200 OK", [("A", 1)]),
        ("200 OK", [("Bad Name", "x")]),
        ("200 OK", [("X-Injected", "a\r\nSet-Cookie: evil=1")]),
        ("200 OK", [("X-Snowman", "\u2603")]),
        ("200 OK", [("Connection", "close")]),
        ("200 OK", [("Transfer-Encoding", "chunked")]),
        ("200 OK", [("Content-Length", "-1")]),
    ]
    outcomes: list[str] = []

    def app(environ: Environ, start_response: StartResponse) -> list[bytes]:
        for status, headers in bad:
            try:
                start_response(status, headers)
            except (TypeError, ValueError) as e:
                outcomes.append(f"{type(e).__name__}: {e}")
        start_response("200 OK", [("Content-Type", "text/plain")])
        try:
            start_response("201 Created", [])
        except RuntimeError as e:
            outcomes.append(f"{type(e).__name__}: {e}")
        return [b"ok"]

    with serving(app, validate=False) as server:  # the validator would catch them first
        reply = fetch(server.url)
    assert (reply.code, reply.body) == (200, b"ok")
    p = "start_response(): "
    assert outcomes == [
        f"TypeError: {p}status must be a str such as '200 OK', not 'int'",
        f"ValueError: {p}status '200' is not a three-digit code, a space and a reason phrase, "
        "such as '200 OK'",
        f"ValueError: {p}status '200OK' is not a three-digit code, a space and a reason phrase, "
        "such as '200 OK'",
        f"ValueError: {p}status '20 OK' is not a three-digit code, a space and a reason phrase, "
        "such as '200 OK'",
        f"ValueError: {p}status '200 OK\\r\\nX: y' is not a three-digit code, a space and a "
        "reason phrase, such as '200 OK'",
        f"ValueError: {p}status '200 \u2603' is not latin-1 encodable; WSGI headers are native "
        "strings holding latin-1 text (encode other text, e.g. RFC 2047 or %-escapes)",
        f"TypeError: {p}headers must be a list of (name, value) tuples, not 'tuple'",
        f"TypeError: {p}each header must be a (name, value) tuple, not ['A', 'b']",
        f"TypeError: {p}each header must be a (name, value) tuple, not ('A', 'b', 'c')",
        f"TypeError: {p}header names and values must be str, not (bytes, str) in (b'A', 'b')",
        f"TypeError: {p}header names and values must be str, not (str, int) in ('A', 1)",
        f"ValueError: {p}'Bad Name' is not a valid header name",
        f"ValueError: {p}the value of header 'X-Injected' holds a control character (a line "
        "break?): 'a\\r\\nSet-Cookie: evil=1'",
        f"ValueError: {p}the value of header 'X-Snowman': '\u2603' is not latin-1 encodable; "
        "WSGI headers are native strings holding latin-1 text (encode other text, e.g. "
        "RFC 2047 or %-escapes)",
        f"ValueError: {p}'Connection' is a hop-by-hop header, which a WSGI application must not "
        "set (the HTTP server manages the connection)",
        f"ValueError: {p}'Transfer-Encoding' is a hop-by-hop header, which a WSGI application "
        "must not set (the HTTP server manages the connection)",
        f"ValueError: {p}Content-Length must be a non-negative integer, not '-1'",
        "RuntimeError: start_response() was called a second time without exc_info; only an "
        "error handler may call it again, passing exc_info=sys.exc_info()",
    ]


def test_headers_status_and_twisted_defaults() -> None:
    def app(environ: Environ, start_response: StartResponse) -> list[bytes]:
        start_response(
            "418 I'm a teapot",
            [
                ("Content-Type", "text/plain"),
                ("Set-Cookie", "a=1"),
                ("X-Thing", "x"),
                ("set-cookie", "b=2"),
                ("Server", "teapot/1.0"),
            ],
        )
        return [b"short and stout"]

    with serving(app) as server:
        reply = fetch(server.url)
        answer = raw(server, b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert reply.code == 418
    assert reply.header("Set-Cookie") == ["a=1", "b=2"]
    assert reply.header("X-Thing") == ["x"]
    assert reply.header("Server") == ["teapot/1.0"]  # replaces Twisted's
    assert reply.header("Date") is not None  # Twisted's, kept
    assert reply.header("Content-Type") == ["text/plain"]
    assert reply.body == b"short and stout"
    assert answer.startswith(b"HTTP/1.1 418 I'm a teapot\r\n")


def test_one_chunk_list_gets_a_content_length_others_are_chunked() -> None:
    def app(environ: Environ, start_response: StartResponse) -> list[bytes]:
        if environ["PATH_INFO"] == "/one":
            start_response("200 OK", [])
            return [b"one chunk"]
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"two ", b"chunks"]

    with serving(app, validate=False) as server:  # the validator hides the list
        one = raw(server, b"GET /one HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        two = raw(server, b"GET /two HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert b"\r\nContent-Length: 9\r\n" in one
    assert b"Content-Type" not in one  # twisted.web's text/html default is not added
    assert one.endswith(b"\r\n\r\none chunk")
    assert b"\r\nTransfer-Encoding: chunked\r\n" in two
    assert two.endswith(b"\r\n\r\n4\r\ntwo \r\n6\r\nchunks\r\n0\r\n\r\n")


def test_headers_wait_for_the_first_non_empty_chunk() -> None:
    seen: list[tuple[str, int]] = []

    def app(environ: Environ, start_response: StartResponse) -> Iterator[bytes]:
        request = environ["twisted.request"]
        start_response("200 OK", [("Content-Type", "text/plain")])
        yield b""
        seen.append(("after an empty chunk", request.startedWriting))
        yield b"body"
        seen.append(("after a non-empty chunk", request.startedWriting))

    with serving(app) as server:
        assert fetch(server.url).body == b"body"
    assert seen == [("after an empty chunk", 0), ("after a non-empty chunk", 1)]


def test_start_response_may_be_called_inside_the_generator() -> None:
    def app(environ: Environ, start_response: StartResponse) -> Iterator[bytes]:
        start_response("202 Accepted", [("Content-Type", "text/plain")])
        yield b"late "
        yield b"start"

    with serving(app) as server:
        reply = fetch(server.url)
    assert (reply.code, reply.body) == (202, b"late start")


def test_empty_body_and_head_requests() -> None:
    def app(environ: Environ, start_response: StartResponse) -> list[bytes]:
        if environ["PATH_INFO"] == "/empty":
            start_response("200 OK", [("Content-Type", "text/plain")])
            return []
        if environ["PATH_INFO"] == "/no-content":
            start_response("204 No Content", [])
            return []
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "5")])
        return [b"hello"]

    request = "{} {} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    with serving(app) as server, error_log() as errors:
        empty = raw(server, request.format("GET", "/empty").encode())
        nothing = raw(server, request.format("GET", "/no-content").encode())
        head = raw(server, request.format("HEAD", "/hello").encode())
        head_empty = raw(server, request.format("HEAD", "/empty").encode())
        reply = fetch(server.url + "/hello", b"HEAD")
    assert empty.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"\r\nContent-Length: 0\r\n" in empty
    assert empty.endswith(b"\r\n\r\n")
    assert nothing.startswith(b"HTTP/1.1 204 No Content\r\n")
    assert b"Content-Length" not in nothing
    assert nothing.endswith(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"\r\nContent-Length: 5\r\n" in head
    assert head.endswith(b"\r\n\r\n")  # twisted.web dropped the body
    assert b"Content-Length" not in head_empty  # a HEAD answer does not say the body is empty
    assert head_empty.endswith(b"\r\n\r\n")
    assert (reply.code, reply.body, reply.header("Content-Length")) == (200, b"", ["5"])
    assert errors == []


def test_legacy_write_callable() -> None:
    def app(environ: Environ, start_response: StartResponse) -> list[bytes]:
        write = start_response("200 OK", [("Content-Type", "text/plain")])
        write(b"written ")
        write(b"")
        write(b"then ")
        return [b"returned"]

    with serving(app) as server:
        reply = fetch(server.url)
    assert reply.body == b"written then returned"


def test_legacy_write_sends_the_headers_even_when_empty() -> None:
    def app(environ: Environ, start_response: StartResponse) -> list[bytes]:
        write = start_response("200 OK", [("Content-Type", "text/plain")])
        before = environ["twisted.request"].startedWriting
        write(b"")
        after = environ["twisted.request"].startedWriting
        with pytest.raises(TypeError, match=r"^write\(\) takes bytes, not 'str'$"):
            write("text")  # type: ignore[arg-type]
        return [f"{before} {after}".encode()]

    with serving(app, validate=False) as server:  # the validator would raise its own error
        assert fetch(server.url).body == b"0 1"


# -- errors ---------------------------------------------------------------------------------------


def test_error_before_the_headers_answers_500_and_logs() -> None:
    body = Body([b"never sent"])

    def app(environ: Environ, start_response: StartResponse) -> Body:
        start_response("200 OK", [("Content-Type", "text/plain"), ("X-Lost", "yes")])
        if environ["PATH_INFO"] == "/late":
            return Body(boom_on_first())
        raise Boom("app failed")

    def boom_on_first() -> Iterator[bytes]:
        raise Boom("body failed")
        yield b""  # pragma: no cover

    with serving(app) as server, wsgi_log() as events:
        reply = fetch(server.url + "/early")
        late = fetch(server.url + "/late")
    assert (reply.code, reply.body) == (500, b"500 Internal Server Error\n")
    assert reply.header("Content-Type") == ["text/plain; charset=utf-8"]
    assert reply.header("X-Lost") is None  # the app's headers never went out
    assert (late.code, late.body) == (500, b"500 Internal Server Error\n")
    assert body.closed == 0  # it was never returned
    assert [e["log_level"] for e in events] == [LogLevel.error, LogLevel.error]
    assert [type(e["log_failure"].value) for e in events] == [Boom, Boom]
    assert [str(e["log_failure"].value) for e in events] == ["app failed", "body failed"]
    assert text_of(events[0]) == "WSGI application failed on GET /early; answering 500"


def test_error_after_the_headers_aborts_the_connection() -> None:
    bodies: list[Body] = []

    def chunks() -> Iterator[bytes]:
        yield b"first chunk"
        raise Boom("mid-body")

    def app(environ: Environ, start_response: StartResponse) -> Body:
        start_response("200 OK", [("Content-Type", "text/plain")])
        bodies.append(Body(chunks()))
        return bodies[-1]

    with serving(app) as server, wsgi_log() as events:
        answer = raw(server, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert cut_short(answer), answer
    assert bodies[0].closed == 1
    assert len(events) == 1
    assert events[0]["log_level"] == LogLevel.error
    assert str(events[0]["log_failure"].value) == "mid-body"
    assert "after the response headers were sent; aborting the connection" in text_of(events[0])


@pytest.mark.parametrize("when", ["before", "after"])
def test_non_bytes_chunk(when: str) -> None:
    def app(environ: Environ, start_response: StartResponse) -> list[Any]:
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"fine", "text"] if when == "after" else ["text"]

    with serving(app, validate=False) as server, wsgi_log(LogLevel.error) as events:
        answer = raw(server, b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    if when == "before":
        assert answer.startswith(b"HTTP/1.1 500 Internal Server Error\r\n")
        assert answer.endswith(b"\r\n\r\n500 Internal Server Error\n")
    else:
        assert cut_short(answer), answer
    assert len(events) == 1
    failure = events[0]["log_failure"]
    assert failure.type is TypeError
    assert str(failure.value) == (
        "the application's iterable yielded a 'str'; WSGI response bodies are bytes"
    )


def test_start_response_missing_or_too_late() -> None:
    def app(environ: Environ, start_response: StartResponse) -> Iterator[bytes]:
        if environ["PATH_INFO"] == "/never":
            return iter([])
        return iter([b"data first"])

    with serving(app, validate=False) as server, wsgi_log(LogLevel.error) as events:
        never = fetch(server.url + "/never")
        early = fetch(server.url + "/early")
    assert never.code == early.code == 500
    assert [str(e["log_failure"].value) for e in events] == [
        "the application returned without calling start_response()",
        "the application yielded body data before calling start_response()",
    ]


def test_exc_info_before_the_headers_replaces_the_response() -> None:
    def app(environ: Environ, start_response: StartResponse) -> list[bytes]:
        start_response("200 OK", [("Content-Type", "text/plain"), ("X-First", "1")])
        try:
            raise Boom("handled by the app")
        except Boom:
            headers = [("Content-Type", "text/plain")]
            start_response("503 Service Unavailable", headers, sys.exc_info())
        return [b"try again later"]

    with serving(app) as server, error_log() as errors:
        reply = fetch(server.url)
    assert (reply.code, reply.body) == (503, b"try again later")
    assert reply.header("X-First") is None
    assert errors == []


def test_exc_info_after_the_headers_reraises() -> None:
    reraised: list[BaseException] = []

    def app(environ: Environ, start_response: StartResponse) -> list[bytes]:
        write = start_response("200 OK", [("Content-Type", "text/plain")])
        write(b"partial")
        try:
            raise Boom("too late")
        except Boom as e:
            try:
                start_response("500 Oops", [("Content-Type", "text/plain")], sys.exc_info())
            except Boom as again:
                reraised.extend([again, e])
                raise
        return [b"not reached"]  # pragma: no cover

    with serving(app) as server, wsgi_log(LogLevel.error) as events:
        answer = raw(server, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert cut_short(answer), answer
    assert len(reraised) == 2
    assert reraised[0] is reraised[1]  # the very exception passed in exc_info
    assert [e["log_failure"].value for e in events] == reraised[:1]


def test_content_length_mismatch_is_an_application_error() -> None:
    def app(environ: Environ, start_response: StartResponse) -> list[bytes]:
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "5")])
        return {"/short": [b"abc", b""], "/none": [], "/long": [b"abc", b"def"]}[
            environ["PATH_INFO"]
        ]

    request = "GET {} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    with serving(app, validate=False) as server, wsgi_log(LogLevel.error) as events:
        short = raw(server, request.format("/short").encode())
        none = raw(server, request.format("/none").encode())
        long = raw(server, request.format("/long").encode())
    assert cut_short(short), short
    assert none.startswith(b"HTTP/1.1 500 ")  # nothing was sent yet
    assert cut_short(long), long
    assert [str(e["log_failure"].value) for e in events] == [
        "the application sent 3 bytes, fewer than the 5 it declared in its Content-Length header",
        "the application sent 0 bytes, fewer than the 5 it declared in its Content-Length header",
        "the application sent more than the 5 bytes it declared in its Content-Length header",
    ]


def test_close_is_called_once_when_close_itself_fails() -> None:
    class FailingClose(Body):
        def close(self) -> None:
            super().close()
            raise Boom("close failed")

    body = FailingClose([b"all ", b"sent"])

    def app(environ: Environ, start_response: StartResponse) -> Body:
        start_response("200 OK", [("Content-Type", "text/plain")])
        return body

    with serving(app, validate=False) as server, wsgi_log(LogLevel.error) as events:
        reply = fetch(server.url)
    assert (reply.code, reply.body) == (200, b"all sent")  # finished before close()
    assert body.closed == 1
    assert [str(e["log_failure"].value) for e in events] == ["close failed"]


def test_wsgi_errors_go_to_the_log_line_by_line() -> None:
    def app(environ: Environ, start_response: StartResponse) -> list[bytes]:
        errors = environ["wsgi.errors"]
        errors.write("line one\nline t")
        errors.write("wo\n")
        errors.writelines(["three\n", "tail without newline"])
        with pytest.raises(TypeError, match=r"^wsgi\.errors\.write\(\) takes a str, not 'bytes'$"):
            errors.write(b"bytes")
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]

    with serving(app, validate=False) as server, wsgi_log() as events:
        assert fetch(server.url + "/where").body == b"ok"
    assert [e["text"] for e in events] == ["line one", "line two", "three", "tail without newline"]
    assert {e["log_level"] for e in events} == {LogLevel.error}
    assert text_of(events[0]) == "wsgi.errors (GET /where): line one"


# -- client disconnects and back-pressure ---------------------------------------------------------


def test_client_disconnect_stops_iteration_and_closes() -> None:
    body = Body(iter(lambda: b"x" * 1000, None))  # endless
    started = txgreen.Event()

    def app(environ: Environ, start_response: StartResponse) -> Body:
        start_response("200 OK", [("Content-Type", "text/plain")])
        started.set()
        return body

    with serving(app) as server, error_log() as errors:
        s = txgreen.connect(f"tcp:host=127.0.0.1:port={server.port}", timeout=5)
        s.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert s.readline() == b"HTTP/1.1 200 OK\r\n"
        s.abort(wait=True)
        assert server.resource.threads.join(timeout=5)
    assert body.closed == 1
    taken = body.taken
    assert taken > 0
    assert errors == []


def test_client_disconnect_makes_write_raise_and_logs_no_error() -> None:
    raised: list[BaseException] = []

    def app(environ: Environ, start_response: StartResponse) -> list[bytes]:
        write = start_response("200 OK", [("Content-Type", "text/plain")])
        try:
            while True:
                write(b"y" * 10000)
        except ConnectionClosed as e:
            raised.append(e)
            raise

    with serving(app) as server, error_log() as errors:
        s = txgreen.connect(f"tcp:host=127.0.0.1:port={server.port}", timeout=5)
        s.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert s.readline() == b"HTTP/1.1 200 OK\r\n"
        s.abort(wait=True)
        assert server.resource.threads.join(timeout=5)
    assert len(raised) == 1
    assert isinstance(raised[0], ConnectionClosed)
    assert errors == []


def test_write_after_the_client_disconnected_raises_a_fresh_error_each_time() -> None:
    shared = shared_by_twisted()
    before = exception_state(shared)
    raised: list[tuple[BaseException, int]] = []

    def app(environ: Environ, start_response: StartResponse) -> list[bytes]:
        write = start_response("200 OK", [("Content-Type", "text/plain")])
        for _ in range(2):  # the first error, then a write after it
            try:
                while True:
                    write(b"y" * 10000)
            except ConnectionClosed as e:
                raised.append((e, tb_frames(e.__traceback__)))
        return []

    with serving(app) as server, error_log() as errors:
        for _ in range(2):  # two connections
            s = txgreen.connect(f"tcp:host=127.0.0.1:port={server.port}", timeout=5)
            s.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            assert s.readline() == b"HTTP/1.1 200 OK\r\n"
            s.abort(wait=True)
            assert server.resource.threads.join(timeout=5)
    assert len(raised) == 4
    assert len({id(e) for e, _ in raised}) == 4
    assert all(e is not o for e, _ in raised for o in shared)
    assert len({frames for _, frames in raised}) == 1  # no traceback grows
    assert exception_state(shared) == before
    assert errors == []


def test_slow_client_back_pressure_bounds_what_the_server_buffers() -> None:
    chunk = b"z" * 65536
    total = 20 * 1024 * 1024
    body = Body(chunk for _ in range(total // len(chunk)))

    def app(environ: Environ, start_response: StartResponse) -> Body:
        start_response(
            "200 OK", [("Content-Type", "application/octet-stream"), ("Content-Length", str(total))]
        )
        return body

    with serving(app) as server, error_log() as errors:
        sock = socket.socket()
        try:
            # A small receive buffer (no auto-tuning) and a client that never reads.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            txgreen.call_in_thread(sock.connect, ("127.0.0.1", server.port))
            sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            # Wait until the server stops taking chunks: the app's green thread is paused.
            steady, last = 0, -1
            deadline = time.monotonic() + 5
            while steady < 3 and time.monotonic() < deadline:
                txgreen.sleep(0.02)
                steady = steady + 1 if body.taken == last else 0
                last = body.taken
            assert steady == 3, "the server never stopped taking chunks"
            # The kernel's send buffer (at most tcp_wmem's maximum) plus Twisted's 64 KiB
            # buffer: far less than the 20 MiB the app would produce.
            assert 0 < body.taken * len(chunk) <= 8 * 1024 * 1024
            assert body.closed == 0
        finally:
            # Reset the connection (SO_LINGER 0) instead of leaving the server to send on.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            sock.close()
        assert server.resource.threads.join(timeout=5)
    assert body.closed == 1
    assert body.taken < total // len(chunk)
    assert errors == []


# -- blocking inside the application ---------------------------------------------------------------


def test_many_requests_wait_concurrently() -> None:
    def app(environ: Environ, start_response: StartResponse) -> list[bytes]:
        txgreen.sleep(0.1)
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [environ["PATH_INFO"].encode()]

    with serving(app) as server:
        start = time.monotonic()
        clients = [txgreen.spawn(fetch, f"{server.url}/{n}") for n in range(200)]
        bodies = [c.get().body for c in clients]
        elapsed = time.monotonic() - start
    assert bodies == [f"/{n}".encode() for n in range(200)]
    # A 10-thread pool would need 20 rounds of 0.1 s; here they all wait at once.
    assert elapsed < 1.5, elapsed


def test_application_calls_twisted_and_threads() -> None:
    def app(environ: Environ, start_response: StartResponse) -> Iterator[bytes]:
        later = txgreen.block_on(task.deferLater(_reactor(), 0.01, lambda: "from a Deferred"))
        in_thread = txgreen.call_in_thread(threading.current_thread)
        start_response("200 OK", [("Content-Type", "text/plain")])
        yield later.encode()
        txgreen.sleep(0.01)  # between chunks too
        yield b", " + (b"other thread" if in_thread is not threading.current_thread() else b"?")

    with serving(app) as server:
        assert fetch(server.url).body == b"from a Deferred, other thread"


# -- construction and serve_wsgi -------------------------------------------------------------------


def test_resource_refuses_another_reactor() -> None:
    with pytest.raises(ValueError, match="green threads run on the global reactor"):
        WSGIResource(hello, reactor=task.Clock())
    resource = WSGIResource(hello, reactor=_reactor())
    assert resource.isLeaf
    assert repr(resource).startswith("<txgreen.WSGIResource of <function hello")


def test_serve_wsgi_serves_until_killed() -> None:
    ports: list[Any] = []
    listening = txgreen.Event()

    def on_listen(port: Any) -> None:
        ports.append(port)
        listening.set()

    server = txgreen.spawn(serve_wsgi, LOCAL, validator(hello), on_listen=on_listen)
    assert listening.wait(timeout=5)
    number = ports[0].getHost().port
    reply = fetch(f"http://127.0.0.1:{number}/")
    assert (reply.code, reply.body) == (200, b"hello world")
    # An idle keep-alive connection, which serve_wsgi closes on its way out.
    idle = txgreen.connect(f"tcp:host=127.0.0.1:port={number}", timeout=5)
    idle.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert idle.readline() == b"HTTP/1.1 200 OK\r\n"
    server.kill()
    assert server.dead
    with pytest.raises(ConnectionRefusedError):
        txgreen.connect(f"tcp:host=127.0.0.1:port={number}", timeout=5)
    rest = idle.read()  # the server closed it
    assert rest.endswith(b"\r\n\r\n6\r\nhello \r\n5\r\nworld\r\n0\r\n\r\n")
    idle.close()


def test_killed_requests_abort_their_connection_quietly() -> None:
    bodies: list[Body] = []
    waiting = txgreen.Event()

    def forever() -> Iterator[bytes]:
        yield b""
        waiting.set()
        txgreen.Event().wait()
        yield b"never"  # pragma: no cover

    def app(environ: Environ, start_response: StartResponse) -> Body:
        start_response("200 OK", [("Content-Type", "text/plain")])
        bodies.append(Body(forever()))
        return bodies[-1]

    with serving(app) as server, error_log() as errors:
        s = txgreen.connect(f"tcp:host=127.0.0.1:port={server.port}", timeout=5)
        s.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert waiting.wait(timeout=5)
        server.resource.threads.kill()
        with contextlib.suppress(txgreen.StreamClosed, ConnectionClosed):
            assert s.recv() == b""  # nothing was sent: the connection was aborted
        s.abort(wait=True)
    assert bodies[0].closed == 1
    assert errors == []


def test_serve_wsgi_takes_the_forms_listen_takes_and_on_listen_gets_port_and_address() -> None:
    got: list[Any] = []
    ready = txgreen.Event()

    def on_listen(server: Any) -> None:
        got.append(server)
        ready.set()

    server = txgreen.spawn(serve_wsgi, ("127.0.0.1", 0), hello, on_listen=on_listen)
    try:
        ready.wait()
        listening = got[0]
        # The same names as the txgreen.Listener that txgreen.serve passes to its on_listen.
        assert listening.address.host == "127.0.0.1"
        assert listening.getHost().port == listening.port > 0
        with txgreen.connect(listening.port, timeout=10) as c:  # a green client, same reactor
            c.write(b"GET / HTTP/1.0\r\nHost: x\r\n\r\n")
            assert c.readline() == b"HTTP/1.0 200 OK\r\n"
    finally:
        server.kill()
    bad: Any = serve_wsgi
    with pytest.raises(TypeError, match=r"^serve_wsgi\(\): the endpoint must be a port number"):
        bad(8080.5, hello)
    with pytest.raises(TypeError, match=r"serve_wsgi\(endpoint, handler\)"):
        bad(hello, 8080)
