"""Where to listen or connect, in the forms people type: a port, a ``(host, port)``, a string.

``listen``, ``serve``, ``connect``, ``connect_protocol`` and ``serve_wsgi`` take their endpoint
through these two functions, so they accept the same forms and reject the rest with the same
``TypeError`` naming what is accepted:

- an ``int`` port: listen on every interface (as ``tcp:PORT``); connect to ``127.0.0.1``;
- a ``(host, port)`` tuple, as gevent, asyncio and the ``socket`` module take it: an IPv6
  literal host gives an IPv6 endpoint; ``""`` (or ``"0.0.0.0"``) listens on every interface;
  a client host may be a name (resolved by Twisted's ``HostnameEndpoint``, IPv4 and IPv6);
- a Twisted endpoint description string (``"tcp:8080:interface=127.0.0.1"``, ``"unix:/tmp/s"``,
  ``"ssl:8443:privateKey=key.pem"``; ``"tcp:host=example.com:port=80"`` on the client side);
- an endpoint object (``IStreamServerEndpoint`` / ``IStreamClientEndpoint``, or any object
  with a ``listen`` / ``connect`` method, as duck-typed test doubles are).
"""

from __future__ import annotations

from typing import Any, TypeAlias

from twisted.internet.endpoints import (
    HostnameEndpoint,
    TCP4ServerEndpoint,
    TCP6ServerEndpoint,
    clientFromString,
    serverFromString,
)
from twisted.internet.interfaces import IStreamClientEndpoint, IStreamServerEndpoint

__all__ = ["ClientAddress", "ServerAddress", "client_endpoint", "server_endpoint"]

# (Any at the end: Twisted's endpoint classes declare their interfaces with zope, which mypy
# sees only with the mypy-zope plugin.)
ServerAddress: TypeAlias = "int | tuple[str, int] | str | IStreamServerEndpoint | Any"
ClientAddress: TypeAlias = "int | tuple[str, int] | str | IStreamClientEndpoint | Any"

_SERVER_FORMS = (
    "a port number (8080), a (host, port) tuple (('127.0.0.1', 8080)), a Twisted endpoint "
    "string ('tcp:8080:interface=127.0.0.1') or an IStreamServerEndpoint"
)
_CLIENT_FORMS = (
    "a port number on 127.0.0.1 (8080), a (host, port) tuple (('example.com', 80)), a Twisted "
    "endpoint string ('tcp:host=example.com:port=80') or an IStreamClientEndpoint"
)


def _port(value: object, api: str) -> int:
    if type(value) is not int:
        raise TypeError(f"{api}: the port must be an int, not {type(value).__name__!r}")
    if not 0 <= value <= 65535:
        raise ValueError(f"{api}: port {value} is not in 0-65535")
    return value


def _host_port(where: tuple[object, ...], api: str, forms: str) -> tuple[str, int]:
    if len(where) != 2 or not isinstance(where[0], str):
        raise TypeError(f"{api}: {where!r} is not a (host, port) tuple; pass {forms}")
    return where[0], _port(where[1], api)


def _wrong(where: object, api: str, forms: str, second: str) -> TypeError:
    hint = ""
    if callable(where):
        hint = f" (the endpoint comes first, then the {second}: {api[:-2]}(endpoint, {second}))"
    return TypeError(f"{api}: the endpoint must be {forms}, not {type(where).__name__!r}{hint}")


def server_endpoint(reactor: Any, where: object, api: str) -> Any:
    """The ``IStreamServerEndpoint`` that ``where`` names (see the module docstring).

    ``api`` names the caller in error messages (``"listen()"``).
    """
    if isinstance(where, str):
        return serverFromString(reactor, where)  # type: ignore[no-untyped-call]
    if IStreamServerEndpoint.providedBy(where) or callable(getattr(where, "listen", None)):
        return where  # an endpoint, declared or duck-typed
    if type(where) is int:
        return TCP4ServerEndpoint(reactor, _port(where, api))  # type: ignore[no-untyped-call]
    if isinstance(where, tuple):
        host, port = _host_port(where, api, _SERVER_FORMS)
        if ":" in host:
            return TCP6ServerEndpoint(reactor, port, interface=host)  # type: ignore[no-untyped-call]
        interface = "" if host == "0.0.0.0" else host
        return TCP4ServerEndpoint(reactor, port, interface=interface)  # type: ignore[no-untyped-call]
    raise _wrong(where, api, _SERVER_FORMS, "handler")


def client_endpoint(reactor: Any, where: object, api: str) -> Any:
    """The ``IStreamClientEndpoint`` that ``where`` names (see the module docstring)."""
    if isinstance(where, str):
        return clientFromString(reactor, where)  # type: ignore[no-untyped-call]
    if IStreamClientEndpoint.providedBy(where) or callable(getattr(where, "connect", None)):
        return where  # an endpoint, declared or duck-typed
    if type(where) is int:
        return HostnameEndpoint(reactor, "127.0.0.1", _port(where, api))
    if isinstance(where, tuple):
        host, port = _host_port(where, api, _CLIENT_FORMS)
        if not host:
            raise ValueError(f"{api}: the host of {where!r} is empty; name the host to connect to")
        return HostnameEndpoint(reactor, host, port)
    raise _wrong(where, api, _CLIENT_FORMS, "protocol")
