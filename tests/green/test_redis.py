"""redis-py, unmodified, in green threads against a real ``redis-server`` (issue 11's proof).

The module starts one ``redis-server`` on 127.0.0.1 for its tests (Debian's package; the
Makefile's set-up installs it) and stops it after, checking no process of it is left. Every test
runs with the stdlib patched (``txgreen.patch()``); redis-py's sockets are then green sockets,
and a command waiting for its reply parks only its own green thread.

The concurrency proof: N = 50 clients, each in its own green thread and sharing one connection
pool, each run ``BLPOP`` on an empty list with a 0.2 s timeout (the server answers nil when it
expires); all finish in a fraction of N x 0.2 s while a ticker green thread keeps its period.
"""

from __future__ import annotations

import functools
import itertools
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis
from concurrency_proof import concurrently, patched_for_test
from local_services import free_port, redis_server

import txgreen
from txgreen.green import socket as gsocket

N = 50  # clients in the concurrency proof
DELAY = 0.2  # the BLPOP timeout each of them waits


@pytest.fixture(scope="module")
def port() -> Iterator[int]:
    """The port of this module's redis-server."""
    with redis_server() as server:
        yield server.port


@pytest.fixture(autouse=True)
def patched_stdlib() -> Iterator[None]:
    """Every test runs with the stdlib patched, and unpatched after; the fd registry is empty."""
    with patched_for_test():
        yield


@pytest.fixture
def client(port: int) -> Iterator[redis.Redis]:
    """A client with its own connection pool, on an empty database.

    Its connections are closed when the test body ends (the leak check runs before fixtures
    are torn down), by ``close_after``.
    """
    with redis.Redis(host="127.0.0.1", port=port, socket_timeout=10) as r:
        r.flushdb()
        r.connection_pool.disconnect()
        yield r


def close_after(test: Callable[..., None]) -> Callable[..., None]:
    """Run ``test``, then close the connections of its ``client`` (before the leak check)."""

    @functools.wraps(test)
    def run(client: redis.Redis, **kwargs: Any) -> None:
        try:
            test(client, **kwargs)
        finally:
            client.connection_pool.disconnect()

    return run


@close_after
def test_get_set_on_green_sockets(client: redis.Redis) -> None:
    assert client.set("greeting", "hello")
    assert client.get("greeting") == b"hello"
    assert client.get("missing") is None
    assert client.incr("counter") == 1
    assert client.incrby("counter", 41) == 42
    client.mset({"a": "1", "b": "2"})
    assert client.mget("a", "b", "c") == [b"1", b"2", None]
    assert client.set("short-lived", "x", px=150)
    assert 0 < client.pttl("short-lived") <= 150
    time.sleep(0.2)  # patched: parks this green thread
    assert client.get("short-lived") is None
    # The pool's connection is a green socket.
    connection = client.connection_pool.get_connection()
    try:
        assert isinstance(connection._sock, gsocket.socket)
    finally:
        client.connection_pool.release(connection)


@close_after
def test_server_errors_are_redis_errors(client: redis.Redis) -> None:
    client.rpush("a-list", "x")
    with pytest.raises(redis.ResponseError, match="WRONGTYPE"):
        client.incr("a-list")
    with pytest.raises(redis.ResponseError, match="unknown command"):
        client.execute_command("NO-SUCH-COMMAND")  # type: ignore[no-untyped-call]
    assert client.ping()  # the connection is still usable


def test_refused_connection_is_a_redis_connection_error() -> None:
    with (
        redis.Redis(host="127.0.0.1", port=free_port(), socket_timeout=5) as r,
        pytest.raises(redis.ConnectionError, match="refused"),
    ):
        r.ping()


@close_after
def test_pipelines(client: redis.Redis) -> None:
    with client.pipeline(transaction=True) as pipe:
        for i in range(100):
            pipe.set(f"key:{i}", i)
        pipe.incr("total")
        pipe.get("key:7")
        results = pipe.execute()
    assert results == [True] * 100 + [1, b"7"]
    with client.pipeline(transaction=False) as pipe:
        for i in range(100):
            pipe.get(f"key:{i}")
        assert pipe.execute() == [b"%d" % i for i in range(100)]


@close_after
def test_watch_transactions_from_concurrent_green_threads(client: redis.Redis) -> None:
    # 20 green threads add to one counter with WATCH/MULTI/EXEC (redis-py retries a
    # transaction whose key changed): no update is lost.
    client.set("counter", 0)

    def add(pipe: redis.client.Pipeline) -> None:
        value = int(pipe.get("counter") or 0)
        txgreen.sleep(0.001)  # let the others interleave between the read and the write
        pipe.multi()
        pipe.set("counter", value + 1)

    def worker() -> None:
        for _ in range(5):
            client.transaction(add, "counter")

    workers = [txgreen.spawn(worker) for _ in range(20)]
    assert txgreen.joinall(workers, timeout=10, raise_error=True)
    assert client.get("counter") == b"100"


@close_after
def test_pub_sub_with_a_subscriber_green_thread(client: redis.Redis) -> None:
    subscribed = txgreen.Event()

    def subscriber() -> list[bytes]:
        received: list[bytes] = []
        with client.pubsub() as pubsub:  # type: ignore[no-untyped-call]
            pubsub.subscribe("news")
            confirmation = pubsub.get_message(timeout=5)
            assert confirmation is not None
            assert confirmation["type"] == "subscribe"
            subscribed.set()
            for message in pubsub.listen():  # waits in recv: parks this green thread only
                if message["type"] != "message":
                    continue
                if message["data"] == b"end":
                    return received
                received.append(message["data"])
        return received

    listener = txgreen.spawn(subscriber)
    assert subscribed.wait(timeout=5)
    for i in range(100):
        assert client.publish("news", f"item {i}") == 1  # one subscriber got it
        if i % 10 == 0:
            txgreen.sleep(0.01)  # the subscriber waits for more meanwhile
    assert client.publish("news", "end") == 1
    assert listener.get(timeout=5) == [b"item %d" % i for i in range(100)]
    assert client.pubsub_numsub("news") == [(b"news", 0)]


@close_after
def test_blpop_with_a_pusher_green_thread(client: redis.Redis) -> None:
    def consumer() -> tuple[bytes, bytes] | None:
        popped: tuple[bytes, bytes] | None = client.blpop(["jobs"], timeout=5)  # type: ignore[assignment]
        return popped

    def pusher() -> None:
        txgreen.sleep(0.1)  # every consumer is waiting by then
        for i in range(10):
            client.rpush("jobs", f"job {i}")
            txgreen.sleep(0.01)

    consumers = [txgreen.spawn(consumer) for _ in range(10)]
    started = time.monotonic()
    txgreen.spawn(pusher).get(timeout=5)
    popped = [c.get(timeout=5) for c in consumers]
    assert time.monotonic() - started < 2
    assert sorted(p for p in popped if p is not None) == [
        (b"jobs", b"job %d" % i) for i in range(10)
    ]
    # The consumers waited at once: the pool opened a connection for each.
    assert len(client.client_list()) >= 10
    # A BLPOP that nobody feeds ends with nil after its timeout.
    started = time.monotonic()
    assert client.blpop(["jobs"], timeout=0.3) is None
    assert 0.25 < time.monotonic() - started < 2


def test_fifty_clients_blpop_at_once_on_a_shared_pool(port: int) -> None:
    pool = redis.ConnectionPool(host="127.0.0.1", port=port, socket_timeout=10)
    shared = redis.Redis(connection_pool=pool)
    try:
        results, proof = concurrently(
            "redis-py BLPOP 0.2 s, shared pool",
            lambda i: shared.blpop([f"empty:{i}"], timeout=DELAY),
            n=N,
            delay=DELAY,
        )
        assert results == [None] * N  # each timed out on the server
        # The pool holds one connection per client that waited at once, all idle now.
        clients = shared.client_list()
        assert N <= len(clients) <= N + 1
        assert shared.ping()
    finally:
        pool.disconnect()
    proof.check()


def test_a_blocking_pool_makes_a_green_thread_wait_for_a_connection(port: int) -> None:
    # BlockingConnectionPool waits on a queue.Queue (LifoQueue) when it is empty: the green
    # queue parks the second green thread while the first holds the only connection, and the
    # reactor keeps running meanwhile.
    pool = redis.BlockingConnectionPool(  # type: ignore[no-untyped-call]
        host="127.0.0.1", port=port, max_connections=1, timeout=5
    )
    r = redis.Redis(connection_pool=pool)
    try:
        r.delete("blocking-pool")
        started = time.monotonic()
        first = txgreen.spawn(r.blpop, ["blocking-pool"], timeout=0.3)
        txgreen.sleep(0.05)  # the first green thread holds the connection, in BLPOP
        ticks: list[float] = []

        def tick() -> None:
            for _ in range(10):
                ticks.append(time.monotonic())
                txgreen.sleep(0.02)

        ticker = txgreen.spawn(tick)
        second = txgreen.spawn(r.ping)
        assert second.get(timeout=5) is True
        assert first.get(timeout=5) is None  # BLPOP timed out
        assert 0.25 < time.monotonic() - started < 2
        ticker.join(timeout=5)
        assert len(ticks) == 10
        assert max(b - a for a, b in itertools.pairwise(ticks)) < 0.1  # the reactor kept running
    finally:
        pool.disconnect()
