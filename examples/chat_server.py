"""A green chat server: every line a client sends goes to every other client.

Run: ``.venv/bin/python examples/chat_server.py`` for the demo (a server on a free loopback port
and a scripted conversation between green clients that join, chat and leave; it prints what
each client sees and exits), or ``examples/chat_server.py --serve PORT`` to keep a server
running (try it with ``nc 127.0.0.1 PORT``).

The protocol is line based: the server asks ``name?``, the client answers with its name, then
each line it sends reaches the others as ``<name> line``.  ``/quit`` (or hanging up) leaves.

How the server is built:

- each connection's handler is the connection's *reader* green thread: it reads lines and fans
  each one out to the other members;
- each member has an *outbox* (a bounded ``txgreen.Queue``) and a *writer* green thread that
  takes lines from it and writes them to the connection.  Fanning out is ``put_nowait`` on each
  outbox, which never blocks, so a client that reads slowly holds up nobody but itself;
- a client that falls about ``outbox_size`` lines behind (its writer stuck because the client
  does not read) is dropped, rather than letting its backlog grow without bound.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass

import txgreen
from txgreen import GreenThread, Queue, Stream, StreamClosed

OUTBOX_SIZE = 100  # lines a member may fall behind before it is dropped


@dataclass
class Member:
    name: str
    stream: Stream
    outbox: Queue[str | None]


class ChatServer:
    def __init__(self, outbox_size: int = OUTBOX_SIZE) -> None:
        self.outbox_size = outbox_size
        self.members: dict[str, Member] = {}
        self.messages = 0  # chat lines received
        self.deliveries = 0  # lines queued for other members
        self.dropped: list[str] = []

    def handle(self, stream: Stream) -> None:
        """One connection (its reader green thread): ask the name, then relay its lines."""
        stream.write(b"name?\n")
        name = stream.readline().decode(errors="replace").strip()
        if not name or name in self.members:
            stream.write(b"that name is taken\n" if name else b"a name is needed\n")
            return
        member = Member(name, stream, Queue(self.outbox_size))
        others = sorted(self.members)
        self.members[name] = member
        writer = txgreen.spawn(self._write_outbox, member)
        member.outbox.put_nowait(f"hello {name}; here: {', '.join(others) or 'nobody else'}\n")
        self.broadcast(name, f"* {name} joined\n")
        quit_ = False
        try:
            for line in stream:
                text = line.decode(errors="replace").rstrip("\r\n")
                if text == "/quit":
                    quit_ = True
                    break
                self.messages += 1
                self.broadcast(name, f"<{name}> {text}\n")
        except StreamClosed:
            pass  # dropped: drop() aborted the connection
        finally:
            self._leave(member, writer, quit_)

    def _leave(self, member: Member, writer: GreenThread[None], quit_: bool) -> None:
        if self.members.get(member.name) is member:
            del self.members[member.name]
            self.broadcast(member.name, f"* {member.name} left\n")
        if quit_:
            member.outbox.put_nowait(f"bye {member.name}\n")
        # The writer's signal to stop.  broadcast() keeps two free places in every outbox, for
        # the "bye" line and this.
        member.outbox.put_nowait(None)
        writer.join()  # everything queued is written before the handler closes the connection

    def broadcast(self, sender: str, line: str) -> None:
        """Queue ``line`` for every member but ``sender``; never blocks."""
        for member in list(self.members.values()):
            if member.name == sender or self.members.get(member.name) is not member:
                continue  # the sender, or dropped while this loop ran
            if member.outbox.qsize() >= self.outbox_size - 2:  # room for "bye" and the stop
                self.drop(member)
                continue
            member.outbox.put_nowait(line)
            self.deliveries += 1

    def drop(self, member: Member) -> None:
        """A member too far behind: forget it and abort its connection (its reader then ends)."""
        if self.members.get(member.name) is not member:
            return
        del self.members[member.name]
        self.dropped.append(member.name)
        member.stream.abort()
        self.broadcast(member.name, f"* {member.name} was dropped (too slow)\n")

    def _write_outbox(self, member: Member) -> None:
        """A member's writer green thread: write its outbox to its connection, in order."""
        while (line := member.outbox.get()) is not None:
            try:
                member.stream.write(line.encode())
            except StreamClosed:
                return  # the connection is gone; the reader cleans up


# -- the demo: scripted green clients ------------------------------------------------------------


class Client:
    """A demo client: a green reader thread puts each received line in ``inbox``."""

    def __init__(self, name: str, address: str) -> None:
        self.name = name
        self.stream = txgreen.connect(address, timeout=5)
        self.inbox: Queue[str | None] = Queue()
        self.reader = txgreen.spawn(self._read)
        self.expect("name?")
        self.stream.write(f"{name}\n".encode())

    def _read(self) -> None:
        try:
            for line in self.stream:
                self.inbox.put(line.decode().rstrip("\n"))
        except StreamClosed:
            return  # we closed the stream ourselves
        self.inbox.put(None)  # EOF

    def expect(self, line: str | None) -> None:
        """Wait for the next line (None: EOF), check it and print it."""
        got = self.inbox.get(timeout=5)
        assert got == line, f"{self.name} expected {line!r}, got {got!r}"
        if got is not None and got != "name?":
            print(f"  {self.name:<6}| {got}")

    def say(self, text: str, *listeners: Client) -> None:
        print(f"{self.name} says {text!r}")
        self.stream.write(f"{text}\n".encode())
        for other in listeners:
            other.expect(f"<{self.name}> {text}")

    def leave(self, *listeners: Client) -> None:
        print(f"{self.name} leaves")
        self.stream.write(b"/quit\n")
        self.expect(f"bye {self.name}")
        self.expect(None)  # the server closed the connection
        self.reader.join()
        self.stream.close(wait=True, timeout=5)
        for other in listeners:
            other.expect(f"* {self.name} left")


def join(name: str, address: str, greeting: str, *members: Client) -> Client:
    print(f"{name} joins")
    client = Client(name, address)
    client.expect(greeting)
    for other in members:
        other.expect(f"* {name} joined")
    return client


def big_line(i: int) -> str:
    return f"{i:04d} " + "z" * 49_995


def flood(sender: Client, slow: Client) -> int:
    """Send long lines from ``sender`` until the server drops ``slow``; how many were sent."""
    sent = 0
    while sent < 1000:
        sender.stream.write(f"{big_line(sent)}\n".encode())
        sent += 1
        if sender.inbox.qsize():  # the only thing the sender can receive now: the drop notice
            return sent
        txgreen.sleep(0)  # let the server relay it
    raise AssertionError(f"{slow.name} was not dropped")


def demo() -> None:
    server = ChatServer(outbox_size=64)
    listener = txgreen.listen("tcp:0:interface=127.0.0.1", server.handle)
    print(f"chat server listening on 127.0.0.1:{listener.port}")
    address = f"tcp:host=127.0.0.1:port={listener.port}"

    alice = join("alice", address, "hello alice; here: nobody else")
    bob = join("bob", address, "hello bob; here: alice", alice)
    alice.say("hi bob", bob)
    carol = join("carol", address, "hello carol; here: alice, bob", alice, bob)
    bob.say("welcome carol", alice, carol)
    carol.say("thanks! who else is coming?", alice, bob)

    # A client that hangs up without /quit: the others see it leave all the same.
    print("dave joins and hangs up at once")
    dave = Client("dave", address)
    dave.expect("hello dave; here: alice, bob, carol")
    for c in (alice, bob, carol):
        c.expect("* dave joined")
    dave.stream.close(wait=True, timeout=5)
    dave.reader.join()
    for c in (alice, bob, carol):
        c.expect("* dave left")

    # Three green clients talking at once: each line still reaches both others, in the order
    # each sender wrote its lines.
    print("alice, bob and carol each send 20 lines at once")
    clients = [alice, bob, carol]

    def chatter(c: Client) -> None:
        c.stream.write(b"".join(f"{c.name} {i}\n".encode() for i in range(20)))

    txgreen.joinall([txgreen.spawn(chatter, c) for c in clients], raise_error=True)
    for c in clients:
        seen: dict[str, list[int]] = {}
        for _ in range(40):
            line = c.inbox.get(timeout=5)
            assert line is not None
            sender, n = line.split("> ")[1].split()
            seen.setdefault(sender, []).append(int(n))
        assert seen == {o.name: list(range(20)) for o in clients if o is not c}, seen
        print(f"  {c.name:<6}| got 40 lines, each sender's 20 in order")

    # A client that stops reading: its writer blocks once the socket buffers are full, its
    # outbox fills up, and the server drops it; the others get every line all the same.
    eve = join("eve", address, "hello eve; here: alice, bob, carol", alice, bob, carol)
    print("eve stops reading; alice sends 50,000-byte lines until the server drops eve")
    eve.reader.kill()
    sent = flood(alice, eve)
    alice.expect("* eve was dropped (too slow)")
    for c in (bob, carol):
        got = [c.inbox.get(timeout=5) for _ in range(sent + 1)]
        assert "* eve was dropped (too slow)" in got, got[-3:]
        got.remove("* eve was dropped (too slow)")
        assert got == [f"<alice> {big_line(i)}" for i in range(sent)]
        print(f"  {c.name:<6}| got all of alice's long lines, and: * eve was dropped (too slow)")
    eve.stream.abort()  # the server aborted it already
    print(f"eve was dropped after {sent} lines (the server keeps {server.outbox_size} per member)")

    bob.leave(alice, carol)
    carol.say("bye alice", alice)
    alice.leave(carol)
    carol.leave()

    listener.close()
    assert listener.join(timeout=5)
    print(
        f"server: {server.messages} messages relayed as {server.deliveries} lines, "
        f"{len(server.members)} members left, {len(server.dropped)} dropped"
    )


def serve(port: int) -> None:
    server = ChatServer()
    txgreen.serve(
        f"tcp:{port}:interface=127.0.0.1",
        server.handle,
        on_listen=lambda lst: print(f"chat server listening on 127.0.0.1:{lst.port}", flush=True),
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="a green chat server")
    parser.add_argument("--serve", type=int, metavar="PORT", help="run a server on PORT")
    args = parser.parse_args()
    if args.serve is not None:
        txgreen.run(serve, args.serve)
    else:
        txgreen.run(demo)
