"""Supervision: memory per idle process-like thread, message round trips, restart latency.

Run: ``.venv/bin/python benchmarks/bench_supervision.py`` (100,000 idle threads of each kind,
20,000-message round trip loops, 2,000 restarts; about a minute) or ``--smoke`` (2,000
threads, small loops; a few seconds, rough figures).

**Memory per idle thread.**  Each kind runs in a child process of its own, twice: once read
with ``tracemalloc`` (the bytes Python allocated, per thread) and once with the resident set
(``VmRSS`` of ``/proc/self/status``, per thread), each after a warm-up and before/after
starting N threads that all wait:

a. a txgreen green thread waiting in ``txgreen.receive()`` (so it has a mailbox), monitored
   by the main thread (``thread.monitor()``): an Erlang-style process;
b. a bare txgreen green thread waiting on one shared ``txgreen.Event``;
c. a gevent greenlet waiting on one shared ``gevent.event.Event``;
d. an asyncio task awaiting one shared ``asyncio.Event``.

The target (issue 14): a. costs at most what c. costs (a / c <= 1.00 on RSS, PASS/MISS);
an Erlang process's documented ~2.6 KB (338 words, with its initial heap) is the figure to
approach, printed for reference.

**Message round trip** between two threads (µs of CPU time per round trip, ``time.process_time``:
on a shared machine wall time moves with the load of others, CPU time much less; each child
process reports the best of 5 loops of N, and the figure is the median of 5 rounds in which
the four run in turn, each going first in one): a. ``send``/``receive`` between two green
threads; b. two ``txgreen.Queue``; c. two gevent ``Queue``; d. two ``asyncio.Queue``.

**Restart latency**: a ``Supervisor`` child is killed (``kill(block=False)``) and the CPU time
until its replacement runs is measured (median and 90th percentile of N, µs; all of it is
work in this one process: the kill, the "down" message, the supervisor's loop, the spawn).

Linux only (``/proc``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from benchutil import rotated, run_child, versions_line
from greenlet import getcurrent

KINDS = {
    "process": "a. txgreen thread in receive(), mailbox + monitor",
    "bare": "b. txgreen thread waiting on an Event",
    "gevent": "c. gevent greenlet waiting on an Event",
    "asyncio": "d. asyncio task awaiting an Event",
}
QUEUES = {
    "mailbox": "a. txgreen send / receive",
    "txqueue": "b. txgreen Queue put / get",
    "gevent": "c. gevent Queue put / get",
    "asyncio": "d. asyncio Queue put / get",
}
ERLANG_KB = 2.6  # an idle Erlang process: 338 words (64-bit) with its initial heap
WARM_UP = 200
KB = 1024


def rss_bytes() -> int:
    """This process's resident set in bytes (``VmRSS``)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * KB
    raise RuntimeError("no VmRSS in /proc/self/status")


class Meter:
    """Before/after reading of tracemalloc's traced bytes, or of the RSS."""

    def __init__(self, traced: bool) -> None:
        self.traced = traced
        self.start = 0

    def begin(self) -> None:
        import gc

        gc.collect()
        if self.traced:
            import tracemalloc

            tracemalloc.start()
            self.start = tracemalloc.get_traced_memory()[0]
        else:
            self.start = rss_bytes()

    def end(self) -> int:
        import gc

        gc.collect()
        if self.traced:
            import tracemalloc

            grown = tracemalloc.get_traced_memory()[0] - self.start
            tracemalloc.stop()
            return grown
        return rss_bytes() - self.start


# -- children: memory --------------------------------------------------------------------------


def memory_txgreen(kind: str, n: int, meter: Meter) -> int:
    import txgreen

    started = [0]

    def bare(event: txgreen.Event) -> None:
        started[0] += 1
        event.wait()

    def process() -> None:
        started[0] += 1
        txgreen.receive()

    def main() -> int:
        def wave(count: int) -> int:
            started[0] = 0
            event = txgreen.Event()
            if kind == "bare":
                threads = [txgreen.spawn(bare, event) for _ in range(count)]
                refs = []
            else:
                threads = [txgreen.spawn(process) for _ in range(count)]
                refs = [t.monitor() for t in threads]
            while started[0] < count:
                txgreen.sleep(0.001)
            grown = meter.end() if count == n else 0
            for ref in refs:
                txgreen.demonitor(ref)
            event.set()
            for t in threads:
                txgreen.send(t, "stop")
            txgreen.joinall(threads)
            return grown

        wave(WARM_UP)
        meter.begin()
        return wave(n)

    return txgreen.run(main)


def memory_gevent(n: int, meter: Meter) -> int:
    import gevent
    from gevent.event import Event

    started = [0]

    def bare(event: Event) -> None:
        started[0] += 1
        event.wait()

    def wave(count: int) -> int:
        started[0] = 0
        event = Event()
        threads = [gevent.spawn(bare, event) for _ in range(count)]
        while started[0] < count:
            gevent.sleep(0.001)
        grown = meter.end() if count == n else 0
        event.set()
        gevent.joinall(threads)
        return grown

    wave(WARM_UP)
    meter.begin()
    return wave(n)


def memory_asyncio(n: int, meter: Meter) -> int:
    import asyncio

    started = [0]

    async def bare(event: asyncio.Event) -> None:
        started[0] += 1
        await event.wait()

    async def wave(count: int) -> int:
        started[0] = 0
        event = asyncio.Event()
        tasks = [asyncio.ensure_future(bare(event)) for _ in range(count)]
        while started[0] < count:
            await asyncio.sleep(0.001)
        grown = meter.end() if count == n else 0
        event.set()
        await asyncio.gather(*tasks)
        return grown

    async def main() -> int:
        await wave(WARM_UP)
        meter.begin()
        return await wave(n)

    return asyncio.run(main())


def child_memory(kind: str, n: int, traced: bool) -> dict[str, Any]:
    meter = Meter(traced)
    if kind in ("process", "bare"):
        grown = memory_txgreen(kind, n, meter)
    elif kind == "gevent":
        grown = memory_gevent(n, meter)
    else:
        grown = memory_asyncio(n, meter)
    return {"per_thread": grown / n}


# -- children: round trips ---------------------------------------------------------------------


def rtt_txgreen(kind: str, n: int, loops: int) -> list[float]:
    import txgreen

    def main() -> list[float]:
        times: list[float] = []
        if kind == "mailbox":
            me: Any = getcurrent()
            send, receive = txgreen.send, txgreen.receive

            def echo() -> None:
                while True:
                    send(me, receive())

            peer = txgreen.spawn(echo)
            for _ in range(loops):
                t0 = time.process_time()
                for i in range(n):
                    send(peer, i)
                    receive()
                times.append((time.process_time() - t0) / n)
            peer.kill()
        else:
            there: txgreen.Queue[int] = txgreen.Queue()
            back: txgreen.Queue[int] = txgreen.Queue()

            def echo_q() -> None:
                get, put = there.get, back.put
                while True:
                    put(get())

            peer = txgreen.spawn(echo_q)
            put, get = there.put, back.get
            for _ in range(loops):
                t0 = time.process_time()
                for i in range(n):
                    put(i)
                    get()
                times.append((time.process_time() - t0) / n)
            peer.kill()
        return times

    return txgreen.run(main)


def rtt_gevent(n: int, loops: int) -> list[float]:
    import gevent
    from gevent.queue import Queue

    there: Queue = Queue()
    back: Queue = Queue()

    def echo() -> None:
        get, put = there.get, back.put
        while True:
            put(get())

    peer = gevent.spawn(echo)
    times: list[float] = []
    put, get = there.put, back.get
    for _ in range(loops):
        t0 = time.process_time()
        for i in range(n):
            put(i)
            get()
        times.append((time.process_time() - t0) / n)
    peer.kill()
    return times


def rtt_asyncio(n: int, loops: int) -> list[float]:
    import asyncio

    async def main() -> list[float]:
        there: asyncio.Queue[int] = asyncio.Queue()
        back: asyncio.Queue[int] = asyncio.Queue()

        async def echo() -> None:
            while True:
                await back.put(await there.get())

        peer = asyncio.ensure_future(echo())
        times: list[float] = []
        for _ in range(loops):
            t0 = time.process_time()
            for i in range(n):
                await there.put(i)
                await back.get()
            times.append((time.process_time() - t0) / n)
        peer.cancel()
        return times

    return asyncio.run(main())


def child_rtt(kind: str, n: int, loops: int) -> dict[str, Any]:
    if kind in ("mailbox", "txqueue"):
        times = rtt_txgreen(kind, n, loops)
    elif kind == "gevent":
        times = rtt_gevent(n, loops)
    else:
        times = rtt_asyncio(n, loops)
    return {"best": min(times), "median": statistics.median(times)}


# -- child: restarts ---------------------------------------------------------------------------


def child_restart(n: int) -> dict[str, Any]:
    import txgreen

    started = txgreen.Event()

    def worker() -> None:
        started.set()
        txgreen.Event().wait()

    def main() -> list[float]:
        sup = txgreen.Supervisor(
            [txgreen.ChildSpec("w", worker)], intensity=n + WARM_UP + 10, period=3600
        )
        tree = sup.start()
        started.wait()
        times: list[float] = []
        for i in range(WARM_UP + n):
            thread = sup.which_children()[0].thread
            assert thread is not None
            started.clear()
            t0 = time.process_time()
            thread.kill(block=False)
            started.wait()
            if i >= WARM_UP:
                times.append(time.process_time() - t0)
        tree.kill()
        return times

    times = sorted(txgreen.run(main))
    return {"median": statistics.median(times), "p90": times[int(len(times) * 0.9)]}


# -- the report ---------------------------------------------------------------------------------


def child(*args: str, timeout: float = 600) -> dict[str, Any]:
    out = run_child([sys.executable, str(Path(__file__).resolve()), "--child", *args], timeout)
    result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return result


def gevent_version() -> str:
    out = run_child([sys.executable, "-c", "import gevent; print(gevent.__version__)"], 60)
    return out.strip()


def verdict(ratio: float, most: float) -> str:
    return f"{'PASS' if ratio <= most else 'MISS'}  (target <= {most:.2f})"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="2,000 threads, small loops")
    parser.add_argument("--threads", type=int, default=100_000, help="idle threads per kind")
    parser.add_argument("--messages", type=int, default=20_000, help="round trips per loop")
    parser.add_argument("--restarts", type=int, default=2_000, help="restarts measured")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved round-trip rounds")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        what, *rest = args.child
        if what == "memory":
            result = child_memory(rest[0], int(rest[1]), rest[2] == "traced")
        elif what == "rtt":
            result = child_rtt(rest[0], int(rest[1]), int(rest[2]))
        else:
            result = child_restart(int(rest[0]))
        print(json.dumps(result))
        return 0

    threads = 2_000 if args.smoke else args.threads
    messages = 500 if args.smoke else args.messages
    loops = 1 if args.smoke else 5
    rounds = 1 if args.smoke else args.rounds
    restarts = 100 if args.smoke else args.restarts
    title = "txgreen supervision benchmark: idle processes, message round trips, restarts"
    print(title + (f" (smoke run: {threads:,} threads, figures are rough)" if args.smoke else ""))
    print(versions_line("gevent", gevent_version()))
    print(f"{platform.system()} {platform.machine()}, {os.cpu_count()} CPUs")
    print()

    print(f"  memory per idle thread, {threads:,} of each{'':<9}tracemalloc          RSS")
    traced: dict[str, float] = {}
    rss: dict[str, float] = {}
    for kind, label in KINDS.items():
        traced[kind] = child("memory", kind, str(threads), "traced")["per_thread"] / KB
        rss[kind] = child("memory", kind, str(threads), "rss")["per_thread"] / KB
        print(f"  {label:<52}{traced[kind]:8.2f} KB  {rss[kind]:8.2f} KB")
    print(f"  {'e. Erlang process (documented, for reference)':<52}{ERLANG_KB:8.2f} KB")
    ratio = round(rss["process"] / rss["gevent"], 2)
    print(f"  {'a / c (RSS)':<30} = {ratio:5.2f}  {verdict(ratio, 1.0)}")
    for other, name in (("bare", "b"), ("asyncio", "d")):
        r = rss["process"] / rss[other]
        print(f"  {f'a / {name} (RSS)':<30} = {r:5.2f}  (for reference)")
    r = rss["process"] / ERLANG_KB
    print(f"  {'a / Erlang (RSS)':<30} = {r:5.2f}  (for reference)")
    print()

    print(
        f"  message round trip between two threads (CPU), best of {loops} x {messages:,} per "
        f"child, median of {rounds} interleaved round{'s' if rounds > 1 else ''}"
    )
    per_round: dict[str, list[float]] = {kind: [] for kind in QUEUES}
    for turn in range(rounds):
        for kind in rotated(list(QUEUES), turn):
            figures = child("rtt", kind, str(messages), str(loops))
            per_round[kind].append(figures["best"] * 1e6)
    rtt = {kind: statistics.median(values) for kind, values in per_round.items()}
    for kind, label in QUEUES.items():
        print(f"  {label:<52}{rtt[kind]:8.2f} µs")
    for other, name in (("txqueue", "b"), ("gevent", "c"), ("asyncio", "d")):
        r = rtt["mailbox"] / rtt[other]
        paired = [a / b for a, b in zip(per_round["mailbox"], per_round[other], strict=True)]
        spread = f"per round {min(paired):.2f}-{max(paired):.2f}"
        print(f"  {f'a / {name}':<30} = {r:5.2f}  (for reference; {spread})")
    print()

    figures = child("restart", str(restarts))
    print(
        f"  restart of a supervised child (kill -> running again, CPU), {restarts:,} restarts: "
        f"median {figures['median'] * 1e6:.1f} µs, p90 {figures['p90'] * 1e6:.1f} µs"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
