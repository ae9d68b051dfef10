"""Shared by the subprocess scripts: install the reactor named on the command line.

Each script calls :func:`install` with ``sys.argv[1]`` before anything imports
``twisted.internet.reactor`` (and so before txgreen touches the reactor), then prints the
reactor's class so the test can check the right one really ran.
"""

from __future__ import annotations

import importlib
import os
import sys
import threading

REACTORS = ("default", "epoll", "poll", "select", "asyncio")


def install(name: str) -> str:
    """Install reactor ``name``; return the installed reactor's class name."""
    if name not in REACTORS:
        raise SystemExit(f"unknown reactor {name!r}; choose one of {REACTORS}")
    if "twisted.internet.reactor" in sys.modules:
        raise SystemExit("a reactor was installed before reactor_choice.install()")
    if name != "default":
        # For asyncio this is twisted.internet.asyncioreactor.install(), and so on.
        importlib.import_module(f"twisted.internet.{name}reactor").install()
    from twisted.internet import reactor

    return type(reactor).__name__


def child_pids() -> list[int]:
    """The ids of this process's live child processes (Linux: read from /proc)."""
    me = os.getpid()
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        # The command name (field 2) is in parentheses and may contain spaces.
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == me:
            found.append(int(entry))
    return found


def thread_names() -> list[str]:
    """Names of the live OS threads of this process."""
    return sorted(t.name for t in threading.enumerate())


def say(*parts: object) -> None:
    """Print one line and flush (the test may be reading it while we run)."""
    print(*parts, flush=True)


def blocked(who: str) -> None:
    """Block the calling green thread on a Deferred that never fires; say what woke it."""
    from twisted.internet import defer

    import txgreen

    try:
        txgreen.block_on(defer.Deferred())
    except BaseException as e:
        say(f"{who}: woken by {type(e).__name__}")
        raise
