"""Programs whose shutdown used to hang or misbehave, one per MODE, on the reactor named first.

Usage: ``shutdown_ends.py REACTOR MODE``.  Each prints ``ready`` (the test then acts: a signal,
a connection attempt) and what happened on the way out.  MODE is

- ``job``: ``main`` waits in ``call_in_thread`` for a 60 s job on the reactor's pool;
- ``os-threads``: a ``deferToThread`` worker that used ``block_on`` and a non-daemon
  ``ThreadQueue`` producer thread are both busy for 60 s while ``main`` waits;
- ``busy``: a green thread runs ``while True: pass`` while ``main`` and a helper are blocked;
- ``green-pending``: threads started by ``defer_to_green`` and ``@green`` are blocked when
  ``main`` returns (two of their Deferreds have no errback, one has);
- ``worker-before-run``: an OS thread calls ``block_on`` before ``txgreen.run`` starts the
  reactor;
- ``listen`` / ``wsgi``: a ``txgreen.listen`` / ``serve_wsgi`` server, whose shutdown then
  waits 1 s in a "before shutdown" trigger (the test tries to connect during that wait);
- ``callback-queue``: ``callback_queue`` on a connection that has already closed;
- ``handlers``: the SIGINT and SIGTERM handlers while ``main`` runs and after ``run`` returned.
"""

from __future__ import annotations

import sys
import threading
import time
from typing import Any

import reactor_choice

say = reactor_choice.say
blocked = reactor_choice.blocked
say("reactor:", reactor_choice.install(sys.argv[1]))
mode = sys.argv[2]

from twisted.internet import defer, task, threads  # noqa: E402
from twisted.internet import reactor as _reactor  # noqa: E402
from twisted.protocols.basic import LineReceiver  # noqa: E402
from twisted.python.failure import Failure  # noqa: E402

import txgreen  # noqa: E402

reactor: Any = _reactor


def run(main: Any) -> None:
    reactor.addSystemEventTrigger("before", "shutdown", say, "trigger: before shutdown")
    try:
        txgreen.run(main)
    except BaseException as e:
        say("run raised:", type(e).__name__)
        raise
    else:
        say("run returned")


# -- a second signal ends a shutdown that waits for OS threads ----------------------------------


def job() -> None:
    started = threading.Event()

    def work() -> None:
        started.set()
        time.sleep(60)
        say("job ended")

    def main() -> None:
        spawn_ready_when(started.is_set)
        try:
            txgreen.call_in_thread(work)
        except txgreen.ReactorStopped:
            say("main: ReactorStopped")
            raise

    run(main)


def spawn_ready_when(condition: Any) -> None:
    """Print ``ready`` from a green thread once ``condition()`` holds (checked every 10 ms)."""

    def wait() -> None:
        while not condition():
            txgreen.sleep(0.01)
        say("ready")

    txgreen.spawn(wait)


def os_threads() -> None:
    d: defer.Deferred[str] = defer.Deferred()
    q: txgreen.ThreadQueue[int] = txgreen.ThreadQueue()
    busy = threading.Event()

    def worker() -> None:  # a pool job that waits for the reactor, then works on
        txgreen.block_on(d)
        busy.set()
        time.sleep(60)

    def producer() -> None:  # a producer that reads a slow source
        for i in range(3):
            q.put(i)
        time.sleep(60)

    def main() -> None:
        threads.deferToThread(worker)
        threading.Thread(target=producer, name="producer").start()
        reactor.callLater(0, d.callback, "go")
        assert [q.get(), q.get(), q.get()] == [0, 1, 2]
        spawn_ready_when(busy.is_set)
        blocked("main")

    run(main)


# -- Ctrl-C interrupts a busy green thread ------------------------------------------------------


def busy() -> None:
    def spin() -> None:
        say("ready")
        try:
            while True:
                pass
        except KeyboardInterrupt:
            say("busy: KeyboardInterrupt")
            raise

    def main() -> None:
        txgreen.spawn(blocked, "helper")
        txgreen.spawn(spin)
        blocked("main")

    run(main)


# -- green threads started from reactor-side code, blocked at shutdown --------------------------


def green_pending() -> None:
    @txgreen.green
    def responder() -> None:
        blocked("responder")

    kept: list[defer.Deferred[None]] = []

    def report(f: Failure) -> None:
        say("errback got", type(f.value).__name__)

    def main() -> None:
        kept.append(txgreen.defer_to_green(blocked, "defer_to_green"))
        kept.append(responder())
        handled = responder()
        handled.addErrback(report)
        txgreen.sleep(0.01)
        say("ready")

    run(main)
    kept.clear()  # the Deferreds are collected: an unhandled failure would be logged now
    import gc

    gc.collect()


# -- block_on in a worker thread before the reactor runs ---------------------------------------


def worker_before_run() -> None:
    outcome: list[str] = []

    def worker() -> None:
        started = time.monotonic()
        try:
            txgreen.block_on(defer.Deferred())
        except BaseException as e:
            outcome.append(type(e).__name__)
        outcome.append(f"{time.monotonic() - started < 1}")

    t = threading.Thread(target=worker, daemon=True)
    t.start()
    t.join(10)
    say("worker:", *outcome)

    def main() -> str:
        return type(reactor).__name__

    run(main)


# -- the ports close when the shutdown starts ---------------------------------------------------


def slow_shutdown() -> defer.Deferred[None]:
    # Something the shutdown waits for (a drain, a thread job): 1 s.
    return task.deferLater(reactor, 1.0, lambda: None)


def server(kind: str) -> None:
    def handler(stream: txgreen.Stream) -> None:
        stream.write(b"hello\n")
        stream.read()

    def app(environ: Any, start_response: Any) -> list[bytes]:
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"hello\n"]

    def main() -> None:
        reactor.addSystemEventTrigger("before", "shutdown", slow_shutdown)
        if kind == "listen":
            listener = txgreen.listen("tcp:0:interface=127.0.0.1", handler)
            say("port", listener.port)
            say("ready")
            listener.wait()
        else:

            def on_listen(port: Any) -> None:
                say("port", port.getHost().port)
                say("ready")

            txgreen.serve_wsgi("tcp:0:interface=127.0.0.1", app, on_listen=on_listen)

    run(main)


# -- callback_queue on a closed connection -----------------------------------------------------


def callback_queue() -> None:
    def handler(stream: txgreen.Stream) -> None:
        stream.write(b"bye\r\n")  # then the handler returns: the connection closes

    def main() -> None:
        listener = txgreen.listen("tcp:0:interface=127.0.0.1", handler)
        lost: defer.Deferred[None] = defer.Deferred()

        class Client(LineReceiver):
            def lineReceived(self, line: bytes) -> None:
                pass  # what came before the queue was made

            def connectionLost(self, reason: Any = None) -> None:
                lost.callback(None)

        proto = txgreen.connect_protocol(f"tcp:host=127.0.0.1:port={listener.port}", Client)
        txgreen.block_on(lost)
        started = time.monotonic()
        lines = txgreen.callback_queue(proto, "lineReceived")
        say("closed:", lines.closed)
        try:
            with txgreen.Timeout(3):
                say("iterated:", list(lines))
        except txgreen.Timeout:
            say("iterated: Timeout")
        try:
            with txgreen.Timeout(3):
                lines.get()
        except txgreen.CallbackQueueClosed as e:
            say("get raised CallbackQueueClosed:", type(e.reason and e.reason.value).__name__)
        except txgreen.Timeout:
            say("get: Timeout")
        say("at once:", time.monotonic() - started < 1)
        listener.close()

    run(main)


# -- the handlers, while the reactor runs and after a shutdown that no signal started ------------


def handlers() -> None:
    import signal

    def names() -> str:
        got = [signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)]
        return " ".join(getattr(h, "__qualname__", str(h)) for h in got)

    def main() -> None:
        say("running:", names())

    run(main)
    say("after:", names())


if mode == "handlers":
    handlers()
elif mode == "job":
    job()
elif mode == "os-threads":
    os_threads()
elif mode == "busy":
    busy()
elif mode == "green-pending":
    green_pending()
elif mode == "worker-before-run":
    worker_before_run()
elif mode in ("listen", "wsgi"):
    server(mode)
elif mode == "callback-queue":
    callback_queue()
else:
    raise SystemExit(f"unknown mode {mode!r}")
