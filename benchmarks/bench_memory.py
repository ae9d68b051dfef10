"""Memory per idle connection and per parked thread: txgreen against Twisted and gevent.

Run: ``.venv/bin/python benchmarks/bench_memory.py`` (10,000 connections per server, 3 rounds,
about 35 s; ``--smoke`` for a quick check of the machinery: 200 connections and 200 threads,
one round, a few seconds; its figures are rough).

**Idle connections.**  Each server runs in a child process of its own on 127.0.0.1 (the echo
servers of ``bench_echo.py``, the same code):

a. green: ``txgreen.listen`` with a handler looping ``stream.recv()`` / ``stream.write()``;
b. a plain Twisted ``Protocol`` whose ``dataReceived`` writes the data back (epoll);
c. gevent's ``StreamServer`` with a handler looping ``sock.recv()`` / ``sock.sendall()``.

This process opens N connections to it, in batches of 250 (under the listen backlog), and makes
one 1-byte echo round trip on each, so that every connection has been accepted and its handler
is waiting in ``recv`` again: the state of a server whose clients are connected but quiet.  The
server's resident memory (``VmRSS`` in ``/proc/PID/status``) is read after a warm-up of 50
connections (opened, echoed, closed) and again with the N connections open; the difference
divided by N is the memory per idle connection, in KB (1,024 bytes).

**Parked threads.**  A child process spawns N green threads (``txgreen.spawn``) running a
Python function that waits on one ``Event``, and another does the same with ``gevent.spawn``
and ``gevent.event.Event``; each reports its own RSS before and after (after a warm-up of 50
such threads that waited, were woken and ended).  The function is the same Python function on both
sides; it counts its starts, so that the figure is read once every thread has run up to its
wait (a gevent greenlet is true as soon as it is spawned, before it has run).

The target (issue 9): an idle green connection costs at most what a gevent one costs (green /
gevent <= 1.00, ``PASS``/``MISS``); the other ratios are printed for reference.  Linux only
(``/proc``).
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import resource
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

from benchutil import stop_server, versions_line

SERVERS = {
    "green": "a. green (txgreen.listen, recv/write)",
    "twisted": "b. Twisted Protocol (dataReceived)",
    "gevent": "c. gevent StreamServer",
}
THREADS = {
    "green": "green (txgreen.spawn, Event.wait)",
    "gevent": "gevent (gevent.spawn, Event.wait)",
}
WARM_UP = 50
BATCH = 250  # connections opened before their round trips: under bench_echo's backlog (1024)
IO_TIMEOUT = 20.0  # seconds for any one connect, send or receive
KB = 1024


def raise_fd_limit(wanted: int) -> None:
    """Raise this process's open-file limit to ``wanted`` (at most the hard limit)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY:
        wanted = min(wanted, hard)
    if soft == resource.RLIM_INFINITY or soft >= wanted:
        return
    resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))


def fd_limit() -> int:
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return sys.maxsize if soft == resource.RLIM_INFINITY else soft


def rss_kb(pid: int | str = "self") -> int:
    """Resident set size of process ``pid`` in KB (``VmRSS`` from ``/proc/PID/status``)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError(f"no VmRSS line in /proc/{pid}/status")


# -- the children ---------------------------------------------------------------------------------


def serve(kind: str, fds: int) -> None:
    """Run ``bench_echo``'s ``kind`` echo server (it prints "port N", then serves until SIGTERM)."""
    raise_fd_limit(fds)
    from bench_echo import SERVE

    SERVE[kind](None)


def park_green(n: int) -> tuple[int, int]:
    """RSS (KB) before and after spawning ``n`` txgreen threads that wait on one Event."""
    from twisted.internet import epollreactor

    epollreactor.install()  # type: ignore[no-untyped-call]
    import txgreen

    started = [0]

    def parked(event: txgreen.Event) -> None:
        started[0] += 1
        event.wait()

    def main() -> tuple[int, int]:
        event = txgreen.Event()
        before = after = 0
        for count in (WARM_UP, n):  # the warm-up first
            before = rss_kb()
            started[0] = 0
            threads = [txgreen.spawn(parked, event) for _ in range(count)]
            while started[0] < count:
                txgreen.sleep(0.01)
            after = rss_kb()
            event.set()
            txgreen.joinall(threads)
            event.clear()
        return before, after

    return txgreen.run(main)


def park_gevent(n: int) -> tuple[int, int]:
    """RSS (KB) before and after spawning ``n`` gevent greenlets that wait on one Event."""
    import gevent
    from gevent.event import Event

    started = [0]

    def parked(event: Event) -> None:
        started[0] += 1
        event.wait()

    event = Event()
    before = after = 0
    for count in (WARM_UP, n):  # the warm-up first
        before = rss_kb()
        started[0] = 0
        threads = [gevent.spawn(parked, event) for _ in range(count)]
        while started[0] < count:
            gevent.sleep(0.01)
        after = rss_kb()
        event.set()
        gevent.joinall(threads)
        event.clear()
    return before, after


PARK = {"green": park_green, "gevent": park_gevent}


# -- the parent: the client side ------------------------------------------------------------------


def start_server(kind: str, n: int) -> tuple[subprocess.Popen[str], int]:
    """Start the ``kind`` server in a child process; the process and its port."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--serve", kind, "--fds", str(n + 100)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    m = re.fullmatch(r"port (\d+)\n", line)
    if m is None:
        stop_server(proc)
        raise RuntimeError(f"the {kind} server did not start (it printed {line!r})")
    return proc, int(m[1])


def open_idle(port: int, n: int, deadline: float) -> list[socket.socket]:
    """Open ``n`` connections to ``port``, each with one 1-byte echo round trip done."""
    socks: list[socket.socket] = []
    try:
        while len(socks) < n:
            if time.monotonic() > deadline:
                raise RuntimeError(f"only {len(socks)} of {n} connections opened in time")
            batch = []
            for _ in range(min(BATCH, n - len(socks))):
                s = socket.create_connection(("127.0.0.1", port), timeout=IO_TIMEOUT)
                batch.append(s)
                socks.append(s)
            for s in batch:
                s.sendall(b"x")
            for s in batch:
                if s.recv(1) != b"x":
                    raise RuntimeError("a connection did not echo its byte")
    except BaseException:
        close_all(socks)
        raise
    return socks


def close_all(socks: list[socket.socket]) -> None:
    for s in socks:
        s.close()


def measure_connections(kind: str, n: int) -> tuple[int, int]:
    """Server RSS (KB) before and after ``n`` idle connections to the ``kind`` server."""
    proc, port = start_server(kind, n)
    socks: list[socket.socket] = []
    try:
        close_all(open_idle(port, WARM_UP, time.monotonic() + 60))
        time.sleep(0.2)  # let the server finish closing the warm-up connections
        before = rss_kb(proc.pid)
        socks = open_idle(port, n, time.monotonic() + 120)
        time.sleep(0.2)  # the last handlers go back to waiting after their echo
        after = rss_kb(proc.pid)
    finally:
        # The server goes first, so its side of each connection closes first (and this
        # process's ephemeral ports are not left in TIME_WAIT for the next server).
        stop_server(proc)
        close_all(socks)
    return before, after


def measure_threads(kind: str, n: int) -> tuple[int, int]:
    """RSS (KB) before and after ``n`` parked threads of ``kind``, in a child process."""
    out = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), "--park", kind, "--threads", str(n)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    m = re.fullmatch(r"rss (\d+) (\d+)\n", out.stdout)
    if out.returncode != 0 or m is None:
        raise RuntimeError(f"the {kind} threads child failed: {out.stdout!r} {out.stderr!r}")
    return int(m[1]), int(m[2])


def per_item(before: int, after: int, n: int) -> float:
    return (after - before) / n


def row(label: str, figures: list[tuple[int, int]], n: int) -> tuple[str, float]:
    """A report line for (before, after) pairs of several rounds: the median round's."""
    costs = [per_item(b, a, n) for b, a in figures]
    median = statistics.median(costs)
    before, after = figures[costs.index(min(costs, key=lambda c: abs(c - median)))]
    spread = f"  (rounds {min(costs):.2f}-{max(costs):.2f})" if len(costs) > 1 else ""
    line = f"  {label:<42}{before / KB:>9.1f} MB{after / KB:>9.1f} MB{median:>10.2f} KB{spread}"
    return line, median


def ratio_line(label: str, figures: dict[str, float], other: str, target: bool = False) -> str:
    """``label = green / other`` (with PASS/MISS against 1.00 if ``target``)."""
    if figures[other] <= 0:  # a smoke run's figures can be that rough
        return f"  {label} =    n/a  (the {other} figure is not positive)"
    ratio = figures["green"] / figures[other]
    if target:
        verdict = "PASS" if round(ratio, 2) <= 1.0 else "MISS"
        return f"  {label} = {ratio:6.2f}  {verdict}  (target <= 1.00)"
    return f"  {label} = {ratio:6.2f}  (for reference)"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--smoke", action="store_true", help="200 connections and threads")
    parser.add_argument("--connections", type=int, default=10_000, help="idle connections")
    parser.add_argument("--threads", type=int, default=10_000, help="parked threads")
    parser.add_argument(
        "--rounds", type=int, default=3, help="measurements per server; each figure is the median"
    )
    parser.add_argument("--serve", choices=sorted(SERVERS), help=argparse.SUPPRESS)
    parser.add_argument("--fds", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--park", choices=sorted(PARK), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve is not None:
        serve(args.serve, args.fds)
        return 0
    if args.park is not None:
        before, after = PARK[args.park](args.threads)
        print(f"rss {before} {after}", flush=True)
        return 0

    conns = 200 if args.smoke else args.connections
    threads = 200 if args.smoke else args.threads
    rounds = 1 if args.smoke else args.rounds
    title = "txgreen memory benchmark: idle connections and parked threads"
    if args.smoke:
        title += " (smoke run: 200 of each, figures are rough)"
    print(title)
    if not Path("/proc/self/status").exists():
        print("skip: needs Linux's /proc to read a process's resident memory")
        return 0
    raise_fd_limit(conns + 100)
    if fd_limit() < conns + 100:
        print(f"skip: {conns} connections need {conns + 100} open files, the limit is {fd_limit()}")
        return 0
    print(versions_line("gevent"))
    print(
        f"server RSS (/proc/PID/status VmRSS) before and after {conns:,} idle connections "
        f"(one 1-byte echo each), median of {rounds} round{'s' if rounds != 1 else ''}; "
        f"Twisted reactor: epoll; {platform.system()} {platform.machine()}, "
        f"{os.cpu_count()} CPUs"
    )
    started = time.monotonic()
    print()
    print(f"  {'server':<42}{'before':>12}{'after':>12}{'per conn':>13}")
    conn_figures: dict[str, list[tuple[int, int]]] = {kind: [] for kind in SERVERS}
    kinds = list(SERVERS)
    for r in range(rounds):
        for kind in kinds[r % len(kinds) :] + kinds[: r % len(kinds)]:
            conn_figures[kind].append(measure_connections(kind, conns))
    per_conn: dict[str, float] = {}
    for kind, label in SERVERS.items():
        line, per_conn[kind] = row(label, conn_figures[kind], conns)
        print(line)
    print()
    print(
        f"  {f'{threads:,} threads waiting on an Event':<42}{'before':>12}{'after':>12}"
        f"{'per thread':>13}"
    )
    thread_figures: dict[str, list[tuple[int, int]]] = {kind: [] for kind in THREADS}
    for _ in range(rounds):
        for kind in THREADS:
            thread_figures[kind].append(measure_threads(kind, threads))
    per_thread: dict[str, float] = {}
    for kind, label in THREADS.items():
        line, per_thread[kind] = row(label, thread_figures[kind], threads)
        print(line)
    print()
    print("ratios (same run):")
    print(ratio_line("green / gevent   per connection", per_conn, "gevent", target=True))
    print(ratio_line("green / twisted  per connection", per_conn, "twisted"))
    print(ratio_line("green / gevent   per thread    ", per_thread, "gevent"))
    print(f"total time: {time.monotonic() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
