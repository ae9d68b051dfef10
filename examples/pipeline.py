"""A crawler-style pipeline driven by a Pool: fetch pages concurrently, follow their links.

A tiny twisted.web site (a few linked pages, two broken links, 50 ms per response) listens on
127.0.0.1.  The crawler is plain sync-style code: ``fetch`` makes the request with Twisted's
``Agent`` and reads the body with ``readBody``, both waited for with ``txgreen.block_on``.
Each level of links is fanned out over a ``Pool(size=4)`` with ``imap_unordered`` (results
come back as pages arrive) and fanned back in to build the next level, so at most 4 requests
are ever in flight.  Run it with ``python examples/pipeline.py``.
"""

from __future__ import annotations

import re
import time
import warnings
from dataclasses import dataclass
from typing import Any

from twisted.internet import reactor as _reactor
from twisted.web.client import Agent, readBody
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request, Site

import txgreen
from txgreen import Pool

reactor: Any = _reactor  # untyped: Twisted's interfaces need mypy-zope to type-check

# readBody warns when the whole body had arrived before it was called (the response's
# transport proxy is then detached and has no abortConnection): harmless here, and not ours.
warnings.filterwarnings(
    "ignore",
    message="Using readBody with a transport that does not have an abortConnection method",
    category=DeprecationWarning,
)

POOL_SIZE = 4
DELAY = 0.05  # seconds the server takes per page

# path -> the paths it links to; two links point to pages that do not exist.
SITE = {
    "/": ["/about", "/blog", "/shop"],
    "/about": ["/", "/team"],
    "/team": ["/about"],
    "/blog": ["/blog/1", "/blog/2", "/blog/3"],
    "/blog/1": ["/blog/2"],
    "/blog/2": ["/blog/3", "/old-post"],
    "/blog/3": ["/"],
    "/shop": ["/shop/cart", "/shop/item/1", "/shop/item/2"],
    "/shop/cart": [],
    "/shop/item/1": ["/shop/cart"],
    "/shop/item/2": ["/shop/cart", "/shop/item/3"],
}
LINK = re.compile(rb'<a href="([^"]+)">')


class Pages(Resource):
    """Serves SITE as HTML pages, each after DELAY seconds; counts requests in flight."""

    isLeaf = True

    def __init__(self) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.in_flight = 0
        self.peak = 0

    def render_GET(self, request: Request) -> int:
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        path = request.path.decode()
        reactor.callLater(DELAY, self._respond, request, path)
        return NOT_DONE_YET

    def _respond(self, request: Request, path: str) -> None:
        self.in_flight -= 1
        if path in SITE:
            links = "".join(f'<li><a href="{link}">{link}</a></li>' for link in SITE[path])
            body = f"<html><h1>{path}</h1><ul>{links}</ul></html>"
        else:
            request.setResponseCode(404)
            body = f"<html><h1>no page at {path}</h1></html>"
        request.write(body.encode())  # type: ignore[no-untyped-call]
        request.finish()  # type: ignore[no-untyped-call]


@dataclass
class Page:
    path: str
    status: int
    links: list[str]


class Crawler:
    def __init__(self, base: str) -> None:
        self.base = base
        self.agent = Agent(reactor)  # type: ignore[no-untyped-call]
        self.in_flight = 0
        self.peak = 0

    def fetch(self, path: str) -> Page:
        """One page, in plain sync style: request, read the body, find the links."""
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        try:
            response = txgreen.block_on(self.agent.request(b"GET", (self.base + path).encode()))
            body = txgreen.block_on(readBody(response))
        finally:
            self.in_flight -= 1
        links = [m.decode() for m in LINK.findall(body)] if response.code == 200 else []
        return Page(path, response.code, links)

    def crawl(self, start: str, pool: Pool) -> dict[str, Page]:
        """Breadth first: each level is fanned out over the pool, its links make the next."""
        pages: dict[str, Page] = {}
        seen = {start}
        level = [start]
        while level:
            following = []
            for page in pool.imap_unordered(self.fetch, level):
                pages[page.path] = page
                for link in page.links:
                    if link not in seen:
                        seen.add(link)
                        following.append(link)
            level = following
        return pages


def main() -> None:
    site = Pages()
    factory = Site(site)  # type: ignore[no-untyped-call]
    port = reactor.listenTCP(0, factory, interface="127.0.0.1")
    base = f"http://127.0.0.1:{port.getHost().port}"
    print(f"pipeline: crawling {base}/ with Pool(size={POOL_SIZE}), {DELAY * 1000:.0f} ms per page")
    crawler = Crawler(base)
    started = time.perf_counter()
    pages = crawler.crawl("/", Pool(POOL_SIZE))
    elapsed = time.perf_counter() - started
    txgreen.block_on(port.stopListening())

    for path in sorted(pages):
        page = pages[path]
        print(f"  {page.status} {path:<14} {len(page.links)} links")
    ok = sum(1 for p in pages.values() if p.status == 200)
    broken = sorted(p.path for p in pages.values() if p.status != 200)
    print(
        f"crawled {len(pages)} pages in {elapsed:.2f} s ({ok} ok, {len(broken)} broken: "
        f"{', '.join(broken)}); one at a time: {len(pages) * DELAY:.2f} s"
    )
    print(
        f"requests in flight at once: crawler {crawler.peak}, server {site.peak} "
        f"(pool size {POOL_SIZE})"
    )


if __name__ == "__main__":
    txgreen.run(main)
