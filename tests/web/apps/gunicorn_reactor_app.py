"""An application that imports Twisted's reactor when it is imported (for --preload tests)."""

from __future__ import annotations

from gunicorn_app import app
from twisted.internet import reactor  # noqa: F401  # installs the default reactor

__all__ = ["app"]
