"""txgreen demo: sync-style code, each piece a green thread, all on Twisted's reactor at once.

- The server is plain Twisted: a ``LineReceiver`` that answers each line upper-cased, but only
  REPLY_DELAY seconds later (a "slow request").
- Five clients are ordinary sequential functions written with txgreen's streams: connect, write
  a line, ``readline()`` the answer, again, close.  Each runs in its own green thread; while one
  waits for its answer, the reactor serves the others, so five clients making two slow requests
  each finish in about the time of two requests, not ten.
- One more green thread calls a Deferred-returning Twisted API (the reactor's resolver) with
  ``txgreen.block_on``, another runs blocking code (a slow key derivation) in Twisted's thread
  pool with ``txgreen.call_in_thread``, and an impatient client gives up on a slow answer with
  ``txgreen.Timeout``.
- A heartbeat ticks every 0.05 s throughout: nothing ever stalls the reactor.

Run it with ``make demo`` (or ``.venv/bin/python examples/demo.py``).
"""

from __future__ import annotations

import hashlib
import sys
import time
from typing import Any

from twisted.internet import reactor as _reactor
from twisted.internet.protocol import Factory
from twisted.protocols.basic import LineReceiver

import txgreen

reactor: Any = _reactor  # Twisted's interfaces need the mypy-zope plugin to type-check

CLIENTS = 5
REQUESTS = 2  # per client, one after the other
REPLY_DELAY = 0.25  # seconds the server takes to answer a line
HOST = "127.0.0.1"

_START = time.monotonic()


def log(who: str, what: str) -> None:
    print(f"[{time.monotonic() - _START:6.3f}s] {who:<9} {what}", flush=True)


class SlowUpper(LineReceiver):
    """The server, plain Twisted: each line answered upper-cased REPLY_DELAY seconds later."""

    delimiter = b"\n"
    in_flight = 0
    most_in_flight = 0

    def lineReceived(self, line: bytes) -> None:
        SlowUpper.in_flight += 1
        SlowUpper.most_in_flight = max(SlowUpper.most_in_flight, SlowUpper.in_flight)
        reactor.callLater(REPLY_DELAY, self.answer, line)

    def answer(self, line: bytes) -> None:
        SlowUpper.in_flight -= 1
        if self.transport is not None and self.connected:
            self.sendLine(line.upper())  # type: ignore[no-untyped-call]


def client(number: int, port: int) -> list[str]:
    """One client: plain sequential code on a txgreen stream, no callbacks."""
    who = f"client {number}"
    answers = []
    with txgreen.connect(f"tcp:{HOST}:{port}") as stream:
        for i in range(1, REQUESTS + 1):
            question = f"request {i} from client {number}"
            log(who, f"-> {question!r}")
            stream.write(question.encode() + b"\n")
            answer = stream.readline().decode().rstrip("\n")
            log(who, f"<- {answer!r}")
            answers.append(answer)
    return answers


def impatient(port: int) -> None:
    """Gives up on a slow answer: every blocking call inside the block shares its deadline."""
    with txgreen.connect(f"tcp:{HOST}:{port}") as stream:
        try:
            with txgreen.Timeout(0.1):
                stream.write(b"are you there?\n")
                stream.readline()
        except txgreen.Timeout:
            log("impatient", "gave up after 0.1s (Timeout)")


def resolve() -> None:
    """block_on: a Deferred-returning Twisted API, called as if it were a plain function."""
    address = txgreen.block_on(reactor.resolve("localhost"))
    log("resolver", f"localhost is {address} (block_on(reactor.resolve(...)))")


def derive_key() -> None:
    """call_in_thread: blocking code in Twisted's thread pool; only this green thread waits."""
    key = txgreen.call_in_thread(hashlib.pbkdf2_hmac, "sha256", b"secret", b"salt", 200_000)
    log("thread", f"derived a key in the thread pool: {key.hex()[:16]}... (call_in_thread)")


def heartbeat(ticks: list[float]) -> None:
    while True:
        txgreen.sleep(0.05)
        ticks.append(time.monotonic())


def main() -> int:
    listening = reactor.listenTCP(0, Factory.forProtocol(SlowUpper), interface=HOST)
    port: int = listening.getHost().port
    log("server", f"listening on {HOST}:{port}; answers each line upper-cased {REPLY_DELAY}s later")

    ticks: list[float] = []
    beat = txgreen.spawn(heartbeat, ticks)
    started = time.monotonic()
    helpers = [txgreen.spawn(resolve), txgreen.spawn(derive_key), txgreen.spawn(impatient, port)]
    clients = [txgreen.spawn(client, n, port) for n in range(1, CLIENTS + 1)]
    results = [thread.get() for thread in clients]
    elapsed = time.monotonic() - started
    txgreen.joinall(helpers, raise_error=True)
    beat.kill()
    txgreen.block_on(listening.stopListening())

    for n, answers in enumerate(results, 1):
        expected = [f"REQUEST {i} FROM CLIENT {n}" for i in range(1, REQUESTS + 1)]
        if answers != expected:
            raise RuntimeError(f"client {n} got {answers!r}, expected {expected!r}")
    serial = CLIENTS * REQUESTS * REPLY_DELAY
    log(
        "main",
        f"{CLIENTS} clients x {REQUESTS} requests answered in {elapsed:.2f}s "
        f"(one after another: {serial:.2f}s)",
    )
    log(
        "main",
        f"the server had up to {SlowUpper.most_in_flight} requests in flight at once; "
        f"the heartbeat ticked {len(ticks)} times meanwhile",
    )
    return 0


if __name__ == "__main__":
    sys.exit(txgreen.run(main))
