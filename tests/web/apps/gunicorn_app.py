"""A tiny WSGI application for tests/web/test_gunicorn.py, served by a real gunicorn master.

Paths (each answers ``PID\\n`` unless said otherwise):

- ``/``: at once;
- ``/sleep?S``: after waiting S seconds in its green thread (the reactor keeps running);
- ``/block?S``: after blocking the reactor's thread S seconds with ``time.sleep`` (the
  mistake txgreen's blocking detector names);
- ``/fail``: raises ``RuntimeError("the application failed")`` (a 500 response);
- ``/busiest``: ``PID MAX``, MAX the most requests this worker has run at once so far;
- ``/info``: ``PID REACTOR PATCHED``, the reactor's class and whether ``txgreen.patch()`` ran.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable
from typing import Any

import txgreen

_running = 0
_busiest = 0


def blocking_call(seconds: float) -> None:
    """Block the reactor's thread (the application was not patched)."""
    time.sleep(seconds)


def _body(environ: dict[str, Any]) -> str:
    path = environ["PATH_INFO"]
    query = environ.get("QUERY_STRING", "")
    if path == "/sleep":
        txgreen.sleep(float(query))
    elif path == "/block":
        blocking_call(float(query))
    elif path == "/fail":
        raise RuntimeError("the application failed")
    elif path == "/busiest":
        return f"{os.getpid()} {_busiest}"
    elif path == "/info":
        from twisted.internet import reactor

        patched = "patched" if txgreen.patched() else "unpatched"
        return f"{os.getpid()} {type(reactor).__name__} {patched}"
    return str(os.getpid())


def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    """The application: see the module's docstring."""
    global _running, _busiest
    _running += 1
    _busiest = max(_busiest, _running)
    try:
        body = f"{_body(environ)}\n".encode()
    finally:
        _running -= 1
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
