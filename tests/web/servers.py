"""Server subprocesses for the web tests: ``python -m txgreen serve``, ``twist``, ``twistd``.

:func:`start_serve` starts ``python -m txgreen serve ARGS`` and waits for the line it prints
on stderr per endpoint (``txgreen serve: listening on URL``); :func:`stop` signals a server
and collects its exit status and whole output.  Both streams are read by background OS
threads as the server writes, so a chatty server never blocks on a full pipe, and
:func:`output` shows what it wrote so far.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import IO

LOCAL = "tcp:0:interface=127.0.0.1"
"""An endpoint on a free port on loopback (the URL comes from the listening line)."""

SERVE_LISTENING = re.compile(r"^txgreen serve: listening on (\S+)$")
START_TIMEOUT = 30.0


@dataclass
class _Output:
    stdout: list[str] = field(default_factory=list)
    stderr: list[str] = field(default_factory=list)
    urls: list[str] = field(default_factory=list)
    changed: threading.Condition = field(default_factory=threading.Condition)
    readers: list[threading.Thread] = field(default_factory=list)


_outputs: dict[int, _Output] = {}


def _read(stream: IO[str], lines: list[str], out: _Output, pattern: re.Pattern[str]) -> None:
    for line in stream:
        with out.changed:
            lines.append(line)
            m = pattern.match(line.rstrip("\n"))
            if m:
                out.urls.append(m[1])
            out.changed.notify_all()
    with out.changed:
        out.changed.notify_all()


def _default_sigint() -> None:
    # A parent that ignores SIGINT passes that on; the server must see Ctrl-C.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def start_process(
    command: Sequence[str],
    *,
    pattern: re.Pattern[str],
    count: int = 1,
    cwd: str | os.PathLike[str] | None = None,
    env: dict[str, str] | None = None,
    timeout: float = START_TIMEOUT,
) -> tuple[subprocess.Popen[str], list[str]]:
    """Start ``command``; wait until ``count`` lines of its output match ``pattern``.

    Returns the process and the first group of each matching line.  If the process ends or
    ``timeout`` passes first, it is killed and AssertionError says what it wrote.
    """
    full_env = dict(os.environ, PYTHONUNBUFFERED="1", PYTHONIOENCODING="utf-8")
    full_env.update(env or {})
    process = subprocess.Popen(
        list(command),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        encoding="utf-8",
        cwd=cwd,
        env=full_env,
        preexec_fn=_default_sigint,
    )
    out = _Output()
    _outputs[process.pid] = out
    assert process.stdout is not None
    assert process.stderr is not None
    for stream, lines in ((process.stdout, out.stdout), (process.stderr, out.stderr)):
        reader = threading.Thread(target=_read, args=(stream, lines, out, pattern), daemon=True)
        reader.start()
        out.readers.append(reader)
    deadline = time.monotonic() + timeout
    with out.changed:
        while len(out.urls) < count:
            left = deadline - time.monotonic()
            if process.poll() is not None or left <= 0:
                break
            out.changed.wait(min(left, 0.1))
        urls = list(out.urls)
    if len(urls) < count:
        code, stdout, stderr = stop(process, signal.SIGKILL)
        raise AssertionError(
            f"{command} did not print {count} listening line(s) (exit status {code})\n"
            f"--- stdout\n{stdout}\n--- stderr\n{stderr}"
        )
    return process, urls


def start_serve(
    args: list[str],
    cwd: str | os.PathLike[str] | None = None,
    env: dict[str, str] | None = None,
) -> tuple[subprocess.Popen[str], str]:
    """Start ``python -m txgreen serve ARGS``; the process and the URL of its first endpoint.

    Waits for one ``listening on`` line per ``--listen`` option (one if there is none);
    :func:`urls` gives them all.
    """
    count = max(1, sum(1 for a in args if a in ("--listen", "-l") or a.startswith("--listen=")))
    process, found = start_process(
        [sys.executable, "-m", "txgreen", "serve", *args],
        pattern=SERVE_LISTENING,
        count=count,
        cwd=cwd,
        env=env,
    )
    return process, found[0]


def urls(process: subprocess.Popen[str]) -> list[str]:
    """Every URL the server said it listens on, in order."""
    out = _outputs[process.pid]
    with out.changed:
        return list(out.urls)


def output(process: subprocess.Popen[str]) -> tuple[str, str]:
    """(stdout, stderr) the process wrote so far."""
    out = _outputs[process.pid]
    with out.changed:
        return "".join(out.stdout), "".join(out.stderr)


def wait_for_output(
    process: subprocess.Popen[str], text: str, *, stream: str = "stderr", timeout: float = 15.0
) -> bool:
    """Wait until ``text`` appears in the process's ``stream``; False after ``timeout``."""
    out = _outputs[process.pid]
    deadline = time.monotonic() + timeout
    with out.changed:
        while True:
            lines = out.stderr if stream == "stderr" else out.stdout
            if text in "".join(lines):
                return True
            left = deadline - time.monotonic()
            if left <= 0 or (
                process.poll() is not None and not any(r.is_alive() for r in out.readers)
            ):
                return text in "".join(lines)
            out.changed.wait(min(left, 0.1))


def stop(
    process: subprocess.Popen[str], sig: int | None = signal.SIGTERM, timeout: float = 30.0
) -> tuple[int, str, str]:
    """Send ``sig`` (unless it has ended) and wait for the end: (status, stdout, stderr).

    ``sig=None`` sends nothing (the test signalled it already).  If it has not ended after
    ``timeout`` seconds it is killed, and AssertionError says so.
    """
    if sig is not None and process.poll() is None:
        process.send_signal(sig)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        out = _outputs.pop(process.pid, _Output())
        for reader in out.readers:
            reader.join(timeout=5)
        raise AssertionError(
            f"the server did not end within {timeout} s of signal {sig}\n"
            f"--- stdout\n{''.join(out.stdout)}\n--- stderr\n{''.join(out.stderr)}"
        ) from None
    out = _outputs.pop(process.pid, _Output())
    for reader in out.readers:
        reader.join(timeout=5)
    return process.returncode, "".join(out.stdout), "".join(out.stderr)
