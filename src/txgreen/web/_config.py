"""``ServeConfig``: what ``python -m txgreen serve``, the twist plugin and the gunicorn worker
are told to serve, and how.  One object, so the three ways of serving read the same options.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from txgreen.web._site import Limits

__all__ = ["DEFAULT_LISTEN", "ServeConfig"]

DEFAULT_LISTEN = "tcp:8000:interface=127.0.0.1"
"""Where a server listens when told nothing: loopback only, port 8000 (as gunicorn)."""


@dataclass
class ServeConfig:
    """The options of one server (see ``python -m txgreen serve --help``)."""

    app: str
    """``module:name`` or ``module:factory()`` (``module.name`` is accepted too)."""
    listen: list[str] = field(default_factory=lambda: [DEFAULT_LISTEN])
    """Twisted server endpoint strings (``tcp:8080``, ``unix:/run/app.sock``, ``ssl:...``)."""
    patch: bool = False
    """Call ``txgreen.patch()`` before importing the application."""
    access_log: str | None = "-"
    """A file to append the common log format to, ``-`` for stdout, ``None`` for no log."""
    graceful_timeout: float = 30.0
    """Seconds in-flight requests have to finish after SIGTERM/SIGINT before they are aborted."""
    chdir: str | None = None
    """Change to this directory (and put it first on ``sys.path``) before importing the app."""
    workers: int | None = None
    """Run gunicorn with this many txgreen workers instead of serving in this process."""
    reactor: str = "default"
    """The Twisted reactor to install (default, epoll, poll, select, asyncio)."""
    limits: Limits = field(default_factory=Limits)
    """The bounds that protect the server from hostile clients."""
