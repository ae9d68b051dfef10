"""A cooperative ``ssl`` module: the stdlib's TLS sockets, waiting on the reactor.

:class:`SSLSocket` is ``class SSLSocket(ssl.SSLSocket, txgreen.green.socket.socket)``.  Its
method resolution order puts the green socket under the stdlib's TLS socket: where the stdlib's
code calls ``super().connect``, ``super().accept``, ``super().recv`` and so on (plain, not yet
or no longer encrypted traffic), it reaches the cooperative socket.  The OS socket underneath
is always non-blocking, so the C TLS object (``_sslobj``) raises ``SSLWantReadError`` /
``SSLWantWriteError`` instead of blocking; every method that reaches it (``do_handshake``,
``read``, ``write``, ``recv``, ``recv_into``, ``send``, ``sendall``, ``unwrap``) runs the
stdlib's own method in one retry loop that waits for the fd through
``txgreen.green._fdwait.wait``.  So the stdlib's checks, exceptions and certificate
verification are kept exactly; only the waiting changes.  ``makefile``, ``sendfile`` and
``connect`` are the stdlib's, over those methods and the green socket; ``accept`` wraps the
accepted green socket as a green :class:`SSLSocket` even when the context's class is the
stdlib's.

Timeouts keep the stdlib's meaning: the socket's timeout bounds each TLS operation and raises
``TimeoutError`` (the stdlib's ``socket.timeout``) with the stdlib's wording ("The read
operation timed out", ...); in non-blocking mode (timeout 0.0) the want-read/want-write errors
reach the caller as they do with the stdlib.  A call made outside a green thread (another OS
thread, or the hub) waits in the OS, like the stdlib's blocking socket.

Contexts.  The stdlib's ``SSLContext.wrap_socket`` builds ``self.sslsocket_class``; two routes
make that class green:

- :class:`SSLContext` here is the stdlib's class with ``sslsocket_class`` set to the green
  :class:`SSLSocket` *and nothing else*, and :func:`create_default_context` (and the module's
  other context factories) return contexts of that class.  It overrides no property and no
  method on purpose: gevent's green ``SSLContext`` overrode ``options``, ``verify_mode`` and
  friends through ``super(orig_SSLContext, ...)`` and recursed forever when ``ssl`` had been
  imported before patching.  With no overrides there is nothing to recurse through.
- ``txgreen.patch()`` sets the stdlib's own class attribute
  ``ssl.SSLContext.sslsocket_class = SSLSocket``, so contexts created with the stdlib before
  or after patching (``ssl.create_default_context()``, ``http.client``'s default context, ...)
  produce green sockets too.

Why ``__patched__`` holds neither ``SSLContext`` nor ``SSLSocket``: the stdlib's code looks both
names up in its module's globals at call time.  ``SSLContext``'s property setters call
``super(SSLContext, SSLContext).options.__set__(...)``: with the name replaced by a subclass,
that ``super`` finds the stdlib's property again and recurses (the gevent trap above).
``SSLSocket._create`` calls ``super(SSLSocket, self).__init__()``: with the name replaced by the
green subclass, that reaches the stdlib's ``SSLSocket.__init__``, which always raises
``TypeError``.  The class attribute is the one safe hook, and ``isinstance(sock,
ssl.SSLSocket)`` already holds for green sockets.  ``wrap_socket`` (the deprecated module
function, on interpreters that still have it) is replaced: it is a plain function.

Any socket may be wrapped, a stdlib one included: the stdlib's ``SSLSocket._create`` takes over
its fd (``detach``), and the result is green.
"""

from __future__ import annotations

import ssl as _std
import warnings as _warnings
from collections.abc import Callable
from ssl import *  # noqa: F403 - the stdlib's whole surface, re-exported
from time import monotonic as _monotonic
from types import ModuleType as _ModuleType
from typing import Any, TypeVar

from txgreen.green import _fdwait
from txgreen.green import socket as _gsocket

_T = TypeVar("_T")

# The stdlib's objects this module calls, bound at import (patch() never reaches these).
_StdSSLSocket = _std.SSLSocket
_StdSSLContext = _std.SSLContext
_StdSocket = _gsocket._StdSocket
_WantRead = _std.SSLWantReadError
_WantWrite = _std.SSLWantWriteError
_std_create_default_context = _std.create_default_context
_std_create_unverified_context: Callable[..., _std.SSLContext] = _std._create_unverified_context

# The names patch() replaces in the stdlib's ``ssl`` module (see the module's docstring for
# why SSLContext and SSLSocket are not among them: the class attribute is the hook).
__patched__: list[str] = ["wrap_socket"] if hasattr(_std, "wrap_socket") else []

_GREEN_NAMES = [
    "SSLContext",
    "SSLSocket",
    "create_default_context",
    *__patched__,
]
# What the stdlib's module imported from elsewhere is not part of its surface.
_NOT_SSL = {"SOCK_STREAM", "create_connection", "namedtuple", "socket"}
__all__ = sorted(
    {
        name
        for name in dir(_std)
        if not name.startswith("_")
        and name not in _NOT_SSL
        and not isinstance(getattr(_std, name), _ModuleType)
    }
    | set(_GREEN_NAMES)
)


class SSLSocket(_StdSSLSocket, _gsocket.socket):  # type: ignore[no-redef]
    """The stdlib's ``ssl.SSLSocket``, cooperative: a TLS call that would block parks only the
    calling green thread (see the module's docstring).  Made by ``SSLContext.wrap_socket``,
    as the stdlib's; the same methods, checks and exceptions.
    """

    # -- the one retry loop ---------------------------------------------------------------------

    def _retry(self, operation: str, fn: Callable[..., _T], *args: Any) -> _T:
        """``fn(*args)``, waiting for the fd and retrying while TLS wants to read or write.

        ``operation`` names it in the timeout's message, as the stdlib's does.
        """
        timeout = self.gettimeout()
        if timeout == 0.0:
            return fn(*args)  # non-blocking: SSLWantReadError/SSLWantWriteError as they are
        deadline = None if timeout is None else _monotonic() + timeout
        while True:
            try:
                return fn(*args)
            except _WantRead:
                write = False
            except _WantWrite:
                write = True
            left = None
            if deadline is not None:
                left = deadline - _monotonic()
                if left <= 0:
                    raise _timed_out(operation, write) from None
            if not _fdwait.wait(_StdSocket.fileno(self), write, left):
                raise _timed_out(operation, write)

    # -- the methods that reach the TLS object ---------------------------------------------------

    def do_handshake(self, block: bool = False) -> None:
        """Run the TLS handshake (``block``: even in non-blocking mode), as the stdlib's."""
        self._check_connected()  # type: ignore[attr-defined]
        timeout = self.gettimeout()
        if timeout == 0.0 and block:
            self.settimeout(None)
        try:
            sslobj = self._sslobj  # type: ignore[attr-defined]
            self._retry("handshake", sslobj.do_handshake)
        finally:
            self.settimeout(timeout)

    def read(self, len: int = 1024, buffer: Any = None) -> Any:
        """Read up to ``len`` decrypted bytes (into ``buffer`` if given); b"" (0) at the end."""
        return self._retry("read", _StdSSLSocket.read, self, len, buffer)

    def write(self, data: Any) -> int:
        """Encrypt and send ``data``; the number of bytes of it sent."""
        return self._retry("write", _StdSSLSocket.write, self, data)

    def recv(self, buflen: int = 1024, flags: int = 0) -> bytes:
        """Receive up to ``buflen`` decrypted bytes (plain bytes once unwrapped)."""
        return self._retry("read", _StdSSLSocket.recv, self, buflen, flags)

    def recv_into(self, buffer: Any, nbytes: int | None = None, flags: int = 0) -> int:
        """Receive into ``buffer``; the number of bytes received."""
        return self._retry("read", _StdSSLSocket.recv_into, self, buffer, nbytes, flags)

    def send(self, data: Any, flags: int = 0) -> int:
        """Send some of ``data`` (encrypted); the number of bytes sent."""
        return self._retry("write", _StdSSLSocket.send, self, data, flags)

    def sendall(self, data: Any, flags: int = 0) -> None:
        """Send all of ``data``; the timeout bounds each send, as the stdlib's."""
        self._retry("write", _StdSSLSocket.sendall, self, data, flags)

    def unwrap(self) -> Any:
        """Shut TLS down (close_notify both ways); the socket then carries plain bytes."""
        return self._retry("unwrap", _StdSSLSocket.unwrap, self)

    # -- accepting ------------------------------------------------------------------------------

    def accept(self) -> tuple[SSLSocket, Any]:
        """Wait for a connection: ``(new green server-side SSLSocket, address)``.

        As the stdlib's, the new socket shakes hands at once if this one was made with
        ``do_handshake_on_connect``; it is green even if the context's ``sslsocket_class`` is
        the stdlib's.
        """
        newsock, addr = _gsocket.socket.accept(self)
        context = self.context
        cls = context.sslsocket_class
        if not (isinstance(cls, type) and issubclass(cls, SSLSocket)):
            cls = SSLSocket
        wrapped = cls._create(  # type: ignore[attr-defined]
            sock=newsock,
            server_side=True,
            do_handshake_on_connect=self.do_handshake_on_connect,  # type: ignore[attr-defined]
            suppress_ragged_eofs=self.suppress_ragged_eofs,  # type: ignore[attr-defined]
            context=context,
        )
        return wrapped, addr


_TIMEOUT_WORDS = {"handshake": "handshake", "read": "read", "write": "write"}


def _timed_out(operation: str, write: bool) -> TimeoutError:
    """The stdlib's timeout for a TLS operation (``unwrap`` is named by its direction)."""
    word = _TIMEOUT_WORDS.get(operation) or ("write" if write else "read")
    return TimeoutError(f"The {word} operation timed out")


# -- contexts -------------------------------------------------------------------------------------


class SSLContext(_StdSSLContext):  # type: ignore[no-redef]
    """The stdlib's ``ssl.SSLContext`` whose ``wrap_socket`` makes green :class:`SSLSocket`.

    It only sets ``sslsocket_class``: no property or method is overridden (see the module's
    docstring for why that matters).
    """

    sslsocket_class = SSLSocket


def _green(context: _std.SSLContext) -> SSLContext:
    """Make a context built by the stdlib a green :class:`SSLContext` (same object)."""
    if type(context) is _StdSSLContext:
        context.__class__ = SSLContext
    return context


def create_default_context(  # type: ignore[no-redef]
    purpose: _std.Purpose = _std.Purpose.SERVER_AUTH,
    *,
    cafile: Any = None,
    capath: Any = None,
    cadata: Any = None,
) -> SSLContext:
    """The stdlib's ``create_default_context`` (same settings), as a green :class:`SSLContext`."""
    return _green(_std_create_default_context(purpose, cafile=cafile, capath=capath, cadata=cadata))


def _create_unverified_context(*args: Any, **kwargs: Any) -> SSLContext:
    """The stdlib's ``_create_unverified_context``, as a green :class:`SSLContext`."""
    return _green(_std_create_unverified_context(*args, **kwargs))


# The stdlib's private aliases of the two factories, which http.client and urllib call.
_create_default_https_context = create_default_context
_create_stdlib_context = _create_unverified_context


if hasattr(_std, "wrap_socket"):

    def wrap_socket(
        sock: Any,
        keyfile: Any = None,
        certfile: Any = None,
        server_side: bool = False,
        cert_reqs: Any = _std.CERT_NONE,
        ssl_version: Any = _std.PROTOCOL_TLS,
        ca_certs: Any = None,
        do_handshake_on_connect: bool = True,
        suppress_ragged_eofs: bool = True,
        ciphers: str | None = None,
    ) -> SSLSocket:
        """The stdlib's deprecated ``ssl.wrap_socket``, making a green :class:`SSLSocket`.

        Same arguments, checks and ``DeprecationWarning`` as the stdlib's (Python < 3.12).
        """
        _warnings.warn(
            "ssl.wrap_socket() is deprecated, use SSLContext.wrap_socket()",
            category=DeprecationWarning,
            stacklevel=2,
        )
        if server_side and not certfile:
            raise ValueError("certfile must be specified for server-side operations")
        if keyfile and not certfile:
            raise ValueError("certfile must be specified")
        context = SSLContext(ssl_version)
        context.verify_mode = cert_reqs
        if ca_certs:
            context.load_verify_locations(ca_certs)
        if certfile:
            context.load_cert_chain(certfile, keyfile)
        if ciphers:
            context.set_ciphers(ciphers)
        return context.wrap_socket(
            sock=sock,
            server_side=server_side,
            do_handshake_on_connect=do_handshake_on_connect,
            suppress_ragged_eofs=suppress_ragged_eofs,
        )
