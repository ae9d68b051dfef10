"""Cost per call of txgreen's core operations, next to their plain-Twisted and greenlet peers.

Run ``.venv/bin/python benchmarks/bench_core.py`` (``--smoke`` for a pass of a second or two,
``--reactor NAME`` for another reactor).  One run measures, on one reactor type:

  a. ``block_on`` on an already-fired Deferred, from a green thread;
  b. ``block_on`` round trip on a Deferred fired by the reactor on its next iteration;
  c. the same round trip with ``async def`` + ``Deferred.fromCoroutine`` (``await d``);
  d. the same round trip with ``@inlineCallbacks`` (``yield d``);
  e. the same round trip with pytest-twisted's ``blockon`` (in a child process, see below);
  f. ``await`` on an already-fired Deferred inside an ``async def`` (the peer of a.);
  g. a raw greenlet switch pair (two greenlets switching back and forth);
  h. spawn + join of a green thread;
  m. for reference, a bare greenlet round trip with no txgreen bookkeeping (see its docstring);
  r. for reference, the floor under b-e and h: one reactor iteration running a ``callLater(0)``.

Each figure is the median, over ``--repeats`` timed loops, of the loop time divided by its
number of iterations (the best loop is shown too).  Every benchmark runs once untimed first
(warm-up), the repeats of the benchmarks are interleaved (a, b, c, ... a, b, c, ...) so that a
drift of the machine's speed hits all of them alike, and the garbage collector stays on (it is
part of the real cost) but is run before each timed loop.

Everything but e. and b' runs in this process, under ``txgreen.run(main)``: the loops of a, b,
g, h and m run in the main green thread; c, d, f and r are Deferred-driven loops that the main
green thread starts and waits for once (one extra round trip per loop of thousands of
iterations).

``--instructions`` counts instead of timing: each of a, b, c, f and m runs in child processes
under valgrind's callgrind, once with a short loop and once with a long one, and the difference
of the instructions executed, divided by the difference of the iterations, is the count per
iteration.  Counts do not move with the machine's load, as times do (by 5-30 % on a shared VM),
so they show what a change to txgreen's own code saves; but a greenlet switch costs more time
per instruction than ordinary code (it swaps stacks), so the time ratios of round trips with
greenlets (b, m) are higher than their instruction ratios.  Needs ``valgrind`` (``make services``
installs it); about a minute.

pytest-twisted's ``blockon`` needs the reactor to run in pytest-twisted's own greenlet and must
be called from another greenlet, so e. runs in a child process set up the way pytest-twisted
sets itself up: the same reactor type is installed, ``pytest_twisted._instances.reactor`` is set
and ``pytest_twisted.init_twisted_greenlet()`` creates the reactor greenlet; the main greenlet
then calls ``pytest_twisted.blockon_default`` in a loop.  That child also measures txgreen's
``block_on`` round trip from a green thread on that same greenlet (the setup txgreen's pytest
plugin runs tests in), printed as b'.
"""

from __future__ import annotations

import argparse
import gc
import importlib
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Any

from benchutil import versions_line

REACTORS = ("default", "epoll", "poll", "select", "asyncio")

# Loop sizes (iterations per timed loop) and repeats, full run and --smoke.
FAST_LOOPS = 200_000  # a, f, g: operations that never leave the current greenlet's turn
TRIP_LOOPS = 10_000  # b, c, d, e, h, m, r: each iteration is one reactor iteration
REPEATS = 7
SMOKE_FAST_LOOPS = 2_000
SMOKE_TRIP_LOOPS = 200
SMOKE_REPEATS = 3

NOISY = 0.10  # warn when a median is this far above its best loop: something else ran

# Targets from the hardening issue: (name, numerator, denominator, label, highest ratio).
TARGETS = (
    ("round trip", "b", "c", "block_on (b) / async def await (c)", 1.05),
    ("fired fast path", "a", "f", "block_on fired (a) / await fired (f)", 1.00),
)


# -- reactor ---------------------------------------------------------------------------------


def install_reactor(name: str) -> Any:
    """Install the reactor called ``name`` (before anything imports the global one); return it."""
    if "twisted.internet.reactor" in sys.modules:
        raise RuntimeError("a reactor is already installed")
    if name not in REACTORS:
        raise ValueError(f"unknown reactor {name!r}; choose one of {', '.join(REACTORS)}")
    if name != "default":
        module: Any = importlib.import_module(f"twisted.internet.{name}reactor")
        module.install()
    return global_reactor()


def global_reactor() -> Any:
    """The installed reactor, untyped (Twisted's interfaces need mypy-zope to type-check)."""
    from twisted.internet import reactor

    return reactor


def reactor_label(reactor: Any) -> str:
    cls = type(reactor)
    return f"{cls.__module__}.{cls.__qualname__}"


# -- the benchmarks: each takes a loop size and returns the loop's time in seconds ------------


def _noop() -> None:
    return None


def bench_fired_block_on(n: int) -> float:
    """a. block_on on an already-fired Deferred (the same one each time; its result stays)."""
    from twisted.internet.defer import succeed

    from txgreen import block_on

    d = succeed(1)
    t0 = time.perf_counter()
    for _ in range(n):
        block_on(d)
    return time.perf_counter() - t0


def round_trips(wait: Callable[[Any], object], n: int) -> float:
    """Seconds for ``n`` calls of ``wait(d)``, each on a new Deferred ``d`` that the reactor
    fires on its next iteration."""
    from twisted.internet.defer import Deferred

    call_later = global_reactor().callLater
    t0 = time.perf_counter()
    for _ in range(n):
        d: Deferred[int] = Deferred()
        call_later(0, d.callback, 1)
        wait(d)
    return time.perf_counter() - t0


def bench_round_trip_block_on(n: int) -> float:
    """b. block_on on a Deferred that the reactor fires on its next iteration."""
    from txgreen import block_on

    return round_trips(block_on, n)


async def _await_loop(n: int, call_later: Callable[..., Any]) -> None:
    from twisted.internet.defer import Deferred

    for _ in range(n):
        d: Deferred[int] = Deferred()
        call_later(0, d.callback, 1)
        await d


def bench_round_trip_async(n: int) -> float:
    """c. The same round trip in an ``async def`` run by ``Deferred.fromCoroutine``."""
    from twisted.internet.defer import Deferred

    from txgreen import block_on

    coro = _await_loop(n, global_reactor().callLater)
    t0 = time.perf_counter()
    block_on(Deferred.fromCoroutine(coro))
    return time.perf_counter() - t0


def _inline_loop(n: int, call_later: Callable[..., Any]) -> Generator[Any, Any, None]:
    from twisted.internet.defer import Deferred

    for _ in range(n):
        d: Deferred[int] = Deferred()
        call_later(0, d.callback, 1)
        yield d


def bench_round_trip_inline(n: int) -> float:
    """d. The same round trip with ``@inlineCallbacks``."""
    from twisted.internet.defer import inlineCallbacks

    from txgreen import block_on

    loop = inlineCallbacks(_inline_loop)
    call_later = global_reactor().callLater
    t0 = time.perf_counter()
    block_on(loop(n, call_later))
    return time.perf_counter() - t0


async def _await_fired_loop(n: int, d: Any) -> None:
    for _ in range(n):
        await d


def bench_fired_await(n: int) -> float:
    """f. ``await`` on an already-fired Deferred in an ``async def`` (never suspends)."""
    from twisted.internet.defer import Deferred, succeed

    d = succeed(1)
    coro = _await_fired_loop(n, d)
    t0 = time.perf_counter()
    done = Deferred.fromCoroutine(coro)
    elapsed = time.perf_counter() - t0
    if not done.called:  # it never suspends, so it has run to the end
        raise RuntimeError("the fired-await loop suspended")
    return elapsed


def bench_switch_pair(n: int) -> float:
    """g. Two raw greenlets switching back and forth: one iteration is one switch pair."""
    from greenlet import getcurrent, greenlet

    me = getcurrent()

    def partner() -> None:
        switch = me.switch
        for _ in range(n):
            switch()

    other = greenlet(partner)
    switch = other.switch
    t0 = time.perf_counter()
    for _ in range(n):
        switch()
    elapsed = time.perf_counter() - t0
    switch()  # let it return
    if not other.dead:
        raise RuntimeError("the partner greenlet did not finish")
    return elapsed


def bench_spawn_join(n: int) -> float:
    """h. Spawn a green thread running a no-op function and join it."""
    from txgreen import spawn

    t0 = time.perf_counter()
    for _ in range(n):
        spawn(_noop).join()
    return time.perf_counter() - t0


def bench_reactor_iteration(n: int) -> float:
    """r. The floor under every round trip: a chain of ``callLater(0)`` calls in the hub."""
    from twisted.internet.defer import Deferred

    from txgreen import block_on

    call_later = global_reactor().callLater
    done: Deferred[None] = Deferred()
    left = n

    def tick() -> None:
        nonlocal left
        left -= 1
        if left:
            call_later(0, tick)
        else:
            done.callback(None)

    t0 = time.perf_counter()
    call_later(0, tick)
    block_on(done)
    return time.perf_counter() - t0


def bench_round_trip_bare(n: int) -> float:
    """m. The least a greenlet round trip can do: no txgreen bookkeeping at all.

    The green thread switches straight to the hub, and the Deferred's callback (run by the
    reactor in the hub) switches straight back.  b. minus m. is what txgreen's own
    bookkeeping costs; m. minus c. is the gap between greenlets and coroutines themselves.
    """
    from greenlet import getcurrent
    from twisted.internet.defer import Deferred

    from txgreen import get_hub

    hub_greenlet = get_hub().greenlet
    assert hub_greenlet is not None
    me = getcurrent()
    call_later = global_reactor().callLater

    def wake(result: int) -> int:
        me.switch(result)
        return result

    t0 = time.perf_counter()
    for _ in range(n):
        d: Deferred[int] = Deferred()
        d.addBoth(wake)
        call_later(0, d.callback, 1)
        hub_greenlet.switch()
    return time.perf_counter() - t0


def bench_round_trip_blockon(n: int) -> float:
    """e. pytest-twisted's blockon round trip, from the main greenlet (child process only)."""
    import pytest_twisted

    return round_trips(pytest_twisted.blockon_default, n)


@dataclass(frozen=True)
class Bench:
    key: str
    label: str
    fn: Callable[[int], float]
    fast: bool  # True: FAST_LOOPS iterations per loop, else TRIP_LOOPS


MAIN_BENCHES = (
    Bench("a", "block_on(fired Deferred), green thread", bench_fired_block_on, True),
    Bench("b", "block_on round trip (callLater 0), green thread", bench_round_trip_block_on, False),
    Bench("c", "async def: await d round trip (fromCoroutine)", bench_round_trip_async, False),
    Bench("d", "@inlineCallbacks: yield d round trip", bench_round_trip_inline, False),
    Bench("f", "async def: await fired Deferred", bench_fired_await, True),
    Bench("g", "raw greenlet switch pair", bench_switch_pair, True),
    Bench("h", "spawn + join of a green thread", bench_spawn_join, False),
    Bench("m", "reference: bare greenlet round trip, no txgreen", bench_round_trip_bare, False),
    Bench("r", "reference: one reactor iteration (callLater 0)", bench_reactor_iteration, False),
)
CHILD_BENCHES = (
    Bench("e", "pytest-twisted blockon round trip", bench_round_trip_blockon, False),
    Bench("b'", "block_on round trip, pytest-twisted's greenlet", bench_round_trip_block_on, False),
)
ORDER = ("a", "b", "b'", "c", "d", "e", "f", "g", "h", "m", "r")


@dataclass(frozen=True)
class Sizes:
    fast: int
    trip: int
    repeats: int

    def loops(self, bench: Bench) -> int:
        return self.fast if bench.fast else self.trip


def measure(
    benches: tuple[Bench, ...], sizes: Sizes, runner: Callable[[Bench, int], float]
) -> dict[str, list[float]]:
    """Warm each benchmark up, then time ``sizes.repeats`` interleaved rounds; ns per call."""
    for bench in benches:
        runner(bench, max(sizes.loops(bench) // 10, 10))
    samples: dict[str, list[float]] = {b.key: [] for b in benches}
    for _ in range(sizes.repeats):
        for bench in benches:
            n = sizes.loops(bench)
            gc.collect()
            samples[bench.key].append(runner(bench, n) / n * 1e9)
    return samples


# -- the child process for pytest-twisted's blockon ------------------------------------------


def child_pytest_twisted(reactor_name: str, sizes: Sizes) -> dict[str, Any]:
    """Measure e. and b' with pytest-twisted's reactor greenlet; runs in its own process."""
    reactor = install_reactor(reactor_name)
    import pytest_twisted

    import txgreen

    # What pytest-twisted's plugin does when it installs its reactor (_install_reactor).
    pytest_twisted._instances.reactor = reactor
    pytest_twisted.init_twisted_greenlet()
    if txgreen.get_hub().ensure_greenlet() is not pytest_twisted._instances.gr_twisted:
        raise RuntimeError("txgreen did not adopt pytest-twisted's reactor greenlet as its hub")

    def runner(bench: Bench, n: int) -> float:
        if bench.key == "e":
            return bench.fn(n)  # from the main greenlet, as pytest-twisted calls it
        # b': in a green thread, which the main greenlet waits for with blockon.
        result: float = pytest_twisted.blockon_default(txgreen.spawn(bench.fn, n).to_deferred())
        return result

    try:
        samples = measure(CHILD_BENCHES, sizes, runner)
    finally:
        pytest_twisted.stop_twisted_greenlet()
    return {"reactor": reactor_label(reactor), "samples": samples}


def run_child(reactor_name: str, sizes: Sizes) -> dict[str, Any]:
    cmd = [
        sys.executable,
        os.path.abspath(__file__),
        "--reactor",
        reactor_name,
        "--fast-loops",
        str(sizes.fast),
        "--trip-loops",
        str(sizes.trip),
        "--repeats",
        str(sizes.repeats),
        "--child",
        "pytest-twisted",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=False)
    if proc.returncode != 0:
        raise RuntimeError(
            f"the pytest-twisted child process failed (exit {proc.returncode}):\n{proc.stderr}"
        )
    if proc.stderr:
        sys.stderr.write(proc.stderr)  # warnings and the like: do not hide them
    data: dict[str, Any] = json.loads(proc.stdout)
    return data


# -- instruction counts (callgrind) ----------------------------------------------------------

COUNTED = ("a", "b", "c", "f", "m")
SMOKE_COUNTED = ("b", "c")  # (each callgrind run takes some 15 s, mostly Python's start-up)
# Iterations of the short and the long loop per counted benchmark: (fast, trip), full and smoke.
COUNT_LOOPS = {False: ((20_000, 100_000), (1_000, 5_000)), True: ((1_000, 5_000), (100, 500))}
COLLECTED = re.compile(r"^==\d+== Collected : (\d+)$", re.MULTILINE)


def child_count(reactor_name: str, key: str, n: int) -> None:
    """Run benchmark ``key`` once untimed (200 iterations), then ``n`` times (under callgrind)."""
    install_reactor(reactor_name)
    import txgreen

    bench = {b.key: b for b in MAIN_BENCHES}[key]

    def body() -> None:
        bench.fn(200)
        if n:
            bench.fn(n)

    txgreen.run(body)


def count_instructions(reactor_name: str, key: str, n: int) -> int:
    """Instructions callgrind counts for a child process running ``child_count(key, n)``."""
    cmd = [
        *("valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null"),
        *(sys.executable, os.path.abspath(__file__), "--reactor", reactor_name),
        *("--child", "count", "--count", f"{key}:{n}"),
    ]
    env = dict(os.environ, PYTHONHASHSEED="0")  # the same dict layouts in every run
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=False, env=env)
    found = COLLECTED.search(proc.stderr)
    if proc.returncode != 0 or found is None:
        raise RuntimeError(
            f"callgrind run of {key}. failed (exit {proc.returncode}):\n{proc.stderr}"
        )
    return int(found.group(1))


def measure_instructions(reactor_name: str, smoke: bool) -> dict[str, float]:
    """Instructions per iteration of each COUNTED benchmark (two processes at a time)."""
    from concurrent.futures import ThreadPoolExecutor

    fast, trip = COUNT_LOOPS[smoke]
    fast_keys = {b.key for b in MAIN_BENCHES if b.fast}
    keys = SMOKE_COUNTED if smoke else COUNTED
    jobs = [(k, n) for k in keys for n in (fast if k in fast_keys else trip)]
    with ThreadPoolExecutor(max_workers=2) as pool:
        counts = list(pool.map(lambda job: count_instructions(reactor_name, *job), jobs))
    per: dict[str, float] = {}
    for i, key in enumerate(keys):
        short, long_ = counts[2 * i], counts[2 * i + 1]
        n_short, n_long = jobs[2 * i][1], jobs[2 * i + 1][1]
        per[key] = (long_ - short) / (n_long - n_short)
    return per


def report_instructions(
    header: list[str], labels: dict[str, str], per: dict[str, float], smoke: bool
) -> list[str]:
    lines = [
        "txgreen core benchmarks: instructions per iteration (callgrind)"
        + (" (smoke run: short loops)" if smoke else "")
    ]
    lines += header
    lines.append("")
    width = max(len(labels[k]) for k in per)
    for key in COUNTED:
        if key in per:
            lines.append(f"  {key + '.':<3} {labels[key]:<{width}}  {per[key]:9,.0f}")
    lines.append("")
    lines.append("ratios of instructions (the targets are on time: see the module's docstring):")
    ratios = [
        (name, num, den, what, f"(time: <= {limit:.2f})") for name, num, den, what, limit in TARGETS
    ]
    ratios.append(("bookkeeping", "b", "m", "block_on (b) / bare greenlet round trip (m)", ""))
    ratios.append(("greenlets", "m", "c", "bare greenlet (m) / async def await (c)", ""))
    for name, num, den, what, note in ratios:
        if num in per and den in per:
            ratio = per[num] / per[den]
            lines.append(f"  {name + ':':<17} {what:<43} = {ratio:6.3f}  {note}".rstrip())
    return lines


# -- report ----------------------------------------------------------------------------------


def fmt_ns(ns: float) -> str:
    if ns < 1_000:
        return f"{ns:7.0f} ns"
    return f"{ns / 1_000:7.2f} µs"


def versions(reactor_name: str, reactor: Any) -> list[str]:
    return [
        versions_line("pytest-twisted"),
        f"reactor: {reactor_label(reactor)} (--reactor {reactor_name}); "
        f"{platform.system()} {platform.machine()}, {os.cpu_count()} CPUs",
    ]


def target_ratio(samples: dict[str, list[float]], num: str, den: str) -> float:
    """Ratio of the medians, rounded as printed (so the verdict matches the printed figure)."""
    return round(statistics.median(samples[num]) / statistics.median(samples[den]), 3)


def report(
    header: list[str],
    sizes: Sizes,
    labels: dict[str, str],
    samples: dict[str, list[float]],
    smoke: bool,
) -> list[str]:
    lines = [
        "txgreen core benchmarks" + (" (smoke run: tiny loops, figures are rough)" if smoke else "")
    ]
    lines += header
    lines.append(
        f"loops: {sizes.fast} iterations (a, f, g), {sizes.trip} (b, b', c, d, e, h, m, r); "
        f"{sizes.repeats} timed repeats after a warm-up; per call: median (best)"
    )
    lines.append("")
    medians = {k: statistics.median(v) for k, v in samples.items()}
    width = max(len(labels[k]) for k in samples)
    for key in ORDER:
        if key not in samples:
            continue
        tag = f"{key}."
        lines.append(
            f"  {tag:<3} {labels[key]:<{width}}  {fmt_ns(medians[key])}"
            f"  (best {fmt_ns(min(samples[key])).strip()})"
        )
    lines.append("")
    lines.append("ratios (medians of this run; each with its target):")
    for name, num, den, what, limit in TARGETS:
        ratio = target_ratio(samples, num, den)
        verdict = "PASS" if ratio <= limit else "MISS"
        lines.append(f"  {name + ':':<17} {what:<43} = {ratio:6.3f}  <= {limit:.2f} {verdict}")
    ratio = medians["b"] / medians["m"]
    what = "block_on (b) / bare greenlet round trip (m)"
    lines.append(f"  {'bookkeeping:':<17} {what:<43} = {ratio:6.3f}  (txgreen's own cost)")
    ratio = medians["b'"] / medians["e"]
    what = "block_on (b') / pytest-twisted blockon (e)"
    lines.append(f"  {'for reference:':<17} {what:<43} = {ratio:6.3f}  (same child process)")
    spread = {k: medians[k] / min(v) - 1 for k, v in samples.items()}
    worst = max(spread, key=lambda k: spread[k])
    if spread[worst] > NOISY:
        lines.append("")
        lines.append(
            f"warning: the machine was busy (the median of {worst}. is "
            f"{spread[worst]:.0%} above its best loop): rerun on a quiet machine"
        )
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--smoke", action="store_true", help="a very short pass (for CI)")
    parser.add_argument(
        "--reactor", choices=REACTORS, default="default", help="the Twisted reactor to install"
    )
    parser.add_argument("--repeats", type=int, default=None, help="timed loops per benchmark")
    parser.add_argument("--fast-loops", type=int, default=None, help="iterations for a, f, g")
    parser.add_argument("--trip-loops", type=int, default=None, help="iterations for the others")
    parser.add_argument(
        "--fail-on-miss", action="store_true", help="exit with status 1 if a target is missed"
    )
    parser.add_argument(
        "--instructions",
        action="store_true",
        help="count instructions per iteration of a, b, c, f, m with callgrind instead of timing",
    )
    parser.add_argument("--child", choices=("pytest-twisted", "count"), help=argparse.SUPPRESS)
    parser.add_argument("--count", default=None, help=argparse.SUPPRESS)  # KEY:N, for --child
    args = parser.parse_args(argv)

    def pick(given: int | None, smoke: int, full: int) -> int:
        if given is not None:
            return given
        return smoke if args.smoke else full

    sizes = Sizes(
        fast=pick(args.fast_loops, SMOKE_FAST_LOOPS, FAST_LOOPS),
        trip=pick(args.trip_loops, SMOKE_TRIP_LOOPS, TRIP_LOOPS),
        repeats=pick(args.repeats, SMOKE_REPEATS, REPEATS),
    )
    if min(sizes.fast, sizes.trip, sizes.repeats) < 1:
        parser.error("loop sizes and repeats must be >= 1")

    if args.child == "count":
        key, n = args.count.split(":")
        child_count(args.reactor, key, int(n))
        return 0
    if args.child:
        json.dump(child_pytest_twisted(args.reactor, sizes), sys.stdout)
        return 0
    labels = {b.key: b.label for b in MAIN_BENCHES + CHILD_BENCHES}
    if args.instructions:
        if shutil.which("valgrind") is None:
            print(
                "bench_core.py --instructions needs valgrind: run `make services` (it installs "
                "it with apt-get), or install it yourself (Debian/Ubuntu: apt-get install "
                "valgrind)",
                file=sys.stderr,
            )
            return 2
        per = measure_instructions(args.reactor, args.smoke)
        reactor = install_reactor(args.reactor)
        print(
            "\n".join(report_instructions(versions(args.reactor, reactor), labels, per, args.smoke))
        )
        return 0

    # The child runs first, so that it does not compete with this process for the CPU.
    child = run_child(args.reactor, sizes)
    reactor = install_reactor(args.reactor)
    if child["reactor"] != reactor_label(reactor):
        raise RuntimeError(f"the child ran {child['reactor']}, not {reactor_label(reactor)}")

    import txgreen

    def runner(bench: Bench, n: int) -> float:
        return bench.fn(n)

    samples = txgreen.run(measure, MAIN_BENCHES, sizes, runner)
    samples.update(child["samples"])
    lines = report(versions(args.reactor, reactor), sizes, labels, samples, args.smoke)
    print("\n".join(lines))
    missed = any(target_ratio(samples, num, den) > limit for _, num, den, _, limit in TARGETS)
    return 1 if missed and args.fail_on_miss else 0


if __name__ == "__main__":
    sys.exit(main())
