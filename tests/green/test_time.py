"""txgreen.green.time: ``sleep`` parks only the green thread; the rest is the stdlib's."""

from __future__ import annotations

import math
import threading
import time as std_time
from typing import Any

import pytest
from twisted.internet.defer import Deferred, succeed

import txgreen
from support import in_reactor_callback
from txgreen.green import time as _gtime

gtime: Any = _gtime  # untyped: the green sleep shares the stdlib stubs' name


def test_the_module_mirrors_the_stdlib() -> None:
    assert gtime.__patched__ == ["sleep"]
    for name in dir(std_time):
        if not name.startswith("_") and name != "sleep":
            assert getattr(gtime, name) is getattr(std_time, name), name
    assert gtime.sleep is not std_time.sleep
    assert gtime.sleep.__doc__


def test_sleep_parks_only_the_green_thread_while_a_ticker_ticks() -> None:
    ticks: list[float] = []
    stop = txgreen.Event()

    def ticker() -> None:
        while not stop.wait(0.01):
            ticks.append(std_time.monotonic())

    tick = txgreen.spawn(ticker)
    start = std_time.monotonic()
    sleepers = [txgreen.spawn(gtime.sleep, 0.2) for _ in range(20)]
    assert txgreen.joinall(sleepers, timeout=5)
    elapsed = std_time.monotonic() - start
    stop.set()
    assert tick.join(timeout=5)
    assert 0.19 <= elapsed < 1  # 20 sleeps of 0.2 s at once, not one after another
    assert len([t for t in ticks if start <= t <= start + 0.2]) >= 0.2 / 0.01 / 3


def test_sleep_zero_lets_the_other_green_threads_run() -> None:
    ran: list[str] = []
    txgreen.spawn(ran.append, "other")
    gtime.sleep(0)
    assert ran == ["other"]
    gtime.sleep(False)  # an int-like, as the stdlib accepts


@pytest.mark.parametrize(
    "seconds",
    [-1, -0.001, math.nan, "1", None, [], 10**30, math.inf, 1e10],
    ids=["-1", "-0.001", "nan", "str", "None", "list", "huge int", "inf", "1e10"],
)
def test_bad_lengths_raise_the_stdlibs_errors(seconds: Any) -> None:
    try:
        std_time.sleep(seconds)
    except Exception as e:
        expected = e
    else:
        raise AssertionError(f"the stdlib slept {seconds!r}")
    with pytest.raises(type(expected)) as info:
        gtime.sleep(seconds)
    assert str(info.value) == str(expected)


def test_sleep_in_an_os_thread_is_the_stdlibs() -> None:
    ticks: list[float] = []
    stop = txgreen.Event()

    def ticker() -> None:
        while not stop.wait(0.01):
            ticks.append(std_time.monotonic())

    def in_thread() -> float:
        assert threading.current_thread() is not threading.main_thread()
        start = std_time.monotonic()
        gtime.sleep(0.1)  # blocks this OS thread only
        with pytest.raises(ValueError):
            gtime.sleep(-1)
        return std_time.monotonic() - start

    tick = txgreen.spawn(ticker)
    start = std_time.monotonic()
    slept = txgreen.call_in_thread(in_thread)
    stop.set()
    assert tick.join(timeout=5)
    assert slept >= 0.1
    assert len([t for t in ticks if start <= t <= start + 0.1]) >= 3  # the reactor ran


def test_sleep_in_the_hub_blocks_like_the_stdlib() -> None:
    def in_hub() -> Deferred[float]:
        start = std_time.monotonic()
        gtime.sleep(0.02)  # blocks the reactor, as the stdlib's call would
        return succeed(std_time.monotonic() - start)

    assert txgreen.block_on(in_reactor_callback(in_hub), 5) >= 0.02
