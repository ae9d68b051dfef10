"""txgreen.green.socket's ``settimeout`` fast path: usual values are stored without a system call
(redis-py sets a timeout around every command), with exactly the stdlib's results and errors.

Every test runs as a green thread (``txgreen_mode = auto``) with the plugin's leak check.
"""

from __future__ import annotations

import math
import os
import random
import socket as std_socket
import time
from collections.abc import Iterator
from decimal import Decimal
from fractions import Fraction
from typing import Any

import pytest

import txgreen
from txgreen.green import _fdwait
from txgreen.green import socket as gsocket


@pytest.fixture(autouse=True)
def registry_empty_after() -> Iterator[None]:
    yield
    assert _fdwait.watched_fds() == {}


def outcome(sock: Any, value: Any) -> object:
    """What ``sock.settimeout(value)`` leads to: the timeout it then reports, or the error."""
    try:
        sock.settimeout(value)
    except Exception as e:
        return (type(e), str(e))
    return sock.gettimeout()


USUAL = [None, 0, 1, 7, 0.0, -0.0, 0.1, 0.2, 3.3, 1e-3, 1e-9, 1e-10, 0.5, 12345.678901234]
EDGES = [1e6, 999_999.999_999, 1e6 + 0.5, 10**7, 2**62, True, False]
BAD = [-1, -1e-12, math.nan, math.inf, -math.inf, 2**80, "x", b"1", [1.0]]
OTHER_TYPES = [Fraction(1, 3), Decimal("0.25")]


def test_every_value_gives_the_stdlibs_timeout_or_error() -> None:
    rng = random.Random(11)
    randoms = [rng.random() * 10 ** rng.randint(-10, 7) for _ in range(5000)]
    with gsocket.socket() as g, std_socket.socket() as s:
        for value in [*USUAL, *EDGES, *BAD, *OTHER_TYPES, *randoms]:
            assert outcome(g, value) == outcome(s, value), value


def test_a_closed_socket_refuses_a_timeout_as_the_stdlibs_does() -> None:
    g = gsocket.socket()
    s = std_socket.socket()
    g.close()
    s.close()
    for value in (None, 1.0, 0):
        assert outcome(g, value) == outcome(s, value) == (OSError, "[Errno 9] Bad file descriptor")


def test_the_os_socket_stays_non_blocking_whatever_the_timeout() -> None:
    with gsocket.socket() as g:
        for value in (None, 0.0, 2.5, 3, 1e7, None):
            g.settimeout(value)
            assert os.get_blocking(g.fileno()) is False
            assert g.getblocking() is (value != 0.0)


def test_a_fast_path_timeout_still_parks_only_the_green_thread() -> None:
    a, b = gsocket.socketpair()
    with a, b:
        a.settimeout(0.2)
        a.settimeout(None)  # blocking: recv waits for the green thread below to send

        def send_later() -> None:
            txgreen.sleep(0.05)
            b.sendall(b"hi")

        sender = txgreen.spawn(send_later)
        assert a.recv(10) == b"hi"
        assert sender.join(timeout=5)
        a.settimeout(0.05)
        start = time.monotonic()
        with pytest.raises(TimeoutError, match=r"^timed out$"):
            a.recv(10)
        assert 0.04 <= time.monotonic() - start < 2
