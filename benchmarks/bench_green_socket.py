"""One plain-socket echo server under txgreen, gevent, eventlet and OS threads (issue 10).

Run: ``.venv/bin/python benchmarks/bench_green_socket.py`` (about 50 s: 5 interleaved rounds of
1 s per measurement; ``--smoke`` for a quick check of the machinery, one round of 0.5 s; its
figures are rough).

The server is the same function in every variant, written for the ``socket`` module alone: an
accept loop that starts one handler per connection, each handler looping ``recv(65536)`` /
``sendall(data)`` (TCP_NODELAY set on every accepted connection).  Only the socket module it is
given and the way handlers are started differ:

a. txgreen: ``txgreen.patch()`` and the stdlib's ``socket``; handlers started with
   ``txgreen.spawn``, the accept loop in ``txgreen.run``'s main green thread; Twisted's epoll
   reactor;
b. gevent: ``gevent.monkey.patch_all()``, handlers started with ``gevent.spawn``;
c. eventlet: ``eventlet.monkey_patch()``, handlers started with ``eventlet.spawn`` (reported as
   unavailable, with the reason, if eventlet cannot be imported or patched);
d. OS threads: the stdlib's blocking sockets, one ``threading.Thread`` per connection.

Each variant runs in a child process of its own (monkey patching is process-wide) on 127.0.0.1;
the child prints ``port N`` and a description of itself, then serves until SIGTERM.  The client
is ``echoload`` (``../shared/bench/echoload.c``, built as ``bench_echo.py`` builds it): each
connection sends 64 bytes, waits for them to come back and repeats; it is run with 1 and with
100 connections.  Rounds are interleaved (every variant and configuration once per round, the
order of the variants turning by one each round) and each figure is the median over the rounds.

The targets (issue 10), at 100 connections: txgreen >= 1.0 x eventlet and >= 0.8 x gevent.
On a small shared machine the figures are noisy: compare ratios from one run, not across runs.
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
from pathlib import Path
from types import ModuleType
from typing import Any

from bench_echo import BACKLOG, CONNS, MSG_SIZE, _run_profiled, build_echoload, drive
from benchutil import (
    at_least,
    cpu_seconds,
    for_reference,
    ratio_line,
    rotated,
    stop_server,
    version,
    versions_line,
)

VARIANTS = {
    "txgreen": "a. txgreen",
    "gevent": "b. gevent (monkey.patch_all)",
    "eventlet": "c. eventlet (monkey_patch)",
    "threads": "d. OS threads (thread per conn)",
}
# (name, numerator, denominator, the number of connections, the least ratio that passes)
TARGETS = [
    ("txgreen / eventlet", "txgreen", "eventlet", 100, 1.0),
    ("txgreen / gevent", "txgreen", "gevent", 100, 0.8),
]
REFERENCE = [
    ("txgreen / eventlet", "txgreen", "eventlet", 1),
    ("txgreen / gevent", "txgreen", "gevent", 1),
    ("txgreen / threads", "txgreen", "threads", 1),
    ("txgreen / threads", "txgreen", "threads", 100),
]


# -- the server: one function for every variant ----------------------------------------------


def echo_server(
    sockmod: ModuleType,
    spawn: Callable[..., object],
    announce: Callable[[int], None],
) -> None:
    """Serve echo on 127.0.0.1 (a free port, given to ``announce``) until the process ends.

    ``sockmod`` is the socket module the code uses (the stdlib's, patched or not, or a green
    module with the same surface); ``spawn(fn, *args)`` starts ``fn(*args)`` concurrently.
    """

    def handle(conn: Any) -> None:
        conn.setsockopt(sockmod.IPPROTO_TCP, sockmod.TCP_NODELAY, 1)
        recv = conn.recv
        sendall = conn.sendall
        try:
            while True:
                data = recv(65536)
                if not data:
                    break
                sendall(data)
        except OSError:  # echoload exits without reading its last answers: a reset
            pass
        finally:
            conn.close()

    listener = sockmod.socket(sockmod.AF_INET, sockmod.SOCK_STREAM)
    listener.setsockopt(sockmod.SOL_SOCKET, sockmod.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(BACKLOG)
    announce(listener.getsockname()[1])
    while True:
        conn, _ = listener.accept()
        spawn(handle, conn)


# -- the variants, each run in a child process ------------------------------------------------


def _announcer(detail: str) -> Callable[[int], None]:
    def announce(port: int) -> None:
        print(f"port {port} {detail}", flush=True)

    return announce


def _unavailable(reason: str) -> None:
    print(f"unavailable {reason}", flush=True)


def serve_txgreen(profile: str | None) -> None:
    from twisted.internet import epollreactor

    epollreactor.install()  # type: ignore[no-untyped-call]
    import txgreen

    txgreen.patch()
    import socket

    how = "txgreen.patch(), the stdlib's socket module"
    detail = f"{how}; txgreen.spawn; Twisted's epoll reactor"
    _run_profiled(
        lambda: txgreen.run(echo_server, socket, txgreen.spawn, _announcer(detail)), profile
    )


def serve_gevent(profile: str | None) -> None:
    from gevent import monkey

    monkey.patch_all()
    import socket

    import gevent

    loop = type(gevent.get_hub().loop).__module__.split(".")[1]
    detail = f"gevent {version('gevent')}, monkey.patch_all(); gevent.spawn; {loop} loop"
    _run_profiled(lambda: echo_server(socket, gevent.spawn, _announcer(detail)), profile)


def serve_eventlet(profile: str | None) -> None:
    import warnings

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # eventlet's deprecation notice
            import eventlet
            import eventlet.hubs

            eventlet.monkey_patch()
    except Exception as e:
        _unavailable(f"eventlet cannot be imported or patched here ({type(e).__name__}: {e})")
        return
    import socket

    hub = type(eventlet.hubs.get_hub()).__module__.rsplit(".", 1)[-1]
    detail = f"eventlet {version('eventlet')}, monkey_patch(); eventlet.spawn; {hub} hub"
    _run_profiled(lambda: echo_server(socket, eventlet.spawn, _announcer(detail)), profile)


def serve_threads(profile: str | None) -> None:
    import socket
    import threading

    def spawn(fn: Callable[..., object], *args: Any) -> None:
        threading.Thread(target=fn, args=args, daemon=True).start()

    detail = "the stdlib's blocking sockets; a threading.Thread per connection"
    _run_profiled(lambda: echo_server(socket, spawn, _announcer(detail)), profile)


SERVE = {
    "txgreen": serve_txgreen,
    "gevent": serve_gevent,
    "eventlet": serve_eventlet,
    "threads": serve_threads,
}


# -- the parent: start the variants, drive them in interleaved rounds, report -----------------


class Server:
    """A variant's child process: its port and description, or why it is unavailable."""

    def __init__(self, kind: str, profile: str | None) -> None:
        cmd = [sys.executable, str(Path(__file__).resolve()), "--serve", kind]
        if profile is not None:
            cmd += ["--profile", profile]
        self.kind = kind
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
        self.port: int | None = None
        self.detail = ""
        self.unavailable: str | None = None

    def started(self) -> None:
        """Read the child's first line: ``port N DETAIL`` or ``unavailable REASON``."""
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        m = re.fullmatch(r"port (\d+) (.*)\n", line)
        if m is not None:
            self.port, self.detail = int(m[1]), m[2]
            return
        m = re.fullmatch(r"unavailable (.*)\n", line)
        if m is None:
            raise RuntimeError(f"the {self.kind} server did not start (it printed {line!r})")
        self.unavailable = m[1]


def conn_label(conns: int) -> str:
    return f"{conns} conn{'s' if conns > 1 else ''}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--smoke", action="store_true", help="one round of 0.5 s per measurement")
    parser.add_argument("--seconds", type=float, default=1.0, help="seconds per measurement")
    parser.add_argument(
        "--rounds", type=int, default=5, help="interleaved rounds; each figure is their median"
    )
    parser.add_argument(
        "--only",
        action="append",
        choices=sorted(SERVE),
        help="measure only these variants (repeatable); for profiling and quick comparisons",
    )
    parser.add_argument(
        "--profile",
        metavar="FILE",
        help="with --serve: run the server under cProfile, stats saved to FILE on SIGTERM; "
        "otherwise: profile the txgreen server into FILE",
    )
    parser.add_argument("--serve", choices=sorted(SERVE), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve is not None:
        SERVE[args.serve](args.profile)
        return 0
    if args.seconds <= 0 or args.rounds < 1:
        parser.error("--seconds must be > 0 and --rounds >= 1")

    seconds = 0.5 if args.smoke else args.seconds
    rounds = 1 if args.smoke else args.rounds
    title = "txgreen green socket benchmark"
    if args.smoke:
        title += " (smoke run: 0.5 s per measurement, figures are rough)"
    print(title)
    skip = build_echoload()
    if skip is not None:
        print(skip)
        return 0
    print(f"{versions_line('gevent')}, eventlet {version('eventlet')}")
    print(
        f"client: echoload (C), {MSG_SIZE}-byte ping-pong, {seconds:g} s per measurement, "
        f"median of {rounds} interleaved round{'s' if rounds != 1 else ''}; "
        f"{platform.system()} {platform.machine()}, {os.cpu_count()} CPUs"
    )
    wanted = [k for k in VARIANTS if not args.only or k in args.only]
    started = time.monotonic()
    servers: dict[str, Server] = {}
    runs: dict[tuple[str, int], list[float]] = {(k, c): [] for k in wanted for c in CONNS}
    cpu: dict[tuple[str, int], list[float]] = {(k, c): [] for k in wanted for c in CONNS}
    try:
        # The servers start together (an idle server waits in its poller and costs no CPU),
        # then are measured one at a time.
        for kind in wanted:
            servers[kind] = Server(kind, args.profile if kind == "txgreen" else None)
        for server in servers.values():
            server.started()
        live = [k for k in wanted if servers[k].port is not None]
        for kind in live:
            drive(servers[kind].port or 0, 1, min(0.2, seconds / 5))  # warm-up
        for r in range(rounds):
            order = rotated(live, r)
            for conns in CONNS:
                for kind in order:
                    server = servers[kind]
                    before = cpu_seconds(server.proc.pid)
                    trips = drive(server.port or 0, conns, seconds)
                    after = cpu_seconds(server.proc.pid)
                    runs[kind, conns].append(trips)
                    if before is not None and after is not None and trips > 0:
                        cpu[kind, conns].append((after - before) / (trips * seconds) * 1e6)
    finally:
        for server in servers.values():
            stop_server(server.proc)

    print()
    print("servers (the same plain-socket echo function in each):")
    for kind in wanted:
        server = servers[kind]
        about = server.detail or f"unavailable: {server.unavailable}"
        print(f"  {VARIANTS[kind]}: {about}")
    print()
    width = 34
    print(f"  {'server':<{width}}{'1 conn':>12}{'100 conns':>12}   (round trips per second)")
    figures: dict[str, dict[int, float]] = {}
    for kind in wanted:
        if not runs[kind, CONNS[0]]:
            print(f"  {VARIANTS[kind]:<{width}}{'-':>12}{'-':>12}   unavailable")
            continue
        figures[kind] = {c: statistics.median(runs[kind, c]) for c in CONNS}
        row = "".join(f"{figures[kind][c]:>12,.0f}" for c in CONNS)
        print(f"  {VARIANTS[kind]:<{width}}{row}")
    if figures and all(cpu[k, c] for k in figures for c in CONNS):
        print()
        print(
            f"  {'server CPU per round trip':<{width}}{'1 conn':>12}{'100 conns':>12}"
            "   (us, median)"
        )
        for kind in figures:
            row = "".join(f"{statistics.median(cpu[kind, c]):>12.1f}" for c in CONNS)
            print(f"  {VARIANTS[kind]:<{width}}{row}")
    print()
    print("ratios (medians of this run; each target at 100 connections):")

    def report(name: str, num: str, den: str, conns: int, tail: Callable[[float], str]) -> None:
        label = f"{name} {conn_label(conns)}:"
        if num not in figures or den not in figures:
            missing = den if den not in figures else num
            print(f"  {label:<31} unavailable ({missing} did not run)")
            return
        print(ratio_line(label, runs[num, conns], runs[den, conns], tail))

    for name, num, den, conns, least in TARGETS:
        report(name, num, den, conns, at_least(least))
    for name, num, den, conns in REFERENCE:
        report(name, num, den, conns, for_reference)
    print("note: on a small machine shared with other work the figures are noisy: compare ratios")
    print("      within one run, each from the median of interleaved rounds")
    print(f"total time: {time.monotonic() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
