"""WSGI servers whose application waits: txgreen's green WSGI container, a thread pool, gevent.

Run: ``.venv/bin/python benchmarks/bench_wsgi.py`` (about 40 s: 3 interleaved rounds of 2 s per
measurement; ``--smoke`` for a quick check of the machinery, one round of 0.5 s; its figures
are rough).

What the green WSGI container is for: many requests that each *wait* (on a database, another
service, a timer) at the same time.  Each server runs, in a child process of its own on
127.0.0.1, an application that waits ``WAIT`` (50 ms) the way its stack waits, then answers
a short body:

a. green: ``txgreen.serve_wsgi``, the app calls ``txgreen.sleep`` (a green thread per request);
b. threads: Twisted's own ``twisted.web.wsgi.WSGIResource`` on the reactor's thread pool
   (Twisted's default: at most 10 threads), the app calls ``time.sleep``;
c. gevent: ``gevent.pywsgi.WSGIServer``, the app calls ``gevent.sleep``.

A client process (Python, asyncio) keeps 1 and then 100 keep-alive connections busy, each
sending a GET as soon as the previous answer has arrived, and counts answers per second.  The
ceiling is ``connections / WAIT``: 20 requests/s for one connection, 2,000 for 100, low enough
that neither the client nor the servers run out of CPU on a small machine (the servers' CPU
time per answer is reported too, from ``/proc``).  A server that serves waiting requests
concurrently gets near the ceiling; a pool of 10 threads cannot pass ``10 / WAIT`` = 200.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from benchutil import (
    HELLO_BODY,
    cpu_seconds,
    hello_headers,
    native_hello,
    start_announcing_child,
    stop_server,
    versions_line,
)

WAIT = 0.05
CONNS = (1, 100)
BODY = HELLO_BODY
SERVERS = {
    "green": "a. green (txgreen.serve_wsgi)",
    "threads": "b. threads (twisted.web.wsgi, pool of 10)",
    "gevent": "c. gevent (gevent.pywsgi)",
}


_headers = hello_headers


def _port_of(listening_port: Any) -> int:
    return int(listening_port.getHost().port)


def _announce(port: int) -> None:
    print(f"port {port}", flush=True)


# -- the servers, each run in a child process: print "port N", then serve until SIGTERM ---------


def serve_green() -> None:
    from twisted.internet import epollreactor

    epollreactor.install()  # type: ignore[no-untyped-call]
    import txgreen

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        txgreen.sleep(WAIT)
        start_response("200 OK", _headers())
        return [BODY]

    def main() -> None:
        txgreen.serve_wsgi(
            "tcp:0:interface=127.0.0.1:backlog=1024",
            app,
            on_listen=lambda port: _announce(_port_of(port)),
        )

    txgreen.run(main)


def serve_threads() -> None:
    from twisted.internet import epollreactor

    epollreactor.install()  # type: ignore[no-untyped-call]
    from twisted.internet import reactor as _reactor
    from twisted.web.server import Site
    from twisted.web.wsgi import WSGIResource

    reactor: Any = _reactor

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        time.sleep(WAIT)
        start_response("200 OK", _headers())
        return [BODY]

    resource = WSGIResource(reactor, reactor.getThreadPool(), app)  # type: ignore[no-untyped-call]
    site = Site(resource)  # type: ignore[no-untyped-call]
    port = reactor.listenTCP(0, site, backlog=1024, interface="127.0.0.1")
    _announce(port.getHost().port)
    reactor.run()


def serve_gevent() -> None:
    import gevent
    from gevent.pywsgi import WSGIServer

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        gevent.sleep(WAIT)
        start_response("200 OK", _headers())
        return [BODY]

    import socket

    from gevent import socket as gsocket

    # TCP_NODELAY on the listening socket (accepted sockets inherit it on Linux): pywsgi sends
    # the headers and the body in separate writes, which Nagle's algorithm and the client's
    # delayed ACK would otherwise hold back by tens of milliseconds per answer.
    listener = gsocket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(1024)
    server = WSGIServer(listener, app, log=None)
    server.start()
    _announce(server.server_port)
    server.serve_forever()


SERVE = {"green": serve_green, "threads": serve_threads, "gevent": serve_gevent}


# -- the client, in a child process: print "N answers" -------------------------------------------


def client(port: int, conns: int, seconds: float) -> None:
    import asyncio

    request = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"

    async def one(deadline: float, counts: list[int]) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        loop = asyncio.get_running_loop()
        while loop.time() < deadline:
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":", 1)[1])
            body = await reader.readexactly(length)
            if not head.startswith(b"HTTP/1.1 200") or body != BODY:
                raise RuntimeError(f"bad answer: {head!r} {body!r}")
            if loop.time() <= deadline:  # answers that come later are not in the window
                counts[0] += 1
        writer.close()
        await writer.wait_closed()

    async def main() -> None:
        counts = [0]
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        await asyncio.gather(*(one(deadline, counts) for _ in range(conns)))
        print(f"{counts[0]} answers", flush=True)

    asyncio.run(main())


# -- the container's own cost, without the network (in a child process) -------------------------

REQUEST = b"GET /x?y=1 HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: bench\r\nAccept: */*\r\n\r\n"


def overhead(loops: int, repeats: int) -> None:
    """Print the cost per request of a native twisted.web resource and of the green WSGI
    container answering the same thing, requests fed straight into twisted.web's HTTP channel
    (by the hub, as the reactor would) over an in-memory transport: no sockets, no waiting,
    just the per-request work; the driver's own turn through the hub is the same for both."""
    from twisted.internet import epollreactor

    epollreactor.install()  # type: ignore[no-untyped-call]
    from twisted.internet.testing import StringTransport
    from twisted.web.server import Site

    import txgreen

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        start_response("200 OK", _headers())
        return [BODY]

    def per_request(resource: Any) -> float:
        site: Any = Site(resource)  # type: ignore[no-untyped-call]
        site.log = lambda request: None  # no access log: the same for both
        channel: Any = site.buildProtocol(None)
        transport: Any = StringTransport()  # type: ignore[no-untyped-call]
        channel.makeConnection(transport)
        hub = txgreen.get_hub()
        start = time.perf_counter()
        for _ in range(loops):
            # The hub hands the bytes to the channel, as the reactor does for a real connection
            # (the container starts a request's green thread at once when called there).
            hub.schedule(channel.dataReceived, REQUEST)
            while not transport.value().endswith(BODY):
                txgreen.sleep(0)  # let the hub run (and the request's green thread)
            transport.clear()
        return (time.perf_counter() - start) / loops

    def main() -> None:
        native: list[float] = []
        green: list[float] = []
        per_request(native_hello(BODY, _headers()))  # warm-up
        per_request(txgreen.WSGIResource(app))
        for _ in range(repeats):
            native.append(per_request(native_hello(BODY, _headers())))
            green.append(per_request(txgreen.WSGIResource(app)))
        print(f"{statistics.median(native) * 1e6:.1f} {statistics.median(green) * 1e6:.1f}")

    txgreen.run(main)


# -- the parent ----------------------------------------------------------------------------------


def start_server(kind: str) -> tuple[subprocess.Popen[str], int]:
    return start_announcing_child(
        [sys.executable, str(Path(__file__).resolve()), "--serve", kind], kind
    )


def drive(port: int, conns: int, seconds: float) -> float:
    """Answers per second that the client counted."""
    out = subprocess.run(
        [
            *(sys.executable, str(Path(__file__).resolve()), "--client", str(port), str(conns)),
            *("--seconds", str(seconds)),
        ],
        capture_output=True,
        text=True,
        timeout=seconds + 60,
        check=False,
    )
    if out.returncode != 0 or not out.stdout.endswith(" answers\n"):
        raise RuntimeError(f"the client failed ({out.returncode}): {out.stdout!r} {out.stderr!r}")
    return int(out.stdout.split()[0]) / seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--smoke", action="store_true", help="one round of 0.5 s")
    parser.add_argument("--seconds", type=float, default=2.0, help="seconds per measurement")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (median)")
    parser.add_argument("--serve", choices=sorted(SERVE), help=argparse.SUPPRESS)
    parser.add_argument("--client", nargs=2, type=int, help=argparse.SUPPRESS)
    parser.add_argument("--overhead", nargs=2, type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.overhead is not None:
        overhead(*args.overhead)
        return 0
    if args.serve is not None:
        SERVE[args.serve]()
        return 0
    if args.client is not None:
        client(args.client[0], args.client[1], args.seconds)
        return 0

    seconds = 0.5 if args.smoke else args.seconds
    rounds = 1 if args.smoke else args.rounds
    title = "txgreen WSGI benchmark: an application that waits 50 ms per request"
    if args.smoke:
        title += " (smoke run: 0.5 s per measurement, figures are rough)"
    print(title)
    print(
        f"{versions_line('gevent')}; {platform.system()} {platform.machine()}, "
        f"{os.cpu_count()} CPUs"
    )
    print(
        f"client: asyncio, keep-alive GETs, {seconds:g} s per measurement, median of {rounds} "
        f"interleaved round{'s' if rounds != 1 else ''}; ceiling: connections / 50 ms"
    )
    print()
    print(
        f"  {'server':<44}{'1 conn':>10}{'100 conns':>12}{'CPU/answer':>14}"
        "   (answers per second; server CPU µs per answer at 100)"
    )
    started = time.monotonic()
    servers: dict[str, tuple[subprocess.Popen[str], int]] = {}
    figures: dict[str, dict[int, float]] = {}
    try:
        for kind in SERVERS:
            servers[kind] = start_server(kind)
        for _, port in servers.values():
            drive(port, 1, 0.1)  # warm-up
        runs: dict[tuple[str, int], list[float]] = {(k, c): [] for k in SERVERS for c in CONNS}
        cpu: dict[str, list[float]] = {k: [] for k in SERVERS}  # at 100 connections
        kinds = list(SERVERS)
        for r in range(rounds):
            order = kinds[r % len(kinds) :] + kinds[: r % len(kinds)]
            for conns in CONNS:
                for kind in order:
                    proc, port = servers[kind]
                    before = cpu_seconds(proc.pid)
                    rate = drive(port, conns, seconds)
                    after = cpu_seconds(proc.pid)
                    runs[kind, conns].append(rate)
                    if conns == 100 and before is not None and after is not None and rate:
                        cpu[kind].append((after - before) / (rate * seconds) * 1e6)
        for kind, label in SERVERS.items():
            figures[kind] = {c: statistics.median(runs[kind, c]) for c in CONNS}
            row = f"{figures[kind][1]:>10,.0f}{figures[kind][100]:>12,.0f}"
            if cpu[kind]:
                row += f"{statistics.median(cpu[kind]):>14,.0f}"
            print(f"  {label:<44}{row}")
    finally:
        for proc, _ in servers.values():
            stop_server(proc)
    print()
    print("ratios (same run):")
    for other in ("threads", "gevent"):
        for conns in CONNS:
            ratio = figures["green"][conns] / figures[other][conns]
            label = f"{conns} conn{'s' if conns > 1 else ''}"
            print(f"  green / {other:<8} {label:<10} = {ratio:6.3f}")
    print()
    loops, repeats = (300, 1) if args.smoke else (3000, 7)
    out = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), "--overhead", str(loops), str(repeats)],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    native, green = (float(x) for x in out.stdout.split())
    print("cost per request without the network (HTTP parsing to response, in-memory transport):")
    print(f"  native twisted.web resource {native:8.1f} µs")
    print(f"  green WSGIResource          {green:8.1f} µs   (+{green - native:.1f} µs per request)")
    print(f"total time: {time.monotonic() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
