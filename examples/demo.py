"""txgreen demo: sync-style clients, each a green thread, talking to a Twisted server at once.

The server is plain Twisted: a ``LineReceiver`` that answers every line upper-cased, but only
after REPLY_DELAY seconds (a "slow request").  The clients are ordinary sequential functions:
connect, ask, read the answer, ask again, close.  Each runs in its own green thread, and each
blocking step is ``txgreen.block_on`` on a Deferred, so while one client waits for its answer the
reactor serves the others.  Five clients making two slow requests each finish in about the time
of two requests, not ten.

txgreen has no stream API yet, so the bridge between the Twisted protocol and sync-style code is
written out here: ``LineClient`` hands out one Deferred per request line, and ``Connection``
wraps it in plain methods that block the calling green thread only.

Run it with ``make demo`` (or ``.venv/bin/python examples/demo.py``).
"""

from __future__ import annotations

import sys
import time
from collections import deque
from typing import Any

from twisted.internet import reactor as _reactor
from twisted.internet.base import DelayedCall
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.internet.protocol import Factory, connectionDone
from twisted.protocols.basic import LineReceiver
from twisted.python.failure import Failure

import txgreen

# Twisted's zope interfaces need the mypy-zope plugin to type-check, so this example handles
# the reactor, endpoints and transports as Any.
reactor: Any = _reactor

CLIENTS = 5
REQUESTS = 2  # per client, one after the other
REPLY_DELAY = 0.25  # seconds the server takes to answer a line
HOST = "127.0.0.1"

_START = time.monotonic()


def log(who: str, what: str) -> None:
    print(f"[{time.monotonic() - _START:6.3f}s] {who:<9} {what}", flush=True)


# -- the server: plain Twisted, no green threads ---------------------------------------------


class ServerStats:
    def __init__(self) -> None:
        self.in_flight = 0
        self.max_in_flight = 0


class SlowUpperServer(LineReceiver):
    """Answers each line upper-cased, REPLY_DELAY seconds after it arrives."""

    delimiter = b"\n"

    def __init__(self, stats: ServerStats) -> None:
        self.stats = stats
        self.timers: set[DelayedCall] = set()

    def lineReceived(self, line: bytes) -> None:
        stats = self.stats
        stats.in_flight += 1
        stats.max_in_flight = max(stats.max_in_flight, stats.in_flight)
        timer: DelayedCall = reactor.callLater(REPLY_DELAY, self.answer, line)
        self.timers.add(timer)

    def answer(self, line: bytes) -> None:
        self.timers = {t for t in self.timers if t.active()}
        self.stats.in_flight -= 1
        self.sendLine(line.upper())  # type: ignore[no-untyped-call]

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        for timer in self.timers:
            if timer.active():
                timer.cancel()
        self.timers.clear()


class SlowUpperFactory(Factory):
    def __init__(self, stats: ServerStats) -> None:
        self.stats = stats

    def buildProtocol(self, addr: Any) -> SlowUpperServer:
        return SlowUpperServer(self.stats)


# -- the client side: a Deferred-per-line protocol, and the sync-style wrapper ---------------


class LineClient(LineReceiver):
    """Sends lines; each ``request`` returns a Deferred that fires with the answer line."""

    delimiter = b"\n"

    def __init__(self) -> None:
        self.waiting: deque[Deferred[bytes]] = deque()
        self.closed: Deferred[None] = Deferred()

    def request(self, line: bytes) -> Deferred[bytes]:
        d: Deferred[bytes] = Deferred()
        self.waiting.append(d)
        self.sendLine(line)  # type: ignore[no-untyped-call]
        return d

    def lineReceived(self, line: bytes) -> None:
        self.waiting.popleft().callback(line)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        waiting, self.waiting = self.waiting, deque()
        for d in waiting:
            d.errback(reason)
        self.closed.callback(None)


class Connection:
    """A blocking line connection for green threads (each call blocks its caller only)."""

    def __init__(self, host: str, port: int) -> None:
        endpoint: Any = TCP4ClientEndpoint(reactor, host, port)
        # connect() returns a Deferred that fires with the protocol once the connection is up.
        self._protocol: LineClient = txgreen.block_on(
            endpoint.connect(Factory.forProtocol(LineClient))
        )

    def ask(self, text: str) -> str:
        answer: bytes = txgreen.block_on(self._protocol.request(text.encode()))
        return answer.decode()

    def close(self) -> None:
        transport: Any = self._protocol.transport
        transport.loseConnection()
        txgreen.block_on(self._protocol.closed)


def client(number: int, port: int) -> list[str]:
    """One client: plain sequential code, no callbacks."""
    who = f"client {number}"
    conn = Connection(HOST, port)
    answers = []
    for i in range(1, REQUESTS + 1):
        question = f"request {i} from client {number}"
        log(who, f"-> {question!r}")
        answer = conn.ask(question)
        log(who, f"<- {answer!r}")
        answers.append(answer)
    conn.close()
    return answers


def heartbeat(ticks: list[float]) -> None:
    """A green thread that ticks every 0.05 s, to show the reactor never stalls."""
    while True:
        txgreen.sleep(0.05)
        ticks.append(time.monotonic())


def main() -> int:
    stats = ServerStats()
    listening = reactor.listenTCP(0, SlowUpperFactory(stats), interface=HOST)
    port: int = listening.getHost().port
    log("server", f"listening on {HOST}:{port}; answers each line upper-cased {REPLY_DELAY}s later")

    ticks: list[float] = []
    beat = txgreen.spawn(heartbeat, ticks)
    started = time.monotonic()
    threads = [txgreen.spawn(client, n, port) for n in range(1, CLIENTS + 1)]
    results = [thread.get() for thread in threads]
    elapsed = time.monotonic() - started
    beat.kill()
    txgreen.block_on(listening.stopListening())

    for n, answers in enumerate(results, 1):
        expected = [f"REQUEST {i} FROM CLIENT {n}" for i in range(1, REQUESTS + 1)]
        if answers != expected:
            raise AssertionError(f"client {n} got {answers!r}, expected {expected!r}")
    serial = CLIENTS * REQUESTS * REPLY_DELAY
    log(
        "main",
        f"{CLIENTS} clients x {REQUESTS} requests answered in {elapsed:.2f}s "
        f"(one after another: {serial:.2f}s)",
    )
    log(
        "main",
        f"the server had up to {stats.max_in_flight} requests in flight at once; "
        f"the heartbeat ticked {len(ticks)} times meanwhile",
    )
    return 0


if __name__ == "__main__":
    sys.exit(txgreen.run(main))
