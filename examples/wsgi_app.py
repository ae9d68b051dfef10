"""A WSGI application served from green threads, calling Twisted APIs in plain sync style.

``txgreen.serve_wsgi`` serves the application on twisted.web, each request in a green thread
of its own.  The application is an ordinary WSGI function, yet it waits on Twisted directly:

- ``/hello?name=...`` answers at once;
- ``/slow`` waits 0.2 s on a Twisted timer (``block_on(deferLater(...))``): only this request
  waits, the others go on;
- ``/relay?path=...`` makes an HTTP request itself with Twisted's ``Agent`` (to this same
  server) and answers with what it got;
- ``POST /count`` counts the bytes of the request body.

Run it: ``python examples/wsgi_app.py [--port 8080]`` serves until Ctrl-C;
``python examples/wsgi_app.py --self-test`` serves on a free port, makes a few requests to
itself, checks the answers and exits.
"""

from __future__ import annotations

import argparse
import io
import time
import warnings
from typing import Any
from urllib.parse import parse_qs

from twisted.internet import task
from twisted.web.client import Agent, FileBodyProducer, readBody

import txgreen

# Twisted's readBody warns that the response's transport (the Agent's proxy of it) has no
# abortConnection method; that only matters when cancelling readBody, which we do not.
warnings.filterwarnings("ignore", "Using readBody with a transport", DeprecationWarning)


def _reactor() -> Any:
    from twisted.internet import reactor

    return reactor


def http_request(method: bytes, url: str, body: bytes | None = None) -> tuple[int, bytes]:
    """One HTTP request with Twisted's Agent, from sync code: (status code, body)."""
    agent = txgreen.blocking(Agent(_reactor()), timeout=10)  # type: ignore[no-untyped-call]
    producer = None
    if body is not None:
        producer = FileBodyProducer(io.BytesIO(body))  # type: ignore[no-untyped-call]
    response = agent.request(method, url.encode(), None, producer)
    data: bytes = txgreen.block_on(readBody(response), timeout=10)
    return response.code, data


def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    """The WSGI application: plain sync code, run in a green thread per request."""
    path = environ["PATH_INFO"]
    query = parse_qs(environ["QUERY_STRING"])
    method = environ["REQUEST_METHOD"]
    if path == "/hello":
        text = f"hello, {query.get('name', ['world'])[0]}"
    elif path == "/slow":
        # A Twisted timer, waited for like a plain call: only this request's thread waits.
        seconds = txgreen.block_on(task.deferLater(_reactor(), 0.2, lambda: 0.2))
        text = f"slept {seconds} s"
    elif path == "/relay":
        # A Twisted HTTP client call from inside the application.
        base = f"http://{environ['SERVER_NAME']}:{environ['SERVER_PORT']}"
        code, body = http_request(b"GET", base + query["path"][0])
        text = f"relayed {code}: {body.decode()}"
    elif path == "/count" and method == "POST":
        size = int(environ.get("CONTENT_LENGTH") or 0)
        text = f"got {len(environ['wsgi.input'].read(size))} bytes"
    else:
        start_response("404 Not Found", [("Content-Type", "text/plain; charset=utf-8")])
        return [f"not found: {path}".encode()]
    start_response("200 OK", [("Content-Type", "text/plain; charset=utf-8")])
    return [text.encode()]


def self_test() -> None:
    """Serve on a free port, make a few requests, check the answers, stop."""
    ports: list[Any] = []
    listening = txgreen.Event()

    def on_listen(port: Any) -> None:
        ports.append(port)
        listening.set()

    server = txgreen.spawn(
        txgreen.serve_wsgi, "tcp:0:interface=127.0.0.1", app, on_listen=on_listen
    )
    if not listening.wait(timeout=10):
        raise SystemExit("the server did not start")
    port = ports[0].getHost().port
    base = f"http://127.0.0.1:{port}"
    print(f"serving on 127.0.0.1:{port}")

    def show(method: bytes, path: str, body: bytes | None = None, note: str = "") -> str:
        code, answer = http_request(method, base + path, body)
        line = f"{method.decode()} {path}{note} -> {code} {answer.decode()}"
        print(line)
        return line

    show(b"GET", "/hello?name=alice")
    show(b"GET", "/relay?path=/hello%3Fname%3Dbob")
    show(b"POST", "/count", b"x" * 100_000, " (100000 bytes)")
    show(b"GET", "/nowhere")

    start = time.monotonic()
    slow = [txgreen.spawn(http_request, b"GET", base + "/slow") for _ in range(10)]
    assert [s.get() for s in slow] == [(200, b"slept 0.2 s")] * 10
    elapsed = time.monotonic() - start
    speed = "less" if elapsed < 1 else "more"
    print(f"10 GET /slow at once took {speed} than 1 s (one after another: 2 s)")

    server.kill()  # stops listening, closes the connections
    print("self-test done")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    parser.add_argument("--port", type=int, default=8080, help="port to serve on (8080)")
    parser.add_argument(
        "--self-test", action="store_true", help="make a few requests to itself and exit"
    )
    args = parser.parse_args()
    if args.self_test:
        txgreen.run(self_test)
        return

    def on_listen(port: Any) -> None:
        print(f"serving on http://127.0.0.1:{port.getHost().port}/hello (Ctrl-C stops)")

    try:
        txgreen.run(
            txgreen.serve_wsgi, f"tcp:{args.port}:interface=127.0.0.1", app, on_listen=on_listen
        )
    except KeyboardInterrupt:
        print("stopped")


if __name__ == "__main__":
    main()
