"""HTTP/2 over TLS through twisted.web, for the Flask and Django apps served by txgreen.

twisted.web speaks HTTP/2 when the ``h2`` package is installed and the TLS handshake
negotiates it (ALPN): its ``Site`` offers ``h2`` and ``http/1.1``, so a ``serve_wsgi`` on an
``ssl:`` endpoint serves both, each client getting what it asks for. The client here is
``httpx`` with ``http2=True`` (and ``curl --http2``): every test checks that HTTP/2 was really
negotiated. Streams of one connection are multiplexed: requests that wait run at once over one
connection, and a failing response resets only its own stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import ssl
import time
from collections.abc import Callable, Iterator

import httpx
import pytest
import requests
from real_apps_support import (
    APPS,
    ERROR_PAGES,
    KINDS,
    Pki,
    Target,
    Upload,
    curl,
    curl_has,
    in_thread,
    make_pki,
    make_upload,
    started,
)

pytestmark = [
    pytest.mark.timeout(120),
    # Twisted hands pyOpenSSL objects to pyOpenSSL, which deprecates that: not ours to fix.
    pytest.mark.filterwarnings("ignore:Passing pyOpenSSL:DeprecationWarning"),
]


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """A test CA and a server certificate it signed for localhost and 127.0.0.1."""
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def upload(tmp_path_factory: pytest.TempPathFactory) -> Upload:
    return make_upload(tmp_path_factory.mktemp("upload"))


# The gunicorn worker does not terminate TLS: HTTP/2 is twisted.web's, over its own TLS.
TLS_KINDS = [kind for kind in KINDS if kind != "gunicorn"]


@pytest.fixture(
    scope="module",
    params=[
        pytest.param(
            (kind, app),
            id=f"{kind}-{app}",
            # The in-process server runs on the reactor under test (the suite's per-reactor runs
            # include it); a subprocess server chooses its own, so those runs skip it.
            marks=[] if kind == "in-process" else [pytest.mark.single_reactor],
        )
        for kind in TLS_KINDS
        for app in APPS
    ],
)
def target(request: pytest.FixtureRequest, pki: Pki) -> Iterator[Target]:
    """Each kind of server serving each app over TLS (a subprocess runs for the module)."""
    kind, app = request.param
    with started(kind, app, tls=pki) as running:
        yield running


@contextlib.contextmanager
def h2_client(pki: Pki) -> Iterator[httpx.Client]:
    """An ``httpx`` client that speaks HTTP/2 and trusts the test CA."""
    context = ssl.create_default_context(cafile=str(pki.ca_file))
    client = httpx.Client(http2=True, verify=context, timeout=60)
    try:
        yield client
    finally:
        in_thread(client.close)


def test_http2_is_negotiated_and_http1_still_served(target: Target, pki: Pki) -> None:
    app = target.app
    with target.running() as url, h2_client(pki) as client:
        home = in_thread(client.get, url + "/")
        assert (home.http_version, home.status_code) == ("HTTP/2", 200)
        assert home.text == f"{app} home\n"
        hello = in_thread(client.get, url + "/hello/Zo%C3%AB")
        assert (hello.http_version, hello.text) == ("HTTP/2", "hello, Zoë\n")
        missing = in_thread(client.get, url + "/nowhere")
        assert (missing.http_version, missing.status_code) == ("HTTP/2", 404)
        # The application sees an HTTP/2 request over https.
        waited = in_thread(client.get, url + "/wait?seconds=0")
        assert waited.json()["protocol"] == "HTTP/2"
        # A client that offers only HTTP/1.1 on the same port gets HTTP/1.1.
        old = in_thread(requests.get, url + "/json", verify=str(pki.ca_file), timeout=60)
        assert (old.raw.version, old.status_code) == (11, 200)
        assert old.json() == {"framework": app, "items": [1, 2, 3]}


def test_json_and_form_over_http2(target: Target, pki: Pki) -> None:
    with target.running() as url, h2_client(pki) as client:
        document = {"numbers": [1, 2, 3.5], "name": "Zoë"}
        echoed = in_thread(client.post, url + "/json", json=document)
        assert (echoed.http_version, echoed.status_code) == ("HTTP/2", 200)
        assert echoed.json() == {"received": document, "sum": 6.5}
        form = in_thread(client.post, url + "/form", data={"name": "Zoë & co", "tag": ["a", "b"]})
        assert (form.http_version, form.status_code) == ("HTTP/2", 200)
        assert form.json() == {"fields": {"name": ["Zoë & co"], "tag": ["a", "b"]}}


def test_upload_of_20_mb_over_http2(target: Target, pki: Pki, upload: Upload) -> None:
    with target.running() as url, h2_client(pki) as client, upload.path.open("rb") as f:
        reply = in_thread(
            client.post,
            url + "/upload",
            files={"file": ("data.bin", f, "application/octet-stream")},
            data={"note": "over HTTP/2"},
        )
    assert (reply.http_version, reply.status_code) == ("HTTP/2", 200), reply.text[:500]
    assert reply.json() == {
        "name": "data.bin",
        "size": len(upload.data),
        "sha256": upload.sha256,
        "note": "over HTTP/2",
    }


def _read_stream(client: httpx.Client, url: str) -> tuple[str, list[tuple[float, bytes]]]:
    with client.stream("GET", url) as reply:
        received = [(time.monotonic(), c) for c in reply.iter_raw() if c]
        return reply.http_version, received


def test_streaming_over_http2(target: Target, pki: Pki) -> None:
    n, delay = 5, 0.2
    with target.running() as url, h2_client(pki) as client:
        version, received = in_thread(_read_stream, client, f"{url}/stream?n={n}&delay={delay}")
    assert version == "HTTP/2"
    assert b"".join(c for _, c in received) == b"".join(
        b"chunk %d of %d\n" % (i, n) for i in range(1, n + 1)
    )
    # The pieces arrive as the application makes them, in DATA frames of their own.
    assert len(received) >= 2
    assert received[-1][0] - received[0][0] >= (n - 1) * delay / 2


def _ten_at_once(url: str, cafile: str) -> tuple[list[tuple[str, int, str]], float]:
    # httpx's asyncio client sends the ten requests at once on one HTTP/2 connection (its
    # thread-shared sync client is less sure at that); this runs in an OS thread of its own.
    async def main() -> tuple[list[tuple[str, int, str]], float]:
        context = ssl.create_default_context(cafile=cafile)
        async with httpx.AsyncClient(http2=True, verify=context, timeout=60) as client:
            await client.get(url + "/")  # open the connection
            started = time.monotonic()
            calls = [client.get(url + "/wait?seconds=1") for _ in range(10)]
            replies = await asyncio.gather(*calls)
            elapsed = time.monotonic() - started
        return [(r.http_version, r.status_code, r.json()["remote_port"]) for r in replies], elapsed

    return asyncio.run(main())


def test_requests_multiplexed_on_one_connection_wait_at_once(target: Target, pki: Pki) -> None:
    with target.running() as url:
        replies, elapsed = in_thread(_ten_at_once, url, str(pki.ca_file))
    assert {(version, code) for version, code, _ in replies} == {("HTTP/2", 200)}
    # One TCP connection carried them all (the server saw one client port) ...
    assert len({port for _, _, port in replies}) == 1
    # ... and they waited at once (one after another: 10 s).
    assert elapsed < 5, f"10 requests waiting 1 s each took {elapsed:.1f} s"


def test_error_pages_and_a_failed_stream_over_http2(target: Target, pki: Pki) -> None:
    app = target.app
    with target.running() as url, h2_client(pki) as client:
        error = in_thread(client.get, url + "/error")
        assert (error.http_version, error.status_code) == ("HTTP/2", 500)
        assert ERROR_PAGES[app].decode() in error.text
        port = in_thread(client.get, url + "/wait?seconds=0").json()["remote_port"]
        # The body fails after the headers went out: the server resets that stream only.
        with pytest.raises(httpx.RemoteProtocolError):
            in_thread(_read_stream, client, url + "/stream?n=5&delay=0.05&fail_after=2")
        # The connection goes on serving the other streams.
        after = in_thread(client.get, url + "/wait?seconds=0")
        assert (after.http_version, after.status_code) == ("HTTP/2", 200)
        assert after.json()["remote_port"] == port


def _read_two_chunks(client: httpx.Client, url: str) -> list[bytes]:
    with client.stream("GET", url) as reply:
        got = []
        for chunk in reply.iter_raw():
            got.append(chunk)
            if len(got) == 2:
                break
        return got  # leaving the block resets the stream before the body ends


def test_client_resets_a_stream_the_server_stops_its_green_thread(target: Target, pki: Pki) -> None:
    # A 100-chunk stream (10 s) reset by the client after two chunks: its green thread stops at
    # the next chunk (in-process, the plugin's leak check fails the test if it still runs).
    with target.running() as url, h2_client(pki) as client:
        got = in_thread(_read_two_chunks, client, url + "/stream?n=100&delay=0.1")
        assert got[0].startswith(b"chunk 1 of 100\n")
        after = in_thread(client.get, url + "/")
        assert (after.http_version, after.status_code) == ("HTTP/2", 200)


def test_views_with_block_on_and_call_in_thread_over_http2(target: Target, pki: Pki) -> None:
    with target.running() as url, h2_client(pki) as client:
        waited = in_thread(client.get, url + "/wait?seconds=0.2")
        assert (waited.http_version, waited.json()["value"]) == ("HTTP/2", "timer fired")
        assert waited.json()["waited"] >= 0.2
        threaded = in_thread(client.get, url + "/thread?data=abc")
        assert threaded.http_version == "HTTP/2"
        done = threaded.json()
        assert done["digest"] == hashlib.pbkdf2_hmac("sha256", b"abc", b"salt", 1000).hex()
        assert done["worker_thread"] != done["request_thread"]


def test_curl_over_http2(target: Target, pki: Pki, upload: Upload) -> None:
    app = target.app
    assert curl_has("HTTP2"), (
        "this curl cannot speak HTTP/2 (no HTTP2 in `curl --version`'s features): install a "
        "curl built with nghttp2 (Debian/Ubuntu's `apt-get install -y curl` is)"
    )
    tls = ["--http2", "--cacert", str(pki.ca_file)]
    with target.running() as url:
        got = curl(url + "/json", *tls)
        assert (got.status, got.http_version) == (200, "2")
        assert json.loads(got.body) == {"framework": app, "items": [1, 2, 3]}
        sent = curl(url + "/upload", *tls, "-F", f"file=@{upload.path}", "-F", "note=curl h2")
        assert (sent.status, sent.http_version) == (200, "2"), sent.body[:500]
        assert json.loads(sent.body) == {
            "name": upload.path.name,
            "size": len(upload.data),
            "sha256": upload.sha256,
            "note": "curl h2",
        }
        streamed = curl(url + "/stream?n=3&delay=0.05", *tls, "--no-buffer")
        assert (streamed.status, streamed.http_version) == (200, "2")
        assert streamed.body == b"chunk 1 of 3\nchunk 2 of 3\nchunk 3 of 3\n"


def _read_slowly(client: httpx.Client, url: str, produced: Callable[[], int]) -> tuple[int, int]:
    # Read the first block, stop reading for a while, note how far the server got, read the rest.
    with client.stream("GET", url) as reply:
        assert reply.http_version == "HTTP/2"
        chunks = reply.iter_raw()
        received = len(next(chunks))
        time.sleep(1.0)
        ahead = produced()
        received += sum(len(c) for c in chunks)
    return ahead, received


@pytest.mark.parametrize("app", list(APPS))
def test_a_slow_http2_reader_holds_back_the_green_thread(app: str, pki: Pki) -> None:
    # In-process only: the test reads how far the application got (app_logic.Progress).
    from app_logic import Progress

    size = 64 * 1024 * 1024
    with (
        started("in-process", app, tls=pki) as target,
        target.running() as url,
        h2_client(pki) as client,
    ):
        ahead, received = in_thread(
            _read_slowly, client, f"{url}/download?size={size}", lambda: Progress.produced
        )
    assert received == size
    # While the client read nothing, the application made only what the client's flow-control
    # window (httpx opens 16 MiB) and the socket buffers hold, not the whole 64 MiB body.
    assert ahead < size // 2, f"the app made {ahead} bytes while the client read nothing"
