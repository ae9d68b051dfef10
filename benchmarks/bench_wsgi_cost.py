"""Where a WSGI request's cost goes: CPU instructions per answer, counted by callgrind.

Run: ``.venv/bin/python benchmarks/bench_wsgi_cost.py`` (about 80 s: every server runs under
valgrind, which is some 50 times slower; ``--smoke`` for a quick check of the machinery, two
servers, 1 s of load each; ``--cpu 8`` adds the user CPU time per answer of the same four
servers without valgrind, 8 interleaved rounds of 3 s, about 2.5 minutes more).  Needs
``valgrind`` (Debian/Ubuntu: ``apt-get install valgrind``) and ``wrk``.

``bench_wsgi_wrk.py`` measures answers per second and CPU time; on a shared 2-core machine
those move by 10-30 % from one round to the next.  Instruction counts do not: callgrind counts
the instructions the server process executes in user space (the kernel's share, sockets and
epoll, is the same for every server here), whatever else the machine is doing.  Four servers,
each answering ``hello, world`` to ``wrk -t1 -c50`` keep-alive GETs, each one step more than
the one before:

a. native: a twisted.web ``Resource`` on a plain ``Site`` (the floor);
b. inline: txgreen's container's PEP 3333 work (environ, ``start_response`` and its checks,
   headers, the body, the response's bookkeeping) done inside ``render`` in the reactor, with
   no green thread: what WSGI itself costs on twisted.web (an ablation, not a usable server:
   an application could not block);
c. WSGIResource: the same plus a green thread per request (reused), on a plain ``Site``;
d. serve_wsgi: the same plus ``GreenSite``'s limits (header deadline, size limits) and the
   server's connection tracking: what ``txgreen serve`` runs.

Instrumentation is switched on (``callgrind_control -i on``) after a warm-up load and off
after the measured one; instructions per answer = instructions counted / answers wrk counted.
"""

from __future__ import annotations

import argparse
import itertools
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchutil import (
    HELLO_BODY,
    WRK_COUNT,
    ChildFailed,
    cpu_seconds,
    hello_app,
    hello_headers,
    native_hello,
    no_access_log,
    rotated,
    start_announcing_child,
    stop_server,
    version,
)

HERE = Path(__file__).resolve().parent
CONNS = 50

SERVERS = {
    "native": "a. native twisted.web Resource",
    "inline": "b. + WSGI, inline (no green thread)",
    "resource": "c. + green thread (WSGIResource)",
    "serve": "d. + GreenSite limits (serve_wsgi)",
}
SMOKE = ["native", "serve"]

MISSING = (
    "bench_wsgi_cost.py needs {what}: install it with `sudo apt-get install {what}` "
    "(Debian/Ubuntu; `make services` does it)"
)


# -- the servers, each run as a child: print "port N", serve until SIGTERM ----------------------


def serve(kind: str) -> None:
    from twisted.internet import epollreactor

    epollreactor.install()  # type: ignore[no-untyped-call]
    from twisted.internet import reactor as _reactor
    from twisted.web.server import Site

    import txgreen

    reactor: Any = _reactor

    def listen(site: Any) -> None:
        site.log = no_access_log
        port = reactor.listenTCP(0, site, backlog=1024, interface="127.0.0.1")
        print(f"port {port.getHost().port}", flush=True)

    if kind == "native":
        listen(Site(native_hello(HELLO_BODY, hello_headers())))  # type: ignore[no-untyped-call]
        reactor.run()
        return
    if kind == "serve":
        txgreen.run(
            txgreen.serve_wsgi,
            "tcp:0:interface=127.0.0.1:backlog=1024",
            hello_app,
            on_listen=lambda server: print(f"port {server.port}", flush=True),
        )
        return
    if kind == "inline":
        from twisted.web.resource import Resource
        from twisted.web.server import NOT_DONE_YET

        from txgreen.web._container import _Response

        class Inline(Resource):
            isLeaf = True

            def render(self, request: Any) -> Any:
                response = _Response(hello_app, request)
                request.registerProducer(response, True)
                response.run()
                return NOT_DONE_YET

        listen(Site(Inline()))  # type: ignore[no-untyped-call]
        reactor.run()
        return

    def main() -> None:
        listen(Site(txgreen.WSGIResource(hello_app)))  # type: ignore[no-untyped-call]
        txgreen.Event().wait()

    txgreen.run(main)


# -- the parent ----------------------------------------------------------------------------------


TOTALS = re.compile(r"^totals: (\d+)", re.MULTILINE)


def wrk(port: int, seconds: int) -> int:
    cmd = ["wrk", "-t1", f"-c{CONNS}", f"-d{seconds}s", "--timeout", "30s"]
    out = subprocess.run(
        [*cmd, f"http://127.0.0.1:{port}/"],
        capture_output=True,
        text=True,
        timeout=seconds + 120,
        check=False,
    )
    count = WRK_COUNT.search(out.stdout)
    if out.returncode != 0 or count is None or "Non-2xx" in out.stdout:
        raise ChildFailed(f"wrk failed ({out.returncode}): {out.stdout}{out.stderr}")
    return int(count[1])


def measure(kind: str, seconds: int, workdir: Path) -> tuple[int, int]:
    """Instructions counted and answers given while ``kind`` served ``seconds`` of load."""
    outfile = workdir / f"callgrind.{kind}.out"
    cmd = [
        *("valgrind", "--tool=callgrind", "--instr-atstart=no"),
        f"--callgrind-out-file={outfile}",
        *(sys.executable, str(Path(__file__).resolve()), "--serve", kind),
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if not line.startswith("port "):
            raise ChildFailed(f"the {kind} server did not start (it printed {line!r})")
        port = int(line.split()[1])
        wrk(port, max(1, seconds // 2))  # warm-up, not counted
        control = ["callgrind_control", "-i"]
        subprocess.run([*control, "on", str(proc.pid)], capture_output=True, check=True)
        answers = wrk(port, seconds)
        subprocess.run([*control, "off", str(proc.pid)], capture_output=True, check=True)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=120)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    # callgrind writes its counts when the process ends (a file per dump).
    total = 0
    for path in workdir.glob(f"callgrind.{kind}.out*"):
        match = TOTALS.search(path.read_text(errors="replace"))
        if match is not None:
            total += int(match[1])
    if not total:
        raise ChildFailed(f"callgrind wrote no counts for {kind}")
    return total, answers


def measure_cpu(kind: str, seconds: int) -> float:
    """User CPU µs per answer of ``kind``, without valgrind, over ``seconds`` of load."""
    proc, port = start_announcing_child(
        [sys.executable, str(Path(__file__).resolve()), "--serve", kind], kind
    )
    try:
        wrk(port, 1)  # warm-up
        before = cpu_seconds(proc.pid, user_only=True)
        answers = wrk(port, seconds)
        after = cpu_seconds(proc.pid, user_only=True)
    finally:
        stop_server(proc)
    if before is None or after is None:
        raise ChildFailed(f"no CPU time for the {kind} server (Linux /proc is needed)")
    return (after - before) / answers * 1e6


def cpu_report(rounds: int, seconds: int) -> None:
    """The same four servers without valgrind: user CPU time per answer (median of
    ``rounds`` interleaved rounds), to set beside the instruction counts."""
    kinds = list(SERVERS)
    figures: dict[str, list[float]] = {kind: [] for kind in kinds}
    for turn in range(rounds):
        for kind in rotated(kinds, turn):
            figures[kind].append(measure_cpu(kind, seconds))
    print()
    print(
        f"user CPU per answer without valgrind (median of {rounds} interleaved rounds of "
        f"{seconds} s):"
    )
    native = statistics.median(figures["native"])
    for kind in kinds:
        median = statistics.median(figures[kind])
        print(f"  {SERVERS[kind]:<40} {median:>8.1f} µs {median / native:>9.3f}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--smoke", action="store_true", help="two servers, 1 s of load each")
    parser.add_argument("--seconds", type=int, default=10, help="seconds of measured load")
    parser.add_argument(
        "--cpu",
        type=int,
        default=0,
        metavar="ROUNDS",
        help="also measure user CPU time per answer without valgrind, over ROUNDS rounds",
    )
    parser.add_argument("--serve", metavar="KIND", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve is not None:
        serve(args.serve)
        return 0
    for tool in ("valgrind", "wrk"):
        if shutil.which(tool) is None:
            print(MISSING.format(what=tool), file=sys.stderr)
            return 2
    kinds = SMOKE if args.smoke else list(SERVERS)
    seconds = 1 if args.smoke else args.seconds
    started = time.monotonic()
    title = "txgreen WSGI cost per request: instructions per answer (callgrind), hello world"
    if args.smoke:
        title += " (smoke run: two servers, 1 s of load, figures are rough)"
    print(title)
    print(
        f"Python {sys.version.split()[0]}, Twisted {version('twisted')}, greenlet "
        f"{version('greenlet')}, txgreen {version('txgreen')}; wrk -t1 -c{CONNS}, {seconds} s "
        f"counted after a warm-up; user-space instructions of the server process"
    )
    print()
    print(f"  {'server':<40} {'answers':>8} {'instr/answer':>13} {'x native':>9}")
    per_answer: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for kind in kinds:
            total, answers = measure(kind, seconds, Path(tmp))
            per_answer[kind] = total / answers
            ratio = per_answer[kind] / per_answer["native"]
            print(f"  {SERVERS[kind]:<40} {answers:>8,} {per_answer[kind]:>13,.0f} {ratio:>9.3f}")
    print()
    if not args.smoke:
        print("what each step adds:")
        for before, after in itertools.pairwise(kinds):
            extra = per_answer[after] - per_answer[before]
            print(f"  {SERVERS[after][3:]:<40} {extra:>+13,.0f} instructions per answer")
    if args.cpu and not args.smoke:
        cpu_report(args.cpu, 3)
    print(f"total time: {time.monotonic() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, os.fspath(HERE))
    sys.exit(main())
