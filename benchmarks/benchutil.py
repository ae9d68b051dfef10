"""Helpers shared by the benchmark programs (each runs as ``python benchmarks/NAME.py``)."""

from __future__ import annotations

import os
import platform
import re
import socket
import statistics
import subprocess
from collections.abc import Callable, Sequence
from importlib import metadata
from typing import Any, TypeVar

T = TypeVar("T")


def version(dist: str) -> str:
    """The installed version of distribution ``dist``, or "not installed"."""
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


def versions_line(peer: str, peer_version: str | None = None) -> str:
    """The report's versions line: Python, Twisted, greenlet, ``peer`` (its installed version
    unless ``peer_version`` is given, e.g. one reported by a child process), txgreen."""
    if peer_version is None:
        peer_version = version(peer)
    return (
        f"Python {platform.python_version()} ({platform.python_implementation()}), "
        f"Twisted {version('twisted')}, greenlet {version('greenlet')}, "
        f"{peer} {peer_version}, txgreen {version('txgreen')}"
    )


def cpu_seconds(pid: int, *, user_only: bool = False) -> float | None:
    """User + system CPU time of process ``pid`` so far (Linux ``/proc``), or None; only the
    user time with ``user_only``."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    ticks = int(fields[11]) + (0 if user_only else int(fields[12]))
    return ticks / os.sysconf("SC_CLK_TCK")


def stop_server(proc: subprocess.Popen[str]) -> None:
    """Terminate a server child process (kill it if it does not end within 10 s)."""
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    if proc.stdout is not None:
        proc.stdout.close()


def rotated(items: Sequence[T], turn: int) -> list[T]:
    """``items`` turned left by ``turn`` places: the order of the variants in round ``turn`` of
    an interleaved run (each variant goes first in turn)."""
    if not items:
        return []
    k = turn % len(items)
    return [*items[k:], *items[:k]]


def verdict(ratio: float, least: float) -> str:
    """PASS when ``ratio`` (as printed) reaches the target ``least``, otherwise MISS."""
    return "PASS" if ratio >= least else "MISS"


def at_least(least: float) -> Callable[[float], str]:
    """The tail of a target's ratio line: ``>= 0.90 PASS`` (or MISS) for a ratio."""

    def tail(ratio: float) -> str:
        return f">= {least:.2f} {verdict(ratio, least)}"

    return tail


def for_reference(ratio: float) -> str:
    """The tail of a ratio line that has no target."""
    return "(for reference)"


def ratio_line(
    label: str,
    num: Sequence[float],
    den: Sequence[float],
    tail: Callable[[float], str],
    width: int = 31,
) -> str:
    """One line of a report's ratios: the ratio of the medians of ``num`` and ``den`` (figures
    of the same interleaved rounds, paired by round), rounded as printed, ``tail(ratio)`` (a
    target's verdict or "(for reference)") and the spread of the per-round ratios."""
    ratio = round(statistics.median(num) / statistics.median(den), 3)
    paired = [a / b for a, b in zip(num, den, strict=True)]
    spread = f"per round {min(paired):.2f}-{max(paired):.2f}"
    return f"  {label:<{width}} = {ratio:6.3f}  {tail(ratio)}  ({spread})"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now (a server given it may still
    lose a race for it: callers retry)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class ChildFailed(RuntimeError):
    """A benchmark's child process exited with an error or printed something unexpected."""


def start_announcing_child(cmd: Sequence[str], what: str) -> tuple[subprocess.Popen[str], int]:
    """Start a server child that prints ``port N`` once it listens; its process and port.

    Raises :class:`ChildFailed` (killing the child) if its first line is anything else.
    """
    proc = subprocess.Popen(list(cmd), stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line.startswith("port "):
        proc.kill()
        raise ChildFailed(f"the {what} server did not start (it printed {line!r})")
    return proc, int(line.split()[1])


def run_child(cmd: Sequence[str], timeout: float) -> str:
    """Run ``cmd`` (a benchmark's child: a client that measures itself and prints its figures);
    its standard output.  Raises :class:`ChildFailed` with its error output if it fails."""
    try:
        proc = subprocess.run(
            list(cmd), capture_output=True, text=True, timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired as e:
        raise ChildFailed(f"{' '.join(cmd[1:])} did not finish within {timeout:g} s") from e
    if proc.returncode != 0:
        raise ChildFailed(
            f"{' '.join(cmd[1:])} exited with {proc.returncode}:\n{proc.stderr.strip()}"
        )
    return proc.stdout


HELLO_BODY = b"hello, world\n"
"""What every WSGI benchmark's server answers."""


def hello_headers() -> list[tuple[str, str]]:
    """The headers of :data:`HELLO_BODY` (a new list: WSGI servers may keep the one they get)."""
    return [("Content-Type", "text/plain"), ("Content-Length", str(len(HELLO_BODY)))]


def hello_app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    """Hello world as a WSGI application: no waiting at all."""
    start_response("200 OK", hello_headers())
    return [HELLO_BODY]


def no_access_log(request: object) -> None:
    """A twisted.web Site's ``log``: no access log, like the other servers measured
    (eventlet's ``log_output=False``, gunicorn's default); twisted.web's would go through
    Twisted's global log publisher for every request."""


WRK_COUNT = re.compile(r"^\s+(\d+) requests in ", re.MULTILINE)
"""How many answers ``wrk`` counted, in its report."""


def native_hello(body: bytes, headers: Sequence[tuple[str, str]]) -> object:
    """A native twisted.web ``Resource`` answering every GET with ``body`` and ``headers``:
    the floor the WSGI benchmarks measure txgreen's container against.  (twisted.web is
    imported here, after the caller has installed its reactor.)"""
    from twisted.web.resource import Resource

    class Hello(Resource):
        isLeaf = True

        def __init__(self) -> None:
            Resource.__init__(self)  # type: ignore[no-untyped-call]

        def render_GET(self, request: object) -> bytes:
            for name, value in headers:
                request.setHeader(name.encode(), value.encode())  # type: ignore[attr-defined]
            return body

    return Hello()
