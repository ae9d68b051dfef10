"""``Timeout``: a deadline for every blocking call in a block, enforced by the reactor."""

from __future__ import annotations

import sys
from types import TracebackType
from typing import TYPE_CHECKING

from greenlet import greenlet as _greenlet

from txgreen._hub import get_hub
from txgreen._util import hidden_in_reports

if TYPE_CHECKING:
    from twisted.internet.base import DelayedCall

if sys.version_info >= (3, 11):
    from builtins import BaseExceptionGroup
else:  # pragma: no cover - Python 3.10
    from exceptiongroup import BaseExceptionGroup

__all__ = ["Timeout"]

__tracebackhide__ = hidden_in_reports  # pytest: the user's frames, not txgreen's


class Timeout(TimeoutError):
    """A deadline, and the exception raised when it passes.

    As an exception it is what ``block_on(..., timeout=)``, ``GreenThread.get(timeout=)`` and
    friends raise when their time is up; it derives from the built-in :class:`TimeoutError`, so
    ``except TimeoutError`` catches it too.

    As a context manager it bounds every blocking call made inside the block by the current green
    thread::

        with txgreen.Timeout(5):
            line = block_on(fetch_line())      # each of these raises the Timeout
            block_on(store(line))              # once 5 seconds have passed in total

    The deadline is a ``callLater`` on the reactor, so it fires even while the green thread waits
    on something that never completes.  When it fires, the blocked call raises *this* Timeout
    instance (so nested timeouts can tell whose deadline passed: ``except Timeout as t: if t is
    mine``) and the Deferred it was waiting on is cancelled.  If the deadline passes while the
    green thread is busy rather than waiting, the Timeout is raised at its next blocking call
    inside the block.

    ``silent=True`` makes the block end quietly when *its own* deadline passes; a deadline of an
    enclosing Timeout still propagates.  ``seconds=None`` means no deadline (handy when the
    value comes from configuration).
    """

    seconds: float | None
    silent: bool
    expired: bool

    def __init__(self, seconds: float | None = None, *, silent: bool = False) -> None:
        super().__init__(f"timed out after {seconds} seconds")
        self.seconds = seconds
        self.silent = silent
        self.expired = False
        self._call: DelayedCall | None = None
        self._target: _greenlet | None = None

    def __str__(self) -> str:
        return f"timed out after {self.seconds} seconds"

    def __repr__(self) -> str:
        state = "expired" if self.expired else ("active" if self.pending else "idle")
        return f"<txgreen.Timeout seconds={self.seconds} {state}>"

    @property
    def pending(self) -> bool:
        """True while the deadline is armed and has not passed."""
        return self._call is not None and self._call.active()

    def start(self) -> Timeout:
        """Arm the deadline for the current green thread (``with`` does this for you)."""
        if self._call is not None:
            raise RuntimeError("this Timeout is already started; create a new one per block")
        if self.seconds is None:
            return self
        from txgreen._greenthread import current_hub_and_greenlet

        self._target, hub = current_hub_and_greenlet("txgreen.Timeout")
        self._call = hub.reactor.callLater(max(float(self.seconds), 0.0), self._expire)
        return self

    def _expire(self) -> None:
        self.expired = True
        if self._target is not None:
            get_hub().interrupt(self._target, self)

    def cancel(self) -> None:
        """Disarm the deadline; an expiry not yet delivered is dropped."""
        call = self._call
        if call is not None and call.active():
            call.cancel()
        if self._target is not None:
            get_hub().discard_pending(self._target, self)

    def __enter__(self) -> Timeout:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        self.cancel()
        if exc is self:
            return self.silent
        if self.silent and isinstance(exc, BaseExceptionGroup):
            # A TaskGroup inside the block reports this deadline with its threads' errors:
            # a silent Timeout takes only itself out.
            mine, rest = exc.split(lambda e: e is self)
            if mine is not None:
                if rest is None:
                    return True
                raise rest
        return False
