"""txgreen: write Twisted code in plain synchronous style with green threads.

The reactor runs in a dedicated greenlet, the *hub*; every other greenlet is a *green thread*.
``block_on(deferred)`` in a green thread switches to the hub and comes back with the result,
so sync-looking code runs concurrently on Twisted's reactor.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from greenlet import GreenletExit

from txgreen._block import as_deferred, block_on
from txgreen._cancel import Cancelled, CancelScope, fail_after, move_on_after
from txgreen._channel import Channel, ChannelClosed
from txgreen._event import AsyncResult, Event
from txgreen._generator import GreenGenerator, generator
from txgreen._greenthread import (
    GreenThread,
    defer_to_green,
    green,
    sleep,
    spawn,
    spawn_later,
)
from txgreen._hub import get_hub
from txgreen._lock import BoundedSemaphore, Lock, RLock, Semaphore
from txgreen._mailbox import (
    Mailbox,
    MailboxFull,
    NotAGreenThread,
    current_thread,
    receive,
    send,
)
from txgreen._monitor import (
    BlockingReport,
    BlockingWatch,
    WatchAlreadyRunning,
    watch_blocking,
    watch_blocking_from_env,
)
from txgreen._pool import Group, Pool, PoolFull, joinall, killall
from txgreen._process import (
    Down,
    Exit,
    ExitSignal,
    MonitorRef,
    demonitor,
    link_exit,
    spawn_link,
    spawn_monitor,
    trap_exits,
    unlink_exit,
)
from txgreen._protocols import (
    CallbackQueue,
    CallbackQueueClosed,
    blocking,
    callback_queue,
    connect_protocol,
)
from txgreen._queue import Empty, Full, LifoQueue, PriorityQueue, Queue
from txgreen._run import ReactorAlreadyRunning, run
from txgreen._stream import (
    ConcurrentReadError,
    HalfCloseNotSupported,
    IncompleteReadError,
    LineTooLong,
    Listener,
    Stream,
    StreamClosed,
    StreamError,
    StreamTimeout,
    connect,
    listen,
    serve,
)
from txgreen._taskgroup import TASK_STATUS_IGNORED, TaskGroup, TaskStatus
from txgreen._threads import (
    DaemonThreadPool,
    InReactorThreadError,
    QueueClosed,
    ThreadPoolNotRunning,
    ThreadQueue,
    call_in_green,
    call_in_thread,
    run_in_hub,
    set_thread_pool_size,
    threaded,
)
from txgreen._timeout import Timeout
from txgreen.errors import (
    AppImportError,
    BlockingInHubError,
    ConcurrentWaitError,
    NeverRanWarning,
    NotInReactorThreadError,
    PatchWarning,
    ReactorStopped,
    TestDeadlineExceeded,
    TxgreenError,
    UnexpectedSwitchError,
)
from txgreen.green._patch import patch, patched, unpatch

if TYPE_CHECKING:
    from txgreen._service import GreenService
    from txgreen._supervisor import (
        ChildInfo,
        ChildSpec,
        RestartIntensityExceeded,
        Supervisor,
        SupervisorError,
        SupervisorNotRunning,
    )
    from txgreen.web import WSGIResource, serve_wsgi
else:
    # ``txgreen.green`` is both the @green decorator and the green standard library package
    # (txgreen/green/): the package is callable as the decorator.  Bound here for good, so
    # that importing one of its modules later (which sets the attribute) changes nothing.
    from txgreen import green

# Imported on first use: the WSGI container pulls in twisted.web, GreenService and Supervisor
# twisted.application, which most programs never need.
_LAZY = {
    "ChildInfo": "txgreen._supervisor",
    "ChildSpec": "txgreen._supervisor",
    "GreenService": "txgreen._service",
    "RestartIntensityExceeded": "txgreen._supervisor",
    "Supervisor": "txgreen._supervisor",
    "SupervisorError": "txgreen._supervisor",
    "SupervisorNotRunning": "txgreen._supervisor",
    "WSGIResource": "txgreen.web",
    "serve_wsgi": "txgreen.web",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'txgreen' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


__all__ = [
    "TASK_STATUS_IGNORED",
    "AppImportError",
    "AsyncResult",
    "BlockingInHubError",
    "BlockingReport",
    "BlockingWatch",
    "BoundedSemaphore",
    "CallbackQueue",
    "CallbackQueueClosed",
    "CancelScope",
    "Cancelled",
    "Channel",
    "ChannelClosed",
    "ChildInfo",
    "ChildSpec",
    "ConcurrentReadError",
    "ConcurrentWaitError",
    "DaemonThreadPool",
    "Down",
    "Empty",
    "Event",
    "Exit",
    "ExitSignal",
    "Full",
    "GreenGenerator",
    "GreenService",
    "GreenThread",
    "GreenletExit",
    "Group",
    "HalfCloseNotSupported",
    "InReactorThreadError",
    "IncompleteReadError",
    "LifoQueue",
    "LineTooLong",
    "Listener",
    "Lock",
    "Mailbox",
    "MailboxFull",
    "MonitorRef",
    "NeverRanWarning",
    "NotAGreenThread",
    "NotInReactorThreadError",
    "PatchWarning",
    "Pool",
    "PoolFull",
    "PriorityQueue",
    "Queue",
    "QueueClosed",
    "RLock",
    "ReactorAlreadyRunning",
    "ReactorStopped",
    "RestartIntensityExceeded",
    "Semaphore",
    "Stream",
    "StreamClosed",
    "StreamError",
    "StreamTimeout",
    "Supervisor",
    "SupervisorError",
    "SupervisorNotRunning",
    "TaskGroup",
    "TaskStatus",
    "TestDeadlineExceeded",
    "ThreadPoolNotRunning",
    "ThreadQueue",
    "Timeout",
    "TxgreenError",
    "UnexpectedSwitchError",
    "WSGIResource",
    "WatchAlreadyRunning",
    "as_deferred",
    "block_on",
    "blocking",
    "call_in_green",
    "call_in_thread",
    "callback_queue",
    "connect",
    "connect_protocol",
    "current_thread",
    "defer_to_green",
    "demonitor",
    "fail_after",
    "generator",
    "get_hub",
    "green",
    "joinall",
    "killall",
    "link_exit",
    "listen",
    "move_on_after",
    "patch",
    "patched",
    "receive",
    "run",
    "run_in_hub",
    "send",
    "serve",
    "serve_wsgi",
    "set_thread_pool_size",
    "sleep",
    "spawn",
    "spawn_later",
    "spawn_link",
    "spawn_monitor",
    "threaded",
    "trap_exits",
    "unlink_exit",
    "unpatch",
    "watch_blocking",
    "watch_blocking_from_env",
]


def _show_exceptions_as_public() -> None:
    # Tracebacks and reprs name the public path: txgreen.StreamClosed, not
    # txgreen._stream.StreamClosed (they pickle by that name too: it resolves).
    for name in __all__:
        obj = globals().get(name)
        if (
            isinstance(obj, type)
            and issubclass(obj, BaseException | Warning)
            and obj.__module__.startswith("txgreen")
        ):
            obj.__module__ = "txgreen"


_show_exceptions_as_public()


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("txgreen")
    except PackageNotFoundError:  # pragma: no cover - run from a source tree never installed
        return "0+unknown"


__version__ = _version()
"""The installed version, from the package's metadata (``pyproject.toml``)."""
