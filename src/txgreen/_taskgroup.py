"""``TaskGroup``: green threads that cannot outlive the block that started them.

The group owns a :class:`~txgreen.CancelScope` around its body and its threads.  The first
thread that fails cancels that scope (so the body and every other thread get ``Cancelled``);
the block's exit waits for every thread, then raises an ``ExceptionGroup`` of every error.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from types import TracebackType
from typing import Any, Final, ParamSpec, TypeVar

from greenlet import GreenletExit, getcurrent
from greenlet import greenlet as _greenlet
from twisted.logger import Logger

from txgreen._cancel import Cancelled, CancelScope
from txgreen._greenthread import GreenThread, check_callable, current_hub_and_greenlet, spawn
from txgreen._hub import STOPPED, Waiter, get_hub
from txgreen._timeout import Timeout
from txgreen._util import failure_of, hidden_in_reports
from txgreen.errors import ReactorStopped

if sys.version_info >= (3, 11):
    from builtins import BaseExceptionGroup
else:  # pragma: no cover - Python 3.10
    from exceptiongroup import BaseExceptionGroup

__all__ = ["TASK_STATUS_IGNORED", "TaskGroup", "TaskStatus"]

__tracebackhide__ = hidden_in_reports  # pytest: the user's frames, not txgreen's

P = ParamSpec("P")
T = TypeVar("T")

log = Logger(namespace="txgreen")

# What an exception that ends the body or interrupts the exit's wait is.
_OWN: Final = "own"  # the group's own Cancelled: the group cancelled itself
_CANCEL: Final = "cancel"  # the owner is cancelled, killed, timed out or the reactor stops
_ERROR: Final = "error"  # a failure, reported in the ExceptionGroup


class TaskStatus:
    """What :meth:`TaskGroup.start` passes to its function as ``task_status=``.

    The function calls ``task_status.started(value)`` once it is ready (listening, connected,
    ...); ``start()`` then returns ``value`` while the thread goes on in the group.
    """

    __slots__ = ("_given_up", "_started", "_value", "_waiter")

    def __init__(self, waiter: Waiter | None) -> None:
        self._waiter = waiter
        self._started = False
        self._given_up = False  # the caller of start() stopped waiting (it was cancelled)
        self._value: Any = None

    def __repr__(self) -> str:
        state = "started" if self._started else "not started"
        return f"<txgreen.TaskStatus {state}>"

    def started(self, value: Any = None) -> None:
        """Tell ``start()`` that the thread is ready; ``start()`` returns ``value``.

        Call it once: a second call raises RuntimeError.
        """
        if self._waiter is None:
            return  # TASK_STATUS_IGNORED: the function was spawned, not started
        if self._started:
            raise RuntimeError("task_status.started() was already called")
        self._started = True
        self._value = value
        self._waiter.resume()


TASK_STATUS_IGNORED: Final = TaskStatus(None)
"""A ``task_status`` whose ``started()`` does nothing: the default for functions that are
meant for both ``TaskGroup.start`` and ``TaskGroup.spawn``."""


class TaskGroup:
    """A block that waits for every green thread spawned in it and reports all their errors.

    ::

        with txgreen.TaskGroup() as tg:
            tg.spawn(serve_clients, listener)
            tg.spawn(refresh_cache)
        # here both threads have ended

    The block's exit waits until every thread of the group has ended.  The first thread that
    fails (ends with an exception other than ``Cancelled``/``GreenletExit`` or
    ``ReactorStopped``) cancels the group: the body and the other threads get
    :class:`txgreen.Cancelled` at their blocking calls.  Then the block raises an
    ``ExceptionGroup`` of every error, in the order they happened: the threads' and the body's.

    A kill, an expired ``Timeout`` or the cancellation of an enclosing scope of the green thread
    running the block (its *owner*) cancels the threads first, waits for them, then propagates
    unchanged (inside the ExceptionGroup, if threads failed meanwhile).
    ``tg.cancel_scope.cancel()`` cancels the whole group; the block then ends quietly.
    """

    def __init__(self) -> None:
        self._scope = CancelScope()
        self._threads: dict[GreenThread[Any], TaskStatus | None] = {}
        self._failures: list[BaseException] = []
        self._state = "new"  # new -> open -> closing -> exited
        self._owner: _greenlet | None = None
        self._exit_waiter: Waiter | None = None

    def __repr__(self) -> str:
        state = "cancelled" if self._scope.cancel_called else self._state
        return f"<txgreen.TaskGroup {state} threads={len(self._threads)} at {id(self):#x}>"

    @property
    def cancel_scope(self) -> CancelScope:
        """The scope around the body and the threads: ``cancel()`` it to stop them all."""
        return self._scope

    @property
    def threads(self) -> list[GreenThread[Any]]:
        """The group's threads that have not ended yet."""
        return list(self._threads)

    # -- starting threads ----------------------------------------------------------------------

    def _check_open(self, what: str) -> None:
        if self._state == "new":
            raise RuntimeError(f"TaskGroup.{what}() before the with block: enter the group first")
        if self._state == "exited":
            raise RuntimeError(
                f"TaskGroup.{what}() after the with block ended: the group is closed"
            )

    def spawn(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> GreenThread[T]:
        """Run ``fn(*args, **kwargs)`` in a new green thread of the group; return the thread.

        Allowed while the block runs or waits for its threads (a thread may add siblings).
        In a cancelled group the new thread is cancelled at its first blocking call.
        """
        self._check_open("spawn")
        check_callable(fn, "TaskGroup.spawn()")
        gt = spawn(fn, *args, **kwargs)
        self._add(gt, None)
        return gt

    def start(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        """Spawn ``fn(*args, task_status=status, **kwargs)`` and wait until it is ready.

        Returns the value the thread passes to ``task_status.started(value)``; the thread goes
        on in the group.  If the thread fails before that, ``start()`` raises its exception
        (which is then not part of the group's errors); if it returns without calling
        ``started()``, RuntimeError.  If the caller is cancelled or killed while it waits, the
        thread is cancelled too.
        """
        self._check_open("start")
        check_callable(fn, "TaskGroup.start()")
        if "task_status" in kwargs:
            raise TypeError("TaskGroup.start() passes task_status= itself")
        cur, hub = current_hub_and_greenlet("TaskGroup.start()")
        status = TaskStatus(Waiter(hub, cur))
        gt: GreenThread[Any] = spawn(fn, *args, task_status=status, **kwargs)
        self._add(gt, status)
        assert status._waiter is not None
        try:
            hub.wait(status._waiter)
        except BaseException:
            if not status._started:
                status._given_up = True  # its failure, if any, is the group's now
                if not gt.dead:
                    gt.kill(Cancelled(self._scope), block=False)
            raise
        if status._started:
            return status._value
        exc = gt.exception
        if exc is not None:
            raise exc
        value = gt.value
        if isinstance(value, Cancelled):
            raise value
        raise RuntimeError(
            f"{gt.name} ended without calling task_status.started()"
            + (" (it was killed)" if isinstance(value, GreenletExit) else "")
        )

    def _add(self, gt: GreenThread[Any], status: TaskStatus | None) -> None:
        self._threads[gt] = status
        self._scope._adopt(gt)
        gt.link(self._on_done)

    def _on_done(self, gt: GreenThread[Any]) -> None:
        # In the hub, when a thread of the group ends.
        status = self._threads.pop(gt, None)
        self._scope._forget(gt)
        if status is not None and not status._started and not status._given_up:
            # start() is waiting: it reports this end itself.
            if status._waiter is not None:
                status._waiter.resume()
        else:
            exc = gt.exception
            if exc is not None and not isinstance(exc, ReactorStopped):
                if self._state == "exited":
                    log.failure(
                        "txgreen: a thread of a TaskGroup failed after the group's block "
                        "ended (the reactor stopped while the block waited): {gt!r}",
                        failure_of(exc),
                        gt=gt,
                    )
                else:
                    self._failures.append(exc)
                    self._scope.cancel()
        if not self._threads and self._exit_waiter is not None:
            self._exit_waiter.resume()

    # -- the block -----------------------------------------------------------------------------

    def __enter__(self) -> TaskGroup:
        if self._state != "new":
            raise RuntimeError("a TaskGroup can be entered only once; create one per block")
        self._scope.__enter__()
        self._owner = getcurrent()
        self._state = "open"
        return self

    def _kind(self, e: BaseException) -> str:
        if isinstance(e, Cancelled) and e.scope is self._scope:
            self._scope.cancelled_caught = True
            return _OWN
        if e is getattr(self._owner, "_kill_exc", None):
            return _CANCEL  # a kill of the owner, whatever the exception
        if isinstance(e, GreenletExit | ReactorStopped | KeyboardInterrupt | SystemExit):
            return _CANCEL
        if isinstance(e, Timeout) and e.expired:
            return _CANCEL  # the deadline of an enclosing ``with Timeout`` passed
        return _ERROR

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        owner = getcurrent()
        if self._state != "open" or owner is not self._owner:
            raise RuntimeError("a TaskGroup must be left by the green thread that entered it")
        self._state = "closing"
        hub = get_hub()
        owner_cancel: BaseException | None = None
        swallow = False
        if exc is not None:
            body: BaseException | None = exc
            if isinstance(exc, BaseExceptionGroup):
                mine, rest = exc.split(
                    lambda e: isinstance(e, Cancelled) and e.scope is self._scope
                )
                if mine is not None:
                    self._scope.cancelled_caught = True
                if rest is None:
                    body = None
                elif mine is not None:
                    body = rest
            kind = _OWN if body is None else self._kind(body)
            if kind == _OWN:
                swallow = True
            elif kind == _CANCEL:
                owner_cancel = body
            else:
                assert body is not None
                self._failures.append(body)
            if kind != _OWN:
                self._scope.cancel()
        while self._threads:
            waiter = Waiter(hub, owner)
            self._exit_waiter = waiter
            try:
                hub.wait(waiter)
            except BaseException as e:
                kind = self._kind(e)
                if kind == _OWN:
                    continue
                if kind == _CANCEL:
                    if owner_cancel is None:
                        owner_cancel = e
                else:
                    self._failures.append(e)
                self._scope.cancel()
                if isinstance(e, ReactorStopped) or hub.state == STOPPED:
                    break  # nothing can wait any more; the hub ends the threads itself
            finally:
                self._exit_waiter = None
        self._state = "exited"
        self._scope.__exit__(None, None, None)
        failures = self._failures
        if not failures:
            if owner_cancel is None:
                return swallow
            if owner_cancel is exc:
                return False
            raise owner_cancel
        if isinstance(owner_cancel, KeyboardInterrupt | SystemExit):
            # Ctrl-C and sys.exit() end the program as themselves; the errors are logged.
            for f in failures:
                log.failure(
                    "txgreen: error in a TaskGroup interrupted by {e!r}",
                    failure_of(f),
                    e=owner_cancel,
                )
            if owner_cancel is exc:
                return False
            raise owner_cancel
        errors = list(failures)
        if owner_cancel is not None:
            errors.append(owner_cancel)
        raise BaseExceptionGroup("errors in a txgreen.TaskGroup", errors)
