"""Small helpers shared by txgreen's modules."""

from __future__ import annotations

from types import TracebackType
from typing import Any

from twisted.internet.error import ConnectionClosed
from twisted.python.failure import Failure


def failure_of(exc: BaseException) -> Failure:
    """A Failure for ``exc`` that keeps the exception's own traceback."""
    return Failure(exc, type(exc), exc.__traceback__)  # type: ignore[no-untyped-call]


# -- exceptions that Twisted shares between connections -------------------------------------------
#
# Twisted hands one and the same exception object to every connection that ends the same way:
# ``twisted.internet.main.CONNECTION_LOST``/``CONNECTION_DONE``, the Failures kept in the default
# argument of ``posixbase._DisconnectSelectableMixin._disconnectSelectable`` and of
# ``tcp.Connection.loseConnection``, ``protocol.connectionDone``.  Raising such an object adds the
# raiser's frames to its one traceback, which then grows with every connection and keeps every
# finished green thread's frames (and so its stream, its greenlet) alive; raising it also sets
# its ``__context__``.  So txgreen never raises nor stores an exception of that family as Twisted
# gave it: it raises a fresh copy.  All of them are ``ConnectionClosed`` errors (ConnectionDone,
# ConnectionLost and their subclasses); other exceptions that reach txgreen through a Deferred
# are the caller's own and keep their identity.


def may_be_shared(exc: BaseException) -> bool:
    """True for the exceptions Twisted may hand to more than one connection (see above)."""
    return isinstance(exc, ConnectionClosed)


def fresh_copy(exc: BaseException) -> BaseException:
    """A new exception equal to ``exc``: same class, ``args`` and attributes.

    The copy has no traceback, cause or context of its own, and ``__init__`` is not called
    again (its arguments are not always ``args``).  Raising the copy leaves ``exc`` untouched.
    Raises TypeError for an exception that cannot be copied this way (a class whose
    ``__new__`` needs other arguments); no Twisted connection error is such a class.
    """
    cls = type(exc)
    new: BaseException = cls.__new__(cls, *exc.args)
    new.args = exc.args
    state = getattr(exc, "__dict__", None)
    if state:
        new.__dict__.update(state)
        notes = state.get("__notes__")
        if isinstance(notes, list):
            new.__dict__["__notes__"] = list(notes)  # add_note() on the copy stays on the copy
    if isinstance(exc, OSError):
        # errno and friends are set by OSError's own __init__, which did not run.
        # (Set only those that are: an unset filename2 and one set to None print differently.)
        for name in ("errno", "strerror", "filename", "filename2"):
            value = getattr(exc, name)
            if value is not None:
                setattr(new, name, value)
    return new


def own_error(exc: BaseException) -> BaseException:
    """``exc``, or a fresh copy of it if it may be an object Twisted shares (see above)."""
    if may_be_shared(exc):
        return fresh_copy(exc)
    return exc


def _value(failure: Failure) -> BaseException:
    value = failure.value
    assert value is not None  # (typed optional: a Failure being built has none yet)
    return value


def own_failure(failure: Failure) -> Failure:
    """``failure``, or a new Failure of a fresh copy of its exception if Twisted may share it.

    Meant as an errback (``d.addErrback(own_failure)``): what the Deferred passes on, and what
    ``block_on`` raises from it, is then an object of the caller's own.
    """
    value = _value(failure)
    if not may_be_shared(value):
        return failure
    copy = fresh_copy(value)
    return Failure(copy, type(copy), failure.tb)  # type: ignore[no-untyped-call]


def exception_of(failure: Failure) -> BaseException:
    """The exception to raise for ``failure``: what ``failure.raiseException()`` raises, except
    that an exception Twisted may share is replaced by a fresh copy (its traceback is the
    Failure's, as ``raiseException`` gives it).  ``raise exception_of(f)``.
    """
    value = _value(failure)
    if may_be_shared(value):
        value = fresh_copy(value)
    return value.with_traceback(failure.tb)


def make_exception(typ: Any, val: Any = None, tb: TracebackType | None = None) -> BaseException:
    """The exception that ``generator.throw(typ, val, tb)`` raises, built the way Python does."""
    if isinstance(typ, BaseException):
        if val is not None:
            raise TypeError("instance exception may not have a separate value")
        exc = typ
    elif isinstance(typ, type) and issubclass(typ, BaseException):
        if isinstance(val, typ):
            exc = val
        elif val is None:
            exc = typ()
        elif isinstance(val, tuple):
            exc = typ(*val)
        else:
            exc = typ(val)
    else:
        raise TypeError(
            "exceptions must be classes or instances deriving from BaseException, "
            f"not {type(typ).__name__}"
        )
    if tb is not None:
        exc = exc.with_traceback(tb)
    return exc


# -- hiding txgreen's frames from pytest's failure reports -------------------------------------

_hide_frames = False


def hide_frames_in_reports(hide: bool) -> None:
    """Set by the pytest plugin from the ``txgreen_hide_frames`` ini option (default true)."""
    global _hide_frames
    _hide_frames = hide


def hidden_in_reports(excinfo: object) -> bool:
    """pytest's ``__tracebackhide__`` for txgreen's core modules (a module global there).

    pytest leaves out of a failure's traceback the frames whose locals or globals hold a true
    ``__tracebackhide__`` (or a callable returning true): the user sees their own lines, not
    the hub's or ``block_on``'s.  ``pytest --full-trace`` shows them all again.
    """
    return _hide_frames


# -- get(block=True, timeout=None) everywhere ---------------------------------------------------


def block_and_timeout(block: object, timeout: float | None, what: str) -> tuple[bool, float | None]:
    """Read ``get(block, timeout)`` arguments, accepting the old ``get(timeout)`` form.

    Every getter takes ``get(block=True, timeout=None)``, as ``queue.Queue`` and gevent do.
    ``GreenThread.get`` and ``ThreadQueue.get`` used to take ``timeout`` first: a number
    passed there is still read as the timeout, with a ``DeprecationWarning`` (never silently
    as ``block=True``, which would wait for ever).
    """
    if type(block) is bool:
        return block, timeout
    if isinstance(block, int | float) and timeout is None:
        import warnings

        warnings.warn(
            f"{what}({block!r}) passes the timeout as the first argument; write "
            f"{what}(timeout={block!r}) (the first argument is now block=, as in queue.Queue)",
            DeprecationWarning,
            stacklevel=3,
        )
        return True, float(block)
    raise TypeError(f"{what}(): block must be True or False, not {block!r}")
