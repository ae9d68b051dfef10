"""A hello-world WSGI server (GreenSite + WSGIResource) for the hostile-client tests.

Usage: hostile_server.py HEADER_TIMEOUT, or hostile_server.py plain (twisted.web's own ``Site``
with its defaults, for comparison).  Prints ``port N`` once it listens, then serves until
killed.  Raises its soft limit of open files to what the slowloris test needs.
"""

from __future__ import annotations

import resource
import sys
from typing import Any

from twisted.internet.endpoints import serverFromString
from twisted.web.server import Site

import txgreen
from txgreen.web import GreenSite, Limits, WSGIResource

FILES_NEEDED = 2048


def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"hello\n"]


def main() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < FILES_NEEDED:
        if hard != resource.RLIM_INFINITY and hard < FILES_NEEDED:
            sys.exit(f"hostile_server: needs {FILES_NEEDED} open files; `ulimit -Hn` is {hard}")
        resource.setrlimit(resource.RLIMIT_NOFILE, (FILES_NEEDED, hard))
    from twisted.internet import reactor

    site: Any
    if sys.argv[1] == "plain":
        site = Site(WSGIResource(app))  # type: ignore[no-untyped-call]
    else:
        site = GreenSite(WSGIResource(app), reactor, Limits(header_timeout=float(sys.argv[1])))
    endpoint: Any = serverFromString(reactor, "tcp:0:interface=127.0.0.1:backlog=1024")  # type: ignore[no-untyped-call]
    port = txgreen.block_on(endpoint.listen(site))
    print(f"port {port.getHost().port}", flush=True)
    txgreen.Event().wait()


txgreen.run(main)
