"""A cooperative ``socket`` module: the stdlib's surface, waiting on the reactor.

:class:`socket` is a subclass of the stdlib's ``socket.socket`` whose OS socket is always
non-blocking underneath.  Every call first tries the system call; when it would block, a green
thread parks on the reactor until the fd is ready (``txgreen.green._fdwait``) and tries again,
so only that green thread waits.  Timeouts (``settimeout``, ``setdefaulttimeout``) and
non-blocking mode keep the stdlib's meaning and exceptions: ``TimeoutError("timed out")`` (the
stdlib's ``socket.timeout``) and ``BlockingIOError``.

A call made outside a green thread (in another OS thread, or in the hub itself: a reactor
callback) never parks: it waits in the OS exactly as the stdlib's blocking call does.

The name service functions (``getaddrinfo``, ``gethostbyname``, ...) run the system resolver in
a small thread pool of their own (not the reactor's); numeric addresses are answered at once.

Every other name of the stdlib's ``socket`` module is re-exported unchanged.
"""

from __future__ import annotations

import builtins as _builtins
import contextlib as _contextlib
import errno as _errno
import os as _os
import socket as _std
from collections.abc import Callable, Iterable
from socket import *  # noqa: F403 - the stdlib's whole surface, re-exported
from time import monotonic as _monotonic
from typing import Any, TypeVar

from txgreen._hub import Hub as _Hub
from txgreen._threads import DaemonThreadPool as _DaemonThreadPool
from txgreen._threads import call_in_thread as _call_in_thread
from txgreen.green import _fdwait

_T = TypeVar("_T")


#: What ``txgreen.patch(socket=True)`` replaces in the stdlib's ``socket`` module.
__patched__ = [
    "create_connection",
    "create_server",
    "fromfd",
    "socket",
    "socketpair",
]
#: What ``txgreen.patch(dns=True)`` replaces: the name service, run in the resolver's pool.
__patched_dns__ = [
    "getaddrinfo",
    "gethostbyaddr",
    "gethostbyname",
    "gethostbyname_ex",
    "getnameinfo",
]
__all__ = sorted(set(_std.__all__) | set(__patched__) | set(__patched_dns__))

# The originals this module calls (bound now: after patch() the stdlib module's names are ours).
_std_socketpair = _std.socketpair
_std_create_server = _std.create_server
_std_getaddrinfo = _std.getaddrinfo
_std_gethostbyname = _std.gethostbyname
_std_gethostbyname_ex = _std.gethostbyname_ex
_std_gethostbyaddr = _std.gethostbyaddr
_std_getnameinfo = _std.getnameinfo

_StdSocket = _std.socket
# A call with this flag never waits: its BlockingIOError is the caller's.
_MSG_DONTWAIT: int = getattr(_std, "MSG_DONTWAIT", 0)


def _timed_out() -> TimeoutError:
    return TimeoutError("timed out")


# -- the socket class ---------------------------------------------------------------------------


class socket(_StdSocket):  # type: ignore[no-redef]
    """The stdlib's ``socket.socket``, cooperative: a call that would block parks only the
    calling green thread (see the module's docstring); the same arguments, methods and
    exceptions as the stdlib's.
    """

    def __init__(
        self,
        family: int = -1,
        type: int = -1,
        proto: int = -1,
        fileno: int | None = None,
    ) -> None:
        super().__init__(family, type, proto, fileno)
        # The timeout the user sees (the stdlib's: the default, or 0.0 for SOCK_NONBLOCK); the
        # OS socket itself is always non-blocking.
        self._green_timeout: float | None = _StdSocket.gettimeout(self)
        _StdSocket.settimeout(self, 0.0)

    # -- timeouts -------------------------------------------------------------------------------

    def settimeout(self, value: float | None, /) -> None:
        """Set the timeout of blocking calls (None: block, 0.0: non-blocking), as the stdlib's."""
        _StdSocket.settimeout(self, value)  # the stdlib's checks and errors
        self._green_timeout = _StdSocket.gettimeout(self)
        _StdSocket.settimeout(self, 0.0)

    def gettimeout(self) -> float | None:
        """The timeout of blocking calls: None (block), 0.0 (non-blocking) or seconds."""
        return self._green_timeout

    def setblocking(self, flag: bool, /) -> None:
        """``setblocking(flag)`` is ``settimeout(None if flag else 0.0)``, as the stdlib's."""
        self.settimeout(None if flag else 0.0)

    def getblocking(self) -> bool:
        """False in non-blocking mode (timeout 0.0), else True, as the stdlib's."""
        return self._green_timeout != 0.0

    # -- the one retry loop ---------------------------------------------------------------------

    def _io(
        self,
        write: bool,
        fn: Callable[..., _T],
        *args: Any,
        deadline: float | None = None,
    ) -> _T:
        """``fn(*args)``, waiting for readiness and retrying while it would block."""
        try:
            return fn(*args)
        except BlockingIOError:
            if self._green_timeout == 0.0:
                raise  # non-blocking: the syscall's BlockingIOError as it is
        return self._io_wait(write, fn, args, deadline)

    def _io_wait(
        self,
        write: bool,
        fn: Callable[..., _T],
        args: tuple[Any, ...],
        deadline: float | None = None,
    ) -> _T:
        """``fn(*args)`` would block: wait for readiness, then retry (until the timeout)."""
        timeout = self._green_timeout
        fd = _StdSocket.fileno(self)
        while True:
            left = None
            if timeout is not None:
                if deadline is None:
                    deadline = _monotonic() + timeout
                left = deadline - _monotonic()
                if left <= 0:
                    raise _timed_out()
            if not _fdwait.wait(fd, write, left, managed=True):
                raise _timed_out()
            try:
                return fn(*args)
            except BlockingIOError:
                pass

    # -- connecting ------------------------------------------------------------------------------

    def _resolve_address(self, address: Any) -> Any:
        """An IP address for ``(host, port, ...)`` with a host name (resolved cooperatively)."""
        if (
            self.family in (_std.AF_INET, _std.AF_INET6)
            and isinstance(address, tuple)
            and len(address) >= 2
            and isinstance(address[0], str)
            and not _is_numeric_host(address[0])
        ):
            infos = getaddrinfo(address[0], address[1], self.family, self.type, self.proto)
            sockaddr = infos[0][4]
            return (sockaddr[0], *address[1:])
        return address

    def connect(self, address: Any, /) -> None:
        """Connect to ``address``; only the calling green thread waits (timeouts as the stdlib)."""
        address = self._resolve_address(address)
        if self._green_timeout == 0.0:
            _StdSocket.connect(self, address)
            return
        deadline = None if self._green_timeout is None else _monotonic() + self._green_timeout
        while True:
            try:
                _StdSocket.connect(self, address)
                return
            except BlockingIOError as e:
                if e.errno == _errno.EAGAIN and self.family == getattr(_std, "AF_UNIX", None):
                    # A full UNIX listen queue: wait and try the connect again.
                    self._wait_connect(deadline)
                    continue
            except InterruptedError:  # pragma: no cover - the C call retries EINTR itself
                continue
            # In progress: wait until the fd is writable, then read the outcome.
            self._wait_connect(deadline)
            err = self.getsockopt(_std.SOL_SOCKET, _std.SO_ERROR)
            if err:
                raise OSError(err, _os.strerror(err))
            return

    def _wait_connect(self, deadline: float | None) -> None:
        left = None if deadline is None else deadline - _monotonic()
        if left is not None and left <= 0:
            raise _timed_out()
        if not _fdwait.wait(_StdSocket.fileno(self), True, left, managed=True):
            raise _timed_out()

    def connect_ex(self, address: Any, /) -> int:
        """Like :meth:`connect`, returning an errno (0 on success) instead of raising OSError."""
        try:
            socket.connect(self, address)  # this class's (an SSLSocket's connect wraps it)
        except _std.gaierror:
            raise
        except TimeoutError as e:
            return e.errno or _errno.EWOULDBLOCK
        except OSError as e:
            if e.errno is None:
                raise
            return e.errno
        return 0

    def accept(self) -> tuple[socket, Any]:
        """Wait for a connection: ``(new green socket, address)``, as the stdlib's."""
        fd, addr = self._io(False, self._accept)  # type: ignore[attr-defined]
        sock = socket(self.family, self.type, self.proto, fileno=fd)
        if _std.getdefaulttimeout() is None and self.gettimeout():
            sock.setblocking(True)  # the stdlib's rule for accepted sockets
        return sock, addr

    # -- receiving -------------------------------------------------------------------------------

    def recv(self, bufsize: int, flags: int = 0, /) -> bytes:
        """Receive up to ``bufsize`` bytes (b"" at end of stream)."""
        try:  # the hot path, inlined: data is there
            return _StdSocket.recv(self, bufsize, flags)
        except BlockingIOError:
            if self._green_timeout == 0.0 or flags & _MSG_DONTWAIT:
                raise
        return self._io_wait(False, _StdSocket.recv, (self, bufsize, flags))

    def recv_into(self, buffer: Any, nbytes: int = 0, flags: int = 0) -> int:
        """Receive into ``buffer``; the number of bytes received."""
        if flags & _MSG_DONTWAIT:
            return _StdSocket.recv_into(self, buffer, nbytes, flags)
        return self._io(False, _StdSocket.recv_into, self, buffer, nbytes, flags)

    def recvfrom(self, bufsize: int, flags: int = 0, /) -> tuple[bytes, Any]:
        """Receive up to ``bufsize`` bytes: ``(data, sender's address)``."""
        if flags & _MSG_DONTWAIT:
            return _StdSocket.recvfrom(self, bufsize, flags)
        return self._io(False, _StdSocket.recvfrom, self, bufsize, flags)

    def recvfrom_into(self, buffer: Any, nbytes: int = 0, flags: int = 0) -> tuple[int, Any]:
        """Receive into ``buffer``: ``(number of bytes, sender's address)``."""
        if flags & _MSG_DONTWAIT:
            return _StdSocket.recvfrom_into(self, buffer, nbytes, flags)
        return self._io(False, _StdSocket.recvfrom_into, self, buffer, nbytes, flags)

    if hasattr(_StdSocket, "recvmsg"):

        def recvmsg(
            self, bufsize: int, ancbufsize: int = 0, flags: int = 0, /
        ) -> tuple[bytes, list[tuple[int, int, bytes]], int, Any]:
            """Receive normal and ancillary data, as the stdlib's ``recvmsg``."""
            if flags & _MSG_DONTWAIT:
                return _StdSocket.recvmsg(self, bufsize, ancbufsize, flags)
            return self._io(False, _StdSocket.recvmsg, self, bufsize, ancbufsize, flags)

        def recvmsg_into(
            self, buffers: Iterable[Any], ancbufsize: int = 0, flags: int = 0, /
        ) -> tuple[int, list[tuple[int, int, bytes]], int, Any]:
            """Receive into ``buffers``, as the stdlib's ``recvmsg_into``."""
            buffers = list(buffers)
            if flags & _MSG_DONTWAIT:
                return _StdSocket.recvmsg_into(self, buffers, ancbufsize, flags)
            return self._io(False, _StdSocket.recvmsg_into, self, buffers, ancbufsize, flags)

    # -- sending ---------------------------------------------------------------------------------

    def send(self, data: Any, flags: int = 0, /) -> int:
        """Send some of ``data``; the number of bytes sent."""
        if flags & _MSG_DONTWAIT:
            return _StdSocket.send(self, data, flags)
        return self._io(True, _StdSocket.send, self, data, flags)

    def sendall(self, data: Any, flags: int = 0, /) -> None:
        """Send all of ``data``; the timeout bounds the whole call, as the stdlib's."""
        if flags & _MSG_DONTWAIT:
            _StdSocket.sendall(self, data, flags)  # BlockingIOError when the buffer is full
            return
        timeout = self._green_timeout
        deadline = None if not timeout else _monotonic() + timeout
        if data.__class__ is bytes:
            # The hot path: a small message usually goes in one send.
            try:
                sent = _StdSocket.send(self, data, flags)
            except BlockingIOError:
                if timeout == 0.0:
                    raise
                sent = 0
            if sent == len(data):
                return
        else:
            sent = 0
        view = memoryview(data).cast("B")
        total = len(view)
        while sent < total:
            sent += self._io(True, _StdSocket.send, self, view[sent:], flags, deadline=deadline)

    def sendto(self, data: Any, *args: Any) -> int:
        """``sendto(data[, flags], address)``: send a datagram; the number of bytes sent."""
        if len(args) == 2 and args[0] & _MSG_DONTWAIT:
            return _StdSocket.sendto(self, data, *args)
        return self._io(True, _StdSocket.sendto, self, data, *args)

    if hasattr(_StdSocket, "sendmsg"):

        def sendmsg(self, buffers: Iterable[Any], *args: Any) -> int:
            """Send normal and ancillary data, as the stdlib's ``sendmsg``."""
            buffers = list(buffers)
            if len(args) >= 2 and args[1] & _MSG_DONTWAIT:  # (ancdata, flags[, address])
                return _StdSocket.sendmsg(self, buffers, *args)
            return self._io(True, _StdSocket.sendmsg, self, buffers, *args)

    def sendfile(self, file: Any, offset: int = 0, count: int | None = None) -> int:
        """Send a file's contents with :meth:`send` (the stdlib's fallback path, cooperative)."""
        return self._sendfile_use_send(file, offset, count)  # type: ignore[attr-defined,no-any-return]

    # -- ending ----------------------------------------------------------------------------------

    def _real_close(self, _ss: Any = _StdSocket) -> None:
        fd = _StdSocket.fileno(self)
        if fd >= 0:
            _fdwait.before_close(fd)  # before the fd number can be reused
        super()._real_close()  # type: ignore[misc]

    def __del__(
        self,
        _std_del: Callable[[Any], None] = _StdSocket.__del__,  # type: ignore[attr-defined]
    ) -> None:
        # A socket dropped unclosed: its fd leaves the registry before the stdlib's finaliser
        # closes it (the registration of a managed wait may outlive its wake-up).
        fd = _StdSocket.fileno(self)
        if fd >= 0 and _fdwait.is_watched(fd):
            _fdwait.before_close(fd)
        _std_del(self)

    def detach(self) -> int:
        """Stop managing the fd and return it (blocking again if the socket's timeout is None)."""
        fd = _StdSocket.fileno(self)
        if fd >= 0:
            _fdwait.before_close(fd)
        fd = super().detach()
        if fd >= 0 and self._green_timeout is None:
            with _contextlib.suppress(OSError):  # an fd already closed: detach as the stdlib
                _os.set_blocking(fd, True)
        return fd


# -- module functions ---------------------------------------------------------------------------


def _from_std(sock: _StdSocket) -> socket:
    """A green socket taking over a stdlib socket's fd (and its timeout)."""
    timeout = sock.gettimeout()
    green = socket(sock.family, sock.type, sock.proto, fileno=sock.detach())
    green.settimeout(timeout)
    return green


def socketpair(  # type: ignore[no-redef]
    family: int | None = None,
    type: int = _std.SOCK_STREAM,
    proto: int = 0,
) -> tuple[socket, socket]:
    """A pair of connected green sockets, as the stdlib's ``socketpair``."""
    if family is None:
        a, b = _std_socketpair(type=type, proto=proto)
    else:
        a, b = _std_socketpair(family, type, proto)
    return _from_std(a), _from_std(b)


def fromfd(  # type: ignore[no-redef]
    fd: Any, family: int, type: int, proto: int = 0
) -> socket:
    """A green socket on a duplicate of ``fd``, as the stdlib's ``fromfd``."""
    return socket(family, type, proto, _std.dup(fd))


def create_server(  # type: ignore[no-redef]
    address: Any,
    *,
    family: int = _std.AF_INET,
    backlog: int | None = None,
    reuse_port: bool = False,
    dualstack_ipv6: bool = False,
) -> socket:
    """A listening green TCP socket bound to ``address``, as the stdlib's ``create_server``."""
    sock = _std_create_server(
        address,
        family=family,
        backlog=backlog,
        reuse_port=reuse_port,
        dualstack_ipv6=dualstack_ipv6,
    )
    return _from_std(sock)


_GLOBAL_DEFAULT_TIMEOUT: Any = _std._GLOBAL_DEFAULT_TIMEOUT  # type: ignore[attr-defined]


def create_connection(  # type: ignore[no-redef]
    address: tuple[str | None, Any],
    timeout: Any = _GLOBAL_DEFAULT_TIMEOUT,
    source_address: Any = None,
    *,
    all_errors: bool = False,
) -> socket:
    """Connect a green TCP socket to ``(host, port)``, trying each address the name has.

    The stdlib's ``create_connection``, cooperative: resolution and connecting park only the
    calling green thread.  ``timeout`` is the new socket's timeout; the last error (or, with
    ``all_errors``, an ``ExceptionGroup`` of all of them) is raised if no address works.
    """
    host, port = address
    errors: list[Exception] = []
    for family, type_, proto, _, sockaddr in getaddrinfo(host, port, 0, _std.SOCK_STREAM):
        sock = None
        try:
            sock = socket(family, type_, proto)
            if timeout is not _GLOBAL_DEFAULT_TIMEOUT:
                sock.settimeout(timeout)
            if source_address:
                sock.bind(source_address)
            sock.connect(sockaddr)
            errors.clear()
            return sock
        except OSError as e:
            errors.append(e)
            if sock is not None:
                sock.close()
    try:
        if not errors:
            raise OSError("getaddrinfo returns an empty list")
        group = getattr(_builtins, "ExceptionGroup", None)  # Python 3.11+
        if all_errors and group is not None:
            raise group("create_connection failed", errors)
        raise errors[-1]
    finally:
        errors = []  # no exception -> traceback -> frame -> errors cycle


# -- the name service ---------------------------------------------------------------------------

_dns_pool: _DaemonThreadPool | None = None
_DNS_THREADS = 4


def _pool(hub: _Hub) -> _DaemonThreadPool:
    """The resolver's own small thread pool, started on first use, stopped with the reactor."""
    global _dns_pool
    pool = _dns_pool
    if pool is None or not pool.started:
        pool = _DaemonThreadPool(0, _DNS_THREADS, name="txgreen-dns")
        pool.start()
        hub.reactor.addSystemEventTrigger("during", "shutdown", pool.stop)
        _dns_pool = pool
    return pool


def _resolve(fn: Callable[..., _T], *args: Any) -> _T:
    """``fn(*args)`` (a blocking resolver call) in the resolver's pool when called green."""
    caller = _fdwait.green_caller()
    if caller is None:
        return fn(*args)
    return _call_in_thread(fn, *args, pool=_pool(caller[0]))


def _is_numeric_host(host: Any) -> bool:
    """Is ``host`` None or a literal IPv4/IPv6 address (nothing to look up)?"""
    if host is None:
        return True
    if isinstance(host, bytes):
        try:
            host = host.decode("ascii")
        except UnicodeDecodeError:
            return False
    if not isinstance(host, str):
        return False
    for family in (_std.AF_INET, _std.AF_INET6):
        try:
            _std.inet_pton(family, host)
        except (OSError, ValueError):
            continue
        return True
    return False


def getaddrinfo(  # type: ignore[no-redef]
    host: Any,
    port: Any,
    family: int = 0,
    type: int = 0,
    proto: int = 0,
    flags: int = 0,
) -> list[tuple[AddressFamily, SocketKind, int, str, Any]]:  # noqa: F405
    """The stdlib's ``getaddrinfo``; a host name is looked up in the resolver's thread pool."""
    if _is_numeric_host(host):
        return list(_std_getaddrinfo(host, port, family, type, proto, flags))
    got: Any = _resolve(_std_getaddrinfo, host, port, family, type, proto, flags)
    return list(got)


def gethostbyname(  # type: ignore[no-redef]
    hostname: str,
) -> str:
    """The stdlib's ``gethostbyname`` (IPv4 only); looked up in the resolver's thread pool."""
    if _is_numeric_host(hostname):
        return _std_gethostbyname(hostname)
    return _resolve(_std_gethostbyname, hostname)


def gethostbyname_ex(  # type: ignore[no-redef]
    hostname: str,
) -> tuple[str, list[str], list[str]]:
    """The stdlib's ``gethostbyname_ex``, looked up in the resolver's thread pool."""
    return _resolve(_std_gethostbyname_ex, hostname)


def gethostbyaddr(  # type: ignore[no-redef]
    ip_address: str,
) -> tuple[str, list[str], list[str]]:
    """The stdlib's ``gethostbyaddr`` (a reverse lookup), in the resolver's thread pool."""
    return _resolve(_std_gethostbyaddr, ip_address)


def getnameinfo(  # type: ignore[no-redef]
    sockaddr: Any, flags: int
) -> tuple[str, str]:
    """The stdlib's ``getnameinfo``; numeric-only requests are answered at once."""
    numeric = _std.NI_NUMERICHOST | _std.NI_NUMERICSERV
    if flags & numeric == numeric:
        return _std_getnameinfo(sockaddr, flags)
    return _resolve(_std_getnameinfo, sockaddr, flags)
