"""A green TCP port forwarder: every connection to it is relayed to an upstream server.

Run: ``.venv/bin/python examples/port_forward.py`` for the demo (an upper-casing echo server as
the upstream, a forwarder in front of it and a few green clients talking through it at once; it
prints what happened and exits), or ``examples/port_forward.py --listen PORT --to HOST:PORT`` to
run a forwarder (on 127.0.0.1).

Each accepted connection opens its own upstream connection and runs two *pumps*, each a green
thread: client -> upstream and upstream -> client.  A pump copies with ``recv``/``write`` (so a
slow receiver slows its sender down through the streams' back-pressure) and, when its source
reaches EOF, passes the EOF on with ``write_eof``: a half-close travels through the forwarder,
and the other direction goes on until it ends too.  If one direction fails (a reset), both
connections are aborted.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass

import txgreen
from txgreen import Stream


@dataclass
class Stats:
    connections: int = 0
    to_upstream: int = 0  # bytes
    to_client: int = 0
    half_closes: int = 0  # EOFs passed on with write_eof


def pump(src: Stream, dst: Stream) -> int:
    """Copy ``src`` to ``dst`` until EOF, then half-close ``dst``; the number of bytes copied."""
    total = 0
    try:
        while data := src.recv(65536):
            dst.write(data)
            total += len(data)
        dst.write_eof()
    except BaseException:
        # A reset, or the other pump failed and aborted us: tear down both sides.
        src.abort()
        dst.abort()
        raise
    return total


class Forwarder:
    def __init__(self, upstream: str) -> None:
        self.upstream = upstream  # a client endpoint description
        self.stats = Stats()

    def handle(self, client: Stream) -> None:
        """One accepted connection: connect upstream and run the two pumps to their end."""
        with txgreen.connect(self.upstream, timeout=10) as upstream:
            up = txgreen.spawn(pump, client, upstream)
            down = txgreen.spawn(pump, upstream, client)
            txgreen.joinall([up, down], raise_error=True)
            self.stats.connections += 1
            self.stats.to_upstream += up.get()
            self.stats.to_client += down.get()
            self.stats.half_closes += 2


# -- the demo -----------------------------------------------------------------------------------


def upper_echo(stream: Stream) -> None:
    """The demo's upstream: send everything back upper-cased; at EOF, a summary line."""
    total = 0
    while data := stream.recv():
        total += len(data)
        stream.write(data.upper())
    stream.write(f"upstream: {total} bytes, then EOF\n".encode())


def client(n: int, address: str) -> str:
    """Send a greeting and ``n`` x 100 KiB through the forwarder, half-close, read to EOF."""
    payload = f"hello from client {n}\n".encode() + b"x" * (n * 100 * 1024)
    with txgreen.connect(address, timeout=5) as stream:

        def send() -> None:
            # Writes block while the peer is not reading: write from a green thread of its
            # own while this one reads the answer.
            for i in range(0, len(payload), 8192):
                stream.write(payload[i : i + 8192])
            stream.write_eof()  # we are done sending; the answer keeps coming

        sender = txgreen.spawn(send)
        answer = stream.read()  # to EOF: the upstream's EOF, passed on by the forwarder
        sender.get()
    body, last = answer[: len(payload)], answer[len(payload) :].decode()
    assert body == payload.upper(), f"client {n}: the echo differs"
    return f"client {n}: sent {len(payload):,} bytes + EOF, got them back upper-cased + {last!r}"


def demo() -> None:
    upstream = txgreen.listen("tcp:0:interface=127.0.0.1", upper_echo)
    print(f"upstream (upper-casing echo) on 127.0.0.1:{upstream.port}")
    forwarder = Forwarder(f"tcp:host=127.0.0.1:port={upstream.port}")
    front = txgreen.listen("tcp:0:interface=127.0.0.1", forwarder.handle)
    print(f"forwarder on 127.0.0.1:{front.port} -> 127.0.0.1:{upstream.port}")

    address = f"tcp:host=127.0.0.1:port={front.port}"
    clients = [txgreen.spawn(client, n, address) for n in range(4)]
    for c in clients:
        print(c.get())

    front.close()
    assert front.join(timeout=5)
    upstream.close()
    assert upstream.join(timeout=5)
    s = forwarder.stats
    print(
        f"forwarder: {s.connections} connections, {s.to_upstream:,} bytes to upstream, "
        f"{s.to_client:,} bytes back, {s.half_closes} half-closes passed on"
    )


def run_forwarder(port: int, target: str) -> None:
    host, _, target_port = target.rpartition(":")
    forwarder = Forwarder(f"tcp:host={host}:port={target_port}")
    txgreen.serve(
        f"tcp:{port}:interface=127.0.0.1",
        forwarder.handle,
        on_listen=lambda lst: print(f"forwarding port {lst.port} to {target}", flush=True),
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="a green TCP port forwarder")
    parser.add_argument("--listen", type=int, metavar="PORT", help="the port to listen on")
    parser.add_argument("--to", metavar="HOST:PORT", help="where to forward connections")
    args = parser.parse_args()
    if args.listen is not None and args.to is not None:
        txgreen.run(run_forwarder, args.listen, args.to)
    elif args.listen is None and args.to is None:
        txgreen.run(demo)
    else:
        parser.error("--listen and --to go together")
