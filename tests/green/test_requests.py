"""requests, unmodified, in green threads against twisted.web on 127.0.0.1 (issue 11's proof).

The servers are Twisted's ``twisted.web`` in this process (``real_servers``), over HTTP and over
HTTPS with a certificate signed by a test CA made on the spot (``certs``). Every test runs with
the stdlib patched (``txgreen.patch()``): requests' sockets (urllib3's) are then green sockets,
and a request waiting for its answer parks only its own green thread.

The concurrency proof: N = 50 clients, each in its own green thread, each ``requests.get`` a page
the server answers 0.2 s after the request; all finish in a fraction of N x 0.2 s while a ticker
green thread keeps its period. Connection pooling is checked by what the server saw (fewer
connections than requests), and a 20 MB download streamed with ``iter_content`` by a slow reader
shows back-pressure: the server writes only as fast as the reader reads (it never gets far
ahead, and nothing in the process holds the whole body).
"""

from __future__ import annotations

import itertools
import time
import tracemalloc
from collections.abc import Iterator
from typing import Any

import pytest
import requests
import requests.adapters
from certs import Pki, make_pki
from concurrency_proof import TLS_JITTER, concurrently, patched_for_test
from local_services import free_port
from real_servers import Served, listening, slow_http_server
from twisted.internet.interfaces import IPullProducer
from twisted.web import resource, server
from zope.interface import implementer  # type: ignore[import-untyped]

import txgreen
from txgreen.green import socket as gsocket

N = 50  # clients in the concurrency proof
DELAY = 0.2  # seconds the server takes to answer each request


@pytest.fixture(autouse=True)
def patched_stdlib() -> Iterator[None]:
    """Every test runs with the stdlib patched, and unpatched after; the fd registry is empty."""
    with patched_for_test():
        yield


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """A test CA and a server certificate it signed for localhost and 127.0.0.1."""
    return make_pki(tmp_path_factory.mktemp("pki"))


def get(url: str, **kwargs: Any) -> tuple[int, bytes]:
    """``requests.get`` as a program would call it: the status and the body."""
    response = requests.get(url, timeout=10, **kwargs)
    return response.status_code, response.content


def expected_pages(n: int = N) -> list[tuple[int, bytes]]:
    return [(200, b"hello /page/%d" % i) for i in range(n)]


def test_fifty_clients_over_http() -> None:
    with slow_http_server(DELAY) as served:
        pages, proof = concurrently(
            "requests.get (HTTP)",
            lambda i: get(f"http://127.0.0.1:{served.port}/page/{i}"),
            n=N,
            delay=DELAY,
            reset=served.reset,
        )
        assert pages == expected_pages()
        assert sorted(served.requests) == sorted(b"/page/%d" % i for i in range(N))
    proof.check()


def test_fifty_clients_over_https(pki: Pki) -> None:
    # As a program making many requests would: one Session, its pool holding a connection per
    # client, each connection with its own TLS handshake (verify= per call: requests lets the
    # REQUESTS_CA_BUNDLE environment variable override a Session's own ``verify``).
    with (
        slow_http_server(DELAY, pki.cert_file, pki.key_file) as served,
        requests.Session() as session,
    ):
        session.mount("https://", requests.adapters.HTTPAdapter(pool_maxsize=N))

        def client(i: int) -> tuple[int, bytes]:
            response = session.get(
                f"https://127.0.0.1:{served.port}/page/{i}", verify=str(pki.ca_file), timeout=10
            )
            return response.status_code, response.content

        def reset() -> None:
            session.close()  # the next measurement makes new connections (and handshakes)
            served.reset()

        pages, proof = concurrently(
            "requests Session.get (HTTPS, verify=test CA)",
            client,
            n=N,
            delay=DELAY,
            reset=reset,
            jitter=TLS_JITTER,
        )
        assert pages == expected_pages()
        assert served.connections == N
    proof.check(TLS_JITTER)


def test_https_refuses_a_server_the_client_does_not_trust(pki: Pki) -> None:
    with slow_http_server(DELAY, pki.cert_file, pki.key_file) as served:
        with pytest.raises(requests.exceptions.SSLError, match="CERTIFICATE_VERIFY_FAILED"):
            get(f"https://127.0.0.1:{served.port}/", verify=str(pki.other_ca_file))
        assert served.requests == []


def test_a_session_reuses_its_connections() -> None:
    with slow_http_server(0.01) as served, requests.Session() as session:
        # One after the other: one connection.
        for i in range(10):
            response = session.get(f"http://127.0.0.1:{served.port}/one/{i}", timeout=10)
            assert response.content == b"hello /one/%d" % i
        assert served.connections == 1
        # N green threads sharing the session, three requests each: a connection per green
        # thread that asked at once, each reused by the later requests.
        session.mount("http://", requests.adapters.HTTPAdapter(pool_maxsize=N))
        served.reset()

        def client(i: int) -> list[bytes]:
            return [
                session.get(f"http://127.0.0.1:{served.port}/{i}/{j}", timeout=10).content
                for j in range(3)
            ]

        threads = [txgreen.spawn(client, i) for i in range(N)]
        bodies = [t.get(timeout=10) for t in threads]
        assert bodies == [[b"hello /%d/%d" % (i, j) for j in range(3)] for i in range(N)]
        assert len(served.requests) == 3 * N
        assert served.connections <= N < 3 * N
        adapter = session.get_adapter("http://")
        assert isinstance(adapter, requests.adapters.HTTPAdapter)
        assert len(adapter.poolmanager.pools) == 1  # one pool for the one host


def test_errors_are_requests_errors() -> None:
    with pytest.raises(requests.exceptions.ConnectionError):
        get(f"http://127.0.0.1:{free_port()}/")
    with slow_http_server(1.0) as served:
        started = time.monotonic()
        with pytest.raises(requests.exceptions.ReadTimeout):
            requests.get(f"http://127.0.0.1:{served.port}/", timeout=0.2)
        assert 0.18 < time.monotonic() - started < 1


# -- streaming with back-pressure ----------------------------------------------------------------

SIZE = 20 * 1024 * 1024  # the download
CHUNK = 64 * 1024  # what the server writes at a time, and what the client reads at a time


@implementer(IPullProducer)
class _Body:
    """Writes the body a chunk at a time, only when the connection asks for more."""

    def __init__(self, request: Any, progress: dict[str, int]) -> None:
        self.request = request
        self.progress = progress

    def resumeProducing(self) -> None:
        """The connection's buffer was written out: write the next chunk (or finish)."""
        left = SIZE - self.progress["produced"]
        if left <= 0:
            self.request.unregisterProducer()
            self.request.finish()
            return
        chunk = min(CHUNK, left)
        self.progress["produced"] += chunk
        self.request.write(b"x" * chunk)

    def stopProducing(self) -> None:
        """The connection went away."""


class _Download(resource.Resource):
    """A SIZE-byte body, produced as the client reads it."""

    isLeaf = True

    def __init__(self, progress: dict[str, int]) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.progress = progress

    def render_GET(self, request: Any) -> int:
        request.setHeader(b"content-type", b"application/octet-stream")
        request.setHeader(b"content-length", b"%d" % SIZE)
        request.registerProducer(_Body(request, self.progress), False)
        return server.NOT_DONE_YET


def test_streaming_a_large_download_with_back_pressure() -> None:
    progress = {"produced": 0}
    site = server.Site(_Download(progress), timeout=None)  # type: ignore[no-untyped-call]
    consumed = 0
    most_ahead = 0  # the most the server had written that the reader had not read
    ticks: list[float] = []
    stop = txgreen.Event()

    def ticker() -> None:
        while not stop.is_set():
            ticks.append(time.monotonic())
            txgreen.sleep(0.02)

    with listening(site, Served) as served:
        tick = txgreen.spawn(ticker)
        tracemalloc.start()
        try:
            started = time.monotonic()
            with requests.get(
                f"http://127.0.0.1:{served.port}/big", stream=True, timeout=10
            ) as response:
                assert isinstance(response.raw._fp.fp.raw._sock, gsocket.socket)
                for chunk in response.iter_content(CHUNK):
                    consumed += len(chunk)
                    most_ahead = max(most_ahead, progress["produced"] - consumed)
                    time.sleep(0.002)  # a slow reader (patched: parks this green thread)
            elapsed = time.monotonic() - started
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
            stop.set()
            assert tick.join(timeout=5)
    gap = max(b - a for a, b in itertools.pairwise(ticks))
    print(
        f"\nrequests iter_content: {SIZE >> 20} MB in {elapsed:.2f} s; the server at most "
        f"{most_ahead / 2**20:.1f} MB ahead of the reader; traced memory peak "
        f"{peak / 2**20:.1f} MB; ticker max gap {gap * 1000:.0f} ms"
    )
    assert consumed == progress["produced"] == SIZE
    # Back-pressure: the server wrote only as the reader read (what was ahead fits in the
    # sockets' kernel buffers), and no one held the body in memory.
    assert most_ahead < SIZE / 4
    assert peak < SIZE / 4
    # The download never held the reactor: the ticker kept ticking.
    assert gap < 0.1
