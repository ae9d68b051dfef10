"""Small helpers shared by txgreen's modules."""

from __future__ import annotations

from twisted.python.failure import Failure


def failure_of(exc: BaseException) -> Failure:
    """A Failure for ``exc`` that keeps the exception's own traceback."""
    return Failure(exc, type(exc), exc.__traceback__)  # type: ignore[no-untyped-call]
