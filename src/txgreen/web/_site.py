"""``GreenSite``: the twisted.web ``Site`` every txgreen server uses, and its limits.

A server facing the internet must not be held hostage by careless or hostile clients (slow
headers, idle keep-alive connections, huge headers or bodies, too many requests at once).
:class:`Limits` holds those bounds with defaults that are safe on the internet;
:class:`GreenSite` enforces them and remembers its open connections, so a server can drain and
close them on shutdown.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from twisted.python.failure import Failure
from twisted.web.resource import Resource
from twisted.web.server import Site

__all__ = ["GreenSite", "Limits"]


@dataclass(frozen=True)
class Limits:
    """The bounds a :class:`GreenSite` puts on each client; ``None`` switches one off.

    (Enforced by GreenSite; the defaults are documented in docs/serving.md.)
    """

    header_timeout: float | None = 10.0
    """Seconds a connection has to send a request's complete headers (slowloris)."""
    idle_timeout: float | None = 60.0
    """Seconds a keep-alive connection may sit idle between requests."""
    max_header_line: int = 8190
    """Longest request line or header line, in bytes (431 beyond)."""
    max_header_count: int = 100
    """Most header lines in one request (431 beyond)."""
    max_header_size: int = 65536
    """Most bytes of headers in one request (431 beyond)."""
    max_body_size: int | None = 100 * 1024 * 1024
    """Largest request body, in bytes (413 beyond)."""
    max_concurrency: int | None = None
    """Most requests served at once (see docs/serving.md for what happens beyond)."""


class GreenSite(Site):
    """A Site that remembers the transports of its open connections and enforces ``limits``."""

    def __init__(self, resource: Resource, reactor: Any, limits: Limits | None = None) -> None:
        super().__init__(resource, reactor=reactor)  # type: ignore[no-untyped-call]
        self.limits = limits if limits is not None else Limits()
        self.transports: set[Any] = set()

    def buildProtocol(self, addr: Any) -> Any:
        protocol = super().buildProtocol(addr)  # type: ignore[no-untyped-call]
        if protocol is None:
            return None
        made, lost = protocol.makeConnection, protocol.connectionLost
        transports = self.transports
        mine: list[Any] = []

        def make_connection(transport: Any) -> None:
            mine.append(transport)
            transports.add(transport)
            made(transport)

        def connection_lost(reason: Failure) -> None:
            for transport in mine:
                transports.discard(transport)
            lost(reason)

        protocol.makeConnection = make_connection
        protocol.connectionLost = connection_lost
        return protocol
