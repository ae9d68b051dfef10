"""``requests`` against a slow HTTP server: txgreen, gevent and a thread pool (issue 11).

Run: ``.venv/bin/python benchmarks/bench_requests.py`` (about 30 s: 5 interleaved rounds of
2,000 requests per client; ``--smoke`` for a quick check of the machinery, one round of 400
requests; its figures are rough).

The load is the same in every variant: ``requests.get(url)`` (the module-level call: a new
session and connection per request), 100 at a time, 2,000 in all, to a local twisted.web server
that answers each request 50 ms after it arrives; every answer is checked.  Only the way the
100 concurrent callers are made differs:

a. txgreen: ``txgreen.patch()`` then ``import requests``; a ``txgreen.Pool(100)`` of green
   threads, inside ``txgreen.run``; Twisted's epoll reactor;
b. gevent: ``gevent.monkey.patch_all()`` then ``import requests``; a ``gevent.pool.Pool(100)``;
c. threads: the stdlib's blocking sockets; a ``concurrent.futures.ThreadPoolExecutor(100)``.

Each client is a process of its own (patching is process-wide), started anew for every round;
it warms up (one request per caller), then measures its own wall time and CPU time (``/proc``)
over the 2,000 requests and prints them.  The server is one process for the whole run, started
by the benchmark and stopped at its end; the report gives how busy it was, to show it is not
what limits the clients.  Rounds are interleaved (the order of the variants turns by one each
round) and each figure is the median over the rounds.

The target (issue 11): txgreen >= 0.9 x gevent in requests per second.  The server's delay
alone caps the rate at 100 / 50 ms = 2,000 requests/s.  On a small shared machine the figures
are noisy: compare ratios from one run, not across runs.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchutil import (
    ChildFailed,
    at_least,
    cpu_seconds,
    for_reference,
    ratio_line,
    rotated,
    run_child,
    stop_server,
    version,
    versions_line,
)

VARIANTS = {
    "txgreen": "a. txgreen (patch)",
    "gevent": "b. gevent (monkey.patch_all)",
    "threads": "c. ThreadPoolExecutor(100)",
}
TARGET = 0.9  # txgreen / gevent, requests per second
DELAY = 0.05  # seconds the server waits before it answers
BODY = b"x" * 100  # what it answers
BACKLOG = 1024  # the server's listen backlog: 100 connects at once must not overflow it

# -- the server: twisted.web, answering each request after DELAY --------------------------------


def serve() -> None:
    """Serve on 127.0.0.1 (a free port, printed as ``port N``) until SIGTERM."""
    from twisted.internet import epollreactor

    epollreactor.install()  # type: ignore[no-untyped-call]
    from twisted.internet import reactor as installed
    from twisted.web import resource, server

    reactor: Any = installed  # (typed as a module)

    class Slow(resource.Resource):
        isLeaf = True

        def render_GET(self, request: Any) -> int:
            def answer() -> None:
                if not request.finished and not request._disconnected:
                    request.write(BODY)
                    request.finish()

            request.setHeader(b"content-type", b"text/plain")
            reactor.callLater(DELAY, answer)
            return int(server.NOT_DONE_YET)

    site: Any = server.Site(Slow(), timeout=None)  # type: ignore[no-untyped-call]
    site.log = lambda request: None  # no access log
    port = reactor.listenTCP(0, site, backlog=BACKLOG, interface="127.0.0.1")
    reactor.callWhenRunning(lambda: print(f"port {port.getHost().port}", flush=True))
    reactor.run()


# -- the clients, each run in a child process ---------------------------------------------------


def fetch_all(
    get: Callable[[str], object], url: str, n: int, pool_map: Callable[..., list[object]]
) -> None:
    """Make ``n`` requests with ``pool_map(fetch, range(n))`` and check every answer."""

    def fetch(_: int) -> bytes:
        response = get(url)
        content: bytes = response.content  # type: ignore[attr-defined]
        if response.status_code != 200 or content != BODY:  # type: ignore[attr-defined]
            raise ChildFailed(f"bad answer: {response.status_code} {content[:60]!r}")  # type: ignore[attr-defined]
        return content

    answers = pool_map(fetch, range(n))
    if len(answers) != n:
        raise ChildFailed(f"{len(answers)} answers to {n} requests")


def measure(
    detail: str,
    url: str,
    requests: int,
    concurrency: int,
    get: Callable[[str], object],
    pool_map: Callable[..., list[object]],
) -> None:
    """Warm up, then time ``requests`` requests; print ``detail`` and ``result SECONDS CPU``."""
    fetch_all(get, url, concurrency, pool_map)  # warm-up: one request per caller
    me = os.getpid()
    cpu0 = cpu_seconds(me)
    t0 = time.perf_counter()
    fetch_all(get, url, requests, pool_map)
    elapsed = time.perf_counter() - t0
    cpu1 = cpu_seconds(me)
    cpu = -1.0 if cpu0 is None or cpu1 is None else cpu1 - cpu0
    print(f"detail {detail}")
    print(f"result {elapsed:.6f} {cpu:.6f}", flush=True)


def client_txgreen(url: str, requests: int, concurrency: int) -> None:
    from twisted.internet import epollreactor

    epollreactor.install()  # type: ignore[no-untyped-call]
    import txgreen

    txgreen.patch()
    import requests as requests_lib

    def pool_map(fn: Callable[[int], object], items: range) -> list[object]:
        pool = txgreen.Pool(concurrency)
        threads = [pool.spawn(fn, i) for i in items]
        return [t.get() for t in threads]

    detail = (
        f"txgreen.patch(); a txgreen.Pool({concurrency}) of green threads; Twisted's epoll reactor"
    )
    txgreen.run(measure, detail, url, requests, concurrency, requests_lib.get, pool_map)


def client_gevent(url: str, requests: int, concurrency: int) -> None:
    from gevent import monkey

    monkey.patch_all()
    import gevent
    import gevent.pool
    import requests as requests_lib

    def pool_map(fn: Callable[[int], object], items: range) -> list[object]:
        pool = gevent.pool.Pool(concurrency)
        threads = [pool.spawn(fn, i) for i in items]
        return [t.get() for t in threads]

    loop = type(gevent.get_hub().loop).__module__.split(".")[1]
    detail = (
        f"gevent {version('gevent')}, monkey.patch_all(); a gevent.pool.Pool({concurrency}); "
        f"{loop} loop"
    )
    measure(detail, url, requests, concurrency, requests_lib.get, pool_map)


def client_threads(url: str, requests: int, concurrency: int) -> None:
    from concurrent.futures import ThreadPoolExecutor

    import requests as requests_lib

    executor = ThreadPoolExecutor(concurrency)

    def pool_map(fn: Callable[[int], object], items: range) -> list[object]:
        return list(executor.map(fn, items))

    detail = f"the stdlib's blocking sockets; concurrent.futures.ThreadPoolExecutor({concurrency})"
    try:
        measure(detail, url, requests, concurrency, requests_lib.get, pool_map)
    finally:
        executor.shutdown()


CLIENTS = {"txgreen": client_txgreen, "gevent": client_gevent, "threads": client_threads}


# -- the parent: start the server, run the clients in interleaved rounds, report ---------------


@dataclass
class Run:
    """One client run: its wall time and CPU time, and the server's CPU time meanwhile."""

    seconds: float
    cpu: float
    server_cpu: float | None


def run_client(kind: str, port: int, requests: int, concurrency: int, pid: int) -> tuple[str, Run]:
    """Run one client process; its description and figures."""
    cmd = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--client",
        kind,
        "--port",
        str(port),
        "--requests",
        str(requests),
        "--concurrency",
        str(concurrency),
    ]
    before = cpu_seconds(pid)
    out = run_child(cmd, timeout=120)
    after = cpu_seconds(pid)
    detail = re.search(r"^detail (.*)$", out, re.M)
    result = re.search(r"^result (\S+) (\S+)$", out, re.M)
    if detail is None or result is None:
        raise ChildFailed(f"the {kind} client printed {out!r}")
    server_cpu = None if before is None or after is None else after - before
    return detail[1], Run(float(result[1]), float(result[2]), server_cpu)


def start_server() -> tuple[subprocess.Popen[str], int]:
    proc = subprocess.Popen(
        [sys.executable, str(Path(__file__).resolve()), "--serve"],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    m = re.fullmatch(r"port (\d+)\n", line)
    if m is None:
        stop_server(proc)
        raise ChildFailed(f"the HTTP server did not start (it printed {line!r})")
    return proc, int(m[1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--smoke", action="store_true", help="one round of 400 requests")
    parser.add_argument("--requests", type=int, default=2000, help="requests per measurement")
    parser.add_argument("--concurrency", type=int, default=100, help="requests at a time")
    parser.add_argument(
        "--rounds", type=int, default=5, help="interleaved rounds; each figure is their median"
    )
    parser.add_argument(
        "--only",
        action="append",
        choices=sorted(CLIENTS),
        help="measure only these variants (repeatable); for profiling and quick comparisons",
    )
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--client", choices=sorted(CLIENTS), help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve()
        return 0
    if args.requests < 1 or args.concurrency < 1 or args.rounds < 1:
        parser.error("--requests, --concurrency and --rounds must be >= 1")
    if args.client is not None:
        url = f"http://127.0.0.1:{args.port}/"
        CLIENTS[args.client](url, args.requests, args.concurrency)
        return 0

    n = 400 if args.smoke else args.requests
    rounds = 1 if args.smoke else args.rounds
    conc = args.concurrency
    title = "txgreen requests benchmark"
    if args.smoke:
        title += f" (smoke run: one round of {n} requests, figures are rough)"
    print(title)
    print(f"{versions_line('gevent')}, requests {version('requests')}")
    print(
        f"load: {n:,} requests.get, {conc} at a time, to a twisted.web server answering after "
        f"{DELAY * 1000:g} ms (a process of its own); median of {rounds} interleaved "
        f"round{'s' if rounds != 1 else ''}; {platform.system()} {platform.machine()}, "
        f"{os.cpu_count()} CPUs"
    )
    print(f"ceiling: {conc / DELAY:,.0f} requests/s (the server's delay alone)")
    wanted = [k for k in VARIANTS if not args.only or k in args.only]
    started = time.monotonic()
    details: dict[str, str] = {}
    runs: dict[str, list[Run]] = {k: [] for k in wanted}
    server, port = start_server()
    try:
        for r in range(rounds):
            for kind in rotated(wanted, r):
                details[kind], run = run_client(kind, port, n, conc, server.pid)
                runs[kind].append(run)
    finally:
        stop_server(server)

    print()
    print("clients (each a process of its own, a new one per round; the same requests.get):")
    for kind in wanted:
        print(f"  {VARIANTS[kind]}: {details[kind]}")
    print()
    width = 30
    print(f"  {'client':<{width}}{'requests/s':>12}{'CPU/request':>13}{'server busy':>13}")
    rate = {k: [n / run.seconds for run in runs[k]] for k in wanted}
    cpu = {k: [run.cpu / n * 1e6 for run in runs[k]] for k in wanted}
    for kind in wanted:
        busy = [
            run.server_cpu / run.seconds * 100 for run in runs[kind] if run.server_cpu is not None
        ]
        busy_text = f"{statistics.median(busy):>11.0f} %" if busy else f"{'-':>13}"
        print(
            f"  {VARIANTS[kind]:<{width}}{statistics.median(rate[kind]):>12,.0f}"
            f"{statistics.median(cpu[kind]):>10.0f} us{busy_text}"
        )
    print("  (CPU/request: the client process's user + system CPU time per request, median;")
    print("   server busy: the server's CPU time during the client's run, warm-up included,")
    print("   over the measured wall time: an upper bound)")
    print()
    print("ratios (medians of this run):")

    def report(
        label: str, num: str, den: str, of: dict[str, list[float]], tail: Callable[[float], str]
    ) -> None:
        if num not in of or den not in of:
            missing = den if den not in of else num
            print(f"  {label + ':':<36} unavailable ({missing} did not run)")
            return
        print(ratio_line(label + ":", of[num], of[den], tail, width=36))

    report("txgreen / gevent requests/s", "txgreen", "gevent", rate, at_least(TARGET))
    report("txgreen / threads requests/s", "txgreen", "threads", rate, for_reference)
    report("txgreen / gevent CPU/request", "txgreen", "gevent", cpu, for_reference)
    report("txgreen / threads CPU/request", "txgreen", "threads", cpu, for_reference)
    print("note: on a small machine shared with other work the figures are noisy: compare ratios")
    print("      within one run, each from the median of interleaved rounds")
    print(f"total time: {time.monotonic() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
