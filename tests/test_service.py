"""``txgreen.GreenService``: a green thread as a twisted.application service."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from greenlet import GreenletExit
from twisted.application.service import MultiService
from twisted.logger import LogLevel

import txgreen
from support import SCRIPTS, log_events


def service_events(event: Any) -> bool:
    return bool(event.get("log_namespace") == "txgreen.service")


def test_start_runs_fn_and_stop_waits_for_its_cleanup() -> None:
    steps: list[str] = []

    def work(name: str, *, every: float) -> None:
        try:
            while True:
                steps.append(name)
                txgreen.sleep(every)
        finally:
            txgreen.sleep(0.02)  # cleanup that blocks: stopService waits for it
            steps.append("cleaned up")

    parent = MultiService()  # type: ignore[no-untyped-call]
    service = txgreen.GreenService(work, "tick", every=0.01)
    service.setServiceParent(parent)  # type: ignore[no-untyped-call]
    assert not service.running
    assert service.thread is None
    parent.startService()  # type: ignore[no-untyped-call]
    assert service.running
    txgreen.sleep(0.05)
    assert steps
    assert set(steps) == {"tick"}
    txgreen.block_on(parent.stopService())
    assert steps[-1] == "cleaned up"
    assert not service.running
    assert service.thread is not None
    assert service.thread.dead
    assert isinstance(service.thread.get(), GreenletExit)  # killed: a normal end


def test_a_failing_fn_is_logged_once_with_the_service_name() -> None:
    def broken() -> None:
        txgreen.sleep(0)
        raise ValueError("bad configuration")

    service = txgreen.GreenService(broken)
    service.setName("loader")  # type: ignore[no-untyped-call]
    with log_events(lambda e: e.get("log_level") is LogLevel.critical or service_events(e)) as ev:
        service.startService()
        assert service.thread is not None
        service.thread.join()
        txgreen.sleep(0)
    assert len(ev) == 1, ev
    assert ev[0]["log_failure"].check(ValueError)
    assert "loader" in repr(ev[0]["service"])
    assert service.running  # a Twisted service runs until it is stopped
    txgreen.block_on(service.stopService())
    assert not service.running


def test_stop_gives_up_after_stop_timeout_and_says_so() -> None:
    def stubborn() -> None:
        while True:
            try:
                txgreen.sleep(10)
            except GreenletExit:
                continue  # refuses to die

    service = txgreen.GreenService(stubborn)
    service.stop_timeout = 0.1
    service.startService()
    txgreen.sleep(0)
    started = time.monotonic()
    with log_events(service_events) as ev:
        txgreen.block_on(service.stopService(), timeout=5)
    assert 0.09 < time.monotonic() - started < 2
    assert len(ev) == 1
    assert ev[0]["log_level"] is LogLevel.warn
    assert "did not end within" in ev[0]["log_format"]
    assert service.thread is not None
    assert not service.thread.dead
    service.thread.kill(RuntimeError("test cleanup"), block=True)  # a kill it does not catch


def test_stop_before_the_thread_ran_and_a_finished_thread() -> None:
    ran: list[int] = []
    service = txgreen.GreenService(ran.append, 1)
    service.startService()
    txgreen.block_on(service.stopService())  # killed before it started: it never runs
    assert ran == []
    service.startService()
    assert service.thread is not None
    service.thread.join()
    assert ran == [1]
    txgreen.block_on(service.stopService())  # already ended: fires at once


def test_not_callable_is_a_type_error() -> None:
    with pytest.raises(TypeError, match=r"takes the function to run in a green thread, not a"):
        txgreen.GreenService(42)  # type: ignore[arg-type]


@pytest.mark.in_hub  # it only waits for a subprocess
@pytest.mark.single_reactor  # twistd picks its own reactor
@pytest.mark.timeout(60)
def test_under_a_real_twistd_start_serve_sigterm_clean_exit(tmp_path: Path) -> None:
    port_file = tmp_path / "port"
    twistd = Path(sys.executable).parent / "twistd"
    proc = subprocess.Popen(
        [str(twistd), "--nodaemon", "--pidfile=", "--logfile=-", "--python", "green_service.tac"],
        cwd=SCRIPTS,
        env={**os.environ, "TXGREEN_PORT_FILE": str(port_file), "PYTHONUNBUFFERED": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while not (port_file.exists() and port_file.read_text()):
            assert proc.poll() is None, proc.communicate()[0]
            assert time.monotonic() < deadline, "twistd did not start the service in 30 s"
            time.sleep(0.05)
        with socket.create_connection(("127.0.0.1", int(port_file.read_text())), timeout=10) as c:
            c.sendall(b"hello from a client\n")
            assert c.recv(100) == b"HELLO FROM A CLIENT\n"
        proc.send_signal(signal.SIGTERM)
        output, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    # twistd ends by re-raising the signal that stopped it (Twisted's convention), so the
    # parent sees "killed by SIGTERM", as for any program without a handler.
    assert proc.returncode == -signal.SIGTERM, output
    assert "server: cleaned up" in output  # stopService waited for the thread's cleanup
    assert "Traceback" not in output, output
    assert "Main loop terminated." in output
