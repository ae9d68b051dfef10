"""An AMP client and server, both written in sync style, over loopback.

The server is Twisted's own ``amp.AMP``.  One responder answers at once; the other is an
ordinary blocking-looking function made reactor-friendly with ``@txgreen.green``: each call
runs in a green thread of its own, so it can wait (here on a pretend slow lookup) while the
reactor keeps serving other calls.

The client connects with ``txgreen.connect_protocol`` and calls the server through
``txgreen.blocking``, which turns ``callRemote``'s Deferred into a plain return value (or a
raised exception).

Run it: ``python examples/amp_sync.py``
"""

from __future__ import annotations

import time
from typing import Any, ClassVar

from twisted.internet.endpoints import serverFromString
from twisted.internet.protocol import Factory
from twisted.protocols import amp

import txgreen

Integer: Any = amp.Integer  # (Twisted's AMP argument types are not annotated)
Unicode: Any = amp.Unicode

PRICES = {"apple": 3, "pear": 4, "plum": 2}


class UnknownFruit(Exception):
    pass


class Sum(amp.Command):
    arguments: ClassVar = [(b"a", Integer()), (b"b", Integer())]
    response: ClassVar = [(b"total", Integer())]


class Price(amp.Command):
    arguments: ClassVar = [(b"fruit", Unicode())]
    response: ClassVar = [(b"cents", Integer())]
    errors: ClassVar = {UnknownFruit: b"UNKNOWN_FRUIT"}


def slow_lookup(fruit: str) -> int:
    """Pretend to ask a slow backend; blocks only the calling green thread."""
    txgreen.sleep(0.2)
    if fruit not in PRICES:
        raise UnknownFruit(f"no price for {fruit!r}")
    return PRICES[fruit]


class Shop(amp.AMP):
    @Sum.responder
    def sum(self, a: int, b: int) -> dict[str, int]:
        return {"total": a + b}

    @Price.responder
    @txgreen.green
    def price(self, fruit: str) -> dict[str, int]:
        return {"cents": slow_lookup(fruit)}


def main() -> None:
    from twisted.internet import reactor

    endpoint: Any = serverFromString(reactor, "tcp:0:interface=127.0.0.1")  # type: ignore[no-untyped-call]
    port = txgreen.block_on(endpoint.listen(Factory.forProtocol(Shop)))
    address = f"tcp:host=127.0.0.1:port={port.getHost().port}"
    print("AMP server listening on 127.0.0.1")

    client = txgreen.connect_protocol(address, amp.AMP, timeout=5)
    shop = txgreen.blocking(client, timeout=5)

    print("sum(1, 2) =", shop.callRemote(Sum, a=1, b=2)["total"])

    # Three slow lookups at once: each is answered by its own green thread on the server.
    start = time.monotonic()
    fruits = ["apple", "pear", "plum"]
    calls = [txgreen.spawn(shop.callRemote, Price, fruit=f) for f in fruits]
    for fruit, call in zip(fruits, calls, strict=True):
        print(f"price({fruit}) = {call.get()['cents']} cents")
    elapsed = time.monotonic() - start
    speed = "less" if elapsed < 0.6 else "more"
    print(f"three 0.2s lookups took {speed} than 0.6s (one after another: 0.6s)")

    try:
        shop.callRemote(Price, fruit="durian")
    except UnknownFruit as e:
        print(f"price(durian) raised UnknownFruit: {e}")

    transport: Any = client.transport
    transport.loseConnection()
    txgreen.block_on(port.stopListening())
    print("done")


if __name__ == "__main__":
    txgreen.run(main)
