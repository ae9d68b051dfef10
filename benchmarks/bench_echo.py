"""TCP echo servers under a C ping-pong load: txgreen streams against Twisted, gevent and asyncio.

Run: ``.venv/bin/python benchmarks/bench_echo.py`` (about 60 s: 7 interleaved rounds of 1 s per
measurement; ``--smoke`` for a quick check of the machinery, one round of 0.5 s; its figures
are rough).

The client is ``echoload``, a small C program (``../shared/bench/echoload.c`` from the project's
root, built with ``cc -O2`` into ``benchmarks/echoload``), so that the client is never what
limits the figures.  Each connection sends 64 bytes, waits for the 64 bytes to come back and
repeats; echoload prints the round trips per second over all its connections.

Each server runs in a child process of its own on 127.0.0.1 (a free port, which the child prints
on its first line), with TCP_NODELAY on every accepted connection, and is driven with 1 and then
100 connections:

a. green: ``txgreen.listen`` with a handler looping ``stream.recv()`` / ``stream.write()``;
b. a plain Twisted ``Protocol`` whose ``dataReceived`` writes the data back (same reactor: epoll);
c. gevent's ``StreamServer`` with a handler looping ``sock.recv()`` / ``sock.sendall()``;
d. asyncio streams: ``asyncio.start_server`` with ``reader.read()`` / ``writer.write()`` /
   ``await writer.drain()``.

The target (issue 3): green >= plain Twisted Protocol (``PASS``/``MISS`` per configuration), and
as close to gevent as possible (the ratio is printed for reference).
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from benchutil import cpu_seconds, stop_server, versions_line

ROOT = Path(__file__).resolve().parent.parent
SOURCE = (ROOT / ".." / "shared" / "bench" / "echoload.c").resolve()
BINARY = ROOT / "benchmarks" / "echoload"
MSG_SIZE = 64
CONNS = (1, 100)
BACKLOG = 1024
SERVERS = {
    "green": "a. green (txgreen.listen, recv/write)",
    "twisted": "b. Twisted Protocol (dataReceived)",
    "gevent": "c. gevent StreamServer",
    "asyncio": "d. asyncio streams (start_server)",
}
RESULT = re.compile(r"conns=(\d+) msg=(\d+) trips/s=(\d+) MB/s=(\S+) errors=(\d+)")


# -- the servers, each run in a child process: print "port N", then serve until SIGTERM ---------


def _announce(port: int) -> None:
    print(f"port {port}", flush=True)


def serve_green(profile: str | None) -> None:
    from twisted.internet import epollreactor

    epollreactor.install()  # type: ignore[no-untyped-call]
    from twisted.internet.error import ConnectionLost

    import txgreen
    from txgreen import Stream

    def echo(stream: Stream) -> None:
        stream.transport.setTcpNoDelay(True)
        recv = stream.recv
        write = stream.write
        try:
            while True:
                data = recv(65536)
                if not data:
                    return
                write(data)
        except ConnectionLost:  # echoload exits without reading its last answers
            return

    def main() -> None:
        listener = txgreen.listen(f"tcp:0:interface=127.0.0.1:backlog={BACKLOG}", echo)
        _announce(listener.port)
        listener.wait()

    _run_profiled(lambda: txgreen.run(main), profile)


def serve_twisted(profile: str | None) -> None:
    from twisted.internet import epollreactor

    epollreactor.install()  # type: ignore[no-untyped-call]
    from twisted.internet import reactor as _reactor
    from twisted.internet.protocol import Factory, Protocol

    reactor: Any = _reactor

    class Echo(Protocol):
        def connectionMade(self) -> None:
            transport: Any = self.transport
            transport.setTcpNoDelay(True)

        def dataReceived(self, data: bytes) -> None:
            transport: Any = self.transport
            transport.write(data)

    port = reactor.listenTCP(0, Factory.forProtocol(Echo), backlog=BACKLOG, interface="127.0.0.1")
    _announce(port.getHost().port)
    _run_profiled(reactor.run, profile)


def serve_gevent(profile: str | None) -> None:
    import socket

    from gevent.server import StreamServer

    def echo(sock: Any, address: Any) -> None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        recv = sock.recv
        sendall = sock.sendall
        try:
            while True:
                data = recv(65536)
                if not data:
                    return
                sendall(data)
        except ConnectionResetError:  # echoload exits without reading its last answers
            return

    server = StreamServer(("127.0.0.1", 0), echo, backlog=BACKLOG)
    server.start()
    _announce(server.server_port)
    _run_profiled(server.serve_forever, profile)


def serve_asyncio(profile: str | None) -> None:
    import asyncio

    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # asyncio sets TCP_NODELAY on TCP connections itself.
        try:
            while True:
                data = await reader.read(65536)
                if not data:
                    break
                writer.write(data)
                await writer.drain()
        except ConnectionResetError:  # echoload exits without reading its last answers
            pass
        writer.close()

    async def main() -> None:
        server = await asyncio.start_server(echo, "127.0.0.1", 0, backlog=BACKLOG)
        _announce(server.sockets[0].getsockname()[1])
        await server.serve_forever()

    _run_profiled(lambda: asyncio.run(main()), profile)


def _run_profiled(fn: Any, profile: str | None) -> None:
    """Run ``fn()`` until SIGTERM ends the process; with ``profile``, under cProfile, its stats
    saved to ``profile`` on SIGTERM."""
    if profile is None:
        fn()
        return
    import cProfile
    import signal

    def stop(signum: int, frame: object) -> None:
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop)

    prof = cProfile.Profile()
    try:
        prof.runcall(fn)
    except SystemExit:
        pass
    finally:
        prof.dump_stats(profile)


SERVE = {
    "green": serve_green,
    "twisted": serve_twisted,
    "gevent": serve_gevent,
    "asyncio": serve_asyncio,
}


# -- the parent: build echoload, run each server and drive it --------------------------------------


def build_echoload() -> str | None:
    """Build benchmarks/echoload if it is missing or older than its source; None if impossible."""
    if not SOURCE.exists():
        return f"skip: the load generator's source {SOURCE} is missing"
    cc = shutil.which("cc")
    if cc is None:
        return "skip: no C compiler (cc) to build the load generator"
    if not BINARY.exists() or BINARY.stat().st_mtime < SOURCE.stat().st_mtime:
        subprocess.run([cc, "-O2", "-o", str(BINARY), str(SOURCE)], check=True, timeout=120)
    return None


def start_server(kind: str, profile: str | None) -> subprocess.Popen[str]:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--serve", kind]
    if profile is not None:
        cmd += ["--profile", profile]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)


def server_port(kind: str, proc: subprocess.Popen[str]) -> int:
    """The port the server printed on its first line."""
    assert proc.stdout is not None
    line = proc.stdout.readline()
    m = re.fullmatch(r"port (\d+)\n", line)
    if m is None:
        raise RuntimeError(f"the {kind} server did not start (it printed {line!r})")
    return int(m[1])


def drive(port: int, conns: int, seconds: float) -> float:
    """Run echoload against ``port``; the round trips per second it measured."""
    out = subprocess.run(
        [str(BINARY), "127.0.0.1", str(port), str(conns), str(MSG_SIZE), str(seconds)],
        capture_output=True,
        text=True,
        timeout=seconds + 60,
        check=False,
    )
    m = RESULT.search(out.stdout)
    if out.returncode != 0 or m is None or int(m[5]) != 0:
        raise RuntimeError(f"echoload failed ({out.returncode}): {out.stdout!r} {out.stderr!r}")
    return float(m[3])


def verdict(ratio: float) -> str:
    return "PASS" if round(ratio, 3) >= 1.0 else "MISS"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--smoke", action="store_true", help="~0.5 s per measurement")
    parser.add_argument("--seconds", type=float, default=1.0, help="seconds per measurement")
    parser.add_argument(
        "--rounds", type=int, default=7, help="interleaved rounds; each figure is their median"
    )
    parser.add_argument(
        "--profile",
        metavar="FILE",
        help="with --serve: run the server under cProfile, stats saved to FILE on SIGTERM; "
        "otherwise: profile the green server into FILE",
    )
    parser.add_argument("--serve", choices=sorted(SERVE), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve is not None:
        SERVE[args.serve](args.profile)
        return 0

    seconds = 0.5 if args.smoke else args.seconds
    rounds = 1 if args.smoke else args.rounds
    title = "txgreen echo benchmark"
    if args.smoke:
        title += " (smoke run: 0.5 s per measurement, figures are rough)"
    print(title)
    skip = build_echoload()
    if skip is not None:
        print(skip)
        return 0
    print(versions_line("gevent"))
    print(
        f"Twisted reactor: epoll; client: echoload (C), {MSG_SIZE}-byte ping-pong, "
        f"{seconds:g} s per measurement, median of {rounds} interleaved "
        f"round{'s' if rounds != 1 else ''}; {platform.system()} {platform.machine()}, "
        f"{os.cpu_count()} CPUs"
    )
    print()
    print(f"  {'server':<40}{'1 conn':>12}{'100 conns':>12}   (round trips per second)")
    figures: dict[str, dict[int, float]] = {}
    started = time.monotonic()
    # The servers start together (an idle server waits in epoll and costs no CPU), then are
    # measured one at a time.
    servers: dict[str, subprocess.Popen[str]] = {}
    try:
        for kind in SERVERS:
            servers[kind] = start_server(kind, args.profile if kind == "green" else None)
        ports = {kind: server_port(kind, proc) for kind, proc in servers.items()}
        for port in ports.values():
            drive(port, 1, min(0.2, seconds / 5))  # warm-up: first accept, caches
        # Rounds: every server and configuration once per round, so that a change in the
        # machine's load hits them all alike; each figure is the median over the rounds.
        # The order of the servers turns by one each round, so none is always measured
        # right after the same neighbour.  Besides the round trips, the server process's CPU
        # time per round trip is recorded (Linux): a steadier figure on a noisy machine.
        runs: dict[tuple[str, int], list[float]] = {(k, c): [] for k in SERVERS for c in CONNS}
        cpu: dict[tuple[str, int], list[float]] = {(k, c): [] for k in SERVERS for c in CONNS}
        kinds = list(SERVERS)
        for r in range(rounds):
            order = kinds[r % len(kinds) :] + kinds[: r % len(kinds)]
            for conns in CONNS:
                for kind in order:
                    before = cpu_seconds(servers[kind].pid)
                    trips = drive(ports[kind], conns, seconds)
                    after = cpu_seconds(servers[kind].pid)
                    runs[kind, conns].append(trips)
                    if before is not None and after is not None and trips > 0:
                        cpu[kind, conns].append((after - before) / (trips * seconds) * 1e6)
        for kind, label in SERVERS.items():
            figures[kind] = {c: statistics.median(runs[kind, c]) for c in CONNS}
            row = "".join(f"{figures[kind][c]:>12,.0f}" for c in CONNS)
            print(f"  {label:<40}{row}")
        if all(cpu.values()):
            print()
            print(
                f"  {'server CPU per round trip':<40}{'1 conn':>12}{'100 conns':>12}   (us, median)"
            )
            for kind, label in SERVERS.items():
                row = "".join(f"{statistics.median(cpu[kind, c]):>12.1f}" for c in CONNS)
                print(f"  {label:<40}{row}")
    finally:
        for proc in servers.values():
            stop_server(proc)
    print()
    print("ratios (same run):")
    for other, target in (("twisted", ">= 1.00"), ("gevent", "as close to 1 as possible")):
        for conns in CONNS:
            ratio = figures["green"][conns] / figures[other][conns]
            conn_label = f"{conns} conn{'s' if conns > 1 else ''}"
            tail = f"  {verdict(ratio)}" if other == "twisted" else ""
            # The same ratio within each round (measured a few seconds apart): how steady it is.
            paired = [g / o for g, o in zip(runs["green", conns], runs[other, conns], strict=True)]
            won = sum(1 for x in paired if x >= 1.0)
            spread = (
                f"per round {min(paired):.2f}-{max(paired):.2f}, "
                f"green ahead in {won} of {len(paired)}"
            )
            print(
                f"  green / {other:<8} {conn_label:<10} = {ratio:6.3f}{tail}  (target {target}; "
                f"{spread})"
            )
    print(f"total time: {time.monotonic() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
