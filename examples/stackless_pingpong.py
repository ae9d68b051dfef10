"""Stackless-style ping-pong on txgreen: tasklets, channels and a reactor timer.

Two tasklets play ping-pong over a channel, exactly as in Stackless Python.  A third tasklet
reads a channel that a reactor timer (``LoopingCall``) feeds: while it waits, and while every
tasklet is blocked, the reactor keeps running, so the timer's values arrive.

Run it with ``python examples/stackless_pingpong.py``; it exits by itself.
"""

from __future__ import annotations

from twisted.internet import task

import txgreen
import txgreen.stackless as stackless

ROUNDS = 3
TICKS = 3


def ping(table: stackless.channel) -> None:
    for i in range(1, ROUNDS + 1):
        print(f"ping {i}")
        table.send(("ping", i))
        assert table.receive() == ("pong", i)
    table.send(None)  # game over


def pong(table: stackless.channel) -> None:
    while (ball := table.receive()) is not None:
        _, i = ball
        print(f"  pong {i}")
        table.send(("pong", i))
    print("pong: game over")


def listener(ticks: stackless.channel, done: stackless.channel) -> None:
    # Blocked on a channel that only the reactor feeds; None marks the end.
    total = 0
    while (value := ticks.receive()) is not None:
        print(f"listener got tick {value}")
        total += value
    done.send(total)


def main() -> int:
    table = stackless.channel()
    stackless.tasklet(ping)(table)
    stackless.tasklet(pong)(table)
    print(f"runnables before run(): {stackless.getruncount()}")
    stackless.run()  # returns when ping and pong have finished
    print(f"runnables after run(): {stackless.getruncount()}")

    ticks = stackless.channel()
    done = stackless.channel()
    values = iter([*range(1, TICKS + 1), None])

    def tick() -> None:
        # A reactor callback, so it runs in the hub, which must never block: send() there
        # works only while a receiver waits; otherwise hand the value to a tasklet that sends.
        value = next(values)
        if value is None:
            ticker.stop()
        print(f"timer sends {value}")
        if ticks.balance < 0:
            ticks.send(value)
        else:
            stackless.tasklet(ticks.send)(value)

    ticker = task.LoopingCall(tick)
    listening = stackless.tasklet(listener)(ticks, done)
    stackless.run()  # the listener blocks on its channel: run() returns
    print(f"listener blocked on its channel: {listening.blocked}")
    ticker.start(0.01, now=False)
    total = done.receive()  # the main tasklet waits here; the reactor runs the timer
    print(f"sum of ticks: {total}")
    return 0


if __name__ == "__main__":
    raise SystemExit(txgreen.run(main))
