"""A sync-style HTTP client on Twisted's ``Agent``, against a local ``twisted.web`` server.

The program starts a small ``twisted.web`` site on 127.0.0.1.  Its resource renders in a green
thread (``txgreen.spawn``), so it can wait like plain sync code before answering.

The client wraps ``twisted.web.client.Agent`` with ``txgreen.blocking``: ``request()`` then
returns the response itself instead of a Deferred, and ``readBody`` is waited for with
``txgreen.block_on``.  Three requests run at once from three green threads.

Run it: ``python examples/http_get.py``
"""

from __future__ import annotations

import time
import warnings
from typing import Any

from twisted.internet.endpoints import serverFromString
from twisted.web.client import Agent, readBody
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request, Site

import txgreen

# Twisted's readBody warns that the response's transport (the Agent's proxy of it) has no
# abortConnection method; that only matters when cancelling readBody, which we do not.
warnings.filterwarnings("ignore", "Using readBody with a transport", DeprecationWarning)


class Greeting(Resource):
    isLeaf = True

    def render_GET(self, request: Request) -> int:
        txgreen.spawn(self.answer, request)  # render in a green thread
        return NOT_DONE_YET

    def answer(self, request: Request) -> None:
        txgreen.sleep(0.2)  # pretend to do slow work, blocking only this green thread
        name = request.path.decode().strip("/") or "world"
        set_header: Any = request.setHeader
        set_header(b"content-type", b"text/plain; charset=utf-8")
        request.write(f"hello, {name}\n".encode())  # type: ignore[no-untyped-call]
        request.finish()  # type: ignore[no-untyped-call]


def fetch(agent: Any, base: str, path: str) -> str:
    """GET base + path: ``agent`` is a blocking() proxy, so request() returns the response."""
    response = agent.request(b"GET", (base + path).encode())
    body: bytes = txgreen.block_on(readBody(response))
    content_type = response.headers.getRawHeaders(b"content-type")[0].decode()
    return f"GET {path}: {response.code} ({content_type}) {body!r}"


def main() -> None:
    from twisted.internet import reactor

    site: Any = Site(Greeting(), timeout=None)  # type: ignore[no-untyped-call]
    endpoint: Any = serverFromString(reactor, "tcp:0:interface=127.0.0.1")  # type: ignore[no-untyped-call]
    port = txgreen.block_on(endpoint.listen(site))
    base = f"http://127.0.0.1:{port.getHost().port}"
    print("web server listening on 127.0.0.1")

    agent = txgreen.blocking(Agent(reactor), timeout=10)  # type: ignore[no-untyped-call]
    print(fetch(agent, base, "/"))

    start = time.monotonic()
    names = ["alice", "bob", "carol"]
    gets = [txgreen.spawn(fetch, agent, base, f"/{name}") for name in names]
    for get in gets:
        print(get.get())
    elapsed = time.monotonic() - start
    speed = "less" if elapsed < 0.6 else "more"
    print(f"three 0.2s requests at once took {speed} than 0.6s (one after another: 0.6s)")

    txgreen.block_on(port.stopListening())
    print("done")


if __name__ == "__main__":
    txgreen.run(main)
