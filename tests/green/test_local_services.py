"""The test servers' own checks: a missing server is a clear failure, stray processes are caught.

``local_services`` starts the Redis and PostgreSQL servers of the real-library tests; these tests
check what happens when it cannot, and that its check for processes left behind by a stopped
server finds them.
"""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

import pytest
from local_services import (
    REDIS_INSTALL_HINT,
    Server,
    ServiceUnavailable,
    StrayProcesses,
    postgres_binaries,
    redis_server_binary,
    session_processes,
    stop_server,
)

# Nothing here depends on the reactor under test: run once, not once per reactor.
pytestmark = pytest.mark.single_reactor


def test_a_missing_redis_server_says_how_to_install_it(tmp_path: Path) -> None:
    with pytest.raises(ServiceUnavailable) as missing:
        redis_server_binary(path=str(tmp_path))
    assert "redis-server is not installed" in str(missing.value)
    assert REDIS_INSTALL_HINT in str(missing.value)
    assert "apt-get install -y redis-server" in REDIS_INSTALL_HINT


def test_a_missing_pgserver_says_how_to_install_it() -> None:
    with pytest.raises(ServiceUnavailable, match=r"not installed: install the test extra"):
        postgres_binaries("no_such_package_txgreen")
    assert (postgres_binaries() / "postgres").exists()


def test_processes_left_by_a_stopped_server_are_reported_and_killed(tmp_path: Path) -> None:
    # A "server" (the session leader) whose child ignores the stop signal and outlives it.
    process = subprocess.Popen(
        ["sh", "-c", "(trap '' TERM; exec sleep 30) & exec sleep 31"], start_new_session=True
    )
    server = Server("127.0.0.1", 0, process, tmp_path)
    deadline = time.monotonic() + 5
    while len(session_processes(process.pid)) < 2:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    with pytest.raises(StrayProcesses, match="still run"):
        stop_server(server, signal.SIGTERM, grace=0.2)
    assert process.returncode == -signal.SIGTERM  # the leader itself exited when asked
    deadline = time.monotonic() + 5
    while session_processes(process.pid):  # the child was killed after being reported
        assert time.monotonic() < deadline
        time.sleep(0.01)


def test_a_server_that_ignores_the_stop_signal_is_killed(tmp_path: Path) -> None:
    process = subprocess.Popen(["sh", "-c", "trap '' TERM; exec sleep 30"], start_new_session=True)
    server = Server("127.0.0.1", 0, process, tmp_path)
    time.sleep(0.1)  # the trap is set
    stop_server(server, signal.SIGTERM, grace=0.2)
    assert process.returncode == -signal.SIGKILL
    assert session_processes(process.pid) == []
