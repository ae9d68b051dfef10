"""``Supervisor``: Erlang/OTP's supervisor for green threads, and a Twisted service.

A supervisor starts its children (green threads described by :class:`ChildSpec`) in order,
watches them with monitors, and restarts the ones that end according to their restart type
and its strategy.  When restarts come too fast (more than ``intensity`` within ``period``
seconds) it stops its children and fails itself with :class:`RestartIntensityExceeded`, so a
parent supervisor (a ``Supervisor`` is callable, hence a child like any function) restarts it or
fails in turn: a supervision tree.

It runs in one green thread (``run()``), a loop over its mailbox: children's "down" messages
and the requests of ``start_child``, ``terminate_child``, ``restart_child`` and
``delete_child``, which other green threads send and wait for (as ``gen_server:call`` does),
so everything that changes the children happens in that one thread, in order.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple

from greenlet import GreenletExit, getcurrent
from twisted.logger import Logger

from txgreen._greenthread import GreenThread, current_hub_and_greenlet, spawn
from txgreen._mailbox import receive, send
from txgreen._process import Down, MonitorRef, demonitor, exit_reason, is_abnormal, monitor
from txgreen._service import GreenService
from txgreen._util import failure_of, hidden_in_reports
from txgreen.errors import ReactorStopped, TxgreenError

__all__ = [
    "ChildInfo",
    "ChildSpec",
    "RestartIntensityExceeded",
    "Supervisor",
    "SupervisorError",
    "SupervisorNotRunning",
]

__tracebackhide__ = hidden_in_reports  # pytest: the user's frames, not txgreen's

log = Logger(namespace="txgreen.supervisor")

Restart = Literal["permanent", "transient", "temporary"]
Strategy = Literal["one_for_one", "one_for_all", "rest_for_one"]
_RESTARTS = ("permanent", "transient", "temporary")
_STRATEGIES = ("one_for_one", "one_for_all", "rest_for_one")


class SupervisorError(TxgreenError):
    """A request to a :class:`Supervisor` failed: unknown or duplicate child id, wrong state."""


class SupervisorNotRunning(SupervisorError):
    """The request needs the supervisor's loop (``run()``), which is not running (any more)."""


class RestartIntensityExceeded(TxgreenError):
    """A :class:`Supervisor` gave up: more than ``intensity`` restarts within ``period`` s.

    Raised by its ``run()`` after it has stopped all its children; its ``__cause__`` is the
    last child's exception (if it had one).  A parent supervisor sees its child supervisor
    end with it, and restarts it or gives up in turn.
    """


@dataclass(frozen=True)
class ChildSpec:
    """How a :class:`Supervisor` runs one child: ``fn(*args)`` in a green thread.

    - ``id``: any hashable name, unique within the supervisor.
    - ``restart``: ``"permanent"`` (always restarted), ``"transient"`` (restarted only after an
      abnormal end: an exception other than ``GreenletExit``) or ``"temporary"`` (never; its
      spec is dropped when it ends).
    - ``shutdown``: seconds to wait for the child to end after it is killed (``GreenletExit``)
      before the supervisor gives up on it with a log line; ``None`` waits as long as it takes
      (the usual choice for a child that is itself a supervisor).
    """

    id: Hashable
    fn: Callable[..., object]
    args: tuple[Any, ...] = ()
    restart: Restart = "permanent"
    shutdown: float | None = 5.0

    def __post_init__(self) -> None:
        try:
            hash(self.id)
        except TypeError:
            raise TypeError(
                f"ChildSpec id must be hashable, not {type(self.id).__name__}"
            ) from None
        if not callable(self.fn):
            raise TypeError(f"ChildSpec {self.id!r}: fn must be callable, not {self.fn!r:.80}")
        if not isinstance(self.args, tuple):
            raise TypeError(f"ChildSpec {self.id!r}: args must be a tuple, not {self.args!r:.80}")
        if self.restart not in _RESTARTS:
            raise ValueError(
                f"ChildSpec {self.id!r}: restart must be one of {', '.join(_RESTARTS)}, "
                f"not {self.restart!r}"
            )
        if self.shutdown is not None and (
            isinstance(self.shutdown, bool)
            or not isinstance(self.shutdown, int | float)
            or self.shutdown < 0
        ):
            raise ValueError(
                f"ChildSpec {self.id!r}: shutdown must be seconds >= 0 or None, "
                f"not {self.shutdown!r}"
            )


class ChildInfo(NamedTuple):
    """One row of :meth:`Supervisor.which_children`."""

    id: Hashable
    thread: GreenThread[Any] | None
    """The running green thread, or None if the child is not running."""
    restart: Restart
    supervisor: bool
    """Whether the child's function is a :class:`Supervisor`."""


class _Child:
    __slots__ = ("ref", "spec", "thread")

    def __init__(self, spec: ChildSpec) -> None:
        self.spec = spec
        self.thread: GreenThread[Any] | None = None
        self.ref: MonitorRef | None = None


class _Call(NamedTuple):
    supervisor: Supervisor
    ref: MonitorRef
    caller: GreenThread[Any]
    fn: Callable[[], Any]


class _Reply(NamedTuple):
    ref: MonitorRef
    ok: bool
    value: Any


class Supervisor(GreenService):
    """Start ``children`` and keep them running: Erlang/OTP's ``supervisor`` for green threads.

    - ``strategy``: what a child's end restarts: ``"one_for_one"`` that child;
      ``"one_for_all"`` every child (the others are stopped first, in reverse order);
      ``"rest_for_one"`` that child and the ones started after it.
    - ``intensity``, ``period``: more than ``intensity`` restarts within ``period`` seconds
      and the supervisor stops every child (in reverse order) and fails with
      :class:`RestartIntensityExceeded`.

    Run it with :meth:`run` in a green thread of your own (it returns when killed, and
    raises when it gives up), with :meth:`start`, as a child of another supervisor
    (``ChildSpec("db", db_supervisor)``: a supervisor is callable), or as a Twisted service
    (``startService``/``stopService``, under ``twistd`` or a ``MultiService``; at reactor
    shutdown it is stopped first, like every :class:`txgreen.GreenService`, so children's
    cleanup may block).  Restarts and give-ups are logged in the ``txgreen.supervisor``
    namespace with the child's id and reason.
    """

    def __init__(
        self,
        children: Iterable[ChildSpec] = (),
        strategy: Strategy = "one_for_one",
        intensity: int = 3,
        period: float = 5.0,
        name: str | None = None,
    ) -> None:
        if strategy not in _STRATEGIES:
            raise ValueError(
                f"Supervisor strategy must be one of {', '.join(_STRATEGIES)}, not {strategy!r}"
            )
        if isinstance(intensity, bool) or not isinstance(intensity, int) or intensity < 0:
            raise ValueError(f"Supervisor intensity must be an int >= 0, not {intensity!r}")
        if isinstance(period, bool) or not isinstance(period, int | float) or period <= 0:
            raise ValueError(f"Supervisor period must be seconds > 0, not {period!r}")
        super().__init__(self.run)
        self.strategy: Strategy = strategy
        self.intensity = intensity
        self.period = float(period)
        if name is not None:
            self.name = name
        self._children: list[_Child] = []
        for spec in children:
            self._add(spec)
        self._loop: GreenThread[Any] | None = None
        # The thread start() or startService() spawned, until it runs: requests may be sent
        # to it already (they wait in its mailbox until the children have started).
        self._starting: GreenThread[Any] | None = None
        self._refs: dict[MonitorRef, _Child] = {}
        self._restarts: deque[float] = deque()

    def __repr__(self) -> str:
        state = "running" if self._loop is not None else "stopped"
        label = f" {self.name}" if self.name else ""
        return (
            f"<txgreen.Supervisor{label} {self.strategy} {len(self._children)} children ({state})>"
        )

    def __call__(self) -> None:
        """``run()``: so that a supervisor is a child's function (``ChildSpec(id, sup)``)."""
        self.run()

    def _add(self, spec: ChildSpec) -> _Child:
        if not isinstance(spec, ChildSpec):
            raise TypeError(f"a Supervisor's children are ChildSpec objects, not {spec!r:.80}")
        if any(c.spec.id == spec.id for c in self._children):
            raise SupervisorError(f"a child with id {spec.id!r} already exists")
        child = _Child(spec)
        self._children.append(child)
        return child

    def _find(self, id: Hashable) -> _Child:
        for child in self._children:
            if child.spec.id == id:
                return child
        raise SupervisorError(f"no child with id {id!r}")

    # -- the loop --------------------------------------------------------------------------------

    def run(self) -> None:
        """Start the children in order and supervise them, in the current green thread.

        Returns when the thread is killed (``GreenletExit``), after stopping every child in
        reverse order; raises :class:`RestartIntensityExceeded` when it gives up.
        """
        me = getcurrent()
        if not isinstance(me, GreenThread):
            current_hub_and_greenlet("Supervisor.run()")  # raises in the hub
            raise SupervisorError("Supervisor.run() must run in a green thread (txgreen.spawn)")
        if self._loop is not None:
            raise SupervisorError(f"{self!r} is already running in {self._loop!r}")
        starting = self._starting
        if starting is not None and starting is not me and not starting.dead:
            raise SupervisorError(f"{self!r} is already starting in {starting!r}")
        self._loop = me
        self._starting = None
        self._restarts.clear()
        try:
            for child in list(self._children):
                self._start(child)
            while True:
                message = receive(match=self._mine)
                if isinstance(message, Down):
                    ended = self._refs.pop(message.ref, None)
                    if ended is not None:
                        self._child_ended(ended, message.thread)
                else:
                    self._serve(message)
        finally:
            try:
                self._terminate_all()
            finally:
                self._loop = None

    def _mine(self, message: object) -> bool:
        if isinstance(message, Down):
            return message.ref in self._refs
        return isinstance(message, _Call) and message.supervisor is self

    def _serve(self, call: _Call) -> None:
        try:
            reply = _Reply(call.ref, True, call.fn())
        except Exception as e:
            reply = _Reply(call.ref, False, e)
        send(call.caller, reply)

    def _start(self, child: _Child) -> GreenThread[Any]:
        spec = child.spec
        loop = self._loop
        assert loop is not None
        thread = spawn(spec.fn, *spec.args)
        thread.name = f"{spec.id}"
        ref = monitor(thread, loop)
        child.thread, child.ref = thread, ref
        self._refs[ref] = child
        return thread

    def _child_ended(self, child: _Child, thread: GreenThread[Any]) -> None:
        spec = child.spec
        child.thread = child.ref = None
        reason = exit_reason(thread)
        abnormal = is_abnormal(reason)
        thread._retrieved()  # logged here, once, with the child's id
        restart = spec.restart == "permanent" or (spec.restart == "transient" and abnormal)
        if isinstance(reason, ReactorStopped):
            restart = False  # the program is stopping: nothing can start any more
        if abnormal:
            assert reason is not None
            log.failure(
                "Supervisor {supervisor!r}: child {child_id!r} failed: {reason!r}"
                + ("; restarting" if restart else ""),
                failure_of(reason),
                supervisor=self,
                child_id=spec.id,
                reason=reason,
            )
        else:
            log.info(
                "Supervisor {supervisor!r}: child {child_id!r} ended ({reason!r})"
                + ("; restarting" if restart else ""),
                supervisor=self,
                child_id=spec.id,
                reason=reason,
            )
        if not restart:
            if spec.restart == "temporary":
                self._children.remove(child)
            return
        self._count_restart(child, reason)
        if self.strategy == "one_for_one":
            group = [child]
        else:
            at = self._children.index(child)
            group = self._children if self.strategy == "one_for_all" else self._children[at:]
            group = [c for c in group if c is child or c.thread is not None]
            for other in reversed(group):
                if other is not child:
                    self._terminate(other)
            # Temporary children stopped for the group are not started again.
            for other in group:
                if other is not child and other.spec.restart == "temporary":
                    self._children.remove(other)
            group = [c for c in group if c is child or c.spec.restart != "temporary"]
        for c in group:
            self._start(c)
            log.info(
                "Supervisor {supervisor!r}: restarted child {child_id!r}",
                supervisor=self,
                child_id=c.spec.id,
            )

    def _count_restart(self, child: _Child, reason: BaseException | None) -> None:
        now = time.monotonic()
        restarts = self._restarts
        restarts.append(now)
        while restarts and restarts[0] <= now - self.period:
            restarts.popleft()
        if len(restarts) > self.intensity:
            message = (
                f"supervisor {self!r} gave up: more than {self.intensity} restarts within "
                f"{self.period:g} s (the last: child {child.spec.id!r}, {reason!r})"
            )
            log.error(
                "Supervisor {supervisor!r} gave up: more than {intensity} restarts within "
                "{period} s; the last: child {child_id!r} ({reason!r}); stopping its children",
                supervisor=self,
                intensity=self.intensity,
                period=self.period,
                child_id=child.spec.id,
                reason=reason,
            )
            raise RestartIntensityExceeded(message) from reason

    def _terminate(self, child: _Child) -> None:
        thread, ref = child.thread, child.ref
        child.thread = child.ref = None
        if ref is not None:
            self._refs.pop(ref, None)
            demonitor(ref, flush=True)
        if thread is None or thread.dead:
            return
        timeout = child.spec.shutdown
        thread.kill(block=False)
        if not thread.join(timeout):
            log.warn(
                "Supervisor {supervisor!r}: child {child_id!r} did not end within {timeout} s "
                "of being killed; giving up on it",
                supervisor=self,
                child_id=child.spec.id,
                timeout=timeout,
            )

    def _terminate_all(self) -> None:
        error: BaseException | None = None
        for child in reversed(self._children):
            if error is None:
                try:
                    self._terminate(child)
                except BaseException as e:  # killed again, or the reactor stopped: hurry
                    error = e
            else:
                thread = child.thread
                child.thread = child.ref = None
                if thread is not None:
                    thread.kill(block=False)
        self._refs.clear()
        if error is not None and not isinstance(error, GreenletExit):
            raise error

    # -- requests from other green threads --------------------------------------------------------

    def _call(self, fn: Callable[[], Any]) -> Any:
        loop = self._loop or self._starting
        if loop is None or loop.dead:
            raise SupervisorNotRunning(f"{self!r} is not running: start it first (run/start)")
        me = getcurrent()
        if me is loop:
            return fn()
        if not isinstance(me, GreenThread):
            current_hub_and_greenlet("a Supervisor request")  # raises in the hub
            raise SupervisorError("Supervisor requests must come from a green thread")
        ref = monitor(loop, me)
        send(loop, _Call(self, ref, me, fn))
        answer = receive(match=lambda m: isinstance(m, Down | _Reply) and m.ref is ref)
        demonitor(ref, flush=True)
        if isinstance(answer, Down):
            raise SupervisorNotRunning(f"{self!r} ended before answering") from answer.reason
        if not answer.ok:
            raise answer.value
        return answer.value

    def start_child(self, spec: ChildSpec) -> GreenThread[Any]:
        """Add ``spec`` and start it, after the other children; return its green thread."""
        if not isinstance(spec, ChildSpec):
            raise TypeError(f"start_child() takes a ChildSpec, not {spec!r:.80}")
        return self._call(lambda: self._start(self._add(spec)))  # type: ignore[no-any-return]

    def terminate_child(self, id: Hashable) -> None:
        """Stop child ``id`` (kill, wait ``shutdown`` s); its spec stays (``restart_child``).

        A temporary child's spec is dropped.
        """

        def terminate() -> None:
            child = self._find(id)
            self._terminate(child)
            if child.spec.restart == "temporary":
                self._children.remove(child)

        self._call(terminate)

    def restart_child(self, id: Hashable) -> GreenThread[Any]:
        """Start again child ``id``, stopped by :meth:`terminate_child` or ended for good."""

        def restart() -> GreenThread[Any]:
            child = self._find(id)
            if child.thread is not None:
                raise SupervisorError(f"child {id!r} is running")
            return self._start(child)

        return self._call(restart)  # type: ignore[no-any-return]

    def delete_child(self, id: Hashable) -> None:
        """Forget the spec of child ``id``, which must not be running."""

        def delete() -> None:
            child = self._find(id)
            if child.thread is not None:
                raise SupervisorError(f"child {id!r} is running: terminate_child() it first")
            self._children.remove(child)

        self._call(delete)

    def which_children(self) -> list[ChildInfo]:
        """Every child in start order: id, running thread (or None), restart type, supervisor?"""
        return [
            ChildInfo(c.spec.id, c.thread, c.spec.restart, isinstance(c.spec.fn, Supervisor))
            for c in self._children
        ]

    def count_children(self) -> dict[str, int]:
        """Counts as Erlang's: ``specs``, ``active`` (running), ``supervisors``, ``workers``."""
        sups = sum(isinstance(c.spec.fn, Supervisor) for c in self._children)
        return {
            "specs": len(self._children),
            "active": sum(c.thread is not None for c in self._children),
            "supervisors": sups,
            "workers": len(self._children) - sups,
        }

    # -- running ----------------------------------------------------------------------------------

    @property
    def running_thread(self) -> GreenThread[Any] | None:
        """The green thread running the supervisor's loop, or None."""
        return self._loop

    def start(self) -> GreenThread[None]:
        """Run the supervisor in a new green thread; return it (``kill()`` it to stop).

        Requests (``start_child``...) may be made at once: they are served once the children
        have started.
        """
        thread = self._starting = spawn(self.run)
        return thread

    def startService(self) -> None:
        """Start the supervisor in a green thread, as a Twisted service (see the class doc)."""
        super().startService()
        self._starting = self.thread


# txgreen re-exports these lazily (importing twisted.application costs time): name the public
# path in tracebacks and reprs, as txgreen/__init__.py does for the others.
for _exc in (RestartIntensityExceeded, SupervisorError, SupervisorNotRunning):
    _exc.__module__ = "txgreen"
