"""Small helpers shared by txgreen's modules."""

from __future__ import annotations

from types import TracebackType
from typing import Any

from twisted.python.failure import Failure


def failure_of(exc: BaseException) -> Failure:
    """A Failure for ``exc`` that keeps the exception's own traceback."""
    return Failure(exc, type(exc), exc.__traceback__)  # type: ignore[no-untyped-call]


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
