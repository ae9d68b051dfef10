"""A cooperative ``time`` module: ``sleep`` parks only the green thread.

:func:`sleep` is ``txgreen.sleep`` in a green thread and the stdlib's ``time.sleep`` anywhere
else (another OS thread, or the hub itself: a reactor callback, where it blocks the reactor as
the stdlib's call would and ``txgreen.watch_blocking`` reports it).  Every other name of the
stdlib's ``time`` module is re-exported unchanged.
"""

from __future__ import annotations

import math as _math
import operator as _operator
import time as _std
from time import *  # noqa: F403 - the stdlib's whole surface, re-exported

from txgreen._greenthread import sleep as _green_sleep
from txgreen.green import _fdwait

__patched__: list[str] = ["sleep"]

_std_sleep = _std.sleep  # bound at import time: after patch() the module's name is ours

# _PyTime_t is a signed 64-bit count of nanoseconds.
_MAX_SECONDS = (2**63 - 1) // 10**9


def _check(seconds: float) -> float:
    """``seconds`` as a float, checked as the stdlib's ``time.sleep`` checks it."""
    if isinstance(seconds, float):
        if _math.isnan(seconds):
            raise ValueError("Invalid value NaN (not a number)")
        if not -_MAX_SECONDS <= seconds <= _MAX_SECONDS:
            raise OverflowError("timestamp out of range for platform time_t")
        value = seconds
    else:
        n = _operator.index(seconds)  # the stdlib's TypeError for anything else
        if not -_MAX_SECONDS <= n <= _MAX_SECONDS:
            raise OverflowError("timestamp too large to convert to C _PyTime_t")
        value = float(n)
    if value < 0:
        raise ValueError("sleep length must be non-negative")
    return value


def sleep(  # type: ignore[no-redef]
    seconds: float, /
) -> None:
    """Suspend the caller for ``seconds``: only the green thread in a green thread.

    The stdlib's arguments and errors (``ValueError`` for a negative or NaN length,
    ``TypeError`` for a non-number, ``OverflowError``).  In a green thread this is
    ``txgreen.sleep`` (``sleep(0)`` lets the other green threads run); elsewhere it is the
    stdlib's ``time.sleep``.
    """
    if _fdwait.green_caller() is None:
        _std_sleep(seconds)
        return
    _green_sleep(_check(seconds))
