"""psycopg 3, unmodified and pure Python, in green threads against a real PostgreSQL.

The module starts one PostgreSQL server on 127.0.0.1 from the binaries the ``pgserver`` package
ships, and stops it after (checking no process of it is left). Every test runs with the stdlib
patched (``txgreen.patch()``).

Why this works: psycopg's pure-Python implementation drives libpq in non-blocking mode and waits
for the connection's socket itself, with ``select.poll()`` looked up at call time
(``psycopg.waiting.wait_poll``). Patched, that is txgreen's green ``poll``: a query waiting for
its result parks only its own green thread. The C implementation (``psycopg[c]`` or
``psycopg[binary]``) waits in C instead (``wait_c``) and would block the reactor: the first
test checks it is not the one in use.

The concurrency proof: N = 50 clients, each in its own green thread with its own connection,
run ``SELECT pg_sleep(0.2)``; all finish in a fraction of N x 0.2 s while a ticker green thread
keeps its period.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import psycopg
import psycopg.pq
import psycopg.waiting
import pytest
from concurrency_proof import concurrently, patched_for_test
from local_services import Server, free_port, postgres_server
from psycopg.types.json import Jsonb

import txgreen
from txgreen.green import select as gselect

N = 50  # clients in the concurrency proof
DELAY = 0.2  # the pg_sleep each of them waits


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    """This module's PostgreSQL server."""
    with postgres_server() as running:
        yield running


@pytest.fixture(autouse=True)
def patched_stdlib() -> Iterator[None]:
    """Every test runs with the stdlib patched, and unpatched after; the fd registry is empty."""
    with patched_for_test():
        yield


def connect(server: Server, **kwargs: Any) -> psycopg.Connection[tuple[object, ...]]:
    """A new connection to the test server as ``postgres``."""
    return psycopg.connect(
        host=server.host, port=server.port, user="postgres", dbname="postgres", **kwargs
    )


def test_the_pure_python_implementation_waits_with_green_poll(server: Server) -> None:
    assert psycopg.pq.__impl__ == "python"
    assert psycopg.waiting.wait is psycopg.waiting.wait_poll
    # wait_poll calls select.poll() at call time: patched, the green poll.
    import select

    assert select.poll is gselect.poll
    with connect(server) as conn:
        assert conn.execute("SELECT 1 + 1").fetchone() == (2,)


def test_queries_and_types(server: Server) -> None:
    with connect(server) as conn:
        conn.execute("CREATE TEMP TABLE people (id serial PRIMARY KEY, name text, age int)")
        with conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO people (name, age) VALUES (%s, %s)",
                [("ada", 36), ("grace", 85), ("linus", None)],
            )
            cur.execute("SELECT name, age FROM people WHERE age > %s ORDER BY age", (40,))
            assert cur.fetchall() == [("grace", 85)]
            cur.execute("SELECT count(*), array_agg(name ORDER BY id) FROM people")
            assert cur.fetchone() == (3, ["ada", "grace", "linus"])
            cur.execute("SELECT %s, %s::bytea", (Jsonb({"a": [1, 2]}), b"\x00\xff"))
            assert cur.fetchone() == ({"a": [1, 2]}, b"\x00\xff")
        with pytest.raises(psycopg.errors.UndefinedTable):
            conn.execute("SELECT * FROM no_such_table")


def test_transactions_commit_and_roll_back(server: Server) -> None:
    with connect(server) as setup:
        setup.execute("DROP TABLE IF EXISTS ledger")
        setup.execute("CREATE TABLE ledger (entry text)")
        setup.commit()
    try:
        with connect(server) as conn, connect(server) as other:
            with conn.transaction():
                conn.execute("INSERT INTO ledger VALUES ('kept')")

            def fail_inside_a_transaction() -> None:
                with conn.transaction():
                    conn.execute("INSERT INTO ledger VALUES ('rolled back')")
                    raise ZeroDivisionError

            with pytest.raises(ZeroDivisionError):
                fail_inside_a_transaction()
            conn.execute("INSERT INTO ledger VALUES ('not committed')")
            # The other session sees only what was committed.
            assert other.execute("SELECT entry FROM ledger").fetchall() == [("kept",)]
            other.commit()
            conn.rollback()
            assert conn.execute("SELECT entry FROM ledger").fetchall() == [("kept",)]
            # A failed statement aborts the transaction until it is rolled back.
            with pytest.raises(psycopg.errors.DivisionByZero):
                conn.execute("SELECT 1 / 0")
            with pytest.raises(psycopg.errors.InFailedSqlTransaction):
                conn.execute("SELECT 1")
            conn.rollback()
            assert conn.execute("SELECT 1").fetchone() == (1,)
    finally:
        with connect(server, autocommit=True) as cleanup:
            cleanup.execute("DROP TABLE ledger")


def test_fifty_clients_pg_sleep_at_once(server: Server) -> None:
    # Each client has its own connection, opened first (concurrently, each in a green thread)
    # as an application's pool would: the proof measures the queries. Opening them inside the
    # measurement works too, but a new PostgreSQL session costs a backend fork and a few ms of
    # CPU on both sides, which on a shared 2-core machine is what the ticker would measure.
    openers = [txgreen.spawn(connect, server) for _ in range(N)]
    conns = [o.get(timeout=20) for o in openers]
    try:
        pids = {conn.info.backend_pid for conn in conns}
        assert len(pids) == N  # a backend each

        def client(i: int) -> tuple[object, ...] | None:
            return conns[i].execute("SELECT %s::int, pg_sleep(%s) IS NULL", (i, DELAY)).fetchone()

        rows, proof = concurrently(
            "psycopg SELECT pg_sleep(0.2), a connection each", client, n=N, delay=DELAY
        )
        assert rows == [(i, False) for i in range(N)]  # pg_sleep returns void (not NULL)
    finally:
        for conn in conns:
            conn.close()
    proof.check()


def test_listen_notify_with_a_listener_green_thread(server: Server) -> None:
    listening = txgreen.Event()

    def listener() -> list[tuple[str, str]]:
        with connect(server, autocommit=True) as conn:
            conn.execute("LISTEN jobs")
            listening.set()
            received = []
            # notifies() waits on the connection's socket: parks this green thread only.
            for notify in conn.notifies(timeout=10):
                if notify.payload == "end":
                    break
                received.append((notify.channel, notify.payload))
            return received

    waiting = txgreen.spawn(listener)
    assert listening.wait(timeout=5)
    with connect(server, autocommit=True) as conn:
        for i in range(20):
            conn.execute("SELECT pg_notify('jobs', %s)", (f"job {i}",))
            if i % 5 == 0:
                txgreen.sleep(0.01)  # the listener waits for more meanwhile
        conn.execute("NOTIFY jobs, 'end'")
    assert waiting.get(timeout=10) == [("jobs", f"job {i}") for i in range(20)]


def test_server_side_cursor(server: Server) -> None:
    with connect(server) as conn:
        with conn.cursor(name="numbers") as cur:
            cur.itersize = 500
            cur.execute("SELECT n, md5(n::text) FROM generate_series(1, 10000) AS n")
            first = cur.fetchmany(3)
            assert [n for n, _ in first] == [1, 2, 3]
            # The server holds the result: the cursor is a portal of this transaction.
            portals = conn.execute("SELECT name FROM pg_cursors").fetchall()
            assert portals == [("numbers",)]
            rest = [n for n, _ in cur]  # fetched 500 rows at a time
        assert rest == list(range(4, 10001))
        conn.rollback()


def test_dropped_connection_raises_operational_error(server: Server) -> None:
    with connect(server) as victim, connect(server, autocommit=True) as admin:
        pid = victim.info.backend_pid

        def long_query() -> None:
            victim.execute("SELECT pg_sleep(10)")

        sleeping = txgreen.spawn(long_query)
        # Wait until the victim's backend is running the query, then terminate it.
        deadline = time.monotonic() + 5
        while not admin.execute(
            "SELECT 1 FROM pg_stat_activity WHERE pid = %s AND state = 'active'", (pid,)
        ).fetchone():
            assert time.monotonic() < deadline
            txgreen.sleep(0.01)
        started = time.monotonic()
        assert admin.execute("SELECT pg_terminate_backend(%s)", (pid,)).fetchone() == (True,)
        # The waiting green thread wakes with psycopg's own error, at once.
        assert sleeping.join(timeout=5)
        assert isinstance(sleeping.exception, psycopg.OperationalError)
        assert time.monotonic() - started < 2
        assert victim.closed
        assert victim.broken
        with pytest.raises(psycopg.OperationalError):
            victim.execute("SELECT 1")


def test_refused_connection_is_an_operational_error() -> None:
    with pytest.raises(psycopg.OperationalError, match="refused"):
        psycopg.connect(host="127.0.0.1", port=free_port(), user="postgres", connect_timeout=5)
