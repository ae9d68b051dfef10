"""``serve_wsgi``: serve a WSGI application over HTTP from a green thread, until it is killed.

The server side of the WSGI container (:mod:`txgreen.web._container`): a twisted.web ``Site``
(:class:`txgreen.web._site.GreenSite`, which tracks its connections and enforces the limits
that protect it from hostile clients) whose root is a :class:`WSGIResource`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

from twisted.internet.endpoints import serverFromString
from twisted.internet.interfaces import IListeningPort, IStreamServerEndpoint

from txgreen._block import block_on
from txgreen._event import Event
from txgreen._stream import PortCloser
from txgreen.errors import ReactorStopped
from txgreen.web._container import WSGIResource, _Application
from txgreen.web._site import GreenSite

__all__ = ["serve_wsgi"]


def serve_wsgi(
    endpoint: str | IStreamServerEndpoint,
    application: _Application,
    *,
    reactor: Any = None,
    on_listen: Callable[[IListeningPort], object] | None = None,
) -> None:
    """Serve ``application`` over HTTP on ``endpoint`` until the calling green thread is killed.

    ``endpoint`` is a server endpoint description (``"tcp:8080:interface=127.0.0.1"``) or an
    ``IStreamServerEndpoint``; the server is a twisted.web ``Site`` whose root is a
    :class:`WSGIResource` of ``application``.  Blocks until the port listens (raising the
    error if it cannot), calls ``on_listen(port)`` with the ``IListeningPort`` (its
    ``getHost().port`` is the bound port), then blocks until the green thread is killed.  On
    the way out it stops listening, kills the requests still running (their connections are
    aborted) and closes the idle connections.
    """
    resource = WSGIResource(application, reactor=reactor)
    reactor = resource.reactor
    ep: Any = serverFromString(reactor, endpoint) if isinstance(endpoint, str) else endpoint  # type: ignore[no-untyped-call]
    site = GreenSite(resource, reactor)
    port: Any = block_on(ep.listen(site))
    closer = PortCloser(reactor, port)  # the shutdown closes the port at once
    try:
        if on_listen is not None:
            on_listen(port)
        Event().wait()  # until killed
    finally:
        try:
            with contextlib.suppress(ReactorStopped):  # shutdown: the port is closing already
                block_on(closer.stop())
        finally:
            try:
                with contextlib.suppress(ReactorStopped):
                    resource.threads.kill()
            finally:
                for transport in list(site.transports):
                    transport.loseConnection()
