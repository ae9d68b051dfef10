"""Helpers shared by the benchmark programs (each runs as ``python benchmarks/NAME.py``)."""

from __future__ import annotations

import os
import platform
import subprocess
from importlib import metadata


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


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of process ``pid`` so far (Linux ``/proc``), or None."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


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
