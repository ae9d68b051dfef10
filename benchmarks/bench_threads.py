"""Cost of one trip between green code and an OS thread, next to its Twisted/asyncio/crochet peers.

Run ``.venv/bin/python benchmarks/bench_threads.py`` (``--smoke`` for a pass of a second or
two).  One run measures, on Twisted's default reactor, the round trip of a no-op function:

  a. ``txgreen.call_in_thread(noop)`` from a green thread (the reactor's thread pool);
  b. ``block_on(deferToThreadPool(reactor, pool, noop))`` from a green thread: the same trip
     with plain Twisted and ``block_on``, without the helper;
  c. ``await asyncio.to_thread(noop)`` in a coroutine on an asyncio event loop (its default
     executor);
  d. ``txgreen.call_in_green(noop)`` from an OS thread: the mirror trip, thread -> green thread ->
     thread;
  e. crochet's ``@wait_for`` from an OS thread: thread -> reactor (run by crochet in its own
     thread) -> thread, the peer of d.;
  f. crochet's ``@run_in_reactor`` + ``EventualResult.wait()`` from an OS thread.

Each figure is the median, over ``--repeats`` timed loops, of loop time / calls per loop (best
loop in parentheses); every benchmark first runs a tenth of a loop untimed.  a., b. and d. run
in this process under ``txgreen.run`` with their repeats interleaved (a, b, d, a, b, d, ...);
c. runs in this process after the reactor has stopped, on a fresh asyncio loop; e. and f. run
in a child process, because crochet runs the reactor in a thread of its own and a reactor
cannot be restarted.  Without crochet installed, e. and f. are skipped with a note.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from typing import Any

from benchutil import versions_line

LOOPS = 5_000
REPEATS = 7
SMOKE_LOOPS = 200
SMOKE_REPEATS = 3


def _noop() -> None:
    return None


def crochet_installed() -> bool:
    try:
        import crochet  # noqa: F401
    except ImportError:
        return False
    return True


# -- the benchmarks: each takes a loop size and returns the loop's time in seconds ------------


def noop_calls(call: Callable[[Callable[[], None]], object], n: int) -> float:
    """Seconds for ``n`` calls of ``call(_noop)``, one after the other."""
    t0 = time.perf_counter()
    for _ in range(n):
        call(_noop)
    return time.perf_counter() - t0


def bench_call_in_thread(n: int) -> float:
    """a. call_in_thread round trip from a green thread."""
    import txgreen

    return noop_calls(txgreen.call_in_thread, n)


def bench_defer_to_thread_pool(n: int) -> float:
    """b. deferToThreadPool + block_on from a green thread (same pool as a.)."""
    from twisted.internet import reactor
    from twisted.internet.threads import deferToThreadPool

    import txgreen

    r: Any = reactor
    pool = r.getThreadPool()
    block_on = txgreen.block_on
    t0 = time.perf_counter()
    for _ in range(n):
        block_on(deferToThreadPool(r, pool, _noop))
    return time.perf_counter() - t0


def bench_call_in_green(n: int) -> float:
    """d. call_in_green round trip from an OS thread (a reactor pool thread runs the loop)."""
    import txgreen

    return txgreen.call_in_thread(noop_calls, txgreen.call_in_green, n)


async def _to_thread_loop(n: int) -> float:
    to_thread = asyncio.to_thread
    t0 = time.perf_counter()
    for _ in range(n):
        await to_thread(_noop)
    return time.perf_counter() - t0


# -- running -----------------------------------------------------------------------------------


def interleaved(
    benches: Mapping[str, Callable[[int], float]], loops: int, repeats: int
) -> dict[str, list[float]]:
    """Warm each benchmark up (a tenth of a loop), then time ``repeats`` rounds of one loop of
    each, in turn; seconds per call."""
    for fn in benches.values():
        fn(max(loops // 10, 1))
    out: dict[str, list[float]] = {k: [] for k in benches}
    for _ in range(repeats):
        for key, fn in benches.items():
            out[key].append(fn(loops) / loops)
    return out


def run_txgreen(loops: int, repeats: int) -> dict[str, list[float]]:
    """a., b. and d. under txgreen.run, repeats interleaved."""
    import txgreen

    benches = {"a": bench_call_in_thread, "b": bench_defer_to_thread_pool, "d": bench_call_in_green}

    return txgreen.run(interleaved, benches, loops, repeats)


def run_asyncio(loops: int, repeats: int) -> list[float]:
    """c. on a fresh asyncio event loop."""

    async def main() -> list[float]:
        await _to_thread_loop(max(loops // 10, 1))
        return [await _to_thread_loop(loops) / loops for _ in range(repeats)]

    return asyncio.run(main())


def crochet_child(loops: int, repeats: int) -> dict[str, list[float]]:
    """e. and f. (in the child process): crochet runs the reactor in its own thread."""
    import crochet

    crochet.setup()

    @crochet.wait_for(timeout=10)
    def noop_wait_for() -> None:
        return None

    @crochet.run_in_reactor
    def noop_run_in_reactor() -> None:
        return None

    def loop_wait_for(n: int) -> float:
        t0 = time.perf_counter()
        for _ in range(n):
            noop_wait_for()
        return time.perf_counter() - t0

    def loop_run_in_reactor(n: int) -> float:
        t0 = time.perf_counter()
        for _ in range(n):
            noop_run_in_reactor().wait(10)
        return time.perf_counter() - t0

    return interleaved({"e": loop_wait_for, "f": loop_run_in_reactor}, loops, repeats)


def run_crochet(loops: int, repeats: int) -> dict[str, list[float]] | None:
    if not crochet_installed():
        return None
    proc = subprocess.run(
        [sys.executable, __file__, "--crochet-child", str(loops), str(repeats)],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    result: dict[str, list[float]] = json.loads(proc.stdout.splitlines()[-1])
    return result


# -- reporting ---------------------------------------------------------------------------------

LABELS = {
    "a": "txgreen.call_in_thread(noop), green thread",
    "b": "block_on(deferToThreadPool(noop)), green thread",
    "c": "await asyncio.to_thread(noop), asyncio loop",
    "d": "txgreen.call_in_green(noop), from an OS thread",
    "e": "crochet @wait_for(noop), from an OS thread",
    "f": "crochet @run_in_reactor(noop).wait(), OS thread",
}
RATIOS = (
    ("call_in_thread vs plain Twisted", "a", "b"),
    ("call_in_thread vs asyncio.to_thread", "a", "c"),
    ("call_in_green vs crochet @wait_for", "d", "e"),
)


def fmt(seconds: float) -> str:
    us = seconds * 1e6
    return f"{us:.1f} µs" if us >= 1 else f"{seconds * 1e9:.0f} ns"


def report(results: dict[str, list[float]], loops: int, repeats: int, smoke: bool) -> list[str]:
    from twisted.internet import reactor

    cls = type(reactor)
    title = "txgreen thread benchmarks"
    lines = [
        title + (" (smoke run: tiny loops, figures are rough)" if smoke else ""),
        versions_line("crochet"),
        f"reactor: {cls.__module__}.{cls.__qualname__}; {platform.system()} "
        f"{platform.machine()}, {os.cpu_count()} CPUs",
        f"loops: {loops} calls per loop, {repeats} repeats; median per call (best loop)",
        "",
    ]
    medians: dict[str, float] = {}
    for key, label in LABELS.items():
        if key not in results:
            lines.append(f"  {key}. {label:<50} skipped: crochet is not installed")
            continue
        per_call = results[key]
        medians[key] = statistics.median(per_call)
        lines.append(f"  {key}. {label:<50} {fmt(medians[key]):>9}  (best {fmt(min(per_call))})")
    lines.append("")
    lines.append("ratios (< 1: txgreen is faster):")
    for name, num, den in RATIOS:
        what = f"{name} ({num}/{den}):"
        if num in medians and den in medians:
            lines.append(f"  {what:<46} {medians[num] / medians[den]:.3f}")
        else:
            lines.append(f"  {what:<46} skipped: crochet is not installed")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--smoke", action="store_true", help="tiny loops: a check that it runs")
    parser.add_argument("--loops", type=int, default=None, help=f"calls per loop ({LOOPS})")
    parser.add_argument("--repeats", type=int, default=None, help=f"timed loops ({REPEATS})")
    parser.add_argument("--crochet-child", nargs=2, type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.crochet_child:
        print(json.dumps(crochet_child(*args.crochet_child)))
        return 0
    loops = args.loops or (SMOKE_LOOPS if args.smoke else LOOPS)
    repeats = args.repeats or (SMOKE_REPEATS if args.smoke else REPEATS)
    # The child first, on its own, so that the processes never compete for the CPU.
    crochet_results = run_crochet(loops, repeats)
    results = run_txgreen(loops, repeats)
    results["c"] = run_asyncio(loops, repeats)
    if crochet_results is not None:
        results.update(crochet_results)
    for line in report(results, loops, repeats, args.smoke):
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
