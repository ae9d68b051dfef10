"""A green echo server and three green clients, all on Twisted's reactor, in plain sync style.

The server's handler is an ordinary function that reads lines and writes them back; each
connection runs it in its own green thread.  The clients connect, send a line, read the answer
and hang up.  Then the server stops and the program exits.

Run it: ``python examples/echo_server.py``
"""

from __future__ import annotations

import txgreen
from txgreen import Stream


def echo(stream: Stream) -> None:
    """Serve one connection: send every line back until the client hangs up."""
    for line in stream:
        stream.write(line)


def client(n: int, address: str) -> str:
    with txgreen.connect(address, timeout=5) as stream:
        stream.write(f"hello from client {n}\n".encode())
        answer = stream.readline()
    return f"client {n} got {answer!r}"


def main() -> None:
    served = [0]

    def counting_echo(stream: Stream) -> None:
        served[0] += 1
        echo(stream)

    listener = txgreen.listen("tcp:0:interface=127.0.0.1", counting_echo)
    print(f"echo server listening on 127.0.0.1:{listener.port}")
    address = f"tcp:host=127.0.0.1:port={listener.port}"

    clients = [txgreen.spawn(client, n, address) for n in range(3)]
    for c in clients:
        print(c.get())

    listener.close()  # stop accepting
    listener.join(timeout=5)  # the handlers end as their clients hang up
    print(f"server stopped; {served[0]} connections served")


if __name__ == "__main__":
    txgreen.run(main)
