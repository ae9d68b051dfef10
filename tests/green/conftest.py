"""Fixtures shared by the green standard library's tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from txgreen.green import _fdwait


@pytest.fixture(autouse=True)
def registry_empty_after() -> Iterator[None]:
    """Every test leaves the fd registry empty: no green thread still waits on an fd."""
    yield
    assert _fdwait.watched_fds() == {}
