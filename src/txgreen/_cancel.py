"""``CancelScope``: cancel every blocking call in a block, including the task groups inside it.

Scopes form a tree.  A green thread's innermost scope is the one it entered last (or, for a
thread spawned by a ``TaskGroup``, the group's own scope); each scope's parent is the scope that
was innermost where it was entered.  Cancelling a scope sends one :class:`Cancelled` to every
green thread whose innermost scope is that scope or a descendant of it, except below a shielded
scope: those get theirs when they leave the shield.  Delivery is the hub's, the same as a kill
or an expired ``Timeout`` (:meth:`Hub.interrupt`): at once if the thread waits, else at its next
blocking call.  The scope that was cancelled catches its own ``Cancelled`` at its exit.
"""

from __future__ import annotations

import math
import sys
import threading
from types import TracebackType
from typing import TYPE_CHECKING

from greenlet import GreenletExit, getcurrent
from greenlet import greenlet as _greenlet

from txgreen._hub import get_hub
from txgreen._util import hidden_in_reports
from txgreen.errors import NotInReactorThreadError

if TYPE_CHECKING:
    from twisted.internet.base import DelayedCall

if sys.version_info >= (3, 11):
    from builtins import BaseExceptionGroup
else:  # pragma: no cover - Python 3.10
    from exceptiongroup import BaseExceptionGroup

__all__ = ["CancelScope", "Cancelled", "fail_after", "move_on_after"]

__tracebackhide__ = hidden_in_reports  # pytest: the user's frames, not txgreen's

# The innermost scope of each greenlet that is inside one.
_innermost: dict[_greenlet, CancelScope] = {}


class Cancelled(GreenletExit):
    """Raised at a blocking call when a :class:`CancelScope` around it is cancelled.

    It derives from ``greenlet.GreenletExit`` (not ``Exception``): ``except Exception`` does not
    swallow it, code that already handles gevent-style kills handles it, and a green thread that
    ends because of it counts as successfully ended (as after ``kill()``).  Let it propagate:
    the scope that was cancelled catches it at its exit.  ``scope`` is that scope.
    """

    scope: CancelScope | None

    def __init__(self, scope: CancelScope | None = None) -> None:
        super().__init__("cancelled by a txgreen.CancelScope")
        self.scope = scope

    def __reduce__(self) -> tuple[type[Cancelled], tuple[()]]:
        return (Cancelled, ())


class CancelScope:
    """A block whose blocking calls can be cancelled, by :meth:`cancel` or by a deadline.

    ::

        with txgreen.CancelScope(timeout=5) as scope:
            data = fetch()              # any blocking call here raises Cancelled once the
            store(data)                 # scope is cancelled; the scope catches it at its exit
        if scope.cancelled_caught:
            log("gave up")

    ``cancel()`` may be called from anywhere in the reactor's thread: the green thread inside
    the block, another green thread, a reactor callback, before the block is entered (its
    first blocking call is cancelled) or after it ended (nothing happens).  It cancels the
    green threads of the ``TaskGroup`` blocks inside the scope too, but not threads started
    with plain ``spawn``, which are not tied to any block.

    ``deadline`` is a time on the reactor's clock (``reactor.seconds()``); ``timeout`` is
    seconds from entering the block; give one or neither.  ``shield=True`` protects the block
    from the cancellation of the scopes around it, for cleanup code that must block: a
    cancellation of an outer scope is delivered when the shielded block ends.

    Cancellation is delivered once per green thread and cancelled scope (as a kill or a
    ``Timeout`` is), at its current or next blocking call: code that catches ``Cancelled`` and
    blocks again is not cancelled again by the same scope.
    """

    def __init__(
        self,
        deadline: float | None = None,
        *,
        timeout: float | None = None,
        shield: bool = False,
    ) -> None:
        if deadline is not None and timeout is not None:
            raise ValueError("give CancelScope a deadline or a timeout, not both")
        if timeout is not None and (math.isnan(timeout) or timeout < 0):
            raise ValueError(f"timeout must be a number of seconds >= 0, not {timeout!r}")
        if deadline is not None and math.isnan(deadline):
            raise ValueError("deadline must be a time, not NaN")
        self._deadline = deadline
        self._timeout = timeout
        self._shield = bool(shield)
        self._cancel_called = False
        self.cancelled_caught = False
        """True when the block ended because this scope was cancelled (it caught its own
        :class:`Cancelled`)."""
        self._state = "new"  # new -> entered -> exited
        self._owner: _greenlet | None = None
        self._parent: CancelScope | None = None
        self._outer: CancelScope | None = None  # the owner's innermost scope before entering
        self._children: list[CancelScope] = []
        self._members: set[_greenlet] = set()  # greenlets whose innermost scope this is
        self._sent: dict[_greenlet, Cancelled] = {}
        self._timer: DelayedCall | None = None

    def __repr__(self) -> str:
        state = "cancelled" if self._cancel_called else self._state
        deadline = "" if self._deadline is None else f" deadline={self._deadline:.3f}"
        shield = " shield" if self._shield else ""
        return f"<txgreen.CancelScope {state}{deadline}{shield} at {id(self):#x}>"

    # -- state ---------------------------------------------------------------------------------

    @property
    def cancel_called(self) -> bool:
        """True once :meth:`cancel` was called or the deadline passed."""
        return self._cancel_called

    @property
    def shield(self) -> bool:
        """True if cancellations of enclosing scopes wait until this block ends."""
        return self._shield

    @property
    def deadline(self) -> float | None:
        """When the scope cancels itself, on the reactor's clock; None for never.

        Before the block is entered with ``timeout=``, it is None (the clock starts at entry).
        Setting it on an entered scope re-arms the timer.
        """
        return self._deadline

    @deadline.setter
    def deadline(self, value: float | None) -> None:
        if value is not None and math.isnan(value):
            raise ValueError("deadline must be a time, not NaN")
        self._deadline = value
        self._timeout = None
        if self._state == "entered":
            self._arm()

    # -- entering and leaving ------------------------------------------------------------------

    def __enter__(self) -> CancelScope:
        if self._state != "new":
            raise RuntimeError("a CancelScope can be entered only once; create one per block")
        from txgreen._greenthread import current_hub_and_greenlet

        owner, hub = current_hub_and_greenlet("txgreen.CancelScope")
        self._attach(owner, _innermost.get(owner))
        if self._timeout is not None:
            self._deadline = hub.reactor.seconds() + self._timeout
        self._arm()
        if self._cancel_called:
            self._send(owner)
        return self

    def _attach(self, owner: _greenlet, parent: CancelScope | None) -> None:
        """Make this scope ``owner``'s innermost, under ``parent``."""
        self._state = "entered"
        self._owner = owner
        self._parent = self._outer = parent
        if parent is not None:
            parent._children.append(self)
            parent._members.discard(owner)
        self._members.add(owner)
        _innermost[owner] = self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        owner = getcurrent()
        if self._state != "entered" or owner is not self._owner:
            raise RuntimeError("a CancelScope must be left by the green thread that entered it")
        if _innermost.get(owner) is not self:
            raise RuntimeError("cancel scopes must be left in the reverse order of entering")
        self._detach(owner)
        # A Cancelled of ours that is still queued for this thread is dropped with the block
        # (the task group threads it reached have all ended by now).
        pending = self._sent.pop(owner, None)
        self._sent.clear()
        if pending is not None:
            get_hub().discard_pending(owner, pending)
        self._recheck(owner)
        return self._catch(exc)

    def _detach(self, owner: _greenlet) -> None:
        self._state = "exited"
        self._disarm()
        self._members.discard(owner)
        parent = self._outer
        if parent is not None:
            if self in parent._children:
                parent._children.remove(self)
            parent._members.add(owner)
            _innermost[owner] = parent
        else:
            _innermost.pop(owner, None)

    def _catch(self, exc: BaseException | None) -> bool:
        """True (swallow) if ``exc`` is this scope's own Cancelled; split it out of a group."""
        if exc is None:
            return False
        if isinstance(exc, Cancelled):
            if exc.scope is self:
                self.cancelled_caught = True
                return True
            return False
        if isinstance(exc, BaseExceptionGroup):
            mine, rest = exc.split(lambda e: isinstance(e, Cancelled) and e.scope is self)
            if mine is None:
                return False
            self.cancelled_caught = True
            if rest is None:
                return True
            raise rest
        return False

    # -- cancelling ----------------------------------------------------------------------------

    def cancel(self) -> None:
        """Cancel the block: every blocking call in it (and in its task groups) raises
        :class:`Cancelled`.  Idempotent; callable from anywhere in the reactor's thread."""
        if self._cancel_called:
            return
        ident = get_hub().thread_ident
        if ident is not None and ident != threading.get_ident():
            raise NotInReactorThreadError(
                "CancelScope.cancel() must be called in the reactor's thread; from another "
                "thread use reactor.callFromThread(scope.cancel)"
            )
        self._cancel_called = True
        self._disarm()
        if self._state != "entered":
            return
        for g in self._reachable():
            self._send(g)

    def _reachable(self) -> list[_greenlet]:
        """The greenlets inside this scope, not below a shielded scope."""
        found: list[_greenlet] = []
        todo = [self]
        while todo:
            scope = todo.pop()
            found.extend(scope._members)
            todo.extend(c for c in scope._children if not c._shield)
        return found

    def _contains(self, g: _greenlet) -> bool:
        """True if ``g`` is inside this scope and not shielded from it."""
        scope = _innermost.get(g)
        while scope is not None:
            if scope is self:
                return True
            if scope._shield:
                return False
            scope = scope._parent
        return False

    def _send(self, g: _greenlet) -> None:
        if g in self._sent or g.dead or not self._contains(g):
            return
        exc = Cancelled(self)
        self._sent[g] = exc
        hub = get_hub()
        waiter = hub.parked_waiter(g)
        if waiter is not None and waiter.active:
            # Never switch from here: every thread a cancel reaches has its wait completed
            # before any of them runs (one of them could otherwise leave the scope first).
            waiter.resume_later(None, exc)
        else:
            hub.interrupt(g, exc)  # not waiting: raised at its next blocking call

    def _recheck(self, g: _greenlet) -> None:
        """After ``g`` left a scope: deliver what a shield (or its entry) held back."""
        _deliver_pending(_innermost.get(g), g)

    def _forget(self, g: _greenlet) -> None:
        """``g`` (a task group's thread) has ended: drop what this scope knows of it."""
        self._members.discard(g)
        self._sent.pop(g, None)
        if _innermost.get(g) is self:
            del _innermost[g]

    def _adopt(self, g: _greenlet) -> None:
        """Make this scope the innermost of ``g``, a new task group thread; cancel it if the
        scope already is."""
        self._members.add(g)
        _innermost[g] = self
        _deliver_pending(self, g)

    # -- the deadline --------------------------------------------------------------------------

    def _arm(self) -> None:
        self._disarm()
        if self._deadline is None or self._cancel_called:
            return
        reactor = get_hub().reactor
        delay = self._deadline - reactor.seconds()
        if delay <= 0:
            self.cancel()  # a deadline in the past: the first blocking call is cancelled
            return
        if math.isinf(delay):
            return
        self._timer = reactor.callLater(delay, self.cancel)

    def _disarm(self) -> None:
        timer = self._timer
        self._timer = None
        if timer is not None and timer.active():
            timer.cancel()


def move_on_after(seconds: float, *, shield: bool = False) -> CancelScope:
    """A :class:`CancelScope` that cancels its block ``seconds`` after it is entered.

    The block just ends when the time is up; ``scope.cancelled_caught`` tells whether it did.
    """
    return CancelScope(timeout=seconds, shield=shield)


class _FailAfter(CancelScope):
    def __init__(self, seconds: float, shield: bool) -> None:
        super().__init__(timeout=seconds, shield=shield)
        self._seconds = seconds

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        swallowed = super().__exit__(exc_type, exc, tb)
        if self.cancelled_caught:
            from txgreen._timeout import Timeout

            raise Timeout(self._seconds)
        return swallowed


def fail_after(seconds: float, *, shield: bool = False) -> CancelScope:
    """Like :func:`move_on_after`, but the block raises :class:`txgreen.Timeout` when the time
    is up (after its blocking calls were cancelled and its task groups have ended).

    Unlike ``with Timeout(seconds)``, which raises the Timeout at the blocking call itself, the
    code inside sees ``Cancelled`` (so ``except Exception`` in it does not swallow the
    deadline) and the Timeout appears at the end of the block.
    """
    return _FailAfter(seconds, shield)


def _deliver_pending(scope: CancelScope | None, g: _greenlet) -> None:
    """Send ``g`` the cancellation of the nearest cancelled scope from ``scope`` outwards,
    unless a shield comes first."""
    while scope is not None:
        if scope._cancel_called:
            scope._send(g)
            return
        if scope._shield:
            return
        scope = scope._parent
