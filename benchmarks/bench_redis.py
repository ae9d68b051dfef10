"""redis-py against a real redis-server: txgreen, gevent and OS threads (issue 11).

Run: ``.venv/bin/python benchmarks/bench_redis.py`` (about 30 s: 5 interleaved rounds of 2 s
per client; ``--smoke`` for a quick check of the machinery, one round of 0.5 s; its figures are
rough).  It needs Redis's server: ``apt-get install redis-server`` (Debian/Ubuntu); without it
the benchmark says so and exits with status 2.  It runs ``redis-server`` from PATH (or
/usr/sbin), or the program named by the environment variable ``REDIS_SERVER``.

The load is the same in every variant: 50 clients, each with a ``redis.Redis`` of its own (one
connection), each doing ``SET key value`` (100 bytes) then ``GET key`` on a key of its own, in a
loop, for a fixed time; an operation is one command and its answer.  Only the way the 50
clients run concurrently differs:

a. txgreen: ``txgreen.patch()`` then ``import redis``; a green thread per client
   (``txgreen.spawn``), inside ``txgreen.run``; Twisted's epoll reactor;
b. gevent: ``gevent.monkey.patch_all()`` then ``import redis``; ``gevent.spawn`` per client;
c. threads: the stdlib's blocking sockets; a ``threading.Thread`` per client.

The server is one ``redis-server`` for the whole run, started by the benchmark on a free port of
127.0.0.1 with no persistence (``--save '' --appendonly no``) and stopped at its end.  Each
client is a process of its own (patching is process-wide), started anew for every round: the
clients connect and run for a warm-up of 0.3 s, then the operations finished in the measured
window are counted, with the client process's CPU time (``/proc``) over the same window.
Rounds are interleaved (the order of the variants turns by one each round) and each figure is
the median over the rounds.

The target (issue 11): txgreen >= 0.9 x gevent in operations per second.  On a small shared
machine the figures are noisy: compare ratios from one run, not across runs.
"""

from __future__ import annotations

import argparse
import functools
import os
import platform
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from benchutil import (
    ChildFailed,
    at_least,
    cpu_seconds,
    for_reference,
    free_port,
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
    "threads": "c. OS threads",
}
TARGET = 0.9  # txgreen / gevent, operations per second
WARMUP = 0.3  # seconds each client runs before the measured window
VALUE = b"v" * 100
INSTALL_HINT = (
    "redis-server is not installed: install it with `apt-get install redis-server` "
    "(Debian/Ubuntu; `brew install redis` on macOS), or put a redis-server binary on PATH"
)


class RedisUnavailable(RuntimeError):
    """redis-server cannot be found or started on this machine."""


# -- the clients, each run in a child process ---------------------------------------------------


def client(redis_class: type, port: int, index: int, start: float, end: float) -> int:
    """One client: SET then GET its own key until ``end``; the operations finished in
    [``start``, ``end``) (monotonic clock)."""
    r = redis_class(host="127.0.0.1", port=port)
    key = f"bench:{index}"
    clock = time.monotonic
    try:
        while clock() < start:
            r.set(key, VALUE)
            r.get(key)
        ops = 0
        while clock() < end:
            r.set(key, VALUE)
            if r.get(key) != VALUE:
                raise ChildFailed(f"GET {key} did not answer what was SET")
            ops += 2
        return ops
    finally:
        r.close()


def measure(
    detail: str,
    port: int,
    clients: int,
    seconds: float,
    start_all: Callable[[Sequence[Callable[[], int]]], Callable[[], list[int]]],
) -> None:
    """Start ``clients`` clients with ``start_all`` (which returns a function that waits for
    their results); print ``detail`` and ``result OPS SECONDS CPU LEAST MOST`` for the measured
    window (LEAST and MOST: the operations of the slowest and of the fastest client)."""
    import redis

    begin = time.monotonic() + WARMUP
    end = begin + seconds
    jobs = [functools.partial(client, redis.Redis, port, i, begin, end) for i in range(clients)]
    wait = start_all(jobs)
    time.sleep(max(0.0, begin - time.monotonic()))
    me = os.getpid()
    cpu0 = cpu_seconds(me)
    time.sleep(max(0.0, end - time.monotonic()))
    cpu1 = cpu_seconds(me)
    per_client = wait()
    cpu = -1.0 if cpu0 is None or cpu1 is None else cpu1 - cpu0
    print(f"detail {detail}")
    print(
        f"result {sum(per_client)} {seconds:.6f} {cpu:.6f} {min(per_client)} {max(per_client)}",
        flush=True,
    )


def client_txgreen(port: int, clients: int, seconds: float) -> None:
    from twisted.internet import epollreactor

    epollreactor.install()  # type: ignore[no-untyped-call]
    import txgreen

    txgreen.patch()

    def start_all(jobs: Sequence[Callable[[], int]]) -> Callable[[], list[int]]:
        threads = [txgreen.spawn(job) for job in jobs]
        return lambda: [t.get() for t in threads]

    detail = "txgreen.patch(); txgreen.spawn per client; Twisted's epoll reactor"
    txgreen.run(measure, detail, port, clients, seconds, start_all)


def client_gevent(port: int, clients: int, seconds: float) -> None:
    from gevent import monkey

    monkey.patch_all()
    import gevent

    def start_all(jobs: Sequence[Callable[[], int]]) -> Callable[[], list[int]]:
        threads = [gevent.spawn(job) for job in jobs]
        return lambda: [t.get() for t in threads]

    loop = type(gevent.get_hub().loop).__module__.split(".")[1]
    detail = f"gevent {version('gevent')}, monkey.patch_all(); gevent.spawn per client; {loop} loop"
    measure(detail, port, clients, seconds, start_all)


def client_threads(port: int, clients: int, seconds: float) -> None:
    import threading

    def start_all(jobs: Sequence[Callable[[], int]]) -> Callable[[], list[int]]:
        results: list[int] = []
        errors: list[BaseException] = []

        def run(job: Callable[[], int]) -> None:
            try:
                results.append(job())
            except BaseException as e:
                errors.append(e)

        threads = [threading.Thread(target=run, args=(job,)) for job in jobs]
        for t in threads:
            t.start()

        def wait() -> list[int]:
            for t in threads:
                t.join()
            if errors:
                raise errors[0]
            return results

        return wait

    detail = "the stdlib's blocking sockets; a threading.Thread per client"
    measure(detail, port, clients, seconds, start_all)


CLIENTS = {"txgreen": client_txgreen, "gevent": client_gevent, "threads": client_threads}


# -- the server ---------------------------------------------------------------------------------


def answers_ping(port: int) -> bool:
    """Does a Redis server on 127.0.0.1:``port`` answer PING?"""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
            s.sendall(b"PING\r\n")
            return s.recv(64).startswith(b"+PONG")
    except OSError:
        return False


def find_redis_server() -> str | None:
    """The redis-server program: ``$REDIS_SERVER`` if set (a path or a name on PATH), otherwise
    ``redis-server`` on PATH or in /usr/sbin (where some systems put it); None if not found."""
    wanted = os.environ.get("REDIS_SERVER")
    if wanted:
        return shutil.which(wanted)
    return shutil.which("redis-server") or shutil.which("redis-server", path="/usr/sbin")


def start_redis(directory: str) -> tuple[subprocess.Popen[str], int, str]:
    """Start redis-server on a free port; its process, port and version.  Raises
    :class:`RedisUnavailable` if it is not installed or does not start."""
    binary = find_redis_server()
    if binary is None:
        raise RedisUnavailable(INSTALL_HINT)
    out = subprocess.run([binary, "--version"], capture_output=True, text=True, check=False)
    m = re.search(r"v=(\S+)", out.stdout)
    server_version = m[1] if m else "unknown version"
    log_path = Path(directory) / "redis-server.log"
    for _ in range(5):  # another program may take the free port first
        port = free_port()
        log = log_path.open("a")
        proc = subprocess.Popen(
            [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly",
             "no", "--dir", directory, "--daemonize", "no", "--loglevel", "warning"],
            stdout=log,
            stderr=subprocess.STDOUT,
            text=True,
        )  # fmt: skip
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and proc.poll() is None:
            if answers_ping(port):
                log.close()
                return proc, port, server_version
            time.sleep(0.05)
        stop_server(proc)
        log.close()
    said = log_path.read_text(errors="replace").strip().splitlines()[-3:]
    raise RedisUnavailable(
        f"redis-server ({binary}) did not start on 127.0.0.1"
        + "".join(f"\n  {line}" for line in said)
    )


# -- the parent: run the clients in interleaved rounds, report -----------------------------------


@dataclass
class Run:
    """One client run: operations in the measured window, its length, the client process's
    CPU time, and the operations of its slowest and of its fastest client."""

    ops: int
    seconds: float
    cpu: float
    least: int
    most: int


def run_client(kind: str, port: int, clients: int, seconds: float) -> tuple[str, Run]:
    """Run one client process; its description and figures."""
    cmd = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--client",
        kind,
        "--port",
        str(port),
        "--clients",
        str(clients),
        "--seconds",
        str(seconds),
    ]
    out = run_child(cmd, timeout=60 + seconds)
    detail = re.search(r"^detail (.*)$", out, re.M)
    result = re.search(r"^result (\d+) (\S+) (\S+) (\d+) (\d+)$", out, re.M)
    if detail is None or result is None:
        raise ChildFailed(f"the {kind} client printed {out!r}")
    return detail[1], Run(
        int(result[1]), float(result[2]), float(result[3]), int(result[4]), int(result[5])
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--smoke", action="store_true", help="one round of 0.5 s")
    parser.add_argument("--seconds", type=float, default=2.0, help="seconds per measurement")
    parser.add_argument("--clients", type=int, default=50, help="concurrent clients")
    parser.add_argument(
        "--rounds", type=int, default=5, help="interleaved rounds; each figure is their median"
    )
    parser.add_argument(
        "--only",
        action="append",
        choices=sorted(CLIENTS),
        help="measure only these variants (repeatable); for profiling and quick comparisons",
    )
    parser.add_argument("--client", choices=sorted(CLIENTS), help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.seconds <= 0 or args.clients < 1 or args.rounds < 1:
        parser.error("--seconds must be > 0, --clients and --rounds >= 1")
    if args.client is not None:
        CLIENTS[args.client](args.port, args.clients, args.seconds)
        return 0

    seconds = 0.5 if args.smoke else args.seconds
    rounds = 1 if args.smoke else args.rounds
    title = "txgreen redis benchmark"
    if args.smoke:
        title += f" (smoke run: one round of {seconds:g} s, figures are rough)"
    print(title, flush=True)
    wanted = [k for k in VARIANTS if not args.only or k in args.only]
    started = time.monotonic()
    details: dict[str, str] = {}
    runs: dict[str, list[Run]] = {k: [] for k in wanted}
    with tempfile.TemporaryDirectory(prefix="bench-redis-") as directory:
        try:
            server, port, server_version = start_redis(directory)
        except RedisUnavailable as e:
            print(f"cannot run: {e}", file=sys.stderr)
            return 2
        try:
            for r in range(rounds):
                for kind in rotated(wanted, r):
                    details[kind], run = run_client(kind, port, args.clients, seconds)
                    runs[kind].append(run)
        finally:
            stop_server(server)
    print(f"{versions_line('gevent')}, redis-py {version('redis')}, redis-server {server_version}")
    print(
        f"load: {args.clients} clients, each SET then GET of its own key ({len(VALUE)}-byte "
        f"value) in a loop, {seconds:g} s per measurement after {WARMUP:g} s of warm-up; "
        f"median of {rounds} interleaved round{'s' if rounds != 1 else ''}; "
        f"{platform.system()} {platform.machine()}, {os.cpu_count()} CPUs"
    )
    print()
    print("clients (each a process of its own, a new one per round; the same redis-py code):")
    for kind in wanted:
        print(f"  {VARIANTS[kind]}: {details[kind]}")
    print()
    width = 30
    print(f"  {'client':<{width}}{'ops/s':>12}{'CPU/op':>12}   {'one client: least-most ops'}")
    rate = {k: [run.ops / run.seconds for run in runs[k]] for k in wanted}
    cpu = {k: [run.cpu / max(run.ops, 1) * 1e6 for run in runs[k]] for k in wanted}
    for kind in wanted:
        least = min(run.least for run in runs[kind])
        most = max(run.most for run in runs[kind])
        print(
            f"  {VARIANTS[kind]:<{width}}{statistics.median(rate[kind]):>12,.0f}"
            f"{statistics.median(cpu[kind]):>9.1f} us   {least:,}-{most:,}"
        )
    print("  (an op: one command and its answer; CPU/op: the client process's user + system CPU")
    print("   time per op, median; least-most: the ops of the slowest and of the fastest of the")
    print(f"   {args.clients} clients in any round's window; 0 would mean a client never ran)")
    print()
    print("ratios (medians of this run):")

    def report(
        label: str, num: str, den: str, of: dict[str, list[float]], tail: Callable[[float], str]
    ) -> None:
        if num not in of or den not in of:
            missing = den if den not in of else num
            print(f"  {label + ':':<31} unavailable ({missing} did not run)")
            return
        print(ratio_line(label + ":", of[num], of[den], tail))

    report("txgreen / gevent ops/s", "txgreen", "gevent", rate, at_least(TARGET))
    report("txgreen / threads ops/s", "txgreen", "threads", rate, for_reference)
    report("txgreen / gevent CPU/op", "txgreen", "gevent", cpu, for_reference)
    report("txgreen / threads CPU/op", "txgreen", "threads", cpu, for_reference)
    print("note: on a small machine shared with other work the figures are noisy: compare ratios")
    print("      within one run, each from the median of interleaved rounds")
    print(f"total time: {time.monotonic() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
