"""Cost per operation of txgreen's green-thread primitives, next to gevent's, in one run.

Run ``.venv/bin/python benchmarks/bench_primitives.py`` (``--smoke`` for a pass of a second or
two, ``--reactor NAME`` for another Twisted reactor).  Five operations, each written the same
way for both libraries (only the names differ):

  sleep(0)        one green thread yields to the event loop and comes back;
  spawn + join    start a thread running a no-op and wait for its end;
  Event wake      a round trip: A sets ``ping`` and waits on ``pong``; B, waiting on ``ping``,
                  wakes, clears it and sets ``pong`` (two wake-ups per round trip);
  Queue put/get   a round trip through two unbounded queues: A puts, B gets and puts the item
                  on the second queue, A gets it;
  Channel         a round trip through two rendezvous channels (txgreen ``Channel``
                  send/receive, gevent ``gevent.queue.Channel`` put/get).

The figure is the median, over ``--repeats`` timed loops, of loop time / iterations; the
ratio txgreen / gevent is checked against the target of issue 5 (<= 1.5).

Fairness: gevent runs in a child process of its own, started once.  It is not monkey-patched
(nothing here does I/O) and uses its default loop.  After both sides have warmed up (every
benchmark once, untimed, with a tenth of the loop size), the rounds alternate: the child runs
one timed loop of every benchmark while this process waits on the pipe, then this process
runs its own, and so on ``--repeats`` times.  So the two never compete for the CPU, and a
change of the machine's speed during the run hits both sides alike.  Both run the same loop
bodies, with bound methods looked up once, the same loop sizes, and the garbage collector on
but run before each timed loop.  Each benchmark runs in a green thread (txgreen: under
``txgreen.run``; gevent: in a greenlet spawned from the main one).

The txgreen primitives are imported by module (``txgreen._event``, ``txgreen._queue``,
``txgreen._channel``); if one of those modules is missing, its line says "not available".
"""

from __future__ import annotations

import argparse
import gc
import importlib
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from typing import Any

from benchutil import versions_line

REACTORS = ("default", "epoll", "poll", "select", "asyncio")
LOOPS = 10_000
REPEATS = 5
SMOKE_LOOPS = 200
SMOKE_REPEATS = 3
TARGET = 1.5
NOISY = 0.15  # warn when a median is this far above its best loop

# key, label, the txgreen module it needs (None: core only)
BENCHES = (
    ("sleep", "sleep(0)", None),
    ("spawn", "spawn + join", None),
    ("event", "Event wake round trip", "txgreen._event"),
    ("queue", "Queue put/get round trip", "txgreen._queue"),
    ("channel", "Channel ping-pong round trip", "txgreen._channel"),
)


@dataclass(frozen=True)
class Api:
    """What a benchmark needs from a library; ``None`` where the library lacks it."""

    spawn: Callable[..., Any]
    sleep: Callable[[float], Any]
    event: Callable[[], Any] | None
    queue: Callable[[], Any] | None
    channel: Callable[[], tuple[Callable[[Any], Any], Callable[[], Any]]] | None


def _noop() -> None:
    return None


# -- the benchmarks: (api, n) -> seconds for n operations ---------------------------------------


def bench_sleep(api: Api, n: int) -> float:
    sleep = api.sleep
    t0 = time.perf_counter()
    for _ in range(n):
        sleep(0)
    return time.perf_counter() - t0


def bench_spawn(api: Api, n: int) -> float:
    spawn = api.spawn
    t0 = time.perf_counter()
    for _ in range(n):
        spawn(_noop).join()
    return time.perf_counter() - t0


def bench_event(api: Api, n: int) -> float:
    assert api.event is not None
    ping, pong = api.event(), api.event()

    def ponger() -> None:
        wait, clear, answer = ping.wait, ping.clear, pong.set
        for _ in range(n):
            wait()
            clear()
            answer()

    other = api.spawn(ponger)
    api.sleep(0)  # let it start and park
    ask, wait, clear = ping.set, pong.wait, pong.clear
    t0 = time.perf_counter()
    for _ in range(n):
        ask()
        wait()
        clear()
    elapsed = time.perf_counter() - t0
    other.join()
    return elapsed


def echo_round_trips(
    api: Api,
    echo: Callable[[], None],
    send: Callable[[int], Any],
    receive: Callable[[], Any],
    n: int,
) -> float:
    """Seconds for ``n`` round trips through ``echo``, a green thread that sends back what it
    receives: ``send(i)`` to it, then ``receive()`` its answer."""
    other = api.spawn(echo)
    api.sleep(0)  # let it start and park
    t0 = time.perf_counter()
    for i in range(n):
        send(i)
        receive()
    elapsed = time.perf_counter() - t0
    other.join()
    return elapsed


def bench_queue(api: Api, n: int) -> float:
    assert api.queue is not None
    there, back = api.queue(), api.queue()

    def echo() -> None:
        get, put = there.get, back.put
        for _ in range(n):
            put(get())

    return echo_round_trips(api, echo, there.put, back.get, n)


def bench_channel(api: Api, n: int) -> float:
    assert api.channel is not None
    send_there, receive_there = api.channel()
    send_back, receive_back = api.channel()

    def echo() -> None:
        for _ in range(n):
            send_back(receive_there())

    return echo_round_trips(api, echo, send_there, receive_back, n)


FUNCS: dict[str, Callable[[Api, int], float]] = {
    "sleep": bench_sleep,
    "spawn": bench_spawn,
    "event": bench_event,
    "queue": bench_queue,
    "channel": bench_channel,
}


def warm_up(api: Api, keys: list[str], loops: int) -> None:
    """Run every benchmark once, untimed, with a tenth of the loop size."""
    for key in keys:
        FUNCS[key](api, max(loops // 10, 10))


def one_round(api: Api, keys: list[str], loops: int) -> dict[str, float]:
    """One timed loop of every benchmark; ns per operation."""
    got = {}
    for key in keys:
        gc.collect()
        got[key] = FUNCS[key](api, loops) / loops * 1e9
    return got


class GeventChild:
    """The gevent side, in a child process that runs one round each time it is asked."""

    def __init__(self, loops: int) -> None:
        cmd = [sys.executable, os.path.abspath(__file__), "--loops", str(loops)]
        self.proc = subprocess.Popen(
            [*cmd, "--child", "gevent"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self.info: dict[str, Any] = self._read()  # sent once it has warmed up

    def _read(self) -> Any:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            code = self.proc.wait(timeout=60)
            raise RuntimeError(f"the gevent child process ended early (exit {code})")
        return json.loads(line)

    def round(self) -> dict[str, float]:
        assert self.proc.stdin is not None
        self.proc.stdin.write("round\n")
        self.proc.stdin.flush()
        got: dict[str, float] = self._read()
        return got

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self.proc.wait(timeout=60)


def measure(
    api: Api, keys: list[str], loops: int, repeats: int, child: GeventChild
) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """Interleaved rounds: gevent's (in the child, while this process waits), then ours."""
    warm_up(api, keys, loops)
    ours: dict[str, list[float]] = {key: [] for key in keys}
    theirs: dict[str, list[float]] = {key: [] for key, _, _ in BENCHES}
    for _ in range(repeats):
        for key, value in child.round().items():
            theirs[key].append(value)
        for key, value in one_round(api, keys, loops).items():
            ours[key].append(value)
    return ours, theirs


# -- the two libraries --------------------------------------------------------------------------


def txgreen_api(skip: list[str]) -> tuple[Api, dict[str, str]]:
    """txgreen's primitives, and why each missing one is missing (``skip``: pretend so)."""
    import txgreen

    names = {"event": "Event", "queue": "Queue", "channel": "Channel"}
    found: dict[str, Any] = {}
    missing: dict[str, str] = {}
    for key, _, module in BENCHES:
        if module is None:
            continue
        if module in skip:
            missing[key] = f"{module} skipped with --skip-module"
            continue
        try:
            found[key] = getattr(importlib.import_module(module), names[key])
        except ImportError:
            missing[key] = f"{module} not found"
        except AttributeError:
            missing[key] = f"{module} has no {names[key]}"
    channel = None
    if "channel" in found:
        channel_cls = found["channel"]

        def channel() -> tuple[Callable[[Any], Any], Callable[[], Any]]:
            ch = channel_cls()
            return ch.send, ch.receive

    api = Api(txgreen.spawn, txgreen.sleep, found.get("event"), found.get("queue"), channel)
    return api, missing


def gevent_api() -> Api:
    import gevent
    import gevent.event
    import gevent.queue

    def channel() -> tuple[Callable[[Any], Any], Callable[[], Any]]:
        ch = gevent.queue.Channel()
        return ch.put, ch.get

    return Api(gevent.spawn, gevent.sleep, gevent.event.Event, gevent.queue.Queue, channel)


def child_gevent(loops: int) -> None:
    """The gevent child: warm up, say so, then run one round per "round" line on stdin."""
    import gevent

    api = gevent_api()
    keys = [key for key, _, _ in BENCHES]
    gevent.spawn(warm_up, api, keys, loops).get()
    loop = type(gevent.get_hub().loop)
    info = {"version": gevent.__version__, "loop": f"{loop.__module__}.{loop.__qualname__}"}
    print(json.dumps(info), flush=True)
    for line in sys.stdin:  # plain blocking reads: gevent is not monkey-patched
        if line.strip() != "round":
            break
        print(json.dumps(gevent.spawn(one_round, api, keys, loops).get()), flush=True)


def install_reactor(name: str) -> Any:
    if name != "default":
        module: Any = importlib.import_module(f"twisted.internet.{name}reactor")
        module.install()
    from twisted.internet import reactor

    return reactor


# -- report -------------------------------------------------------------------------------------


def fmt_ns(ns: float) -> str:
    if ns < 1_000:
        return f"{ns:7.0f} ns"
    return f"{ns / 1_000:7.2f} µs"


def report(
    header: list[str],
    loops: int,
    repeats: int,
    ours: dict[str, list[float]],
    missing: dict[str, str],
    theirs: dict[str, list[float]],
    smoke: bool,
) -> list[str]:
    title = "txgreen primitives vs gevent"
    lines = [title + (" (smoke run: tiny loops, figures are rough)" if smoke else "")]
    lines += header
    lines.append(
        f"loops: {loops} operations, {repeats} timed repeats after a warm-up; "
        f"per operation: median; target txgreen / gevent <= {TARGET}"
    )
    lines.append("")
    width = max(len(label) for _, label, _ in BENCHES)
    lines.append(f"  {'operation':<{width}}  {'txgreen':>13}  {'gevent':>10}  {'ratio':>6}")
    verdicts = []
    for key, label, _ in BENCHES:
        g = statistics.median(theirs[key])
        if key in ours:
            t = statistics.median(ours[key])
            ratio = round(t / g, 2)
            verdict = "PASS" if ratio <= TARGET else "MISS"
            verdicts.append(verdict)
            lines.append(
                f"  {label:<{width}}  {fmt_ns(t):>13}  {fmt_ns(g)}  {ratio:6.2f}  {verdict}"
            )
        else:
            lines.append(
                f"  {label:<{width}}  {'not available':>13}  {fmt_ns(g)}  "
                f"({missing.get(key, 'missing')})"
            )
    lines.append("")
    lines.append(
        f"targets met: {verdicts.count('PASS')} of {len(verdicts)} "
        f"({len(BENCHES) - len(verdicts)} not available)"
    )
    spreads = {
        f"{side} {key}": statistics.median(v) / min(v) - 1
        for side, samples in (("txgreen", ours), ("gevent", theirs))
        for key, v in samples.items()
    }
    worst = max(spreads, key=lambda k: spreads[k])
    if spreads[worst] > NOISY:
        lines.append(
            f"warning: the machine was busy (the median of {worst} is {spreads[worst]:.0%} "
            "above its best loop): rerun on a quiet machine"
        )
    return lines


def versions(reactor_name: str, reactor: Any, child: dict[str, Any]) -> list[str]:
    cls = type(reactor)
    try:
        gevent_version = metadata.version("gevent")
    except metadata.PackageNotFoundError:  # pragma: no cover - the child would have failed
        gevent_version = child["version"]
    return [
        versions_line("gevent", gevent_version),
        f"txgreen reactor: {cls.__module__}.{cls.__qualname__} (--reactor {reactor_name}); "
        f"gevent loop: {child['loop']}; {platform.system()} {platform.machine()}, "
        f"{os.cpu_count()} CPUs",
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--smoke", action="store_true", help="a very short pass (for CI)")
    parser.add_argument("--reactor", choices=REACTORS, default="default")
    parser.add_argument("--loops", type=int, default=None, help="operations per timed loop")
    parser.add_argument("--repeats", type=int, default=None, help="timed loops per benchmark")
    parser.add_argument(
        "--fail-on-miss", action="store_true", help="exit with status 1 if a target is missed"
    )
    parser.add_argument(
        "--skip-module",
        action="append",
        default=[],
        metavar="MODULE",
        help="treat this txgreen module as missing (to check the 'not available' lines)",
    )
    parser.add_argument("--child", choices=("gevent",), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.loops is None:
        args.loops = SMOKE_LOOPS if args.smoke else LOOPS
    if args.repeats is None:
        args.repeats = SMOKE_REPEATS if args.smoke else REPEATS
    loops, repeats = args.loops, args.repeats
    if loops < 1 or repeats < 1:
        parser.error("--loops and --repeats must be >= 1")

    if args.child:
        child_gevent(loops)
        return 0

    reactor = install_reactor(args.reactor)
    import txgreen

    api, missing = txgreen_api(args.skip_module)
    keys = [key for key, _, _ in BENCHES if key not in missing]
    child = GeventChild(loops)
    try:
        ours, theirs = txgreen.run(measure, api, keys, loops, repeats, child)
    finally:
        child.close()
    lines = report(
        versions(args.reactor, reactor, child.info),
        loops,
        repeats,
        ours,
        missing,
        theirs,
        args.smoke,
    )
    print("\n".join(lines))
    missed = any(
        round(statistics.median(ours[k]) / statistics.median(theirs[k]), 2) > TARGET for k in ours
    )
    return 1 if missed and args.fail_on_miss else 0


if __name__ == "__main__":
    sys.exit(main())
