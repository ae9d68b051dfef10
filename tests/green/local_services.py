"""Real Redis and PostgreSQL servers on 127.0.0.1 for the real-library tests.

Each server is a context manager that starts its own process on a free port in a fresh
temporary directory, waits until it answers, and when left stops it, waits for it, removes the
directory and checks that no process of its session is left (PostgreSQL forks a process per
connection and a few helpers: all of them must be gone).

- :func:`redis_server` runs Debian's ``redis-server`` (``apt-get install redis-server``; the
  Makefile's set-up installs it when it is missing and apt-get is there), with no persistence.
- :func:`postgres_server` runs the PostgreSQL that the ``pgserver`` package ships (its
  ``pginstall/bin``): ``initdb`` then ``postgres`` listening on 127.0.0.1 only. It does not use
  ``pgserver.get_server()``: that listens on a Unix socket only, and when run as root it adds a
  system user with ``useradd`` and opens up the permissions of every parent directory of the data
  and install directories. PostgreSQL refuses to run as root, so as root both programs run as
  ``nobody`` here (the data directory is made in the system's temporary directory and given to
  that user; the install directory must be readable by it).

These run outside green threads (module-scoped fixtures): they block while a server starts.
A server that cannot be started raises :class:`ServiceUnavailable` saying how to install it; the
tests fail on it, never skip.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

STARTUP_TIMEOUT = 20.0  # seconds a server may take to answer
STOP_TIMEOUT = 10.0  # seconds a server may take to exit once asked

REDIS_INSTALL_HINT = (
    "install Redis: `apt-get install -y redis-server` on Debian/Ubuntu (the Makefile's set-up "
    "does this when apt-get is available), `brew install redis` on macOS, or put a "
    "redis-server binary on PATH"
)
POSTGRES_INSTALL_HINT = (
    "install the test extra: `pip install -e '.[test]'` (it brings pgserver, whose wheel "
    "ships the PostgreSQL binaries, and psycopg)"
)


class ServiceUnavailable(RuntimeError):
    """A server the tests need cannot be found or started on this machine."""


class StrayProcesses(AssertionError):
    """Processes of a stopped server are still running."""


@dataclass(frozen=True)
class Server:
    """A running server: where it listens and its process."""

    host: str
    port: int
    process: subprocess.Popen[bytes]
    directory: Path  # its temporary directory (data, log)

    @property
    def log(self) -> str:
        """What the server has written to its log so far."""
        path = self.directory / "log"
        return path.read_text(errors="replace") if path.exists() else ""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def session_processes(session: int) -> list[int]:
    """The pids of the running processes in session ``session`` (Linux: from /proc)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue  # gone meanwhile
        # pid (comm) state ppid pgrp session ...: comm may hold spaces, so split after ")".
        fields = stat.rpartition(")")[2].split()
        if fields[0] != "Z" and int(fields[3]) == session:
            found.append(int(entry))
    return found


def _wait_until(ready: Callable[[], bool], server: Server, what: str) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while not ready():
        if server.process.poll() is not None:
            raise ServiceUnavailable(
                f"{what} exited with status {server.process.returncode} while starting; "
                f"its log:\n{server.log}"
            )
        if time.monotonic() > deadline:
            raise ServiceUnavailable(
                f"{what} did not answer within {STARTUP_TIMEOUT} s; its log:\n{server.log}"
            )
        time.sleep(0.02)


def stop_server(server: Server, sig: signal.Signals, grace: float = STOP_TIMEOUT) -> None:
    """Ask the server to exit with ``sig``, wait, kill it if it will not; check nothing stays.

    A server still running ``grace`` seconds after ``sig`` is killed; a process of its session
    still running ``grace`` seconds after that is killed too, and reported with
    :class:`StrayProcesses`.
    """
    process = server.process
    if process.poll() is None:
        process.send_signal(sig)
        try:
            process.wait(grace)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(STOP_TIMEOUT)
    # The server ran as a session leader (start_new_session): its children share the session.
    deadline = time.monotonic() + grace
    while (left := session_processes(process.pid)) and time.monotonic() < deadline:
        time.sleep(0.02)
    if left:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        raise StrayProcesses(f"processes of the stopped server still run: {left}")


def _as_user() -> tuple[int, int] | None:
    """(uid, gid) to run servers as: ``nobody`` when we are root (PostgreSQL refuses root)."""
    if os.geteuid() != 0:
        return None
    entry = pwd.getpwnam("nobody")
    return entry.pw_uid, entry.pw_gid


@contextmanager
def _directory(prefix: str, owner: tuple[int, int] | None) -> Iterator[Path]:
    directory = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        if owner is not None:
            os.chown(directory, *owner)
        yield directory
    finally:
        shutil.rmtree(directory, ignore_errors=True)


# -- Redis ----------------------------------------------------------------------------------------


def redis_server_binary(path: str | None = None) -> str:
    """The path of ``redis-server``, or :class:`ServiceUnavailable` saying how to install it.

    Searched on ``path`` (default: ``PATH``, then ``/usr/sbin`` and ``/sbin``).
    """
    found = shutil.which("redis-server", path=path)
    if found is None and path is None:
        found = shutil.which("redis-server", path="/usr/sbin:/sbin")
    if found is None:
        raise ServiceUnavailable(f"redis-server is not installed: {REDIS_INSTALL_HINT}")
    return found


def _redis_answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
            s.sendall(b"PING\r\n")
            return s.recv(100) == b"+PONG\r\n"
    except OSError:
        return False


@contextmanager
def redis_server() -> Iterator[Server]:
    """A ``redis-server`` on 127.0.0.1 (no persistence), stopped and checked when left."""
    binary = redis_server_binary()
    owner = _as_user()
    with _directory("txgreen-redis-", owner) as directory, (directory / "log").open("wb") as log:
        port = free_port()
        process = subprocess.Popen(
            [
                binary,
                "--bind",
                "127.0.0.1",
                "--port",
                str(port),
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(directory),
                "--hz",
                "100",  # blocked clients' timeouts checked every 10 ms (default: 100 ms)
                "--maxclients",
                "1000",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            cwd=directory,
        )
        server = Server("127.0.0.1", port, process, directory)
        try:
            _wait_until(lambda: _redis_answers(port), server, "redis-server")
            yield server
        finally:
            stop_server(server, signal.SIGTERM)


# -- PostgreSQL -----------------------------------------------------------------------------------


def postgres_binaries(package: str = "pgserver") -> Path:
    """The ``bin`` directory of the PostgreSQL that the ``pgserver`` package ships.

    Found without importing ``pgserver`` (importing it sets up a lock file and an atexit hook).
    """
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ServiceUnavailable(f"the {package} package is not installed: {POSTGRES_INSTALL_HINT}")
    bindir = Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"
    if not (bindir / "postgres").exists():
        raise ServiceUnavailable(f"pgserver has no PostgreSQL binaries in {bindir}")
    return bindir


def _postgres_answers(port: int) -> bool:
    import psycopg

    try:
        with psycopg.connect(host="127.0.0.1", port=port, user="postgres", connect_timeout=2):
            return True
    except psycopg.OperationalError:
        return False


@contextmanager
def postgres_server(max_connections: int = 200) -> Iterator[Server]:
    """A PostgreSQL server on 127.0.0.1 (user ``postgres``, trust auth, no fsync)."""
    bindir = postgres_binaries()
    owner = _as_user()
    uid, gid = owner if owner is not None else (None, None)
    groups: list[int] | None = None if owner is None else []  # drop root's groups too
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C", "TZ": "UTC"}
    with _directory("txgreen-pg-", owner) as directory:
        data = directory / "data"
        initdb = subprocess.run(
            [
                str(bindir / "initdb"),
                "-D",
                str(data),
                "-U",
                "postgres",
                "--auth=trust",
                "--encoding=UTF8",
                "--no-sync",
                "--no-instructions",
            ],
            capture_output=True,
            text=True,
            cwd=directory,
            env=env,
            check=False,
            user=uid,
            group=gid,
            extra_groups=groups,
        )
        if initdb.returncode != 0:
            raise ServiceUnavailable(
                f"initdb failed (status {initdb.returncode}): {initdb.stderr.strip()}"
                + (
                    f"\n(running as {pwd.getpwuid(owner[0]).pw_name}: every directory above "
                    f"{bindir} must be readable and searchable by that user)"
                    if owner is not None
                    else ""
                )
            )
        port = free_port()
        with (directory / "log").open("wb") as log:
            process = subprocess.Popen(
                [
                    str(bindir / "postgres"),
                    "-D",
                    str(data),
                    "-h",
                    "127.0.0.1",
                    "-p",
                    str(port),
                    "-k",
                    "",  # no Unix socket
                    "-c",
                    "fsync=off",
                    "-c",
                    f"max_connections={max_connections}",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                cwd=directory,
                env=env,
                user=uid,
                group=gid,
                extra_groups=groups,
            )
        server = Server("127.0.0.1", port, process, directory)
        try:
            _wait_until(lambda: _postgres_answers(port), server, "postgres")
            yield server
        finally:
            stop_server(server, signal.SIGINT)  # "fast" shutdown: ends the sessions, then exits
