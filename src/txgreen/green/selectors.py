"""A cooperative ``selectors`` module: the stdlib's selectors whose ``select()`` parks the green
thread on the reactor.

Each green selector is a subclass of the stdlib's and changes only ``select()`` (and, for the
selectors that own an fd, ``close()``): in a green thread it asks the stdlib's ``select(0)``
first; when nothing is ready and the timeout allows, the green thread parks on the reactor until
a registered fd is ready (for :class:`EpollSelector` and the other selectors with an fd of their
own: until that fd is readable) or the timeout passes, and asks again.  The answer is always the
stdlib's.  Outside green threads (another OS thread, the hub) ``select()`` is the stdlib's
blocking call.

As with :func:`txgreen.green.select.select`: a registered fd on which another green thread
already waits for the same direction raises :class:`~txgreen.errors.ConcurrentWaitError` in
:class:`SelectSelector` and :class:`PollSelector` (the epoll selector waits on its own fd and
has no such limit, but two green threads in one selector's ``select()`` raise it too).

``EVENT_READ``, ``EVENT_WRITE``, ``SelectorKey`` and ``BaseSelector`` are the stdlib's (so are
``KqueueSelector`` and ``DevpollSelector`` where they exist: not green yet).
"""

from __future__ import annotations

import selectors as _std
from collections.abc import Callable
from selectors import (
    EVENT_READ,
    EVENT_WRITE,
    BaseSelector,
    SelectorKey,
)
from time import monotonic as _monotonic

from txgreen.green import _fdwait

__all__ = [
    "EVENT_READ",
    "EVENT_WRITE",
    "BaseSelector",
    "DefaultSelector",
    "EpollSelector",
    "PollSelector",
    "SelectSelector",
    "SelectorKey",
]

if hasattr(_std, "KqueueSelector"):  # pragma: no cover - BSD and macOS, not green yet
    __all__ += ["KqueueSelector"]
    KqueueSelector = _std.KqueueSelector
if hasattr(_std, "DevpollSelector"):  # pragma: no cover - Solaris, not green yet
    __all__ += ["DevpollSelector"]
    DevpollSelector = _std.DevpollSelector

_Ready = list[tuple[SelectorKey, int]]


def _green_select(
    selector: BaseSelector,
    std_select: Callable[[float | None], _Ready],
    own_fd: int | None,
    timeout: float | None,
) -> _Ready:
    """``selector.select(timeout)`` through the stdlib's ``std_select`` (its bound method)."""
    caller = _fdwait.green_caller()
    if caller is None or (timeout is not None and timeout <= 0):
        return std_select(timeout)  # the stdlib's blocking call, or only a check
    ready = std_select(0)
    if ready:
        return ready
    hub, greenlet = caller
    deadline = None if timeout is None else _monotonic() + timeout
    while True:
        left = None if deadline is None else max(0.0, deadline - _monotonic())
        if own_fd is not None:
            readers, writers = [own_fd], []
        else:
            keys = selector.get_map().values()
            readers = [k.fd for k in keys if k.events & EVENT_READ]
            writers = [k.fd for k in keys if k.events & EVENT_WRITE]
        _fdwait.wait_many(hub, greenlet, readers, writers, left)
        ready = std_select(0)
        if ready or (deadline is not None and _monotonic() >= deadline):
            return ready


class SelectSelector(_std.SelectSelector):
    """The stdlib's ``selectors.SelectSelector``; :meth:`select` parks only the green thread."""

    def select(self, timeout: float | None = None) -> _Ready:
        """The ready ``(key, events)`` pairs, waiting up to ``timeout`` seconds (None: forever)."""
        return _green_select(self, super().select, None, timeout)


class PollSelector(_std.PollSelector):
    """The stdlib's ``selectors.PollSelector``; :meth:`select` parks only the green thread."""

    def select(self, timeout: float | None = None) -> _Ready:
        """The ready ``(key, events)`` pairs, waiting up to ``timeout`` seconds (None: forever)."""
        return _green_select(self, super().select, None, timeout)


if hasattr(_std, "EpollSelector"):

    class EpollSelector(_std.EpollSelector):
        """The stdlib's ``selectors.EpollSelector``; :meth:`select` parks only the green thread.

        A green thread waits on the reactor for the selector's own epoll fd to be readable.
        """

        def select(self, timeout: float | None = None) -> _Ready:
            """The ready ``(key, events)`` pairs, waiting up to ``timeout`` seconds (None:
            forever).
            """
            return _green_select(self, super().select, self.fileno(), timeout)

        def close(self) -> None:
            """Close the selector; a green thread waiting in :meth:`select` is answered at once
            (with the stdlib's ``ValueError`` for a closed epoll object).
            """
            try:
                fd = self.fileno()
            except ValueError:
                fd = -1  # closed already
            if fd >= 0:
                _fdwait.before_close(fd)
            super().close()


# The same choice as the stdlib's DefaultSelector, green.
DefaultSelector: type[BaseSelector] = globals()[_std.DefaultSelector.__name__]

__patched__: list[str] = [
    name
    for name in ("DefaultSelector", "SelectSelector", "PollSelector", "EpollSelector")
    if hasattr(_std, name)
]
