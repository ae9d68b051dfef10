"""The smallest txgreen program: wait for a Deferred in plain sync style, then spawn and join."""

from __future__ import annotations

from twisted.internet import reactor, task

import txgreen


def slow_square(x: int) -> int:
    # deferLater returns a Deferred; block_on waits for it while the reactor keeps running.
    return txgreen.block_on(task.deferLater(reactor, 0.1, lambda: x * x))


def main() -> None:
    print("slow_square(7) =", slow_square(7))
    threads = [txgreen.spawn(slow_square, n) for n in (1, 2, 3)]
    for thread in threads:
        thread.join()
    print("three green threads at once:", [thread.value for thread in threads])


if __name__ == "__main__":
    txgreen.run(main)
