from __future__ import annotations

import pytest


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "single_reactor: the test does not depend on the installed reactor (for example it runs "
        "subprocesses that choose their own), so the extra per-reactor runs skip it",
    )
