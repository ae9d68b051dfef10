"""txgreen._util: the copies that stand in for exceptions Twisted shares between connections."""

from __future__ import annotations

from typing import Any

import pytest
from twisted.internet import error
from twisted.python.failure import Failure

from support import Boom, exception_state, tb_frames
from txgreen._stream import IncompleteReadError, LineTooLong
from txgreen._util import exception_of, fresh_copy, may_be_shared, own_error, own_failure

ConnectionDone = error.ConnectionDone
ConnectionLost = error.ConnectionLost
ConnectionRefusedError: Any = error.ConnectionRefusedError  # (its __init__ is untyped)


def raised(exc: BaseException) -> BaseException:
    """``exc`` after it was raised and caught once (so it has a traceback and a context)."""
    try:
        try:
            raise KeyError("context")
        except KeyError:
            raise exc from ValueError("cause")
    except BaseException as e:
        return e


@pytest.mark.parametrize(
    "exc",
    [
        ConnectionLost("reset"),
        ConnectionDone(),
        ConnectionRefusedError("nobody there"),
        ConnectionResetError(104, "Connection reset by peer"),
        LineTooLong(64),
        IncompleteReadError(b"part", 10),
        Boom("plain"),
    ],
    ids=lambda e: type(e).__name__,
)
def test_fresh_copy_is_equal_and_owns_nothing(exc: BaseException) -> None:
    exc.__dict__["__notes__"] = ["a note"]  # what add_note() does (Python 3.11+)
    original = raised(exc)
    before = exception_state([original])
    copy = fresh_copy(original)
    assert copy is not original
    assert type(copy) is type(original)
    assert copy.args == original.args
    assert str(copy) == str(original)
    assert vars(copy) == vars(original)
    assert exception_state([copy]) == [(None, None, None)]
    copy.__dict__["__notes__"].append("another")  # notes are the copy's own list
    assert original.__dict__["__notes__"] == ["a note"]
    if isinstance(original, OSError):
        assert isinstance(copy, OSError)
        assert (copy.errno, copy.strerror) == (original.errno, original.strerror)
    with pytest.raises(type(copy)) as info:
        raise copy
    assert tb_frames(info.value.__traceback__) == 1
    assert exception_state([original]) == before  # raising the copy left the original alone


def test_only_twisted_connection_errors_count_as_shared() -> None:
    assert may_be_shared(ConnectionLost())
    assert may_be_shared(ConnectionDone())
    assert not may_be_shared(ConnectionRefusedError())  # a new one per attempt
    assert not may_be_shared(Boom())
    boom = Boom()
    assert own_error(boom) is boom
    lost = ConnectionLost()
    assert own_error(lost) is not lost
    assert isinstance(own_error(lost), ConnectionLost)


def test_own_failure_and_exception_of() -> None:
    lost = ConnectionLost("shared")
    shared: Failure = Failure(lost)  # type: ignore[no-untyped-call]
    mine = own_failure(shared)
    assert mine is not shared
    assert isinstance(mine.value, ConnectionLost)
    assert mine.value is not lost
    assert str(mine.value) == str(lost)
    for _ in range(2):
        e = exception_of(shared)
        assert e is not lost
        assert isinstance(e, ConnectionLost)
    assert exception_state([lost]) == [(None, None, None)]

    boom = raised(Boom("kept"))
    plain: Failure = Failure(boom)  # type: ignore[no-untyped-call]
    assert own_failure(plain) is plain
    assert exception_of(plain) is boom  # the caller's own exception keeps its identity
    assert boom.__traceback__ is plain.tb
