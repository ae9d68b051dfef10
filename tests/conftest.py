from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest
from twisted.logger import LogEvent

# Asserts in the shared helpers report like the tests' own (must come before the import).
pytest.register_assert_rewrite("support")

from support import is_unhandled_deferred_error, log_events  # noqa: E402


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "single_reactor: the test does not depend on the installed reactor (for example it runs "
        "subprocesses that choose their own), so the extra per-reactor runs skip it",
    )
    config.addinivalue_line(
        "markers",
        "cpython_suite: runs modules of CPython's own test suite plain and patched (minutes); "
        '`pytest -m "not cpython_suite"` skips them for a quick local run',
    )


@pytest.fixture
def unhandled() -> Iterator[list[LogEvent]]:
    """Collect every "Unhandled error in Deferred" that Twisted logs during the test."""
    gc.collect()  # flush the garbage of earlier tests first
    with log_events(is_unhandled_deferred_error) as events:
        yield events


@pytest.fixture
def no_scope_left_behind() -> Iterator[None]:
    """The test leaves the cancel scopes' bookkeeping as it found it (nothing refers to a
    thread); tests/test_cancel.py and tests/test_taskgroup.py use it for every test."""
    from txgreen._cancel import _innermost

    before = dict(_innermost)
    yield
    assert _innermost == before
