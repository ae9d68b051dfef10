"""WSGI servers side by side under the same ``wrk`` load: hello world, and an app that waits.

Run: ``.venv/bin/python benchmarks/bench_wsgi_wrk.py`` (about 3 minutes: 3 interleaved rounds
of 5 s per measurement; ``--smoke`` for a quick check of the machinery, one round of 1 s, its
figures are rough).  Needs ``wrk`` (Debian/Ubuntu: ``apt-get install wrk``, which ``make
services`` does) and gunicorn (in the ``bench`` extra).

Each server runs in child processes of its own on 127.0.0.1 and answers ``hello, world``;
``wrk -t1`` (one thread: the other core serves) keeps its connections busy with keep-alive GETs
and counts answers per second.  Two loads:

1. hello world at 50 connections: what each server costs per request.  a. a native
   twisted.web ``Resource`` (the floor txgreen's container is measured against), b. txgreen's
   ``serve_wsgi`` (a green thread per request), c. ``eventlet.wsgi``, d. Twisted's own
   ``twisted.web.wsgi.WSGIResource`` on the reactor's thread pool, e. gunicorn with its gevent
   worker (one worker), f. gunicorn with txgreen's ``GreenWorker`` (one worker).
2. an application that sleeps 10 ms (the way its stack sleeps) at 256 connections: the
   ceiling is 256 / 10 ms = 25,600 answers per second, if the CPU allows.  b., e. and f.,
   and g. gunicorn with two ``GreenWorker`` processes.

No server writes an access log.  The servers' CPU time per answer (from ``/proc``, the
gunicorn master and its workers summed) is reported too: it says how far one core can go.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import platform
import re
import shutil
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchutil import (
    HELLO_BODY,
    WRK_COUNT,
    ChildFailed,
    at_least,
    cpu_seconds,
    for_reference,
    free_port,
    hello_app,
    hello_headers,
    native_hello,
    no_access_log,
    ratio_line,
    rotated,
    start_announcing_child,
    stop_server,
    version,
)

HERE = Path(__file__).resolve().parent
SLEEP = 0.01
HELLO_CONNS = 50
SLEEP_CONNS = 256
GREEN_WORKER = "txgreen.web.gunicorn.GreenWorker"

# label, how to start it, and its app: "hello" or "sleep".
SERVERS = {
    "native": "a. twisted.web Resource (native)",
    "txgreen": "b. txgreen serve_wsgi",
    "eventlet": "c. eventlet.wsgi",
    "threads": "d. twisted.web.wsgi (thread pool)",
    "gevent": "e. gunicorn + gevent, 1 worker",
    "green1": "f. gunicorn + GreenWorker, 1 worker",
    "green2": "g. gunicorn + GreenWorker, 2 workers",
}
HELLO = ["native", "txgreen", "eventlet", "threads", "gevent", "green1"]
SLEEPY = ["txgreen", "gevent", "green1", "green2"]

WRK_MISSING = (
    "bench_wsgi_wrk.py needs wrk, the HTTP load generator: install it with "
    "`sudo apt-get install wrk` (Debian/Ubuntu; `make services` does it) or `brew install wrk`"
)


# -- the applications (gunicorn imports them from this module: bench_wsgi_wrk:NAME) --------------


hello = hello_app  # hello world: no waiting at all


def sleepy_txgreen(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    """Sleeps 10 ms in its green thread, then answers."""
    import txgreen

    txgreen.sleep(SLEEP)
    return hello(environ, start_response)


def sleepy_gevent(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    """Sleeps 10 ms in its greenlet (gevent), then answers."""
    import gevent

    gevent.sleep(SLEEP)
    return hello(environ, start_response)


# -- the single-process servers, each run as a child: print "port N", serve until SIGTERM -------


def _announce(port: int) -> None:
    print(f"port {port}", flush=True)


def serve_native(app: str) -> None:
    from twisted.internet import epollreactor

    epollreactor.install()  # type: ignore[no-untyped-call]
    from twisted.internet import reactor as _reactor
    from twisted.web.server import Site

    reactor: Any = _reactor
    site: Any = Site(native_hello(HELLO_BODY, hello_headers()))  # type: ignore[no-untyped-call]
    site.log = no_access_log
    port = reactor.listenTCP(0, site, backlog=1024, interface="127.0.0.1")
    _announce(port.getHost().port)
    reactor.run()


def serve_txgreen(app: str) -> None:
    from twisted.internet import epollreactor

    epollreactor.install()  # type: ignore[no-untyped-call]
    import txgreen

    application = sleepy_txgreen if app == "sleep" else hello

    def listening(server: Any) -> None:
        _announce(server.port)  # (serve_wsgi's server writes no access log)

    def main() -> None:
        txgreen.serve_wsgi(
            "tcp:0:interface=127.0.0.1:backlog=1024", application, on_listen=listening
        )

    txgreen.run(main)


def serve_eventlet(app: str) -> None:
    import warnings

    warnings.simplefilter("ignore")  # eventlet says it is deprecated: it is the peer measured
    import eventlet
    import eventlet.wsgi

    sock = eventlet.listen(("127.0.0.1", 0), backlog=1024)
    _announce(sock.getsockname()[1])
    eventlet.wsgi.server(sock, hello, log_output=False, max_size=4096)


def serve_threads(app: str) -> None:
    from twisted.internet import epollreactor

    epollreactor.install()  # type: ignore[no-untyped-call]
    from twisted.internet import reactor as _reactor
    from twisted.web.server import Site
    from twisted.web.wsgi import WSGIResource

    reactor: Any = _reactor
    resource = WSGIResource(reactor, reactor.getThreadPool(), hello)  # type: ignore[no-untyped-call]
    site: Any = Site(resource)  # type: ignore[no-untyped-call]
    site.log = no_access_log
    port = reactor.listenTCP(0, site, backlog=1024, interface="127.0.0.1")
    _announce(port.getHost().port)
    reactor.run()


SERVE: dict[str, Callable[[str], None]] = {
    "native": serve_native,
    "txgreen": serve_txgreen,
    "eventlet": serve_eventlet,
    "threads": serve_threads,
}


# -- the parent ----------------------------------------------------------------------------------


def green_worker_missing() -> str | None:
    """Why txgreen's gunicorn worker cannot be used, or None if it can."""
    try:
        found = importlib.util.find_spec("txgreen.web.gunicorn")
    except ImportError as e:
        return f"{type(e).__name__}: {e}"
    if found is None:
        return "txgreen.web.gunicorn is not importable (not in this txgreen)"
    return None


def _wait_listening(port: int, proc: subprocess.Popen[str], what: str) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise ChildFailed(f"{what} exited with {proc.returncode} before listening")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    raise ChildFailed(f"{what} did not listen on port {port} within 30 s")


def start_server(kind: str, app: str) -> tuple[subprocess.Popen[str], int]:
    """Start server ``kind`` serving ``app`` ("hello" or "sleep"); its process and port."""
    if kind in SERVE:
        return start_announcing_child(
            [sys.executable, str(Path(__file__).resolve()), "--serve", kind, app], kind
        )
    worker, workers = {
        "gevent": ("gevent", 1),
        "green1": (GREEN_WORKER, 1),
        "green2": (GREEN_WORKER, 2),
    }[kind]
    name = (
        "hello" if app == "hello" else ("sleepy_gevent" if kind == "gevent" else "sleepy_txgreen")
    )
    port = free_port()
    proc = subprocess.Popen(
        [
            *(sys.executable, "-m", "gunicorn", "--chdir", str(HERE)),
            *("-k", worker, "-w", str(workers), "-b", f"127.0.0.1:{port}"),
            *("--backlog", "1024", "--worker-connections", "10000", "--log-level", "warning"),
            f"bench_wsgi_wrk:{name}",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    _wait_listening(port, proc, f"gunicorn -k {worker}")
    return proc, port


def tree_cpu(pid: int) -> float | None:
    """CPU seconds of process ``pid`` and its children (a gunicorn master and its workers)."""
    total = cpu_seconds(pid)
    if total is None:
        return None
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            children = [int(c) for c in f.read().split()]
    except OSError:
        children = []
    for child in children:
        total += tree_cpu(child) or 0.0
    return total


WRK_RATE = re.compile(r"^Requests/sec:\s+([\d.]+)$", re.MULTILINE)
WRK_BAD = re.compile(r"Non-2xx or 3xx responses: (\d+)")


def run_wrk(port: int, conns: int, seconds: int) -> tuple[float, int]:
    """Answers per second that wrk counted, and how many answers."""
    cmd = [
        *("wrk", "-t1", f"-c{conns}", f"-d{seconds}s", "--timeout", "10s"),
        f"http://127.0.0.1:{port}/",
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60, check=False)
    rate = WRK_RATE.search(out.stdout)
    count = WRK_COUNT.search(out.stdout)
    if out.returncode != 0 or rate is None or count is None:
        raise ChildFailed(f"{' '.join(cmd)} failed ({out.returncode}): {out.stdout}{out.stderr}")
    bad = WRK_BAD.search(out.stdout)
    if bad is not None:
        raise ChildFailed(f"{bad[1]} answers were not 200 OK:\n{out.stdout}")
    return float(rate[1]), int(count[1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--smoke", action="store_true", help="one round of 1 s")
    parser.add_argument("--seconds", type=int, default=5, help="seconds per measurement")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (median)")
    parser.add_argument("--serve", nargs=2, metavar=("KIND", "APP"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve is not None:
        SERVE[args.serve[0]](args.serve[1])
        return 0
    if shutil.which("wrk") is None:
        print(WRK_MISSING, file=sys.stderr)
        return 2
    if importlib.util.find_spec("gunicorn") is None:
        print(
            "bench_wsgi_wrk.py needs gunicorn: pip install -e '.[bench]'",
            file=sys.stderr,
        )
        return 2

    seconds = 1 if args.smoke else args.seconds
    rounds = 1 if args.smoke else args.rounds
    missing = green_worker_missing()
    hello_kinds = [k for k in HELLO if not (missing and k.startswith("green"))]
    sleepy_kinds = [k for k in SLEEPY if not (missing and k.startswith("green"))]
    wrk_version = subprocess.run(["wrk", "-v"], capture_output=True, text=True, check=False)
    wrk_line = (wrk_version.stdout + wrk_version.stderr).split("[")[0].strip() or "wrk"
    title = "txgreen WSGI benchmark under wrk: hello world, and an app that sleeps 10 ms"
    if args.smoke:
        title += " (smoke run: one round of 1 s, figures are rough)"
    print(title)
    print(
        f"Python {platform.python_version()}, Twisted {version('twisted')}, greenlet "
        f"{version('greenlet')}, txgreen {version('txgreen')}, eventlet {version('eventlet')}, "
        f"gevent {version('gevent')}, gunicorn {version('gunicorn')}, {wrk_line}"
    )
    print(
        f"load: wrk -t1, keep-alive GETs, {seconds} s per measurement, median of {rounds} "
        f"interleaved round{'s' if rounds != 1 else ''}; {platform.system()} "
        f"{platform.machine()}, {os.cpu_count()} CPUs"
    )
    if missing:
        print(f"GreenWorker rows skipped: {missing}")
    print()
    started = time.monotonic()
    rates: dict[tuple[str, str], list[float]] = {}
    cpu: dict[tuple[str, str], list[float]] = {}
    loads = [("hello", HELLO_CONNS, hello_kinds), ("sleep", SLEEP_CONNS, sleepy_kinds)]
    servers: dict[tuple[str, str], tuple[subprocess.Popen[str], int]] = {}
    try:
        for app, _, kinds in loads:
            for kind in kinds:
                servers[kind, app] = start_server(kind, app)
        if not args.smoke:
            for (_, app), (_, port) in servers.items():
                run_wrk(port, HELLO_CONNS if app == "hello" else SLEEP_CONNS, 1)  # warm-up
        for turn in range(rounds):
            for app, conns, kinds in loads:
                for kind in rotated(kinds, turn):
                    proc, port = servers[kind, app]
                    before = tree_cpu(proc.pid)
                    rate, count = run_wrk(port, conns, seconds)
                    after = tree_cpu(proc.pid)
                    rates.setdefault((kind, app), []).append(rate)
                    if before is not None and after is not None and count:
                        cpu.setdefault((kind, app), []).append((after - before) / count * 1e6)
    finally:
        for proc, _ in servers.values():
            stop_server(proc)

    def row(kind: str, app: str) -> str:
        label = SERVERS[kind]
        line = f"  {label:<40}{statistics.median(rates[kind, app]):>12,.0f}"
        if (kind, app) in cpu:
            line += f"{statistics.median(cpu[kind, app]):>12,.0f}"
        return line

    ideal = SLEEP_CONNS / SLEEP
    print(f"1. hello world, wrk -c{HELLO_CONNS}{'':<19}answers/s  CPU µs/answer")
    for kind in hello_kinds:
        print(row(kind, "hello"))
    print()
    print(f"2. app sleeping 10 ms, wrk -c{SLEEP_CONNS} (ideal {ideal:,.0f}/s, if the CPU allows)")
    for kind in sleepy_kinds:
        print(row(kind, "sleep"))
    print()
    print("ratios (same run):")

    def r(kind: str, app: str) -> list[float]:
        return rates[kind, app]

    print(
        ratio_line(
            "hello: txgreen / native",
            r("txgreen", "hello"),
            r("native", "hello"),
            at_least(0.85),
            36,
        )
    )
    print(
        ratio_line(
            "hello: txgreen / eventlet.wsgi",
            r("txgreen", "hello"),
            r("eventlet", "hello"),
            at_least(1.2),
            36,
        )
    )
    print(
        ratio_line(
            "hello: txgreen / thread pool",
            r("txgreen", "hello"),
            r("threads", "hello"),
            at_least(2.5),
            36,
        )
    )
    print(
        ratio_line(
            "hello: txgreen / gunicorn+gevent",
            r("txgreen", "hello"),
            r("gevent", "hello"),
            for_reference,
            36,
        )
    )
    print(
        ratio_line(
            "10 ms: txgreen / gunicorn+gevent",
            r("txgreen", "sleep"),
            r("gevent", "sleep"),
            at_least(0.9),
            36,
        )
    )
    print(
        ratio_line(
            "10 ms: txgreen / ideal", r("txgreen", "sleep"), [ideal] * rounds, at_least(0.8), 36
        )
    )
    if not missing:
        print(
            ratio_line(
                "10 ms: GreenWorker / gunicorn+gevent",
                r("green1", "sleep"),
                r("gevent", "sleep"),
                at_least(0.9),
                36,
            )
        )
        print(
            ratio_line(
                "10 ms: GreenWorker 2 / 1 workers",
                r("green2", "sleep"),
                r("green1", "sleep"),
                for_reference,
                36,
            )
        )
    print(f"total time: {time.monotonic() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
