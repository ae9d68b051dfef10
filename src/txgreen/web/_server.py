"""``WSGIServer``: one WSGI application served on several endpoints, with an access log and a
graceful stop; and ``serve_wsgi``, its simplest use.

The server side of the WSGI container (:mod:`txgreen.web._container`): a twisted.web ``Site``
(:class:`txgreen.web._site.GreenSite`, which enforces the limits that protect it from hostile
clients) whose root is a :class:`WSGIResource`, listening on every endpoint it is given
(Twisted endpoint strings: ``tcp:``, ``unix:``, ``ssl:`` with a certificate).

A graceful stop (:meth:`WSGIServer.stop`) goes in this order:

1. the listening ports close, so new connections are refused;
2. idle keep-alive connections are closed at once, and busy ones are marked to close after the
   response in flight (``Connection: close`` when its headers have not gone out yet);
3. the requests in flight get ``graceful_timeout`` seconds to finish;
4. whatever still runs then is killed, and its connection aborted.

``python -m txgreen serve``, the twist plugin and ``WSGIService`` all build on this class.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import Callable, Iterable
from typing import IO, Any

from twisted.internet.endpoints import serverFromString
from twisted.internet.interfaces import IListeningPort
from twisted.web.http import Request

from txgreen._block import block_on
from txgreen._endpoints import ServerAddress, server_endpoint
from txgreen._event import Event
from txgreen._greenthread import sleep
from txgreen._hub import STOPPED, get_hub
from txgreen._stream import PortCloser
from txgreen.errors import ReactorStopped, TxgreenError
from txgreen.web._config import DEFAULT_LISTEN
from txgreen.web._container import WSGIResource, _Application
from txgreen.web._site import GreenSite, Limits

__all__ = ["AccessLog", "ListenError", "WSGIServer", "common_log_line", "serve_wsgi"]

Endpoint = ServerAddress

_ENDPOINT_HELP = (
    "endpoint strings look like tcp:8000:interface=127.0.0.1, unix:/run/app.sock or "
    "ssl:8443:privateKey=key.pem:certKey=cert.pem (Twisted's endpoint syntax)"
)

# How often a draining server looks at its connections (seconds).
_DRAIN_POLL = 0.02
# How long a stop waits for aborted connections to be gone.
_ABORT_WAIT = 2.0


class ListenError(TxgreenError):
    """A server could not listen on one of its endpoints.

    The endpoint string is malformed (unknown type, bad option, unreadable certificate), or
    the address cannot be bound (the port is taken, no permission).  ``endpoint`` is the
    description that failed; the original error is the ``__cause__``.
    """

    def __init__(self, message: str, endpoint: str) -> None:
        super().__init__(message)
        self.endpoint = endpoint


# -- the access log -----------------------------------------------------------------------------

_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def _quote(data: bytes) -> str:
    """``data`` as printable ASCII for a log line: quotes, backslashes and controls escaped."""
    out = []
    for byte in data:
        if byte == 0x22:
            out.append('\\"')
        elif byte == 0x5C:
            out.append("\\\\")
        elif 0x20 <= byte < 0x7F:
            out.append(chr(byte))
        else:
            out.append(f"\\x{byte:02x}")
    return "".join(out)


def common_log_line(request: Request, when: float | None = None) -> str:
    """``request`` in the common log format, without the newline.

    ``host ident authuser [date] "request line" status bytes``, for example
    ``127.0.0.1 - - [02/Dec/2026:12:38:20 +0000] "GET / HTTP/1.1" 200 12``.  The client's
    address is ``-`` for a UNIX socket; the size is the body bytes sent, ``-`` for none.
    """
    req: Any = request
    client = req.getClientAddress()
    host = getattr(client, "host", None)
    t = time.gmtime(time.time() if when is None else when)
    stamp = (
        f"[{t.tm_mday:02d}/{_MONTHS[t.tm_mon - 1]}/{t.tm_year:04d}:"
        f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d} +0000]"
    )
    line = b" ".join((req.method or b"-", req.uri or b"-", req.clientproto or b"-"))
    size = req.sentLength or "-"
    return (
        f'{host if isinstance(host, str) else "-"} - - {stamp} "{_quote(line)}" {req.code} {size}'
    )


class AccessLog:
    """Writes one common-log-format line per finished request, flushed at once.

    ``target`` is a path (appended to), ``"-"`` for standard output (whatever ``sys.stdout``
    is when a line is written), or an open text stream (which is not closed by :meth:`close`).
    """

    def __init__(self, target: str | IO[str]) -> None:
        self._own = False
        self._stream: IO[str] | None
        if isinstance(target, str):
            if target == "-":
                self._stream = None
            else:
                self._stream = open(target, "a", buffering=1, encoding="utf-8")  # noqa: SIM115
                self._own = True
        else:
            self._stream = target

    def log(self, request: Request) -> None:
        """Write ``request``'s line (errors writing it are ignored: the request is served)."""
        stream = self._stream if self._stream is not None else sys.stdout
        with contextlib.suppress(Exception):
            stream.write(common_log_line(request) + "\n")
            stream.flush()

    def close(self) -> None:
        """Close the file, if this log opened it."""
        if self._own and self._stream is not None:
            self._stream.close()
        self._stream = None if self._own else self._stream


# -- the site -----------------------------------------------------------------------------------


class _ServerSite(GreenSite):
    """GreenSite plus the access log, and whether the server is draining."""

    def __init__(self, resource: Any, reactor: Any, limits: Limits | None) -> None:
        super().__init__(resource, reactor, limits)
        self.access_log: AccessLog | None = None
        self.draining = False

    def log(self, request: Request) -> None:
        access_log = self.access_log
        if access_log is not None:
            access_log.log(request)


# -- the server ---------------------------------------------------------------------------------


def _is_tls(factory: object) -> bool:
    # twisted.protocols.tls needs pyOpenSSL (Twisted's [tls] extra), which a plain install of
    # txgreen lacks: a TLS port exists only if it was importable, so only then can it match.
    tls = sys.modules.get("twisted.protocols.tls")
    return tls is not None and isinstance(factory, tls.TLSMemoryBIOFactory)


def url_of(port: Any) -> str:
    """The URL a listening port is reached at: ``http://HOST:PORT``, ``https://`` for TLS,
    ``unix:/path`` for a UNIX socket."""
    address = port.getHost()
    name = getattr(address, "name", None)
    if name is not None:
        return f"unix:{os.fsdecode(name)}"
    host = address.host
    if ":" in host:
        host = f"[{host}]"
    scheme = "https" if _is_tls(getattr(port, "factory", None)) else "http"
    return f"{scheme}://{host}:{address.port}"


class WSGIServer:
    """Serve one WSGI application on several endpoints, with an access log and a graceful stop.

    ``listen`` holds Twisted endpoint strings (``tcp:8080``, ``unix:/run/app.sock``,
    ``ssl:8443:privateKey=key.pem:certKey=cert.pem``) or ``IStreamServerEndpoint`` objects.
    ``limits`` bounds what each client may do (:class:`Limits`, enforced by the
    :class:`GreenSite`); ``access_log`` is a path, ``"-"`` for standard output, an open text
    stream, or ``None`` for none; ``graceful_timeout`` is how long :meth:`stop` lets requests
    in flight finish before it aborts them.

    Call :meth:`start`, :meth:`stop` and :meth:`wait` from a green thread.  ``resource`` is the
    :class:`WSGIResource` (its ``threads`` are the requests running), ``site`` the Site,
    ``ports`` and ``urls`` the listening ports and where they are reached, once started.
    """

    def __init__(
        self,
        application: _Application,
        listen: Iterable[Endpoint] = (DEFAULT_LISTEN,),
        *,
        limits: Limits | None = None,
        access_log: str | IO[str] | None = None,
        graceful_timeout: float = 30.0,
        reactor: Any = None,
    ) -> None:
        if graceful_timeout < 0:
            raise ValueError(f"graceful_timeout must be >= 0 seconds, not {graceful_timeout!r}")
        self.endpoints: list[Endpoint] = list(listen)
        if not self.endpoints:
            raise ValueError("WSGIServer: give at least one endpoint to listen on")
        self.resource = WSGIResource(application, reactor=reactor)
        self.reactor: Any = self.resource.reactor
        self.site = _ServerSite(self.resource, self.reactor, limits)
        self._access_log_target = access_log
        self.graceful_timeout = float(graceful_timeout)
        self.ports: list[IListeningPort] = []
        self.urls: list[str] = []
        self._closers: list[PortCloser] = []
        self._started = False
        self._stopping = False
        self._deadline = 0.0
        self._stopped = Event()

    def __repr__(self) -> str:
        state = (
            "stopped"
            if self._stopped.is_set()
            else "stopping"
            if self._stopping
            else "listening"
            if self._started
            else "new"
        )
        where = ", ".join(self.urls) or ", ".join(map(str, self.endpoints))
        return f"<txgreen.web.WSGIServer {state} on {where}>"

    # -- where it listens: the same names as txgreen.Listener (what serve's on_listen gets) --

    @property
    def address(self) -> Any:
        """The address of the first endpoint's listening port (``IAddress``)."""
        if not self.ports:
            raise RuntimeError("WSGIServer.address: the server is not listening (start() first)")
        port: Any = self.ports[0]
        return port.getHost()

    def getHost(self) -> Any:
        """:attr:`address`, under ``IListeningPort``'s name (``server.getHost().port``)."""
        return self.address

    @property
    def port(self) -> int:
        """The first endpoint's port number (for TCP: useful after listening on port 0).

        A UNIX socket has no port: this raises AttributeError then (use ``address.name``).
        """
        port = getattr(self.address, "port", None)
        if port is None:
            raise AttributeError(
                f"WSGIServer.port: {self.address!r} has no port number; use WSGIServer.address"
            )
        return int(port)

    @property
    def stopping(self) -> bool:
        """True once :meth:`stop` (or :meth:`close`) was called."""
        return self._stopping

    @property
    def stopped(self) -> bool:
        """True once the server has stopped (every connection closed)."""
        return self._stopped.is_set()

    def start(self) -> list[str]:
        """Listen on every endpoint; return their URLs (see :attr:`urls`).

        Raises :class:`ListenError` if one cannot be listened on (the ports already open are
        closed first).  Call it once, from a green thread.
        """
        if self._started:
            raise RuntimeError("WSGIServer.start() was called twice")
        self._started = True
        if self._access_log_target is not None:
            self.site.access_log = AccessLog(self._access_log_target)
        try:
            for endpoint in self.endpoints:
                port = self._listen(endpoint)
                self.ports.append(port)
                self._closers.append(PortCloser(self.reactor, port))
                self.urls.append(url_of(port))
        except BaseException:
            self._stopping = True
            self._close_ports()
            self._finish()
            raise
        return list(self.urls)

    def _listen(self, endpoint: Endpoint) -> Any:
        description = endpoint if isinstance(endpoint, str) else repr(endpoint)
        if isinstance(endpoint, str):
            try:
                ep: Any = serverFromString(self.reactor, endpoint)  # type: ignore[no-untyped-call]
            except Exception as e:
                raise ListenError(
                    f"invalid endpoint {endpoint!r}: {_reason(e)}; {_ENDPOINT_HELP}", description
                ) from e
        else:
            ep = server_endpoint(self.reactor, endpoint, "WSGIServer()")
        try:
            return block_on(ep.listen(self.site))
        except ReactorStopped:
            raise
        except Exception as e:
            raise ListenError(f"cannot listen on {description!r}: {_reason(e)}", description) from e

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until the server has stopped; False if ``timeout`` passed first."""
        return self._stopped.wait(timeout)

    def serve_forever(self) -> None:
        """Start (if not started) and wait until :meth:`stop` is called and done."""
        if not self._started:
            self.start()
        self.wait()

    def stop(self, timeout: float | None = None) -> None:
        """Stop gracefully: close the ports, let requests in flight finish, then abort them.

        ``timeout`` (default :attr:`graceful_timeout`) is how long the requests get.  Idle
        keep-alive connections are closed at once; a busy one closes after its response.
        Returns once every connection is closed.  A call while a stop is under way waits for
        it, and can only shorten it (``close()`` during a graceful stop aborts at once).
        Once the reactor is shutting down (requests are being killed anyway), it only aborts.
        """
        grace = self.graceful_timeout if timeout is None else max(0.0, timeout)
        deadline = time.monotonic() + grace
        if self._stopping:
            # A stop is under way: it ends by the earlier of the two deadlines.
            self._deadline = min(self._deadline, deadline)
            with contextlib.suppress(ReactorStopped):
                self._stopped.wait()
            return
        self._stopping = True
        self._deadline = deadline
        try:
            if get_hub().state == STOPPED:
                self._abort(wait=False)
                return
            site = self.site
            site.draining = True
            self._close_ports()
            while site.close_idle() or len(self.resource.threads):
                left = self._deadline - time.monotonic()
                if left <= 0:
                    break
                if len(self.resource.threads):
                    # Woken as soon as the last request thread ends; then look again.
                    self.resource.threads.join(timeout=min(left, 0.25))
                else:
                    sleep(min(left, _DRAIN_POLL))  # responses still being written out
            self._abort()
        except ReactorStopped:
            self._abort(wait=False)
        finally:
            self._finish()

    def close(self) -> None:
        """Stop at once: close the ports, kill the requests in flight, close every connection."""
        self.stop(timeout=0)

    def _close_ports(self) -> None:
        closers, self._closers = self._closers, []
        waits = [closer.stop() for closer in closers]
        for d in waits:
            with contextlib.suppress(ReactorStopped):
                block_on(d)

    def _abort(self, wait: bool = True) -> None:
        threads = self.resource.threads
        if len(threads):
            with contextlib.suppress(ReactorStopped):
                threads.kill(block=wait, timeout=_ABORT_WAIT if wait else None)
        site = self.site
        for protocol in list(site.connections):
            channel = getattr(protocol, "_channel", protocol)
            transport = getattr(channel, "transport", None)
            if transport is None:
                continue
            if getattr(channel, "requests", None) or getattr(channel, "streams", None):
                transport.abortConnection()
            else:
                transport.loseConnection()
        if wait:
            end = time.monotonic() + _ABORT_WAIT
            while site.connections and time.monotonic() < end:
                sleep(_DRAIN_POLL)
            site.abort_all()

    def _finish(self) -> None:
        if self.site.access_log is not None:
            self.site.access_log.close()
        self._stopped.set()

    # -- a ``with`` block: started on entry, stopped gracefully on exit -------------------------

    def __enter__(self) -> WSGIServer:
        if not self._started:
            self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def _reason(error: BaseException) -> str:
    """A short reason for a listen error: the OS's words when there are some."""
    socket_error = getattr(error, "socketError", None)
    if isinstance(socket_error, OSError) and socket_error.strerror:
        return socket_error.strerror
    if isinstance(error, OSError) and error.strerror:
        where = f" ({error.filename})" if error.filename else ""
        return f"{error.strerror}{where}"
    text = str(error).strip() or type(error).__name__
    return text.rstrip(".")


def serve_wsgi(
    endpoint: ServerAddress,
    application: _Application,
    *,
    reactor: Any = None,
    on_listen: Callable[[WSGIServer], object] | None = None,
) -> None:
    """Serve ``application`` over HTTP on ``endpoint`` until the calling green thread is killed.

    ``endpoint`` takes the forms ``txgreen.listen`` takes: a port (every interface), a
    ``(host, port)`` tuple, a server endpoint description (``"tcp:8080:interface=127.0.0.1"``)
    or an ``IStreamServerEndpoint``; anything else raises ``TypeError`` naming them.  The
    server is a :class:`WSGIServer` whose root is a :class:`WSGIResource` of ``application``.
    Blocks until the port listens (raising the error if it cannot), calls ``on_listen(server)``
    -- the same names as the ``txgreen.Listener`` that ``txgreen.serve`` passes: ``.port``
    (the bound port number), ``.address``, and ``getHost()`` as an ``IListeningPort`` has --
    then blocks until the green thread is killed.  On
    the way out it stops listening, kills the requests still running (their connections are
    aborted) and closes the idle connections.  (A :class:`WSGIServer` with no access log,
    several endpoints or a graceful stop does more.)
    """
    if isinstance(endpoint, str) or callable(getattr(endpoint, "listen", None)):
        checked: Any = endpoint
    else:  # a port or (host, port): wrong forms raise TypeError here, naming the right ones
        checked = server_endpoint(get_hub().reactor, endpoint, "serve_wsgi()")
    server = WSGIServer(application, [checked], reactor=reactor, graceful_timeout=0)
    try:
        server.start()
    except ListenError as e:
        # The error Twisted raised, as before WSGIServer existed (CannotListenError, ...).
        raise (e.__cause__ or e) from None
    try:
        if on_listen is not None:
            on_listen(server)
        Event().wait()  # until killed
    finally:
        server.close()
