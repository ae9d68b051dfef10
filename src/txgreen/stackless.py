"""The Stackless Python programming model (tasklets and channels) on greenlets and the reactor.

Stackless code runs with small changes: ``import txgreen.stackless as stackless``.  Tasklets are
greenlets; they run round-robin in a ring of *runnables*, as in Stackless, but the ring is
turned by a *scheduler step* that runs in the hub (the greenlet that runs the reactor): each
step runs every runnable tasklet once, in ring order, and then gives the reactor a turn.  So
when every tasklet is blocked on channels the reactor keeps running, and a timer or a Protocol
that sends on a channel wakes the receiving tasklet.

*Worlds.*  Stackless has one scheduler per OS thread, whose main tasklet is the thread's main
code.  Here every green thread (and the main greenlet) that uses this module is the *main
tasklet* of a scheduler of its own, and the tasklets created from it (or from its tasklets)
belong to that scheduler.  Tasklets created from reactor callbacks (the hub) belong to the
hub's scheduler, whose main tasklet is the hub itself and cannot block.  Channels work across
schedulers.

Tasklets may call every txgreen blocking function (``block_on``, ``sleep``...): while they
wait they are *blocked* and out of the runnables; when the wait ends the hub resumes them at
once and they rejoin the runnables as the running tasklet.

See docs/stackless.md for the API and every difference from real Stackless.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable, Iterable, Iterator
from types import TracebackType
from typing import Any, Final

from greenlet import GreenletExit
from greenlet import getcurrent as _gr_current
from greenlet import greenlet as _greenlet
from twisted.logger import Logger

from txgreen._greenthread import GreenThread
from txgreen._hub import Hub, Waiter, get_hub
from txgreen._util import failure_of, make_exception
from txgreen.errors import BlockingInHubError, ReactorStopped

__all__ = [
    "TaskletExit",
    "atomic",
    "bomb",
    "channel",
    "getcurrent",
    "getmain",
    "getruncount",
    "run",
    "schedule",
    "schedule_remove",
    "tasklet",
]

log = Logger(namespace="txgreen.stackless")

# The tasklet object of a greenlet.  A tasklet's own greenlet holds it only while it runs or
# waits in a txgreen call (block_on, sleep...): not before it starts, nor while it is parked by
# this module (see _park), so that a paused tasklet nobody holds is freed, and killed.
_ATTR: Final = "_txgreen_tasklet"


class TaskletExit(GreenletExit):
    """Raised in a tasklet by :meth:`tasklet.kill`; a tasklet that ends with it ends silently.

    Real Stackless derives it from ``SystemExit``; here it derives from
    ``greenlet.GreenletExit`` (a ``BaseException`` too, so ``except Exception`` does not catch
    it), so that it can never stop the reactor.
    """


class bomb:
    """An exception travelling as a value: receiving a bomb on a channel raises it.

    ``bomb(*sys.exc_info())`` captures the exception being handled, traceback included.
    """

    __slots__ = ("traceback", "type", "value")

    def __init__(
        self,
        exp_type: type[BaseException] | BaseException | None = None,
        exp_value: Any = None,
        exp_traceback: TracebackType | None = None,
    ) -> None:
        if isinstance(exp_type, BaseException):
            exp_type, exp_value = type(exp_type), exp_type
        self.type = exp_type
        self.value = exp_value
        self.traceback = exp_traceback

    def __repr__(self) -> str:
        return f"<txgreen.stackless.bomb {self.value!r}>"

    def _exception(self) -> BaseException:
        return make_exception(self.type, self.value, self.traceback)

    def raise_(self) -> None:
        """Raise the exception the bomb holds."""
        raise self._exception()


# -- chains: the runnables ring and channel queues --------------------------------------------


class _Chain:
    """A circular doubly linked list of tasklets through their ``_next``/``_prev`` links.

    The runnables of a scheduler and the tasklets blocked on a channel are both chains, so
    ``tasklet.next``/``prev`` show a tasklet's neighbours in whichever it is in, as in Stackless.
    """

    __slots__ = ("count", "head")

    def __init__(self) -> None:
        self.head: tasklet | None = None
        self.count = 0

    def append(self, t: tasklet) -> None:
        """Insert ``t`` at the end (just before the head)."""
        head = self.head
        if head is None:
            t._next = t._prev = t
            self.head = t
            t._chain = self
            self.count += 1
        else:
            assert head._prev is not None
            self.insert_after(head._prev, t)

    def insert_after(self, where: tasklet, t: tasklet) -> None:
        """Insert ``t`` just after ``where`` (a tasklet of this chain)."""
        nxt = where._next
        assert nxt is not None
        t._prev, t._next = where, nxt
        where._next = nxt._prev = t
        t._chain = self
        self.count += 1

    def remove(self, t: tasklet) -> None:
        assert t._chain is self
        nxt, prev = t._next, t._prev
        assert nxt is not None
        assert prev is not None
        if nxt is t:
            self.head = None
        else:
            prev._next = nxt
            nxt._prev = prev
            if self.head is t:
                self.head = nxt
        t._next = t._prev = None
        t._chain = None
        self.count -= 1

    def popleft(self) -> tasklet:
        t = self.head
        assert t is not None
        self.remove(t)
        return t

    def __iter__(self) -> Iterator[tasklet]:
        t = self.head
        for _ in range(self.count):
            assert t is not None
            yield t
            t = t._next


# -- schedulers --------------------------------------------------------------------------------


class _Scheduler:
    """The runnables of one main tasklet and its tasklets, and the step that runs them."""

    __slots__ = ("_main", "hub", "hub_world", "ring", "runner", "step_queued", "tasklets")

    def __init__(self, hub: Hub, main_greenlet: _greenlet, hub_world: bool) -> None:
        self.hub = hub
        self.hub_world = hub_world
        self.ring = _Chain()
        self.runner: tasklet | None = None  # the main tasklet while it waits in run()
        self.step_queued = False
        # Alive tasklets, the main one excepted; weakly, so that a paused tasklet nobody holds
        # any more is freed (and killed: see tasklet.__del__).
        self.tasklets: weakref.WeakSet[tasklet] = weakref.WeakSet()
        main = tasklet.__new__(tasklet)
        main._init(self)
        main._gr = main_greenlet
        main._started = True
        main._setup = True
        # Its greenlet holds the main tasklet, the scheduler only weakly: so a green thread
        # that used this module is freed without a GC pass once it has ended (_main_ended).
        self._main = main._wref
        setattr(main_greenlet, _ATTR, main)
        if isinstance(main_greenlet, GreenThread):
            main_greenlet.link(_main_ended)
        if not hub_world:
            self.ring.append(main)  # the main tasklet is running, so it is runnable

    @property
    def main(self) -> tasklet | None:
        """The main tasklet; None once its green thread has ended and nobody holds it."""
        return self._main()

    def request_step(self) -> None:
        if not self.step_queued:
            self.step_queued = True
            self.hub.schedule(self._step, None)

    def make_runnable(self, t: tasklet) -> None:
        """Put ``t`` (in no chain) at the end of the runnables, and have a step run them."""
        self.ring.append(t)
        self.request_step()

    def insert_head(self, t: tasklet) -> None:
        """Put ``t`` first in the runnables: it runs next (or is the running one)."""
        ring = self.ring
        if t._chain is ring:
            if ring.head is t:
                return
            ring.remove(t)
        ring.append(t)
        ring.head = t

    def _step(self, _: object = None) -> None:
        # In the hub: run each runnable tasklet once, in ring order, then let the reactor run.
        self.step_queued = False
        ring = self.ring
        hub = self.hub
        budget = ring.count
        t: tasklet | None = None
        while budget > 0 and ring.head is not None:
            budget -= 1
            t = ring.head
            if t._dead or (t._started and t._waiter is None):
                # Parked in a txgreen wait (block_on, sleep...) since it last ran: it rejoins
                # the runnables when the hub resumes it.
                ring.remove(t)
                continue
            if t._started:
                if not t._resume():
                    if t._chain is ring:
                        ring.remove(t)
                    continue
            else:
                hub.switch_to(t._gr, None)  # type: ignore[arg-type]
            if not t._dead and t._waiter is None and t._chain is ring:
                ring.remove(t)  # it went into a txgreen wait
        # This frame may stay suspended below (in runner._resume()) while the main tasklet
        # runs: it must not keep the last tasklet it ran alive meanwhile.
        t = None
        if ring.head is not None:
            self.request_step()
        elif self.runner is not None and not self._waiting_in_txgreen():
            runner = self.runner
            self.insert_head(runner)
            runner._resume()

    def _waiting_in_txgreen(self) -> bool:
        parked = self.hub.parked_waiter
        return any(t._waiter is None and parked(t._gr) is not None for t in self.tasklets)


def _world_of(g: _greenlet) -> tasklet:
    """The tasklet object of greenlet ``g``, making ``g`` a main tasklet if it is none yet."""
    t: tasklet | None = getattr(g, _ATTR, None)
    if t is not None:
        return t
    hub = get_hub()
    if hub.in_hub() and g is hub.greenlet:
        _Scheduler(hub, g, True)
    else:
        hub.require_reactor_thread(g, "txgreen.stackless")
        _Scheduler(hub, g, False)
    main: tasklet = getattr(g, _ATTR)
    return main


def _main_ended(gt: GreenThread[Any]) -> None:
    """Link of a green thread that is a main tasklet: it has ended, so undo the links that
    would keep it, its main tasklet and its scheduler in cycles until a GC pass."""
    main: tasklet | None = gt.__dict__.pop(_ATTR, None)
    if main is None:
        return
    if main._chain is not None:
        main._chain.remove(main)
    main._waiter = None


def _current() -> tasklet:
    """The running tasklet, put back in the runnables (as their head) if it is not there.

    A tasklet resumed by the hub after a txgreen wait, or after an exception from a
    ``with txgreen.Timeout`` block, runs outside the runnables until it next uses this module.
    """
    t = _world_of(_gr_current())
    w = t._world
    if t._chain is None and not w.hub_world:
        w.insert_head(t)
    return t


def _blocking_current(what: str) -> tasklet:
    t = _current()
    if t._world.hub_world:
        raise BlockingInHubError(what)
    return t


# -- tasklets ---------------------------------------------------------------------------------


class _TaskletGreenlet(_greenlet):
    """A tasklet's greenlet.  Neither it nor its frames hold the tasklet while it is paused.

    So a tasklet freed while paused is freed by reference counting alone, and its
    ``__del__`` kills the greenlet; a finished tasklet holds its dead greenlet, which no
    longer refers back to it.
    """

    __slots__ = ("_txgreen_tasklet", "wref")  # (_ATTR)

    _txgreen_tasklet: tasklet | None
    wref: weakref.ref[tasklet]

    def __init__(self, t: tasklet, parent: _greenlet) -> None:
        super().__init__(parent=parent)
        self._txgreen_tasklet = None  # set when it starts: a tasklet never run is freed
        self.wref = t._wref

    def run(self, *_: object) -> None:
        # The tasklet's body: run the function, then leave the scheduler.  Its frames refer to
        # the tasklet only while they use it, never across the function's run (see _call).
        t = self.wref()
        assert t is not None  # the scheduler step that switched here holds it
        self._txgreen_tasklet = t
        t._started = True
        func, args, kwargs, exc = t._func, t._args, t._kwargs, t._pending_exc
        t._args = t._kwargs = t._pending_exc = None
        del t
        uncaught = _call(func, args, kwargs, exc)  # type: ignore[arg-type]
        del func, args, kwargs, exc
        t = self._txgreen_tasklet
        if t is None:  # pragma: no cover - only if its __del__ failed to kill it
            return
        t._end()
        if uncaught is not None:
            _to_main(t, uncaught)
        self._txgreen_tasklet = None  # a dead greenlet does not hold its tasklet
        # (A traceback that reaches this frame keeps its last locals: none that hold anything.)
        del t, uncaught


def _call(
    func: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    exc: BaseException | None,
) -> BaseException | None:
    """Run a tasklet's function (or raise ``exc`` thrown into it before it started).

    Returns the exception it did not catch, or None: ``TaskletExit`` (a ``GreenletExit``) and
    ``ReactorStopped`` end a tasklet silently.
    """
    try:
        if exc is not None:
            raise exc
        func(*args, **kwargs)
    except (GreenletExit, ReactorStopped):
        pass  # TaskletExit (a GreenletExit) ends a tasklet silently, as at shutdown
    except BaseException as e:
        tb = e.__traceback__
        if tb is not None and tb.tb_frame.f_code is _CALL_CODE:
            # Its traceback starts at the tasklet's function, as in Stackless, where the
            # function is the tasklet's bottom frame.
            e.__traceback__ = tb.tb_next
        return e
    return None


_CALL_CODE: Final = _call.__code__


class tasklet:
    """A micro-thread: ``tasklet(func)(*args)`` binds ``func``, sets it up and makes it runnable.

    See docs/stackless.md for each method's exact scheduling behaviour.
    """

    _world: _Scheduler
    _gr: _greenlet | None
    _next: tasklet | None
    _prev: tasklet | None
    _chain: _Chain | None

    def __init__(
        self,
        func: Callable[..., Any] | None = None,
        args: Iterable[Any] | None = None,
        kwargs: dict[str, Any] | None = None,
    ) -> None:
        self._init(_world_of(_gr_current())._world)
        self.bind(func, args, kwargs)

    def _init(self, world: _Scheduler) -> None:
        self._world = world
        self._gr = None
        self._next = self._prev = None
        self._chain = None
        self._func: Callable[..., Any] | None = None
        self._name: str | None = None  # the last bound function's, for repr
        self._args: tuple[Any, ...] | None = None
        self._kwargs: dict[str, Any] | None = None
        self._setup = False
        self._started = False
        self._dead = False
        self._waiter: Waiter | None = None
        self._pending_exc: BaseException | None = None
        self._channel: channel | None = None
        self._atomic = False
        # The tempval; _CURRENT stands for the tasklet itself (schedule()'s default), so that
        # a paused tasklet does not keep itself alive through it.
        self._tempval: Any = None
        self._zombie = False  # dropped while paused and being killed (see __del__)
        self._wref = weakref.ref(self)

    def __del__(self) -> None:
        # Freed while paused (started, not ended, and in neither the runnables nor a channel,
        # which hold their tasklets): nothing can ever resume it, so it is killed now, as
        # Stackless kills a tasklet deallocated with frames.
        gr = getattr(self, "_gr", None)  # (None too if __init__ failed early)
        if gr is None or gr.__class__ is not _TaskletGreenlet or self._dead or gr.dead:
            return
        if not self._started:
            return  # never ran: its greenlet has no frames to unwind
        try:
            if self._wref() is None:
                # Found by the garbage collector (it clears weak references first), whose
                # pass must not switch greenlets: the hub kills it on its next turn.
                self._world.hub.reactor.callFromThread(_kill_dropped, self, gr)
                return
            if gr is _gr_current():
                # Freed by its own _park, as it pauses with nobody else holding it: its wait
                # raises TaskletExit at once.
                self._zombie = True
                gr._txgreen_tasklet = self
                self._world.hub.interrupt(gr, TaskletExit())
                return
            _kill_dropped(self, gr)
        except BaseException:  # pragma: no cover - nobody could catch it in __del__
            log.failure("txgreen: error while killing a dropped tasklet")

    @property
    def tempval(self) -> Any:
        """The value passed on resumption (see :func:`schedule`); assignable."""
        value = self._tempval
        return self if value is _CURRENT else value

    @tempval.setter
    def tempval(self, value: Any) -> None:
        self._tempval = _CURRENT if value is self else value

    def __repr__(self) -> str:
        if self._dead:
            state = "dead"
        elif self is self._world.main:
            state = "main"
        elif self._channel is not None:
            state = "blocked"
        elif self._chain is not None:
            state = "scheduled"
        elif self._started:
            state = "running" if self._gr is _gr_current() else "paused"
        else:
            state = "new"
        label = f" {self._name}" if self._name else ""
        return f"<txgreen.stackless.tasklet{label} {state} at {id(self):#x}>"

    # -- creation --------------------------------------------------------------------------

    def bind(
        self,
        func: Callable[..., Any] | None = None,
        args: Iterable[Any] | None = None,
        kwargs: dict[str, Any] | None = None,
    ) -> tasklet:
        """Bind ``func``; with ``args``/``kwargs`` also set the tasklet up (alive, not inserted).

        ``func=None`` with arguments keeps the function already bound; everything None
        unbinds.  Allowed on a new tasklet, on one set up but never inserted or run, and on
        one that has ended (it can then be set up again).  Raises ``TypeError`` if ``func`` is
        not callable, ``RuntimeError`` for the current tasklet, a scheduled one (runnable or
        blocked on a channel) and one that has started and not ended.  Returns the tasklet.
        """
        if func is not None and not callable(func):
            raise TypeError(
                f"tasklet function must be a callable or None, not {type(func).__name__}"
            )
        if self._gr is not None and self._gr is _gr_current():
            raise RuntimeError(f"cannot bind {self!r}: can't (re)bind the current tasklet")
        if self._chain is not None:
            raise RuntimeError(
                f"cannot bind {self!r}: tasklet is scheduled (runnable or blocked on a channel)"
            )
        if self._started and not self._dead:
            raise RuntimeError(
                f"cannot bind {self!r}: it has started and has not ended; its frames cannot "
                "be dropped without running them (tasklets are not restorable here): kill() it"
            )
        self._unset()
        if func is not None or (args is None and kwargs is None):
            self._func = func  # bind; with everything None, unbind
            self._name = getattr(func, "__qualname__", None)
        if args is not None or kwargs is not None:
            self._prepare(tuple(args or ()), dict(kwargs or {}))
        return self

    def _unset(self) -> None:
        """Forget an earlier set-up that never ran, or a run that has ended."""
        if self._setup and not self._dead:
            self._world.tasklets.discard(self)  # set up but never started: drop its greenlet
        self._gr = None
        self._args = self._kwargs = None
        self._setup = self._started = self._dead = self._zombie = False
        self._pending_exc = None

    def _prepare(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        if self._func is None:
            raise RuntimeError(
                "the tasklet was not bound to a function (or has ended, which unbinds it): "
                "call bind(func) first"
            )
        world = self._world
        self._args, self._kwargs = args, kwargs
        self._gr = _TaskletGreenlet(self, world.hub.ensure_greenlet())
        self._setup = True
        world.tasklets.add(self)

    def setup(self, *args: Any, **kwargs: Any) -> tasklet:
        """Give the bound function its arguments and insert the tasklet in the runnables.

        Raises ``RuntimeError`` ("tasklet is alive") if it is set up already and not ended.
        """
        if self.alive:
            raise RuntimeError(f"cannot set up {self!r}: tasklet is alive (already set up)")
        self._prepare(args, kwargs)
        self._world.make_runnable(self)
        return self

    __call__ = setup

    def _end(self) -> None:
        self._dead = True
        self._func = None  # consumed by the run, as in Stackless: bind it again to reuse
        world = self._world
        world.tasklets.discard(self)
        if self._chain is not None:
            self._chain.remove(self)
        self._waiter = None
        self._pending_exc = None
        self._tempval = None
        pending = world.hub._pending
        if pending:
            pending.pop(self._gr, None)  # type: ignore[arg-type]  # a kill after its last wait
        world.request_step()  # whoever waits in run() may be done now

    # -- parking and resuming ----------------------------------------------------------------

    def _resume(self) -> bool:
        """From the scheduler step: switch into this tasklet, parked by :meth:`_park`.

        False if its wait was already completed by something else (a txgreen Timeout): the
        hub resumes it then, and :meth:`_park` cleans up.
        """
        w = self._waiter
        if w is None or not w.active:
            return False
        self._waiter = None
        self._gr._txgreen_tasklet = self  # type: ignore[union-attr]  # (see _park)
        w.resume(None, None)
        return True

    def _leave_channel(self) -> bool:
        """Take the tasklet off the channel it is blocked on; False if it is blocked on none."""
        chan = self._channel
        if chan is None:
            return False
        chan._queue.remove(self)
        self._channel = None
        return True

    # -- scheduling --------------------------------------------------------------------------

    def insert(self) -> tasklet:
        """Insert the tasklet at the end of the runnables (no effect if it is there already).

        Returns the tasklet.
        """
        self._check_runnable("insert")
        if self._gr is _gr_current():
            _current()  # the running tasklet goes back in as the head, where it belongs
        elif self._chain is None:
            self._world.make_runnable(self)
        return self

    def remove(self) -> tasklet:
        """Take the tasklet out of the runnables; it stays alive, paused, until inserted again."""
        if self._channel is not None:
            raise RuntimeError(f"cannot remove {self!r}: it is blocked on a channel")
        if self._gr is _gr_current():
            raise RuntimeError(
                "the current tasklet cannot be removed from the runnables; use "
                "stackless.schedule_remove() to pause the current tasklet"
            )
        if self._chain is not None:
            self._chain.remove(self)
        return self

    def run(self) -> Any:
        """Run the tasklet now; the caller stays runnable and runs again right after it.

        The tasklet becomes the head of the runnables (inserted at the end first if needed),
        so the runnables rotate: after it comes whatever followed it in the ring.  From the hub
        or another scheduler it is only made the next to run.  Returns the caller's
        ``tempval`` once the caller runs again (None unless someone set it), as in Stackless.
        """
        cur = _current()
        if self is not cur:
            self._check_runnable("run")
            if self._run_from(cur):
                del cur  # (the caller holds no reference to itself while it waits: _park)
                cur = _park()
        return _take_tempval(cur)

    def _run_from(self, cur: tasklet) -> bool:
        """Make this tasklet the head of its runnables, where it stands (appended if it is in
        none); True if the caller ``cur`` must now park to let it run."""
        world = self._world
        if self._chain is None:
            world.ring.append(self)
        world.ring.head = self
        if cur._world is world and not world.hub_world:
            return True
        world.request_step()
        return False

    def switch(self) -> Any:
        """Run the tasklet now and pause the caller (``schedule_remove`` and ``run`` in one).

        Returns the caller's ``tempval`` once it runs again, as :meth:`run` does.
        """
        cur = _blocking_current("tasklet.switch()")
        if self is cur:
            return _take_tempval(cur)
        self._check_runnable("switch to")
        world = self._world
        if cur._world is not world:
            raise RuntimeError(f"cannot switch to {self!r}: it belongs to another scheduler")
        if self._chain is None:
            world.ring.append(self)
        world.ring.head = self
        world.ring.remove(cur)
        del cur
        return _take_tempval(_park())

    def _check_runnable(self, what: str) -> None:
        if self._dead or not self._setup:
            state = "dead" if self._dead else "not set up (bind and call it first)"
            raise RuntimeError(f"cannot {what} {self!r}: the tasklet is {state}")
        if self._channel is not None:
            raise RuntimeError(f"cannot {what} {self!r}: it is blocked on a channel")
        if self._world.hub_world and self is self._world.main:
            raise RuntimeError(f"cannot {what} the hub's main tasklet")

    # -- exceptions ----------------------------------------------------------------------

    def kill(self, pending: bool = False) -> Any:
        """Raise :class:`TaskletExit` in the tasklet; a silent no-op if it is not alive.

        As :meth:`throw`: the tasklet runs at once, where it stands in the runnables (so the
        tasklets after it run before the caller again), or with ``pending=True`` it is only
        made runnable.  A tasklet that has not started yet ends without running its function.
        Returns what :meth:`throw` returns.
        """
        if not self.alive:
            return None
        return self._throw(TaskletExit(), pending)

    def raise_exception(self, exc_class: type[BaseException], *args: Any) -> Any:
        """Raise ``exc_class(*args)`` in the tasklet, which runs at once to handle it.

        Returns what :meth:`throw` returns.
        """
        if not (isinstance(exc_class, type) and issubclass(exc_class, BaseException)):
            raise TypeError(
                f"raise_exception() needs an exception class, not {type(exc_class).__name__}"
            )
        return self._throw(exc_class(*args), False)

    def throw(
        self,
        exc: Any,
        val: Any = None,
        tb: TracebackType | None = None,
        pending: bool = False,
    ) -> Any:
        """Raise an exception in the tasklet where it waits (``exc`` is a class or instance).

        It is taken off the channel it is blocked on, if any, and runs at once, where it
        stands in the runnables (appended first if it is in none); the caller stays runnable
        and returns its ``tempval`` once it runs again (as in Stackless: None unless someone
        set it).  With ``pending=True`` the tasklet is only inserted in the runnables and gets
        the exception when its turn comes; that returns None.  A tasklet waiting in a txgreen
        call (``block_on``, ``sleep``) gets it there on the hub's next turn.  On the current
        tasklet the exception is simply raised.  A tasklet that is not alive raises
        ``RuntimeError``, except for :class:`TaskletExit`, a silent no-op there.
        """
        return self._throw(make_exception(exc, val, tb), pending)

    def _throw(self, error: BaseException, pending: bool) -> Any:
        if self._dead or not self._setup:
            if isinstance(error, TaskletExit):
                return None  # it has ended (or never began): there is nothing to end
            raise RuntimeError(
                f"cannot throw into {self!r}: the tasklet is not alive (dead or never set up)"
            )
        cur = _current()
        if self is cur:
            raise error
        world = self._world
        if self._started and self._waiter is None:
            hub, gr = world.hub, self._gr
            if gr is not None and hub.parked_waiter(gr) is not None:
                hub.interrupt(gr, error)
                return None
            raise RuntimeError(f"cannot throw into {self!r}: it is not waiting anywhere")
        if world.hub_world and self is world.main:
            raise RuntimeError("cannot throw into the hub's main tasklet")
        self._leave_channel()
        self._pending_exc = error
        if pending:
            if self._chain is None:
                world.make_runnable(self)
            return None
        if self._run_from(cur):
            del cur
            cur = _park()
        return _take_tempval(cur)

    def _is_main(self) -> bool:
        return self is self._world.main

    # -- state ---------------------------------------------------------------------------

    @property
    def alive(self) -> bool:
        """True from set-up (``tasklet(func)(...)``) until the function has returned or raised."""
        return self._setup and not self._dead

    @property
    def blocked(self) -> bool:
        """True while blocked on a channel, or waiting in a txgreen call (``block_on``...)."""
        if self._channel is not None:
            return True
        if not self._setup or self._dead or self._waiter is not None:
            return False
        return self._world.hub.parked_waiter(self._gr) is not None

    @property
    def scheduled(self) -> bool:
        """True when in the runnables or blocked on a channel."""
        if self._gr is _gr_current() and not self._world.hub_world:
            _current()
        return self._chain is not None

    @property
    def paused(self) -> bool:
        """True when alive but neither scheduled nor blocked nor running."""
        return self.alive and not self.scheduled and not self.blocked and not self.is_current

    @property
    def restorable(self) -> bool:
        """Always False: tasklets cannot be pickled here (greenlet cannot)."""
        return False

    @property
    def is_main(self) -> bool:
        """True for the main tasklet of its scheduler."""
        return self._is_main()

    @property
    def is_current(self) -> bool:
        """True for the running tasklet."""
        return self._gr is not None and self._gr is _gr_current()

    @property
    def next(self) -> tasklet | None:
        """The next tasklet in the runnables, or in the channel queue it is blocked in.

        None when it is in neither, and for the last tasklet of a channel queue: as in
        Stackless, where the channel closes the queue, the runnables are a ring but a
        channel queue is not.
        """
        self.scheduled  # noqa: B018 - brings the running tasklet back into the runnables
        chan = self._channel
        if chan is not None and self._next is chan._queue.head:
            return None
        return self._next

    @property
    def prev(self) -> tasklet | None:
        """The previous tasklet in the runnables, or in the channel queue it is blocked in.

        None when it is in neither, and for the first tasklet of a channel queue.
        """
        self.scheduled  # noqa: B018
        chan = self._channel
        if chan is not None and self is chan._queue.head:
            return None
        return self._prev

    @property
    def thread_id(self) -> int | None:
        """The id of the OS thread the tasklet belongs to (the reactor's)."""
        return self._world.hub.thread_ident

    @property
    def atomic(self) -> bool:
        """The flag :meth:`set_atomic` sets (nothing pre-empts tasklets here anyway)."""
        return self._atomic

    def set_atomic(self, flag: bool) -> bool:
        """Set the atomic flag; return the old one.  Tasklets are never pre-empted here."""
        old, self._atomic = self._atomic, bool(flag)
        return old


def _to_main(t: tasklet, exc: BaseException) -> None:
    """An uncaught exception of tasklet ``t``: raise it in the main tasklet, as Stackless does."""
    world = t._world
    main = world.main
    if world.hub_world or main is None or main._gr is None or main._gr.dead:
        log.failure(
            "Unhandled error in tasklet {tasklet!r} (its main tasklet cannot receive it):",
            failure_of(exc),
            tasklet=t,
        )
        return
    if main._waiter is None:
        if world.hub.parked_waiter(main._gr) is not None:
            world.hub.interrupt(main._gr, exc)
            return
        # The main tasklet runs, not waiting: t was killed because it was dropped (see
        # _kill_dropped), and nobody can catch what it raised meanwhile.
        log.failure("Unhandled error in tasklet {tasklet!r}:", failure_of(exc), tasklet=t)
        return
    main._leave_channel()
    main._pending_exc = exc
    world.insert_head(main)
    world.request_step()


def _park() -> tasklet:
    """Wait (in the hub's sense) until the scheduler step resumes the current tasklet; return it.

    An exception thrown into the tasklet meanwhile (``throw``, ``kill``, an uncaught one from
    another tasklet for a main tasklet) is raised here, once it runs again.  Callers hold no
    reference to their tasklet across the call (they take it back from the return value), and
    neither does the tasklet's greenlet meanwhile: a paused tasklet that nobody else holds is
    freed, which kills it (see ``tasklet.__del__``).
    """
    gr = _gr_current()
    t: tasklet = gr._txgreen_tasklet  # type: ignore[attr-defined]  # (_ATTR)
    world = t._world
    hub = world.hub
    me: tasklet | None
    if gr.__class__ is _TaskletGreenlet:
        w = t._waiter = Waiter(hub, gr)
        if not world.step_queued:
            world.request_step()
        wref = t._wref
        gr._txgreen_tasklet = None
        # This frees the tasklet if nothing else holds it: then its __del__ sets the link back
        # and has hub.wait raise TaskletExit at once.
        del t
        try:
            hub.wait(w)
        except BaseException:
            # (A tasklet freed meanwhile is killed: its __del__ set the greenlet's link.)
            me = gr._txgreen_tasklet = gr._txgreen_tasklet or wref()
            assert me is not None
            _unpark(me, w)
            # The exception's traceback keeps this frame, and Hub.wait's, with their last
            # locals (in a cycle through the waiter): none of them may be the tasklet.
            del me
            raise
        me = gr._txgreen_tasklet  # (set by _resume)
        if me is None:  # woken by something else than the scheduler step
            me = gr._txgreen_tasklet = wref()
            assert me is not None
    else:
        # A main tasklet: its greenlet (a green thread, or the main greenlet) keeps it.
        w = t._waiter = Waiter(hub, gr)
        world.request_step()
        try:
            hub.wait(w)
        except BaseException:
            _unpark(t, w)
            raise
        me = t
    exc = me._pending_exc
    if exc is not None:
        me._pending_exc = None
        del me  # (as above: the traceback keeps this frame)
        try:
            raise exc
        finally:
            del exc
    return me


def _unpark(t: tasklet, w: Waiter) -> None:
    """``t``'s wait on ``w`` in :func:`_park` ended with an exception."""
    if t._zombie:
        # Dropped and being killed: its next wait raises TaskletExit again, at once.
        t._world.hub.interrupt(w.greenlet, TaskletExit())
    if t._waiter is w:
        # Woken by something else than the scheduler (a txgreen Timeout, reactor shutdown, a
        # kill because it was dropped): it leaves the channel and the runnables, and runs.
        t._waiter = None
        if not t._leave_channel() and t._chain is not None:
            t._chain.remove(t)


def _kill_dropped(t: tasklet, gr: _greenlet) -> None:
    """Kill ``t``, paused in :func:`_park` and being freed (from its ``__del__``).

    Its greenlet runs at once, as a kill does, and the caller continues once it has ended:
    the caller becomes the greenlet's parent meanwhile.  While it unwinds, its next wait
    raises ``TaskletExit`` again at once, and so on for waits in this module (Stackless kills
    a deallocated tasklet until it is dead; see _unpark).  From another OS thread, and for a
    tasklet the garbage collector found, the hub kills it instead (see ``tasklet.__del__``).
    """
    hub = t._world.hub
    if threading.get_ident() != hub.thread_ident:  # pragma: no cover - a GC in a worker thread
        hub.reactor.callFromThread(_kill_dropped, t, gr)
        return
    t._zombie = True
    gr._txgreen_tasklet = t  # type: ignore[attr-defined]  # (its weakrefs may be gone: GC)
    hub_greenlet = hub.greenlet
    assert hub_greenlet is not None
    w = t._waiter
    cur = _gr_current()
    exc = TaskletExit()
    if w is not None and w._complete(None, exc):
        if cur is hub.greenlet:
            hub.switch_to(gr, w)
            return
        gr.parent = cur
        try:
            gr.switch(w)
        finally:
            gr.parent = hub_greenlet  # (also where a wake-up queued for it earlier goes)
    else:
        # Its wait was already completed (a Timeout, a scheduler step) and its wake-up is
        # queued in the hub: it is killed before that runs, and the wake-up, finding it dead,
        # goes to the hub, its parent again by then.
        gr.parent = cur
        try:
            gr.throw(exc)
        finally:
            gr.parent = hub_greenlet


# -- module functions -------------------------------------------------------------------------


class _CurrentDefault:
    def __repr__(self) -> str:
        return "<the current tasklet>"


_CURRENT: Final = _CurrentDefault()


def getcurrent() -> tasklet:
    """The running tasklet (the main tasklet of its scheduler in a plain green thread)."""
    return _current()


def getmain() -> tasklet:
    """The main tasklet of the running tasklet's scheduler.

    Raises ``RuntimeError`` in a tasklet that outlived its main tasklet's green thread once
    nothing holds that main tasklet any more.
    """
    main = _world_of(_gr_current())._world.main
    if main is None:
        raise RuntimeError(
            "the main tasklet of this tasklet's scheduler is gone: its green thread has ended"
        )
    return main


def getruncount() -> int:
    """The number of runnable tasklets, the running one included."""
    return _current()._world.ring.count


def schedule(retval: Any = _CURRENT) -> Any:
    """Let the next runnable tasklet run; the caller stays runnable, at the end of the ring.

    Returns ``retval`` (by default the current tasklet), or whatever was assigned to the
    tasklet's ``tempval`` meanwhile; a :class:`bomb` there is raised instead.  It always lets
    the reactor run before the caller continues, even when the caller is the only runnable
    tasklet.
    """
    cur = _blocking_current("stackless.schedule()")
    cur._tempval = _CURRENT if retval is _CURRENT or retval is cur else retval
    del retval
    nxt = cur._next
    assert nxt is not None
    cur._world.ring.head = nxt
    del cur, nxt  # (the caller holds no reference to its tasklet while it waits: _park)
    return _take_tempval(_park())


def schedule_remove(retval: Any = _CURRENT) -> Any:
    """Like :func:`schedule`, but the caller leaves the runnables until someone inserts it."""
    cur = _blocking_current("stackless.schedule_remove()")
    cur._tempval = _CURRENT if retval is _CURRENT or retval is cur else retval
    del retval
    cur._world.ring.remove(cur)
    del cur
    return _take_tempval(_park())


def _take_tempval(t: tasklet) -> Any:
    """Claim ``t.tempval`` (it becomes None); a bomb there is raised instead, as in Stackless.

    It raises the bomb's exception itself (not through :meth:`bomb.raise_`), so that at most
    two txgreen frames stand between the caller's frame and the frames the exception carries.
    """
    value = t._tempval
    t._tempval = None
    if value is _CURRENT:
        return t
    if isinstance(value, bomb):
        raise value._exception()
    return value


def run() -> None:
    """From the main tasklet: run the tasklets until none is runnable any more.

    It returns when the runnables are empty and no tasklet waits in a txgreen call
    (``block_on``, ``sleep``...): tasklets blocked on channels, or removed, do not keep it
    waiting (as in Stackless).  An exception a tasklet does not catch is raised here.  The
    reactor runs all along.
    """
    cur = _current()
    world = cur._world
    if world.hub_world:
        raise BlockingInHubError("stackless.run()")
    if cur is not world.main:
        raise RuntimeError(
            f"stackless.run() must be called from the main tasklet, not from {cur!r}"
        )
    world.runner = cur
    world.ring.remove(cur)
    try:
        _park()  # (a main tasklet: its greenlet holds it anyway)
    finally:
        world.runner = None


class atomic:
    """``with stackless.atomic():`` compatibility no-op: tasklets are never pre-empted here."""

    def __enter__(self) -> atomic:
        return self

    def __exit__(self, *exc: object) -> None:
        return None


# -- channels ---------------------------------------------------------------------------------


class channel:
    """A rendezvous between tasklets: ``send`` and ``receive`` block until the other side comes.

    ``preference`` decides who runs when a send or receive finds the other side waiting:
    -1 (the default) prefers the receiver, 1 the sender, 0 neither (the caller continues and
    the woken tasklet goes to the end of the runnables).  ``schedule_all`` makes every
    transfer yield to the runnables.
    """

    def __init__(self) -> None:
        self._queue = _Chain()
        self._dir = 0  # +1: senders are waiting, -1: receivers are waiting
        self._preference = -1
        self._schedule_all = False
        self._closing = False

    def __repr__(self) -> str:
        state = " closing" if self._closing else ""
        return f"<txgreen.stackless.channel balance={self.balance}{state} at {id(self):#x}>"

    @property
    def preference(self) -> int:
        """-1 (the default), 0 or 1: who runs when a transfer finds the other side waiting.

        Any integer can be assigned; as in Stackless, it is clamped to its sign.
        """
        return self._preference

    @preference.setter
    def preference(self, value: int) -> None:
        if not isinstance(value, int):
            raise TypeError(f"preference must be set to an integer, not {type(value).__name__}")
        self._preference = (value > 0) - (value < 0)

    @property
    def schedule_all(self) -> bool:
        """When true, every transfer makes the caller yield to the next runnable tasklet."""
        return self._schedule_all

    @schedule_all.setter
    def schedule_all(self, value: int) -> None:
        if not isinstance(value, int):
            raise TypeError(
                f"schedule_all must be set to a bool or integer, not {type(value).__name__}"
            )
        self._schedule_all = bool(value)

    @property
    def balance(self) -> int:
        """Blocked senders (positive) or receivers (negative)."""
        return self._dir * self._queue.count

    @property
    def queue(self) -> tasklet | None:
        """The first tasklet blocked on the channel, or None."""
        return self._queue.head

    @property
    def closing(self) -> bool:
        """True once :meth:`close` was called."""
        return self._closing

    @property
    def closed(self) -> bool:
        """True when closing and nobody is blocked on the channel any more."""
        return self._closing and self._queue.count == 0

    def close(self) -> None:
        """Refuse new blocking operations (``ValueError``); waiting tasklets stay, as in
        Stackless, and transfers to them still work.  Iteration ends once nobody waits."""
        self._closing = True

    def open(self) -> None:
        """Undo :meth:`close`."""
        self._closing = False

    def send(self, value: Any) -> None:
        """Hand ``value`` to a receiver, blocking until one takes it."""
        self._action(1, value)

    def receive(self) -> Any:
        """Take a value from a sender, blocking until one comes; a bomb is raised instead."""
        return self._action(-1, None)

    def send_exception(self, exc: type[BaseException] | BaseException, *args: Any) -> None:
        """Make the receiver raise ``exc(*args)`` (or the instance ``exc``, with its traceback)."""
        if isinstance(exc, BaseException):
            if args:
                raise TypeError("send_exception(): no arguments allowed with an instance")
            self._action(1, bomb(type(exc), exc, exc.__traceback__))
        else:
            self._action(1, bomb(exc, make_exception(exc, args or None)))

    def send_throw(self, exc: Any, val: Any = None, tb: TracebackType | None = None) -> None:
        """Make the receiver raise an exception given as in ``generator.throw``."""
        error = make_exception(exc, val, tb)
        self._action(1, bomb(type(error), error, error.__traceback__))

    def send_sequence(self, seq: Iterable[Any]) -> int:
        """Send every item of ``seq`` in turn; return how many were sent."""
        n = 0
        for item in seq:
            self._action(1, item)
            n += 1
        return n

    def __iter__(self) -> channel:
        return self

    def __next__(self) -> Any:
        if self._closing and self._queue.count == 0:
            raise StopIteration
        return self._action(-1, None)

    def _action(self, direction: int, arg: Any) -> Any:
        # While it waits, this frame holds no reference to the caller's tasklet, nor to the
        # one it woke (see _park).
        source = _current()
        world = source._world
        queue = self._queue
        source._tempval = arg
        if queue.count and self._dir == -direction:
            target = queue.popleft()
            target._channel = None
            value = target._tempval
            source._tempval = target if value is _CURRENT else value
            target._tempval = arg
            del value
            tworld = target._world
            if tworld is not world or world.hub_world:
                tworld.make_runnable(target)
            elif self._schedule_all:
                world.ring.append(target)
                nxt = source._next
                assert nxt is not None
                world.ring.head = nxt
                del source, target, nxt
                source = _park()
            elif self._preference == -direction:
                world.ring.insert_after(source, target)
                world.ring.head = target
                del source, target
                source = _park()
            else:
                world.make_runnable(target)
        else:
            if self._closing:
                raise ValueError("Send/receive operation on a closed channel")
            if world.hub_world:
                raise BlockingInHubError(
                    "stackless channel send()/receive() with nobody on the other side"
                )
            world.ring.remove(source)
            queue.append(source)
            source._channel = self
            self._dir = direction
            del source
            source = _park()
        if direction > 0:
            source._tempval = None
            return None
        return _take_tempval(source)


def __getattr__(name: str) -> Any:
    # Stackless's module attributes that change: stackless.current, .main, .runcount.
    if name == "current":
        return getcurrent()
    if name == "main":
        return getmain()
    if name == "runcount":
        return getruncount()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
