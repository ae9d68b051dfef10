"""Property-based tests of ``Queue`` and ``Channel``.

Two kinds:

- *Model* tests: hypothesis generates a sequence of operations (spawn a getter/putter or a
  receiver/sender, put/get without waiting, kill a parked thread, kill a thread right after
  something was handed to it).  Scheduling is deterministic, so after every step the real
  primitive must agree exactly with a few lines of plain Python (a deque and two FIFOs of
  parked threads): sizes, who is parked, what every finished thread got, ``balance``.
- *Chaos* tests: many producers and consumers with real (tiny) timeouts and random kills.
  Timing is not modelled; the invariant is that nothing is lost or duplicated: every item a
  ``put``/``send`` accepted is received exactly once or is still queued, nothing a failed
  ``put``/``send`` offered is ever received, and each consumer sees each producer's items in
  order (FIFO).

They run as green tests (txgreen_mode = auto applies to hypothesis tests too), each example
checked for leaked green threads and timers.
"""

from __future__ import annotations

import contextlib
from collections import deque
from collections.abc import Callable

from hypothesis import given, settings
from hypothesis import strategies as st

import txgreen
from primitives_support import settle
from support import Boom
from txgreen import GreenThread
from txgreen._channel import Channel, ChannelClosed
from txgreen._queue import Empty, Full, LifoQueue, PriorityQueue, Queue

MODEL_SETTINGS = settings(deadline=None, max_examples=200)
CHAOS_SETTINGS = settings(deadline=None, max_examples=80)

Op = tuple[str, int]

# -- Queue against a model ---------------------------------------------------------------------

QUEUE_OPS = st.lists(
    st.tuples(
        st.sampled_from(
            [
                "spawn_get",
                "spawn_put",
                "put_nowait",
                "get_nowait",
                "kill",
                "kill_then_poke",
                "hand_over_then_kill",
            ]
        ),
        st.integers(0, 3),  # which parked thread to kill (modulo how many there are)
    ),
    max_size=40,
)


class QueueModel:
    """What the queue must look like: items, parked getters, parked putters, outcomes."""

    def __init__(self, kind: str, maxsize: int) -> None:
        self.kind = kind
        self.maxsize = maxsize
        self.items: list[int] = []
        self.getters: deque[int] = deque()
        self.putters: deque[tuple[int, int]] = deque()
        self.got: dict[int, int] = {}
        self.put_done: set[int] = set()

    def full(self) -> bool:
        return 0 < self.maxsize <= len(self.items)

    def take(self) -> int:
        if self.kind == "fifo":
            item = self.items.pop(0)
        elif self.kind == "lifo":
            item = self.items.pop()
        else:
            item = min(self.items)
            self.items.remove(item)
        if self.putters:
            tid, waiting = self.putters.popleft()
            self.items.append(waiting)
            self.put_done.add(tid)
        return item

    def put(self, item: int, tid: int | None) -> bool:
        """False if it would block (put_nowait raises Full; a putter parks)."""
        if self.getters:
            self.got[self.getters.popleft()] = item
        elif not self.full():
            self.items.append(item)
        else:
            return False
        if tid is not None:
            self.put_done.add(tid)
        return True

    def drained(self) -> list[int]:
        out = []
        while self.items:
            out.append(self.take())
        return out


QUEUES: dict[str, type[Queue[int]]] = {"fifo": Queue, "lifo": LifoQueue, "priority": PriorityQueue}


@MODEL_SETTINGS
@given(kind=st.sampled_from(sorted(QUEUES)), maxsize=st.integers(0, 3), ops=QUEUE_OPS)
def test_queue_matches_model(kind: str, maxsize: int, ops: list[Op]) -> None:
    q = QUEUES[kind](maxsize)
    model = QueueModel(kind, maxsize)
    threads: dict[int, GreenThread[None]] = {}
    got: dict[int, int] = {}
    put_done: set[int] = set()
    counter = iter(range(1_000_000))

    def getter(tid: int) -> None:
        got[tid] = q.get()

    def putter(tid: int, item: int) -> None:
        q.put(item)
        put_done.add(tid)

    for name, arg in ops:
        if name == "spawn_get":
            tid = next(counter)
            threads[tid] = txgreen.spawn(getter, tid)
            if model.items:
                model.got[tid] = model.take()
            else:
                model.getters.append(tid)
        elif name == "spawn_put":
            tid, item = next(counter), next(counter)
            threads[tid] = txgreen.spawn(putter, tid, item)
            if not model.put(item, tid):
                model.putters.append((tid, item))
        elif name == "put_nowait":
            item = next(counter)
            expected = model.put(item, None)
            try:
                q.put_nowait(item)
                accepted = True
            except Full:
                accepted = False
            assert accepted == expected
        elif name == "get_nowait":
            try:
                real: int | None = q.get_nowait()
            except Empty:
                real = None
            assert real == (model.take() if model.items else None)
        elif name in ("kill", "kill_then_poke"):
            parked = sorted([*model.getters, *(t for t, _ in model.putters)])
            if parked:
                tid = parked[arg % len(parked)]
                # "kill_then_poke": the victim has not run yet when we put/get next, so its
                # (inactive) entry is still queued and must be skipped.
                threads[tid].kill(block=name == "kill")
                if tid in model.getters:
                    model.getters.remove(tid)
                    if name == "kill_then_poke" and (model.getters or not model.full()):
                        item = next(counter)
                        q.put_nowait(item)  # skips the killed getter's stale entry
                        model.put(item, None)
                else:
                    model.putters = deque(p for p in model.putters if p[0] != tid)
                    if name == "kill_then_poke" and model.items:
                        assert q.get_nowait() == model.take()
                assert q.getters_waiting == len(model.getters)
                assert q.putters_waiting == len(model.putters)
        elif name == "hand_over_then_kill":
            if model.getters:
                target = model.getters[0]
                item = next(counter)
                q.put_nowait(item)  # handed to the first getter ...
                threads[target].kill()  # ... which is killed before it runs: it keeps it
                model.put(item, None)
            elif model.putters:
                target = model.putters[0][0]
                assert q.get_nowait() == model.take()  # moves the first putter's item in
                threads[target].kill()
        settle()
        assert q.qsize() == len(model.items)
        assert q.getters_waiting == len(model.getters)
        assert q.putters_waiting == len(model.putters)
        assert got == model.got
        assert put_done == model.put_done
    for t in threads.values():
        t.kill()
    model.getters.clear()  # killed: their items were never put
    model.putters.clear()
    assert q.getters_waiting == q.putters_waiting == 0
    remaining = []
    while not q.empty():
        remaining.append(q.get_nowait())
    assert remaining == model.drained()


# -- Channel against a model -------------------------------------------------------------------

CHANNEL_OPS = st.lists(
    st.tuples(
        st.sampled_from(
            [
                "spawn_receive",
                "spawn_send",
                "spawn_send_exception",
                "now",
                "kill",
                "kill_then_poke",
                "hand_over_then_kill",
            ]
        ),
        st.integers(0, 3),
    ),
    max_size=40,
)


@MODEL_SETTINGS
@given(ops=CHANNEL_OPS, close_at_end=st.booleans())
def test_channel_matches_model(ops: list[Op], close_at_end: bool) -> None:
    ch: Channel[int] = Channel()
    threads: dict[int, GreenThread[None]] = {}
    received: dict[int, tuple[str, int | None]] = {}
    sent: dict[int, str] = {}
    counter = iter(range(1_000_000))
    # the model
    senders: deque[tuple[int, int, bool]] = deque()
    receivers: deque[int] = deque()
    m_received: dict[int, tuple[str, int | None]] = {}
    m_sent: dict[int, str] = {}

    def receiver(tid: int) -> None:
        try:
            received[tid] = ("value", ch.receive())
        except Boom as e:
            received[tid] = ("exception", e.args[0])
        except ChannelClosed:
            received[tid] = ("closed", None)

    def sender(tid: int, value: int, as_exc: bool) -> None:
        try:
            if as_exc:
                ch.send_exception(Boom(value))
            else:
                ch.send(value)
            sent[tid] = "ok"
        except ChannelClosed:
            sent[tid] = "closed"

    def outcome(value: int, as_exc: bool) -> tuple[str, int | None]:
        return ("exception" if as_exc else "value", value)

    def receive_now() -> tuple[str, int | None]:
        """The test thread receives from a parked sender: its value, or the exception it sent."""
        try:
            return ("value", ch.receive())
        except Boom as e:
            return ("exception", e.args[0])

    for name, arg in ops:
        if name == "spawn_receive":
            tid = next(counter)
            threads[tid] = txgreen.spawn(receiver, tid)
            if senders:
                stid, value, as_exc = senders.popleft()
                m_received[tid] = outcome(value, as_exc)
                m_sent[stid] = "ok"
            else:
                receivers.append(tid)
        elif name in ("spawn_send", "spawn_send_exception"):
            tid, value = next(counter), next(counter)
            as_exc = name == "spawn_send_exception"
            threads[tid] = txgreen.spawn(sender, tid, value, as_exc)
            if receivers:
                m_received[receivers.popleft()] = outcome(value, as_exc)
                m_sent[tid] = "ok"
            else:
                senders.append((tid, value, as_exc))
        elif name == "now":
            # The test thread itself sends or receives, whichever completes without waiting.
            if receivers:
                value = next(counter)
                ch.send(value)
                m_received[receivers.popleft()] = ("value", value)
            elif senders:
                stid, value, as_exc = senders.popleft()
                real = receive_now()
                assert real == outcome(value, as_exc)
                m_sent[stid] = "ok"
        elif name in ("kill", "kill_then_poke"):
            parked = sorted([*receivers, *(t for t, _, _ in senders)])
            if parked:
                tid = parked[arg % len(parked)]
                threads[tid].kill(block=name == "kill")
                if tid in receivers:
                    receivers.remove(tid)
                    if name == "kill_then_poke" and receivers:
                        value = next(counter)
                        ch.send(value)  # skips the killed receiver's stale entry
                        m_received[receivers.popleft()] = ("value", value)
                else:
                    senders = deque(s for s in senders if s[0] != tid)
                    if name == "kill_then_poke" and senders:
                        stid, value, as_exc = senders.popleft()
                        real = receive_now()
                        assert real == outcome(value, as_exc)
                        m_sent[stid] = "ok"
                assert ch.balance == len(senders) - len(receivers)
        elif name == "hand_over_then_kill":
            if receivers:
                target = receivers.popleft()
                value = next(counter)
                ch.send(value)
                threads[target].kill()  # it was handed the value: it keeps it
                m_received[target] = ("value", value)
            elif senders:
                stid, value, as_exc = senders.popleft()
                real = receive_now()
                threads[stid].kill()  # its value was taken: its send() completed
                assert real == outcome(value, as_exc)
                m_sent[stid] = "ok"
        settle()
        assert ch.balance == len(senders) - len(receivers)
        assert received == m_received
        assert sent == m_sent
    if close_at_end:
        ch.close()
        for tid in receivers:
            m_received[tid] = ("closed", None)
        for stid, _, _ in senders:
            m_sent[stid] = "closed"
        settle()
        assert received == m_received
        assert sent == m_sent
    for t in threads.values():
        t.kill()
    assert ch.balance == 0


# -- chaos: many producers and consumers, real timeouts, random kills --------------------------

TIMEOUTS = st.sampled_from([None, None, 0, 0.001])


def offer_each(
    offer: Callable[..., object],
    refusal: type[BaseException],
    source: int,
    timeouts: list[float | None],
    accepted: list[tuple[int, int]],
    refused: list[tuple[int, int]],
) -> None:
    """Offer ``(source, i)`` with each timeout in turn: ``offer(item, timeout=timeout)``.  An
    item it takes goes to ``accepted``; one it refuses (raising ``refusal``) to ``refused``,
    and so does the item being offered when the thread is killed (which ends the run)."""
    for i, timeout in enumerate(timeouts):
        item = (source, i)
        try:
            offer(item, timeout=timeout)
        except refusal:
            refused.append(item)
            continue
        except BaseException:
            refused.append(item)
            raise  # a kill: stop
        accepted.append(item)


def take_each(
    take: Callable[..., tuple[int, int]],
    refusal: type[BaseException],
    timeouts: list[float | None],
    into: list[tuple[int, int]],
) -> None:
    """``take(timeout=timeout)`` with each timeout in turn, keeping what it returns in
    ``into``; a ``refusal`` (nothing came in time) is passed over."""
    for timeout in timeouts:
        with contextlib.suppress(refusal):
            into.append(take(timeout=timeout))


def kill_some(threads: list[GreenThread[None]], kills: list[tuple[int, int]]) -> None:
    """For each ``(yields, target)``: yield that many times, then kill thread ``target`` (modulo
    their number) with ``Boom("chaos")``, without waiting for it to die."""
    for yields, target in kills:
        for _ in range(yields):
            txgreen.sleep(0)
        threads[target % len(threads)].kill(Boom("chaos"), block=False)


def assert_in_order_per_source(received: list[list[tuple[int, int]]], sources: int) -> None:
    """Each receiver got each source's items ``(source, index)`` in the order they were sent."""
    for items in received:
        for source in range(sources):
            mine = [i for (s, i) in items if s == source]
            assert mine == sorted(mine), "a receiver saw a source's items out of order"


@CHAOS_SETTINGS
@given(
    kind=st.sampled_from(["fifo", "lifo"]),
    maxsize=st.integers(0, 3),
    producers=st.lists(st.lists(TIMEOUTS, max_size=6), min_size=1, max_size=4),
    consumers=st.lists(st.lists(TIMEOUTS, max_size=8), min_size=1, max_size=4),
    kills=st.lists(st.tuples(st.integers(0, 3), st.integers(0, 7)), max_size=5),
    pause=st.sampled_from([0, 0.002]),
)
def test_queue_loses_and_duplicates_nothing(
    kind: str,
    maxsize: int,
    producers: list[list[float | None]],
    consumers: list[list[float | None]],
    kills: list[tuple[int, int]],
    pause: float,
) -> None:
    q: Queue[tuple[int, int]] = Queue(maxsize) if kind == "fifo" else LifoQueue(maxsize)
    accepted: list[tuple[int, int]] = []
    refused: list[tuple[int, int]] = []
    received: list[list[tuple[int, int]]] = [[] for _ in consumers]

    threads: list[GreenThread[None]] = [
        *(
            txgreen.spawn(offer_each, q.put, Full, p, ts, accepted, refused)
            for p, ts in enumerate(producers)
        ),
        *(
            txgreen.spawn(take_each, q.get, Empty, ts, received[c])
            for c, ts in enumerate(consumers)
        ),
    ]
    kill_some(threads, kills)
    txgreen.sleep(pause)
    for t in threads:
        t.kill(block=False)
    for t in threads:
        t.join()
        assert t.exception is None or isinstance(t.exception, Boom)  # (reading it: handled)
    remaining = []
    while not q.empty():
        remaining.append(q.get_nowait())
    got = [item for items in received for item in items]
    assert len(got) == len(set(got)), "an item was received twice"
    assert sorted(got + remaining) == sorted(accepted), "an accepted item was lost"
    assert not set(refused) & set(got + remaining), "a refused item was delivered"
    if kind == "fifo":
        assert_in_order_per_source(received, len(producers))
    assert q.getters_waiting == q.putters_waiting == 0


@CHAOS_SETTINGS
@given(
    senders=st.lists(st.lists(TIMEOUTS, max_size=6), min_size=1, max_size=4),
    receivers=st.lists(st.lists(TIMEOUTS, max_size=8), min_size=1, max_size=4),
    kills=st.lists(st.tuples(st.integers(0, 3), st.integers(0, 7)), max_size=5),
    pause=st.sampled_from([0, 0.002]),
)
def test_channel_loses_and_duplicates_nothing(
    senders: list[list[float | None]],
    receivers: list[list[float | None]],
    kills: list[tuple[int, int]],
    pause: float,
) -> None:
    ch: Channel[tuple[int, int]] = Channel()
    delivered: list[tuple[int, int]] = []
    undelivered: list[tuple[int, int]] = []
    received: list[list[tuple[int, int]]] = [[] for _ in receivers]

    threads: list[GreenThread[None]] = [
        *(
            txgreen.spawn(offer_each, ch.send, txgreen.Timeout, s, ts, delivered, undelivered)
            for s, ts in enumerate(senders)
        ),
        *(
            txgreen.spawn(take_each, ch.receive, txgreen.Timeout, ts, received[r])
            for r, ts in enumerate(receivers)
        ),
    ]
    kill_some(threads, kills)
    txgreen.sleep(pause)
    ch.close()  # wakes every parked sender and receiver with ChannelClosed
    for t in threads:
        t.join()
        assert t.exception is None or isinstance(t.exception, Boom | ChannelClosed)
    got = [value for values in received for value in values]
    assert len(got) == len(set(got)), "a value was received twice"
    assert sorted(got) == sorted(delivered), "a send() returned but its value was lost"
    assert not set(undelivered) & set(got), "a failed send() was delivered"
    assert_in_order_per_source(received, len(senders))
    assert ch.balance == 0
