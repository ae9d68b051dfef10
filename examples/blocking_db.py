"""A TCP server whose requests query SQLite, a blocking library, without stalling the reactor.

Run: ``.venv/bin/python examples/blocking_db.py``.  It starts a line-based server on a free
loopback port, runs many sync-style clients against it at once, checks every answer, prints a
short report and exits.

- The database: SQLite is a blocking C library, so every query runs in a dedicated
  ``ThreadPool`` of ``DB_THREADS`` threads (one connection per thread) through
  ``txgreen.call_in_thread(..., pool=db_pool)``.  Each query also sleeps ``LATENCY`` seconds in
  its thread, standing in for a database server on the network.
- The server: a plain Twisted ``LineReceiver``; each request line is handled by a sync-style
  function decorated with ``@txgreen.green`` (it runs in its own green thread and returns a
  Deferred), which makes two queries one after the other, as straight-line code.
- The clients: green threads, each writing a request and waiting (``block_on``) for the answer
  line, ``REQUESTS`` times.
- A heartbeat green thread ticks every 10 ms the whole time: the largest gap between its ticks
  shows that the reactor never waited for the database.
"""

from __future__ import annotations

import os
import sqlite3
import tempfile
import threading
import time
from typing import Any

from twisted.internet import defer, endpoints, protocol
from twisted.internet import reactor as _reactor
from twisted.protocols.basic import LineReceiver
from twisted.python.threadpool import ThreadPool

import txgreen

reactor: Any = _reactor  # the installed reactor, untyped

CLIENTS = 20
REQUESTS = 5  # per client; each request makes two queries
DB_THREADS = 4
LATENCY = 0.01  # seconds of simulated network latency per query
PRODUCTS = 500


def price_of(i: int) -> int:
    """The price of product ``i`` in cents (deterministic test data)."""
    return (i * 37) % 1000 + 100


def create_database(path: str) -> None:
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE products (id INTEGER PRIMARY KEY, name TEXT, cents INTEGER)")
        conn.executemany(
            "INSERT INTO products VALUES (?, ?, ?)",
            [(i, f"product-{i:03d}", price_of(i)) for i in range(PRODUCTS)],
        )
    conn.close()


class Database:
    """SQLite behind a dedicated thread pool: one connection per worker thread."""

    def __init__(self, path: str, pool: ThreadPool) -> None:
        self.path = path
        self.pool = pool
        self.local = threading.local()
        self.lock = threading.Lock()
        self.running = 0
        self.peak = 0
        self.queries = 0

    def _run(self, sql: str, args: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        """In a pool thread: the blocking part."""
        with self.lock:
            self.running += 1
            self.peak = max(self.peak, self.running)
        try:
            conn = getattr(self.local, "conn", None)
            if conn is None:
                conn = self.local.conn = sqlite3.connect(self.path)
            time.sleep(LATENCY)
            return conn.execute(sql, args).fetchall()
        finally:
            with self.lock:
                self.running -= 1
                self.queries += 1

    def query(self, sql: str, *args: Any) -> list[tuple[Any, ...]]:
        """From a green thread: only this green thread waits for the rows."""
        return txgreen.call_in_thread(self._run, sql, args, pool=self.pool, timeout=10)


@txgreen.green
def handle(db: Database, line: str) -> str:
    """One request, sync style: ``INFO <id>`` -> ``<name> <cents> <how many are cheaper>``."""
    command, _, arg = line.partition(" ")
    if command != "INFO" or not arg.isdigit():
        return f"ERROR unknown request {line!r}"
    rows = db.query("SELECT name, cents FROM products WHERE id = ?", int(arg))
    if not rows:
        return "ERROR no such product"
    name, cents = rows[0]
    ((cheaper,),) = db.query("SELECT COUNT(*) FROM products WHERE cents < ?", cents)
    return f"{name} {cents} {cheaper}"


class QueryServer(LineReceiver):
    delimiter = b"\n"

    def __init__(self, db: Database) -> None:
        self.db = db
        self.answers: defer.Deferred[None] = defer.succeed(None)

    def lineReceived(self, line: bytes) -> None:
        answer = handle(self.db, line.decode())  # runs at once, in its own green thread
        # Answers go out in request order, even if a client sends several lines at once.
        self.answers.addCallback(lambda _: answer).addCallback(self.send)

    def send(self, text: str) -> None:
        self.sendLine(text.encode())  # type: ignore[no-untyped-call]


class LineClient(LineReceiver):
    delimiter = b"\n"

    def __init__(self) -> None:
        self.lines: defer.DeferredQueue[str] = defer.DeferredQueue()
        self.closed: defer.Deferred[None] = defer.Deferred()

    def lineReceived(self, line: bytes) -> None:
        self.lines.put(line.decode())

    def connectionLost(self, reason: Any = None) -> None:
        self.closed.callback(None)

    def ask(self, text: str) -> str:
        """Send one request line and wait (green) for the answer line."""
        self.sendLine(text.encode())  # type: ignore[no-untyped-call]
        return txgreen.block_on(self.lines.get(), timeout=10)


def expected_answer(i: int) -> str:
    cents = price_of(i)
    cheaper = sum(1 for j in range(PRODUCTS) if price_of(j) < cents)
    return f"product-{i:03d} {cents} {cheaper}"


def client(n: int, port: int) -> int:
    endpoint = endpoints.TCP4ClientEndpoint(reactor, "127.0.0.1", port)
    connecting: Any = endpoints.connectProtocol  # untyped in Twisted
    conn: LineClient = txgreen.block_on(connecting(endpoint, LineClient()))
    try:
        for r in range(REQUESTS):
            product = (n * 31 + r * 7) % PRODUCTS
            answer = conn.ask(f"INFO {product}")
            if answer != expected_answer(product):
                raise AssertionError(f"client {n}: {answer!r} != {expected_answer(product)!r}")
        if conn.ask("INFO 99999") != "ERROR no such product":
            raise AssertionError("a missing product was found")
    finally:
        transport: Any = conn.transport
        transport.loseConnection()
    txgreen.block_on(conn.closed, timeout=10)
    return REQUESTS


def heartbeat(gaps: list[float], stop: list[bool]) -> None:
    last = time.monotonic()
    while not stop:
        txgreen.sleep(0.01)
        now = time.monotonic()
        gaps.append(now - last)
        last = now


def main(db: Database) -> list[str]:
    db.pool.start()
    reactor.addSystemEventTrigger("during", "shutdown", db.pool.stop)
    factory = protocol.Factory.forProtocol(lambda: QueryServer(db))
    server_endpoint: Any = endpoints.TCP4ServerEndpoint  # untyped in Twisted
    port = txgreen.block_on(server_endpoint(reactor, 0, interface="127.0.0.1").listen(factory))
    gaps: list[float] = []
    stop: list[bool] = []
    beat = txgreen.spawn(heartbeat, gaps, stop)
    started = time.monotonic()
    clients = [txgreen.spawn(client, n, port.getHost().port) for n in range(CLIENTS)]
    answered = sum(c.get() for c in clients)
    elapsed = time.monotonic() - started
    stop.append(True)
    beat.get()
    txgreen.block_on(port.stopListening())
    queries = 2 * answered + CLIENTS  # two per request, plus one per missing-product check
    assert db.queries == queries, (db.queries, queries)
    return [
        f"blocking_db: SQLite behind a dedicated pool of {DB_THREADS} threads, "
        f"{LATENCY * 1000:.0f} ms of simulated latency per query",
        f"served {CLIENTS} clients x {REQUESTS} requests ({queries} queries) in {elapsed:.2f} s; "
        "every answer checked",
        f"queries at once: peak {db.peak} (pool size {DB_THREADS}); one at a time they would "
        f"take {queries * LATENCY:.2f} s",
        f"reactor heartbeat: largest gap between 10 ms ticks {max(gaps) * 1000:.0f} ms",
    ]


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "shop.sqlite")
        create_database(path)
        db = Database(path, ThreadPool(0, DB_THREADS, "sqlite"))
        for line in txgreen.run(main, db):
            print(line)
