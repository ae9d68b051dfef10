"""Streams over UNIX sockets: listen("unix:/path"), connect("unix:path=/path")."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from twisted.internet.address import UNIXAddress
from twisted.internet.error import CannotListenError, ConnectError

import txgreen
from txgreen._stream import Stream, connect, listen


@pytest.fixture
def sock_path() -> Iterator[Path]:
    # A short directory: a socket path must fit in sun_path (108 bytes on Linux).
    directory = Path(tempfile.mkdtemp(prefix="txg-", dir="/tmp"))
    try:
        yield directory / "s.sock"
    finally:
        shutil.rmtree(directory)


def echo(stream: Stream) -> None:
    while chunk := stream.recv(65536):
        stream.write(chunk)


def test_unix_echo_half_close_and_eof(sock_path: Path) -> None:
    server_side: list[tuple[object, object]] = []

    def handler(stream: Stream) -> None:
        server_side.append((stream.host, stream.peer))
        request = stream.read()  # to EOF: the client half-closes
        stream.write(b"got " + request)

    with listen(f"unix:{sock_path}", handler) as listener:
        assert sock_path.is_socket()
        assert listener.address == UNIXAddress(str(sock_path))
        with connect(f"unix:path={sock_path}", timeout=5) as s:
            assert s.peer == UNIXAddress(str(sock_path))
            s.write(b"ping\n")
            s.write(b"pong")
            s.write_eof()  # UNIX sockets half-close like TCP
            assert s.read() == b"got ping\npong"
            assert s.read() == b""
        assert listener.join(timeout=5)
    # The server's end: bound to the path; the client's socket has no name.
    assert server_side == [(UNIXAddress(str(sock_path)), UNIXAddress(None))]


def test_unix_round_trips_with_lines(sock_path: Path) -> None:
    with listen(f"unix:{sock_path}", echo) as listener:
        with connect(f"unix:path={sock_path}", timeout=5) as s:
            for i in range(3):
                s.write(b"line %d\n" % i)
                assert s.readline() == b"line %d\n" % i
            payload = b"u" * 1_000_000  # more than the socket buffers hold: back-pressure
            writer = txgreen.spawn(s.write, payload)
            assert s.read_exactly(len(payload)) == payload
            writer.get(timeout=5)
        assert listener.join(timeout=5)


def test_unix_listener_has_no_port(sock_path: Path) -> None:
    with listen(f"unix:{sock_path}", echo) as listener:
        with pytest.raises(AttributeError, match=r"^Listener.port: UNIXAddress\(.*\) has no port"):
            _ = listener.port
        assert "s.sock" in repr(listener)


def test_unix_close_removes_the_socket_file(sock_path: Path) -> None:
    lock = Path(f"{sock_path}.lock")  # the endpoint's lock file (lockfile=1, the default)
    listener = listen(f"unix:{sock_path}", echo)
    try:
        assert sock_path.is_socket()
        assert lock.is_symlink()  # twisted's FilesystemLock is a symlink naming our pid
        with connect(f"unix:path={sock_path}") as s:
            s.write(b"x")
            assert s.recv() == b"x"
    finally:
        listener.close()
    assert not sock_path.exists()
    assert not lock.is_symlink()
    with pytest.raises(ConnectError):
        connect(f"unix:path={sock_path}")
    assert listener.join(timeout=5)


def test_unix_path_in_use_cannot_listen(sock_path: Path) -> None:
    with (
        listen(f"unix:{sock_path}", echo),
        pytest.raises(CannotListenError),
    ):
        listen(f"unix:{sock_path}", echo)
    assert not sock_path.exists()  # the first listener cleaned up; the second did not touch it


def test_unix_handler_return_gives_the_client_eof(sock_path: Path) -> None:
    def handler(stream: Stream) -> None:
        stream.write(b"hello and goodbye\n")

    with (
        listen(f"unix:{sock_path}", handler) as listener,
        connect(f"unix:path={sock_path}", timeout=5) as s,
    ):
        assert list(s) == [b"hello and goodbye\n"]
        assert listener.join(timeout=5)
