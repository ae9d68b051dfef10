"""A WSGI (PEP 3333) container for twisted.web that runs each request in a green thread.

Twisted's own ``twisted.web.wsgi.WSGIResource`` hands every request to a thread of a thread
pool, so the number of requests that can wait at once (on a database, on another HTTP
service) is the size of the pool.  :class:`WSGIResource` runs each request in a txgreen green
thread on the reactor's thread instead: a request that waits parks its green thread, so
thousands can wait at once, and the application can call Twisted APIs directly with
``txgreen.block_on``.

How one request goes (all of it in the request's green thread, except the reactor callbacks
of :class:`_Response` that only set flags and wake it):

- ``render()`` (in the hub) registers the response as a streaming producer on the request and
  spawns the green thread; it returns ``NOT_DONE_YET``.
- The green thread builds the environ, calls the application, then iterates its result,
  writing each chunk with ``request.write``.  When the transport's send buffer is full,
  Twisted calls ``pauseProducing`` and the green thread waits before the next chunk, until
  ``resumeProducing`` (so a slow client never makes the server buffer the whole body).
- The status and headers given to ``start_response`` are held until the first non-empty
  chunk (or ``write()`` call, or the end of an empty body), as PEP 3333 asks.
- A client that disconnects makes the loop stop before the next chunk; an application error
  becomes a 500 response if the headers have not gone out yet, else an aborted connection.
  The iterable's ``close()`` is called exactly once whatever happens.
"""

from __future__ import annotations

import contextlib
import contextvars
import io
import re
import time
from collections.abc import Callable, Iterable
from types import TracebackType
from typing import IO, Any, ClassVar

from greenlet import GreenletExit, getcurrent
from twisted.internet.error import ConnectionLost
from twisted.internet.interfaces import IPushProducer
from twisted.logger import Logger, LogLevel
from twisted.python.failure import Failure
from twisted.web.http import NO_BODY_CODES
from twisted.web.http import Request as TwistedRequest
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request
from zope.interface import implementer  # type: ignore[import-untyped]

from txgreen._greenthread import _new_thread, current_hub_and_greenlet
from txgreen._hub import STOPPED, Waiter, get_hub
from txgreen._pool import Group
from txgreen._util import failure_of, fresh_copy, own_error
from txgreen.errors import ReactorStopped

__all__ = ["WSGIResource"]

log = Logger(namespace="txgreen.wsgi")

# The environ a WSGI application gets, and the application: app(environ, start_response).
_Environ = dict[str, Any]
_Application = Callable[[_Environ, Any], Iterable[bytes]]

_ExcInfo = tuple[type[BaseException], BaseException, TracebackType]

# Headers that belong to one connection, not to the response: an application must not set them
# (PEP 3333); Twisted's HTTP server manages them itself.
_HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailers",
        "transfer-encoding",
        "upgrade",
    }
)
_STATUS = re.compile(r"[1-9][0-9]{2} [^\x00-\x08\x0a-\x1f\x7f]*")
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_BAD_VALUE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")

_ERROR_BODY = b"500 Internal Server Error\n"


def _latin1(what: str, text: str) -> bytes:
    try:
        return text.encode("latin-1")
    except UnicodeEncodeError:
        raise ValueError(
            f"start_response(): {what} {text!r} is not latin-1 encodable; WSGI headers are "
            "native strings holding latin-1 text (encode other text, e.g. RFC 2047 or %-escapes)"
        ) from None


def _check_status(status: object) -> tuple[int, bytes]:
    """Check the status given to ``start_response``; return its code and reason phrase."""
    if type(status) is str:
        parsed = _GOOD_STATUSES.get(status)
        if parsed is not None:
            return parsed
    if not isinstance(status, str):
        raise TypeError(
            f"start_response(): status must be a str such as '200 OK', not "
            f"{type(status).__name__!r}"
        )
    if not _STATUS.fullmatch(status):
        raise ValueError(
            f"start_response(): status {status!r} is not a three-digit code, a space and a "
            "reason phrase, such as '200 OK'"
        )
    _latin1("status", status)
    code, _, reason = status.partition(" ")
    parsed = (int(code), reason.encode("latin-1"))
    if (
        len(_GOOD_STATUSES) < _GOOD_NAMES_MAX
        and type(status) is str
        and len(status) <= _CACHED_LEN_MAX
    ):
        _GOOD_STATUSES[status] = parsed
    return parsed


# Status lines that passed _check_status, to their code and reason (bounded, like _GOOD_NAMES).
_GOOD_STATUSES: dict[str, tuple[int, bytes]] = {}


def _check_header(name: object, value: object, item: object) -> str:
    """Check one (name, value) pair in full; return the lower-cased name."""
    if not isinstance(name, str) or not isinstance(value, str):
        raise TypeError(
            f"start_response(): header names and values must be str, not "
            f"({type(name).__name__}, {type(value).__name__}) in {item!r}"
        )
    if not _TOKEN.fullmatch(name):
        raise ValueError(f"start_response(): {name!r} is not a valid header name")
    if _BAD_VALUE.search(value):
        raise ValueError(
            f"start_response(): the value of header {name!r} holds a control character "
            f"(a line break?): {value!r}"
        )
    lower = name.lower()
    if lower in _HOP_BY_HOP:
        raise ValueError(
            f"start_response(): {name!r} is a hop-by-hop header, which a WSGI application "
            "must not set (the HTTP server manages the connection)"
        )
    _latin1(f"the value of header {name!r}:", value)
    if len(_GOOD_NAMES) < _GOOD_NAMES_MAX and type(name) is str and len(name) <= _CACHED_LEN_MAX:
        _GOOD_NAMES[name] = lower
    return lower


# Header names that passed _check_header (a valid token, not hop-by-hop), to their lower-cased
# form: the names an application sends are few, and checking a known name and a plain value
# (printable ASCII: no control character, latin-1) is then a dict lookup and two str tests.
# Bounded, as the names come from the application (which may build them from its input).
_GOOD_NAMES: dict[str, str] = {}
_GOOD_NAMES_MAX = 1024


def _check_headers(headers: object) -> tuple[list[tuple[str, str]], int | None]:
    """Check the headers given to ``start_response``; return a copy and the Content-Length."""
    if type(headers) is not list:
        raise TypeError(
            f"start_response(): headers must be a list of (name, value) tuples, not "
            f"{type(headers).__name__!r}"
        )
    declared: int | None = None
    good = _GOOD_NAMES
    for item in headers:
        if type(item) is not tuple or len(item) != 2:
            raise TypeError(
                f"start_response(): each header must be a (name, value) tuple, not {item!r}"
            )
        name, value = item
        lower = good.get(name) if type(name) is str else None
        if lower is None or type(value) is not str or not (value.isascii() and value.isprintable()):
            lower = _check_header(name, value, item)
        if lower == "content-length":
            if not (value.isdigit() and value.isascii()):
                raise ValueError(
                    "start_response(): Content-Length must be a non-negative integer, not "
                    f"{value!r}"
                )
            declared = int(value)
    return list(headers), declared


# -- wsgi.errors --------------------------------------------------------------------------------


class _ErrorStream:
    """``environ["wsgi.errors"]``: text written here is logged, one event per line.

    Lines go to ``twisted.logger`` (namespace ``txgreen.wsgi``) at error level; a last line
    without its newline is logged by :meth:`flush` or at the end of the request.
    """

    __slots__ = ("_method", "_partial", "_path")

    def __init__(self, method: str, path: str) -> None:
        self._method = method
        self._path = path
        self._partial = ""

    def write(self, text: str) -> None:
        if not isinstance(text, str):
            raise TypeError(f"wsgi.errors.write() takes a str, not {type(text).__name__!r}")
        text = self._partial + text
        *lines, self._partial = text.split("\n")
        for line in lines:
            self._emit(line)

    def writelines(self, lines: Iterable[str]) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        if self._partial:
            line, self._partial = self._partial, ""
            self._emit(line)

    def _emit(self, line: str) -> None:
        log.error("wsgi.errors ({where}): {text}", where=f"{self._method} {self._path}", text=line)


# -- the environ's parts ------------------------------------------------------------------------

# Request header names (as twisted.web gives them) to their environ keys: HTTP_USER_AGENT, and
# CONTENT_TYPE / CONTENT_LENGTH without the prefix.  Bounded: the names come from clients.
_ENV_NAMES: dict[bytes, str] = {}
_ENV_NAMES_MAX = 1024
# Only strings this short go into the caches of client-given strings (header names, Host
# headers, methods): a client may send up to a header line's limit (8 KiB by default), and 1,024
# such entries would hold megabytes for nothing.
_CACHED_LEN_MAX = 128


def _env_name(raw_name: bytes) -> str:
    name = raw_name.decode("latin-1").upper().replace("-", "_")
    if name not in ("CONTENT_TYPE", "CONTENT_LENGTH"):
        name = "HTTP_" + name
    if len(_ENV_NAMES) < _ENV_NAMES_MAX and len(raw_name) <= _CACHED_LEN_MAX:
        _ENV_NAMES[raw_name] = name
    return name


def _server_name(request: Any, host_header: bytes | None) -> str:
    """``request.getRequestHostname()`` as a str, without looking the Host header up a second
    time when the request is a plain twisted.web one (a subclass may answer otherwise)."""
    if type(request).getRequestHostname is not _PLAIN_HOSTNAME:
        return request.getRequestHostname().decode("latin-1")  # type: ignore[no-any-return]
    if host_header is not None:
        name = _SERVER_NAMES.get(host_header)
        if name is not None:
            return name
        match = _HOST_HEADER.match(host_header)
        if match is not None:
            name = match.group(1).decode("latin-1")
            if len(_SERVER_NAMES) < _ENV_NAMES_MAX and len(host_header) <= _CACHED_LEN_MAX:
                _SERVER_NAMES[host_header] = name
            return name
    # The address the connection came in on; a UNIX socket's has no host: "localhost", as
    # gunicorn and other servers behind a UNIX socket answer.
    host = getattr(request.getHost(), "host", None)
    return str(host) if host else "localhost"


# What Twisted's Request.getRequestHostname answers: the Host header without its port (and an
# IPv6 address without its brackets), else the address the connection came in on.
_PLAIN_HOSTNAME = TwistedRequest.getRequestHostname
_HOST_HEADER = re.compile(rb"^\[?(.*?)\]?(?::\d+)?$")
# Host headers seen, to their SERVER_NAME (bounded: they come from clients).
_SERVER_NAMES: dict[bytes, str] = {}

# Short byte strings of the request line (methods, protocol versions) decoded (bounded).
_TEXT: dict[bytes, str] = {}


def _text(raw: bytes) -> str:
    text = _TEXT.get(raw)
    if text is None:
        text = raw.decode("latin-1")
        if len(_TEXT) < _ENV_NAMES_MAX and len(raw) <= _CACHED_LEN_MAX:
            _TEXT[raw] = text
    return text


# The environ's keys that are the same for every request.
_CONSTANT_ENV: _Environ = {
    "wsgi.version": (1, 0),
    "wsgi.input_terminated": True,
    "wsgi.multithread": True,
    "wsgi.multiprocess": False,
    "wsgi.run_once": False,
}

# Whether a request class answers getHost, getClientAddress and isSecure as twisted.web's own
# Request does (from the connection, the same for each of its requests): then the environ's
# part that depends only on the connection is built once per connection.
_PLAIN_CONNECTION_METHODS = (
    TwistedRequest.getHost,
    TwistedRequest.getClientAddress,
    TwistedRequest.isSecure,
)
_PLAIN_CLASSES: dict[type, bool] = {}


def _connection_env(request: Any) -> _Environ:
    """The environ's keys that depend only on the connection (a fresh dict to fill in)."""
    cls = type(request)
    plain = _PLAIN_CLASSES.get(cls)
    if plain is None:
        plain = (
            cls.getHost,
            cls.getClientAddress,
            cls.isSecure,
        ) == _PLAIN_CONNECTION_METHODS
        if len(_PLAIN_CLASSES) < _ENV_NAMES_MAX:
            _PLAIN_CLASSES[cls] = plain
    channel = request.channel
    cacheable = plain and not request._forceSSL and channel is not None
    if cacheable:
        cached: _Environ | None = getattr(channel, "_txgreen_env", None)
        if cached is not None:
            return cached.copy()
    host = request.getHost()
    client = request.getClientAddress()
    env = _CONSTANT_ENV.copy()
    env["SERVER_PORT"] = str(getattr(host, "port", 0))
    env["REMOTE_ADDR"] = str(getattr(client, "host", ""))
    remote_port = getattr(client, "port", None)
    if remote_port is not None:
        env["REMOTE_PORT"] = str(remote_port)
    env["wsgi.url_scheme"] = "https" if request.isSecure() else "http"
    if cacheable:
        with contextlib.suppress(AttributeError):
            channel._txgreen_env = env.copy()
    return env


# -- one request --------------------------------------------------------------------------------


@implementer(IPushProducer)
class _Response:
    """One request: the environ, ``start_response`` and the green thread that runs the app.

    It is also the streaming producer registered on the request: ``pauseProducing`` and
    ``resumeProducing`` (called in the hub by Twisted's HTTP channel) open and close the gate
    that the green thread passes after each write.
    """

    def __init__(self, application: _Application, request: Request) -> None:
        self.application = application
        self.request: Any = request
        self.status: str | None = None
        self.code = 0  # the status's code and reason phrase, once start_response has checked it
        self.reason = b""
        self.headers: list[tuple[str, str]] = []
        self.headers_sent = False
        self.declared_length: int | None = None
        self.sent = 0
        self.gone: BaseException | None = None  # why the client went away, once it has
        # The gate the green thread passes after each write: closed while Twisted has paused
        # us (the client reads slowly); the waiter of the green thread waiting at it, if any.
        self._paused = False
        self._gate: Waiter | None = None
        request.notifyFinish().addErrback(self._lost)

    # -- reactor side (the hub) -----------------------------------------------------------------

    def _lost(self, reason: Failure) -> None:
        # notifyFinish's errback: the connection went away before the response was finished.
        # (``reason`` may be the object Twisted hands to every connection lost the same way:
        # only a copy is kept, and write() raises a copy of that, see txgreen._util.)
        if self.gone is None:
            value = reason.value
            assert value is not None
            self.gone = own_error(value)
        self._open()

    def pauseProducing(self) -> None:
        self._paused = True

    def resumeProducing(self) -> None:
        self._open()

    def stopProducing(self) -> None:
        # The connection is being lost (notifyFinish's errback follows with the reason).
        if self.gone is None:
            self.gone = ConnectionLost("the connection was closed during the response")
        self._open()

    def _open(self) -> None:
        """Open the gate: wake the green thread if it waits there (never switching to it)."""
        self._paused = False
        gate = self._gate
        if gate is not None:
            self._gate = None
            gate.resume_later(None)

    def _wait_writable(self) -> None:
        """In the green thread: wait until the gate opens (a kill is raised here)."""
        cur, hub = current_hub_and_greenlet("WSGI response write")
        gate = self._gate = Waiter(hub, cur)
        try:
            hub.wait(gate)
        finally:
            if self._gate is gate:
                self._gate = None

    # -- the environ ----------------------------------------------------------------------------

    def environ(self) -> _Environ:
        request: Any = self.request
        method = _text(request.method)
        prepath: list[bytes] = request.prepath or []
        postpath: list[bytes] = request.postpath or []
        script_name = b"/" + b"/".join(prepath) if prepath else b""
        path_info = b"/" + b"/".join(postpath) if postpath else b""
        query = request.uri.partition(b"?")[2]
        body: IO[bytes] = request.content if request.content is not None else io.BytesIO()
        body_length = body.seek(0, io.SEEK_END)
        body.seek(0)
        path = path_info.decode("latin-1")
        env = _connection_env(request)
        env["REQUEST_METHOD"] = method
        env["SCRIPT_NAME"] = script_name.decode("latin-1")
        env["PATH_INFO"] = path
        env["QUERY_STRING"] = query.decode("latin-1")
        env["SERVER_PROTOCOL"] = _text(request.clientproto)
        env["wsgi.input"] = body
        env["wsgi.errors"] = _ErrorStream(method, path)
        env["twisted.request"] = request
        names = _ENV_NAMES
        host_header: bytes | None = None
        for raw_name, raw_values in request.requestHeaders.getAllRawHeaders():
            name = names.get(raw_name)
            if name is None:
                name = _env_name(raw_name)
            if len(raw_values) == 1 or name in ("CONTENT_TYPE", "CONTENT_LENGTH"):
                env[name] = raw_values[0].decode("latin-1")
            else:
                values = [v.decode("latin-1") for v in raw_values]
                env[name] = ("; " if name == "HTTP_COOKIE" else ", ").join(values)
            if name == "HTTP_HOST":
                host_header = raw_values[-1]
        env["SERVER_NAME"] = _server_name(request, host_header)
        if body_length and "CONTENT_LENGTH" not in env:
            # A chunked request body: twisted.web has read it all, so its length is known.
            env["CONTENT_LENGTH"] = str(body_length)
        return env

    # -- start_response and write ---------------------------------------------------------------

    def start_response(
        self,
        status: str,
        headers: list[tuple[str, str]],
        exc_info: _ExcInfo | tuple[None, None, None] | None = None,
    ) -> Callable[[bytes], None]:
        """PEP 3333's ``start_response``: record the status and headers; return ``write``."""
        if exc_info is not None and exc_info[1] is not None:
            try:
                if self.headers_sent:
                    # Too late to change the response: let the error go on up (PEP 3333).
                    raise exc_info[1].with_traceback(exc_info[2])
            finally:
                exc_info = None  # no reference cycle through the traceback
        elif self.status is not None:
            raise RuntimeError(
                "start_response() was called a second time without exc_info; only an error "
                "handler may call it again, passing exc_info=sys.exc_info()"
            )
        self.code, self.reason = _check_status(status)
        self.headers, self.declared_length = _check_headers(headers)
        self.status = status
        return self.write

    def write(self, data: bytes) -> None:
        """The legacy ``write()`` callable: send ``data`` now (blocks while the client is slow).

        Raises the connection's error (``ConnectionDone``, ``ConnectionLost``) once the client
        has gone: a new exception object at each call.
        """
        if not isinstance(data, bytes):
            raise TypeError(f"write() takes bytes, not {type(data).__name__!r}")
        if self.status is None:
            raise RuntimeError("write() was called before start_response()")
        if self.gone is not None:
            raise fresh_copy(self.gone)
        self._send(data)
        if self.gone is not None:
            raise fresh_copy(self.gone)

    def _send(self, data: bytes) -> None:
        """Send the headers if they have not gone out, then ``data``; wait while paused."""
        if data:
            declared = self.declared_length
            if declared is not None and self.sent + len(data) > declared:
                if not self.headers_sent:
                    self._send_headers()
                raise RuntimeError(
                    f"the application sent more than the {declared} bytes it declared in its "
                    "Content-Length header"
                )
            if not self.headers_sent:
                self._send_headers(write=False)  # Twisted writes them with the data
            self.sent += len(data)
            self.request.write(data)
        elif not self.headers_sent:
            self._send_headers()
        if self._paused:
            self._wait_writable()  # the client reads slowly: wait until its buffer drains

    def _send_headers(self, write: bool = True) -> None:
        """Hand the status and headers to the request; send them now if ``write``."""
        request: Any = self.request
        request.setResponseCode(self.code, self.reason)
        request.defaultContentType = None  # no Content-Type unless the application gives one
        set_raw = request.responseHeaders.setRawHeaders
        headers = self.headers
        if len(headers) == len({name.lower() for name, _ in headers}):
            # No name given twice (the usual case): each header as it comes.
            for name, value in headers:
                # setRawHeaders replaces Twisted's own defaults (Server, Date) when the app sets
                # them.
                set_raw(name.encode("latin-1"), [value.encode("latin-1")])
        else:
            grouped: dict[str, tuple[bytes, list[bytes]]] = {}
            for name, value in headers:
                key = name.lower()
                entry = grouped.get(key)
                if entry is None:
                    grouped[key] = (name.encode("latin-1"), [value.encode("latin-1")])
                else:
                    entry[1].append(value.encode("latin-1"))
            for raw_name, values in grouped.values():
                set_raw(raw_name, values)
        self.headers_sent = True
        if write:
            request.write(b"")

    # -- the green thread -----------------------------------------------------------------------

    def run(self) -> None:
        """Run the application and send its response (the body of the request's green thread)."""
        if self.gone is not None:
            return  # the client left before this green thread started: no application call
        environ: _Environ = {}
        result: Iterable[bytes] | None = None
        try:
            environ = self.environ()
            result = self.application(environ, self.start_response)
            self._iterate(result)
        except BaseException as e:
            try:
                if result is not None:
                    _close(result)
            finally:
                self._failed(e)
            if not isinstance(e, Exception):
                raise
        else:
            try:
                self._finish()
            finally:
                _close(result)
        finally:
            errors = environ.get("wsgi.errors")
            if isinstance(errors, _ErrorStream):
                errors.flush()

    def _iterate(self, result: Iterable[bytes]) -> None:
        if self.gone is not None:
            return
        if (
            type(result) in (list, tuple)
            and len(result) == 1  # type: ignore[arg-type]
            and self.declared_length is None
            and self.status is not None
            and not self.headers_sent
            and self.code not in NO_BODY_CODES
        ):
            # One chunk known in advance: send a Content-Length instead of chunked encoding.
            only: Any = result[0]  # type: ignore[index]
            if isinstance(only, bytes):
                self.headers.append(("Content-Length", str(len(only))))
                self.declared_length = len(only)
        for chunk in result:
            if not isinstance(chunk, bytes):
                raise TypeError(
                    f"the application's iterable yielded a {type(chunk).__name__!r}; WSGI "
                    "response bodies are bytes"
                )
            if chunk:
                if self.status is None:
                    raise RuntimeError(
                        "the application yielded body data before calling start_response()"
                    )
                self._send(chunk)
            if self.gone is not None:
                return  # the client went away: stop at this chunk
        if self.status is None:
            raise RuntimeError("the application returned without calling start_response()")
        declared = self.declared_length
        if (
            declared is not None
            and self.sent < declared
            and self.request.method != b"HEAD"
            and self.code not in NO_BODY_CODES
        ):
            raise RuntimeError(
                f"the application sent {self.sent} bytes, fewer than the {declared} it declared "
                "in its Content-Length header"
            )

    def _finish(self) -> None:
        if self.gone is not None:
            return
        request: Any = self.request
        if not self.headers_sent:
            code = self.code
            if (
                self.declared_length is None
                and request.method != b"HEAD"
                and code >= 200
                and code not in NO_BODY_CODES
            ):
                self.headers.append(("Content-Length", "0"))
            self._send_headers()
        self._unregister()
        request.finish()

    def _unregister(self) -> None:
        if self.request.channel is not None and self.request.producer is not None:
            self.request.unregisterProducer()

    def _failed(self, exc: BaseException) -> None:
        """The application (or our checks of what it did) raised ``exc``: log it and answer."""
        request: Any = self.request

        def report(what: str, level: LogLevel) -> None:
            log.failure(
                "WSGI application failed on {method} {uri}" + what,
                failure_of(exc),
                level=level,
                method=request.method.decode("latin-1"),
                uri=request.uri.decode("latin-1"),
            )

        if self.gone is not None:
            if not self._is_gone(exc) and not isinstance(exc, GreenletExit | ReactorStopped):
                report(" after the client disconnected", LogLevel.info)
            return
        if isinstance(exc, GreenletExit | ReactorStopped):
            self._abort()  # killed (shutdown): no response can be given
            return
        if self.headers_sent:
            report(" after the response headers were sent; aborting the connection", LogLevel.error)
            self._abort()
            return
        report("; answering 500", LogLevel.error)
        request.setResponseCode(500)
        request.responseHeaders.setRawHeaders(b"Content-Type", [b"text/plain; charset=utf-8"])
        request.responseHeaders.setRawHeaders(b"Content-Length", [b"%d" % len(_ERROR_BODY)])
        self.headers_sent = True
        self._unregister()
        request.write(_ERROR_BODY)
        request.finish()

    def _is_gone(self, exc: BaseException) -> bool:
        """True if ``exc`` is (a copy of) the error write() raises since the client went away."""
        gone = self.gone
        return gone is not None and type(exc) is type(gone) and exc.args == gone.args

    def _abort(self) -> None:
        request: Any = self.request
        if request.channel is not None:
            # HTTP/2: the request has no transport; its channel is its stream, and aborting
            # that resets this stream only (RST_STREAM), not the connection's other streams.
            transport = request.transport if request.transport is not None else request.channel
            transport.abortConnection()


def _close(result: Iterable[bytes]) -> None:
    """Call ``result.close()`` if it has one; log (not raise) an Exception it raises."""
    close = getattr(result, "close", None)
    if close is None:
        return
    try:
        close()
    except Exception:
        log.failure(
            "close() of the WSGI application's iterable {result!r} failed",
            level=LogLevel.error,
            result=result,
        )


# -- the resource -------------------------------------------------------------------------------


# A green thread that has served a request waits this long (seconds) for the next one before
# it ends, and at most this many wait at once: see WSGIResource.
IDLE_SECONDS = 0.05
MAX_IDLE = 128


class WSGIResource(Resource):
    """A twisted.web resource that serves a WSGI application, each request in a green thread.

    Put it anywhere in a resource tree (or make it a ``Site``'s root): it is a leaf, so the
    path segments already consumed on the way to it become ``SCRIPT_NAME`` and the rest
    ``PATH_INFO``.  For each request ``render()`` hands the request to a green thread that
    calls ``application(environ, start_response)`` and writes the body it returns, and returns
    ``NOT_DONE_YET``.  The application may block with ``txgreen.block_on``, ``txgreen.sleep``
    or ``txgreen.call_in_thread``: only its own request waits.  Each request runs in a fresh
    copy of the ``contextvars`` context ``render()`` was called in.

    ``threads`` is a :class:`txgreen.Group` of the green threads serving requests right now
    (kill it to abort them, join it to wait for them).

    A green thread that has answered its request waits up to ``IDLE_SECONDS`` (0.05 s) for
    the next request before it ends (at most ``MAX_IDLE`` wait at once): under load, requests
    reuse green threads instead of paying for a new one each (creating a greenlet costs more
    than the rest of the container's work on a small request, see docs/serving.md).  Such a
    waiting thread is not in ``threads``.

    ``reactor`` is accepted for symmetry with Twisted's own ``WSGIResource``; green threads
    run on the reactor of txgreen's hub (the global one), so it must be that reactor.
    """

    isLeaf: ClassVar[bool] = True  # type: ignore[misc]

    def __init__(self, application: _Application, *, reactor: Any = None) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        hub_reactor = get_hub().reactor
        if reactor is not None and reactor is not hub_reactor:
            raise ValueError(
                "WSGIResource: green threads run on the global reactor (txgreen's hub); "
                f"{reactor!r} is another one"
            )
        self.application = application
        self.reactor = hub_reactor
        self.threads = Group()
        # Green threads waiting for a request: (their waiter, since when), oldest first.
        self._idle: list[tuple[Waiter, float]] = []
        self._reaper: Any = None  # the DelayedCall that ends threads idle for too long

    def __repr__(self) -> str:
        return f"<txgreen.WSGIResource of {self.application!r}, {len(self.threads)} running>"

    def render(self, request: Request) -> int:
        """Hand ``request`` to a green thread; return ``NOT_DONE_YET``.

        Called by twisted.web in the hub (the reactor's callback for the request's data), the
        green thread starts at once and runs until it first waits or ends, as a native
        resource's ``render`` would; called anywhere else, or while other green threads are
        ready to run, it starts on the hub's next turn, behind them.
        """
        response = _Response(self.application, request)
        request.registerProducer(response, True)  # type: ignore[no-untyped-call]
        job = (response, contextvars.copy_context())
        idle = self._idle
        while idle:
            waiter = idle.pop()[0]
            if waiter.active:
                self.threads._add_now(waiter.greenlet)  # type: ignore[arg-type]
                waiter.resume(job)  # (switches to it at once when render() may)
                return NOT_DONE_YET
        thread = _new_thread(self._serve, (job,), {}, "WSGIResource")
        self.threads._add_now(thread)
        hub = thread.hub
        if (
            (not hub._ready or hub._draining)
            and not hub._dispatching
            and getcurrent() is hub.greenlet
        ):
            thread._begin()
        else:
            hub.schedule(thread._begin, None)
        return NOT_DONE_YET

    def _serve(self, job: tuple[_Response, contextvars.Context] | None) -> None:
        """The body of a green thread that serves requests: this one, then the next ones."""
        cur, hub = current_hub_and_greenlet("WSGIResource")
        threads = self.threads
        while job is not None:
            response, context = job
            job = None
            try:
                context.run(response.run)
            finally:
                threads.discard(cur)  # type: ignore[arg-type]
            del response, context
            idle = self._idle
            if len(idle) >= MAX_IDLE or hub.state is STOPPED:
                return
            waiter = Waiter(hub, cur)
            idle.append((waiter, time.monotonic()))
            if self._reaper is None:
                self._reaper = hub.reactor.callLater(IDLE_SECONDS, self._reap)
            try:
                job = hub.wait(waiter)
            except BaseException as e:
                self._forget(waiter)
                if isinstance(e, GreenletExit | ReactorStopped):
                    return  # killed while idle, or the reactor stops: no request was lost
                raise

    def _forget(self, waiter: Waiter) -> None:
        for i, (w, _) in enumerate(self._idle):
            if w is waiter:
                del self._idle[i]
                return

    def _reap(self) -> None:
        """End the green threads that have waited ``IDLE_SECONDS`` for a request."""
        self._reaper = None
        idle = self._idle
        cutoff = time.monotonic() - IDLE_SECONDS
        stale = 0
        while stale < len(idle) and idle[stale][1] <= cutoff:
            stale += 1
        ended, idle[:stale] = idle[:stale], []
        for waiter, _ in ended:
            waiter.resume_later(None)
        if idle:
            delay = max(idle[0][1] - cutoff, 0.0)
            self._reaper = self.reactor.callLater(delay, self._reap)
