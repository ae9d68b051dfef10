"""The exceptions txgreen raises.

Every error a user can cause or meet has a named class here, so code can catch exactly what it
expects and messages can say how to fix the problem.  Two more live with the code that raises
them and are imported from ``txgreen``: ``txgreen.Timeout`` (also a context manager, so it lives
in its own module) and ``txgreen.ReactorAlreadyRunning`` (raised by ``txgreen.run``).
"""

from __future__ import annotations

from greenlet import GreenletExit

__all__ = [
    "AppImportError",
    "BlockingInHubError",
    "ConcurrentWaitError",
    "GreenletExit",
    "NotInReactorThreadError",
    "PatchWarning",
    "ReactorStopped",
    "TestDeadlineExceeded",
    "TxgreenError",
    "UnexpectedSwitchError",
]


class TxgreenError(Exception):
    """Base class of txgreen's own errors (``Timeout`` derives from ``TimeoutError`` instead)."""


class BlockingInHubError(TxgreenError):
    """A blocking call was made from the hub, the greenlet that runs the reactor.

    The hub must never wait: while it waits nothing else (timers, sockets, other green threads)
    can run, so the wait could never end.  Reactor-side code (a ``Protocol`` method, a Deferred
    callback, a ``callLater`` function) runs in the hub.
    """

    def __init__(self, what: str = "block_on()") -> None:
        super().__init__(
            f"{what} was called from the hub (the greenlet running the reactor), where waiting "
            "would stall the reactor for good. Run the code in a green thread instead: "
            "txgreen.spawn(fn, ...) or txgreen.defer_to_green(fn, ...) from reactor callbacks, "
            "or decorate the callback with @txgreen.green so it returns a Deferred. "
            "In tests, mark the test @pytest.mark.green (or set txgreen_mode = auto)."
        )


class ConcurrentWaitError(TxgreenError):
    """Two green threads waited for the same direction (read or write) on one file descriptor.

    A socket of ``txgreen.green.socket`` (and anything else built on its fd registry) serves one
    reader and one writer at a time: with two readers, which one gets the next bytes would be a
    matter of chance.  Give each socket one reading green thread (and at most one writing one),
    or serialise the calls with a ``txgreen.Lock``.
    """


class ReactorStopped(TxgreenError):
    """The reactor has stopped (or is stopping), so a blocking call can never complete.

    Raised in every green thread that is blocked when the reactor shuts down, and at once by any
    blocking call made after that.
    """

    def __init__(self, message: str | None = None) -> None:
        super().__init__(
            message
            or "the reactor has stopped, so this call can never complete; "
            "green threads cannot block once the reactor is shut down"
        )


class NotInReactorThreadError(TxgreenError):
    """A call that must run in the reactor's OS thread was made from another OS thread."""


class UnexpectedSwitchError(TxgreenError):
    """A green thread waiting in txgreen was resumed by something other than txgreen.

    This happens when code calls ``greenlet.switch()`` on a green thread that is blocked in
    ``block_on`` (or another txgreen wait).  Resume green threads only through Deferreds and
    the txgreen primitives.
    """


class TestDeadlineExceeded(TxgreenError):
    """A green test ran past its deadline (pytest-timeout's ``timeout`` setting or marker)."""

    __test__ = False  # not a test class, despite the name


class PatchWarning(UserWarning):
    """``txgreen.patch()`` found modules that keep blocking originals of patched names.

    A module that ran ``from socket import socket`` or ``from time import sleep`` before
    ``txgreen.patch()`` holds the stdlib's blocking object under its own name; patching the
    stdlib module cannot reach it.  Call ``txgreen.patch()`` before importing such modules, or
    run the program with ``python -m txgreen run``.
    """


class NeverRanWarning(RuntimeWarning):
    """At exit: green threads were spawned but never ran, because nothing started the reactor.

    ``spawn()`` only schedules a green thread; it runs once the reactor does (``txgreen.run``,
    the first blocking call, or ``reactor.run()``).
    """


class AppImportError(TxgreenError):
    """The WSGI application named by a spec (``module:name``) could not be loaded.

    Raised by ``txgreen.web.load_application`` (and so by ``python -m txgreen serve``, the twist
    plugin and ``WSGIService``): the module cannot be found, importing it raised, the attribute
    is missing, the object is not callable, or the factory raised.  The message says which and
    how to fix it.  When the application's own code raised (importing the module or calling
    the factory), that exception is the ``__cause__`` and ``in_app_code`` is True: its
    traceback is the one worth showing.
    """

    def __init__(self, message: str, *, spec: str = "", in_app_code: bool = False) -> None:
        super().__init__(message)
        self.spec = spec
        self.in_app_code = in_app_code
