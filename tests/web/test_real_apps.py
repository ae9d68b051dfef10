"""Flask and Django applications served by txgreen, driven by real HTTP clients.

The same tests run against each kind of server in :data:`KINDS` and each application of
tests/web/apps (Flask, Django): routing, JSON, form posts, a 20 MB multipart upload (its size
and SHA-256 checked by the application), streamed responses, an error in a view (the
framework's 500 page, and the server goes on), a view that waits on Twisted with ``block_on``
(a timer, an HTTP request with Twisted's ``Agent``) and one that runs blocking code with
``call_in_thread``. The clients are ``requests`` and the ``curl`` program.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from real_apps_support import (
    APPS,
    CURL_INSTALL_HINT,
    ERROR_PAGES,
    KINDS,
    Target,
    ToolMissing,
    Upload,
    curl,
    curl_binary,
    in_process,
    in_thread,
    load_app,
    make_upload,
    started,
)

import txgreen

pytestmark = [
    pytest.mark.timeout(120),
    # The subprocess servers choose their own reactor; the in-process one is covered by the
    # default run (these tests are about the frameworks, not the reactor).
    pytest.mark.single_reactor,
    # Twisted's readBody (in the /relay view) warns that the Agent's proxy of the transport has
    # no abortConnection; that only matters when cancelling readBody, which the view does not.
    pytest.mark.filterwarnings("ignore:Using readBody with a transport:DeprecationWarning"),
]


@pytest.fixture(
    scope="module",
    params=[(kind, app) for kind in KINDS for app in APPS],
    ids=lambda p: f"{p[0]}-{p[1]}",
)
def target(request: pytest.FixtureRequest) -> Iterator[Target]:
    """Each kind of server serving each app (a subprocess runs for the whole module)."""
    kind, app = request.param
    with started(kind, app) as running:
        yield running


@pytest.fixture(scope="module")
def upload(tmp_path_factory: pytest.TempPathFactory) -> Upload:
    return make_upload(tmp_path_factory.mktemp("upload"))


def get(url: str, **kwargs: Any) -> requests.Response:
    """``requests.get`` in an OS thread."""
    return in_thread(requests.get, url, timeout=60, **kwargs)


def post(url: str, **kwargs: Any) -> requests.Response:
    """``requests.post`` in an OS thread."""
    return in_thread(requests.post, url, timeout=60, **kwargs)


# -- requests ---------------------------------------------------------------------------------


def test_routing(target: Target) -> None:
    with target.running() as url:
        home = get(url + "/")
        assert (home.status_code, home.text) == (200, f"{target.app} home\n")
        assert home.headers["Content-Type"].startswith("text/plain")
        hello = get(url + "/hello/Zo%C3%AB")
        assert (hello.status_code, hello.text) == (200, "hello, Zoë\n")
        assert get(url + "/nowhere").status_code == 404


def test_json(target: Target) -> None:
    with target.running() as url:
        reply = get(url + "/json")
        assert reply.status_code == 200
        assert reply.headers["Content-Type"] == "application/json"
        assert reply.json() == {"framework": target.app, "items": [1, 2, 3]}
        document = {"numbers": [1, 2, 3.5], "name": "Zoë", "nested": {"a": [None, True]}}
        echoed = post(url + "/json", json=document)
        assert echoed.status_code == 200
        assert echoed.json() == {"received": document, "sum": 6.5}


def test_form_post(target: Target) -> None:
    with target.running() as url:
        reply = post(url + "/form", data={"name": "Zoë & co", "tag": ["a", "b=c"], "empty": ""})
        assert reply.status_code == 200
        assert reply.json() == {
            "fields": {"name": ["Zoë & co"], "tag": ["a", "b=c"], "empty": [""]}
        }


def test_upload_of_20_mb(target: Target, upload: Upload) -> None:
    with target.running() as url:
        with upload.path.open("rb") as f:
            reply = post(
                url + "/upload",
                files={"file": ("data.bin", f, "application/octet-stream")},
                data={"note": "twenty megabytes"},
            )
        assert reply.status_code == 200, reply.text[:500]
        assert reply.json() == {
            "name": "data.bin",
            "size": len(upload.data),
            "sha256": upload.sha256,
            "note": "twenty megabytes",
        }


def _read_stream(url: str) -> tuple[requests.Response, list[tuple[float, bytes]]]:
    # Each chunk as it arrives, with the time it arrived.
    with requests.get(url, stream=True, timeout=60) as reply:
        received = [(time.monotonic(), c) for c in reply.iter_content(chunk_size=None) if c]
    return reply, received


def test_streaming_response(target: Target) -> None:
    n, delay = 5, 0.2
    with target.running() as url:
        reply, received = in_thread(_read_stream, f"{url}/stream?n={n}&delay={delay}")
    assert reply.status_code == 200
    # No length known in advance: HTTP/1.1 chunked encoding, one chunk per piece the app yields.
    assert "Content-Length" not in reply.headers
    assert reply.headers["Transfer-Encoding"] == "chunked"
    assert b"".join(c for _, c in received) == b"".join(
        b"chunk %d of %d\n" % (i, n) for i in range(1, n + 1)
    )
    # The pieces arrive as the application makes them, not all together at the end: the first
    # one reached the client well before the last one was made ((n - 1) * delay s later).
    assert len(received) >= 2
    assert received[-1][0] - received[0][0] >= (n - 1) * delay / 2


def test_error_in_a_view_gives_the_framework_500_page(target: Target) -> None:
    with target.running() as url:
        reply = get(url + "/error")
        assert reply.status_code == 500
        assert ERROR_PAGES[target.app] in reply.content
        # The server goes on serving.
        assert get(url + "/").status_code == 200


def _read_all(url: str) -> bytes:
    with requests.get(url, stream=True, timeout=60) as reply:
        return b"".join(reply.iter_content(chunk_size=None))


def test_error_in_a_streamed_body_cuts_the_response_short(target: Target) -> None:
    # The headers and two chunks have gone out when the generator raises: too late for a 500,
    # so the server aborts the connection, and the client sees an incomplete response.
    with target.running() as url:
        with pytest.raises(requests.exceptions.ChunkedEncodingError):
            in_thread(_read_all, url + "/stream?n=5&delay=0.05&fail_after=2")
        assert get(url + "/").status_code == 200


def test_view_waits_on_a_twisted_timer_with_block_on(target: Target) -> None:
    with target.running() as url:
        reply = get(url + "/wait?seconds=0.2")
        assert reply.status_code == 200
        assert reply.json()["value"] == "timer fired"
        assert reply.json()["waited"] >= 0.2
        # Ten requests waiting 1 s each at once are served at once (one after another: 10 s).
        started = time.monotonic()
        clients = [txgreen.spawn(get, url + "/wait?seconds=1") for _ in range(10)]
        replies = [c.get() for c in clients]
        elapsed = time.monotonic() - started
    assert [r.status_code for r in replies] == [200] * 10
    assert elapsed < 5, f"10 requests waiting 1 s each took {elapsed:.1f} s"


def test_view_makes_an_http_request_with_twisted_agent(target: Target) -> None:
    with target.running() as url:
        reply = get(url + "/relay?path=/json")
    assert reply.status_code == 200
    relayed = reply.json()
    assert relayed["code"] == 200
    assert json.loads(relayed["body"]) == {"framework": target.app, "items": [1, 2, 3]}


def test_view_runs_blocking_code_with_call_in_thread(target: Target) -> None:
    with target.running() as url:
        reply = get(url + "/thread?data=abc")
    assert reply.status_code == 200
    done = reply.json()
    assert done["digest"] == hashlib.pbkdf2_hmac("sha256", b"abc", b"salt", 1000).hex()
    # The blocking code ran in a thread of the pool, not in the thread serving the request.
    assert done["worker_thread"] != done["request_thread"]


FORWARDED = {"X-Forwarded-For": "203.0.113.7", "X-Forwarded-Proto": "https"}


def test_proxy_headers_are_passed_to_the_app_not_trusted(target: Target) -> None:
    # txgreen hands X-Forwarded-* to the application as plain headers (HTTP_X_FORWARDED_FOR):
    # REMOTE_ADDR is the peer of the connection, whatever a client claims. (Under the gunicorn
    # worker too, although gunicorn's own workers trust X-Forwarded-Proto from 127.0.0.1 by
    # default, its forwarded_allow_ips: the environ is txgreen's.)
    with target.running() as url:
        plain = get(url + "/client").json()
        forwarded = get(url + "/client", headers=FORWARDED).json()
    assert plain == {"remote_addr": "127.0.0.1", "scheme": "http"}
    # Django trusts X-Forwarded-Proto because its settings say so (SECURE_PROXY_SSL_HEADER);
    # it has nothing for X-Forwarded-For. Flask trusts neither unless wrapped in ProxyFix.
    scheme = "https" if target.app == "django" else "http"
    assert forwarded == {"remote_addr": "127.0.0.1", "scheme": scheme}


def test_flask_behind_a_proxy_with_proxy_fix() -> None:
    from flask_app import behind_proxy

    with in_process(behind_proxy) as port:
        url = f"http://127.0.0.1:{port}"
        forwarded = get(url + "/client", headers=FORWARDED).json()
        plain = get(url + "/client").json()
    assert forwarded == {"remote_addr": "203.0.113.7", "scheme": "https"}
    assert plain == {"remote_addr": "127.0.0.1", "scheme": "http"}


@pytest.mark.parametrize("app", list(APPS))
def test_proxy_protocol_gives_the_app_the_real_client_address(app: str) -> None:
    # Twisted's haproxy: endpoint prefix reads the PROXY protocol header a proxy (HAProxy,
    # nginx's proxy_protocol) sends first: the connection's peer, hence REMOTE_ADDR, is then
    # the client the proxy serves, with no header to trust.
    with (
        in_process(load_app(app), "haproxy:tcp:0:interface=127.0.0.1") as port,
        txgreen.connect(f"tcp:127.0.0.1:{port}", timeout=10) as stream,
    ):
        stream.write(
            b"PROXY TCP4 203.0.113.7 127.0.0.1 40000 8000\r\n"
            b"GET /client HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
        )
        answer = stream.read()
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 ")
    assert json.loads(body) == {"remote_addr": "203.0.113.7", "scheme": "http"}


# -- curl -------------------------------------------------------------------------------------


def test_with_curl(target: Target, upload: Upload, tmp_path: Path) -> None:
    curl_binary()  # fails saying how to install curl when it is missing
    with target.running() as url:
        json_reply = curl(url + "/json")
        assert (json_reply.status, json_reply.http_version) == (200, "1.1")
        assert json.loads(json_reply.body) == {"framework": target.app, "items": [1, 2, 3]}

        form = curl(url + "/form", "--data-urlencode", "name=Zoë & co", "-d", "tag=a")
        assert form.status == 200
        assert json.loads(form.body) == {"fields": {"name": ["Zoë & co"], "tag": ["a"]}}

        sent = curl(url + "/upload", "-F", f"file=@{upload.path}", "-F", "note=by curl")
        assert sent.status == 200, sent.body[:500]
        assert json.loads(sent.body) == {
            "name": upload.path.name,
            "size": len(upload.data),
            "sha256": upload.sha256,
            "note": "by curl",
        }

        streamed = curl(url + "/stream?n=3&delay=0.05", "--no-buffer")
        assert (streamed.status, streamed.body) == (
            200,
            b"chunk 1 of 3\nchunk 2 of 3\nchunk 3 of 3\n",
        )

        error = curl(url + "/error")
        assert error.status == 500
        assert ERROR_PAGES[target.app] in error.body


def test_missing_curl_fails_saying_how_to_install_it(tmp_path: Path) -> None:
    with pytest.raises(ToolMissing) as raised:
        curl_binary(path=str(tmp_path))
    assert str(raised.value) == CURL_INSTALL_HINT
    assert "apt-get install -y curl" in CURL_INSTALL_HINT
