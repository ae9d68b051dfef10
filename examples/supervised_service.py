"""A TCP service that heals itself: three green threads under one ``txgreen.Supervisor``.

- ``acceptor`` serves the port (``txgreen.serve``): a client sends ``GET key`` and gets the
  value from the cache, with the cache's version;
- ``cache_refresher`` rebuilds the cache every ``refresh`` seconds;
- ``metrics_reporter`` records how many requests were served, every ``report`` seconds.

The demo kills each child in turn with an exception, as a bug would, and shows that the
supervisor starts it again and that the service keeps answering (the acceptor comes back on the
same port).  Then the cache's source breaks for good: the refresher crashes at every start,
and after ``intensity`` restarts within ``period`` seconds the supervisor gives up, stops the
other children and fails with ``RestartIntensityExceeded``, for its own supervisor (or the
program) to handle.

Run it: ``python examples/supervised_service.py``
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import txgreen
from txgreen import ChildSpec, GreenThread, Listener, Stream, Supervisor


@dataclass
class State:
    """What the children share: it outlives their restarts."""

    port: int = 0  # 0 until the first start; the restarts listen on the same port
    cache: dict[str, str] = field(default_factory=dict)
    version: int = 0
    requests: int = 0
    reports: list[int] = field(default_factory=list)
    source_broken: bool = False
    refresher_starts: int = 0


def acceptor(state: State) -> None:
    """Serve the port until killed; each connection runs ``handle`` in a green thread."""

    def handle(stream: Stream) -> None:
        for line in stream:
            verb, _, key = line.decode().strip().partition(" ")
            state.requests += 1
            if verb != "GET":
                stream.write(b"ERROR unknown command\n")
                continue
            value = state.cache.get(key, "<missing>")
            stream.write(f"{key}={value} (cache v{state.version})\n".encode())

    def listening(listener: Listener) -> None:
        state.port = listener.port

    txgreen.serve(f"tcp:{state.port}:interface=127.0.0.1", handle, on_listen=listening)


def cache_refresher(state: State, every: float) -> None:
    """Rebuild the cache now and every ``every`` seconds (a real one would query a database)."""
    state.refresher_starts += 1
    while True:
        if state.source_broken:
            raise ConnectionError("the cache's source is unreachable")
        state.cache = {"greeting": "hello", "answer": "42"}
        state.version += 1
        txgreen.sleep(every)


def metrics_reporter(state: State, every: float) -> None:
    """Record the number of requests served so far, every ``every`` seconds."""
    while True:
        txgreen.sleep(every)
        state.reports.append(state.requests)


def build(
    state: State, refresh: float = 0.05, report: float = 0.05, period: float = 5.0
) -> Supervisor:
    """The supervision tree: one supervisor, three children, one_for_one, 3 restarts/period."""
    return Supervisor(
        [
            ChildSpec("acceptor", acceptor, (state,)),
            ChildSpec("cache", cache_refresher, (state, refresh)),
            ChildSpec("metrics", metrics_reporter, (state, report)),
        ],
        strategy="one_for_one",
        intensity=3,
        period=period,
        name="service",
    )


def ask(port: int, key: str) -> str:
    """One request as a client: ``GET key``; the answer line."""
    with txgreen.connect(("127.0.0.1", port), timeout=5) as stream:
        stream.write(f"GET {key}\n".encode())
        return stream.readline().decode().strip()


def child_thread(sup: Supervisor, child_id: str) -> GreenThread[object] | None:
    """The running thread of child ``child_id`` (None while it is not running)."""
    for info in sup.which_children():
        if info.id == child_id:
            return info.thread
    return None


def wait_until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    """Poll ``condition()`` every 10 ms until it is true (``TimeoutError`` after ``timeout``)."""
    for _ in range(int(timeout / 0.01)):
        if condition():
            return
        txgreen.sleep(0.01)
    raise TimeoutError(f"condition not met within {timeout} s")


def crash(sup: Supervisor, child_id: str) -> GreenThread[object]:
    """Kill child ``child_id`` with an exception, as a bug would; wait for its replacement."""
    old = child_thread(sup, child_id)
    assert old is not None
    old.kill(RuntimeError(f"simulated bug in {child_id}"))

    def replaced() -> bool:
        new = child_thread(sup, child_id)
        return new is not None and new is not old

    wait_until(replaced)
    new = child_thread(sup, child_id)
    assert new is not None
    return new


def main() -> None:
    state = State()
    sup = build(state, period=1.0)
    tree = sup.start()
    wait_until(lambda: state.port != 0 and state.version > 0)
    print(f"service listening on 127.0.0.1, children: {[c.id for c in sup.which_children()]}")
    print(f"answer: {ask(state.port, 'greeting').split(' (')[0]}")
    for child_id in ("acceptor", "cache", "metrics"):
        crash(sup, child_id)
        if child_id == "acceptor":
            wait_until(lambda: child_thread(sup, "acceptor") is not None)
        answer = ask(state.port, "answer").split(" (")[0]
        print(f"killed {child_id}: it is back, and the service answers {answer}")
    wait_until(lambda: len(state.reports) > 0)
    print(f"metrics reported {len(state.reports) > 0}; counts {sup.count_children()}")
    txgreen.sleep(1.05)  # the three restarts above are now older than the period (1 s)
    state.source_broken = True
    starts = state.refresher_starts
    refresher = child_thread(sup, "cache")
    assert refresher is not None
    refresher.kill(RuntimeError("simulated bug in cache"))  # its restarts now fail at once
    tree.join(10)
    print(
        f"crash loop: the refresher started {state.refresher_starts - starts} more times, then "
        f"the supervisor gave up with {type(tree.exception).__name__}"
    )
    print(f"children left running: {sup.count_children()['active']}")


if __name__ == "__main__":
    txgreen.run(main)
