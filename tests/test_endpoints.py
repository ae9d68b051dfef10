"""The endpoint forms that listen, serve, connect and connect_protocol accept, and the rest."""

from __future__ import annotations

import socket
from typing import Any

import pytest
from twisted.internet import reactor
from twisted.internet.endpoints import TCP4ClientEndpoint, TCP4ServerEndpoint
from twisted.internet.protocol import Protocol

import txgreen

# Wrong calls on purpose: through an untyped name, so that mypy lets them be made.
tx: Any = txgreen


def echo(stream: txgreen.Stream) -> None:
    for line in stream:
        stream.write(line)


def round_trip(where: Any) -> bytes:
    with txgreen.connect(where, timeout=10) as stream:
        stream.write(b"ping\n")
        return stream.readline()


def test_an_int_port_listens_on_every_interface_and_connects_to_loopback() -> None:
    with txgreen.listen(0, echo) as listener:
        host = listener.address
        assert host.host in ("0.0.0.0", "::")
        assert round_trip(listener.port) == b"ping\n"


def test_host_port_tuples_as_gevent_asyncio_and_socket_take_them() -> None:
    with txgreen.listen(("127.0.0.1", 0), echo) as listener:
        assert listener.address.host == "127.0.0.1"
        assert round_trip(("127.0.0.1", listener.port)) == b"ping\n"
        assert round_trip(("localhost", listener.port)) == b"ping\n"  # a name, resolved
    with txgreen.listen(("", 0), echo) as listener:  # "" is every interface, as in socket
        assert round_trip(listener.port) == b"ping\n"


@pytest.mark.skipif(not socket.has_ipv6, reason="no IPv6 on this machine")
def test_an_ipv6_literal_host_gives_an_ipv6_endpoint() -> None:
    with txgreen.listen(("::1", 0), echo) as listener:
        assert listener.address.host == "::1"
        assert round_trip(("::1", listener.port)) == b"ping\n"


def test_strings_and_endpoint_objects_still_work() -> None:
    endpoint = TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1")  # type: ignore[no-untyped-call]
    with txgreen.listen(endpoint, echo) as listener:
        port = listener.port
        assert round_trip(f"tcp:host=127.0.0.1:port={port}") == b"ping\n"
        assert round_trip(TCP4ClientEndpoint(reactor, "127.0.0.1", port)) == b"ping\n"


def test_serve_and_connect_protocol_take_the_same_forms() -> None:
    ports: list[int] = []
    ready = txgreen.Event()

    def on_listen(listener: txgreen.Listener) -> None:
        ports.append(listener.port)
        ready.set()

    server = txgreen.spawn(txgreen.serve, ("127.0.0.1", 0), echo, on_listen=on_listen)
    try:
        ready.wait()
        protocol = txgreen.connect_protocol(("127.0.0.1", ports[0]), Protocol, timeout=10)
        assert protocol.transport is not None
        transport: Any = protocol.transport
        transport.loseConnection()
        assert round_trip(ports[0]) == b"ping\n"
    finally:
        server.kill()


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (lambda: tx.listen(echo, 8080), TypeError, r"^listen\(\): the endpoint must be a port "
         r"number \(8080\), a \(host, port\) tuple .* not 'function' \(the endpoint comes first, "
         r"then the handler: listen\(endpoint, handler\)\)$"),
        (lambda: tx.listen(8080.0, echo), TypeError, r"not 'float'$"),
        (lambda: tx.listen(True, echo), TypeError, r"not 'bool'$"),
        (lambda: tx.listen(70000, echo), ValueError, r"^listen\(\): port 70000 is not in "),
        (lambda: tx.listen(("127.0.0.1",), echo), TypeError, r"is not a \(host, port\) tuple"),
        (lambda: tx.listen(("127.0.0.1", "80"), echo), TypeError,
         r"^listen\(\): the port must be an int, not 'str'$"),
        (lambda: tx.serve(echo, 0), TypeError, r"^serve\(\): .* serve\(endpoint, handler\)"),
        (lambda: tx.connect(None), TypeError,
         r"^connect\(\): the endpoint must be a port number on 127\.0\.0\.1 .* not 'NoneType'$"),
        (lambda: tx.connect(("", 80)), ValueError, r"the host of \('', 80\) is empty"),
        (lambda: tx.connect_protocol(Protocol, 80), TypeError,
         r"^connect_protocol\(\): .*connect_protocol\(endpoint, protocol\)"),
    ],
    ids=["handler-first", "float", "bool", "too-big", "1-tuple", "str-port", "serve-order",
         "none", "empty-host", "protocol-first"],
)  # fmt: skip
def test_wrong_forms_say_which_forms_are_accepted(
    call: Any, error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        call()
