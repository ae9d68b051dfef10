"""What a user sees of the package itself: its version, and the names its errors go by."""

from __future__ import annotations

import importlib.metadata
import pickle
import traceback

import pytest

import txgreen

pytestmark = pytest.mark.in_hub  # nothing here waits


def test_version_comes_from_the_package_metadata() -> None:
    assert txgreen.__version__ == importlib.metadata.version("txgreen")
    assert txgreen.__version__[0].isdigit()


PUBLIC_ERRORS = [
    obj
    for name in txgreen.__all__
    if isinstance(obj := getattr(txgreen, name), type)
    and issubclass(obj, BaseException | Warning)
    and obj is not txgreen.GreenletExit  # greenlet's own, re-exported as it is
]


def test_there_are_public_errors_to_check() -> None:
    names = {e.__name__ for e in PUBLIC_ERRORS}
    assert {"StreamClosed", "BlockingInHubError", "Timeout", "PatchWarning"} <= names


@pytest.mark.parametrize("error", PUBLIC_ERRORS, ids=lambda e: e.__name__)
def test_public_errors_show_their_public_name(error: type[BaseException]) -> None:
    assert error.__module__ == "txgreen"
    assert getattr(txgreen, error.__name__) is error
    assert repr(error).startswith(f"<class 'txgreen.{error.__name__}'")


def test_a_traceback_names_the_public_path_and_the_error_pickles() -> None:
    try:
        raise txgreen.StreamClosed("the peer closed the connection")
    except txgreen.StreamClosed as e:
        shown = "".join(traceback.format_exception(e))
        copy = pickle.loads(pickle.dumps(e))
    assert shown.endswith("txgreen.StreamClosed: the peer closed the connection\n")
    assert type(copy) is txgreen.StreamClosed
    assert copy.args == ("the peer closed the connection",)
