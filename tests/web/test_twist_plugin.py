"""The ``twist txgreen-web`` plugin, ``WSGIService`` in a ``.tac`` file under ``twistd``, and
``WSGIService`` in this process."""

from __future__ import annotations

import concurrent.futures
import re
import shutil
import signal
import subprocess
import sys
import textwrap
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from servers import LOCAL, start_process, stop, wait_for_output

import txgreen
from txgreen.web import WSGIServer, WSGIService

BIN = Path(sys.executable).parent
TWIST = str(BIN / "twist")
TWISTD = str(BIN / "twistd")
LISTENING = re.compile(r".*txgreen web: listening on (\S+)$")

APP = """
    import sys

    import txgreen


    def app(environ, start_response):
        if environ["PATH_INFO"] == "/slow":
            print("slow: started", file=sys.stderr, flush=True)
            txgreen.sleep(1.5)
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"green " + environ["PATH_INFO"].encode()]
"""

TAC = """
    from twisted.application import service

    from txgreen.web import WSGIService

    application = service.Application("hello")
    WSGIService("hello:app", listen=["tcp:0:interface=127.0.0.1"]).setServiceParent(application)
"""


def get(url: str) -> tuple[int, bytes]:
    with urllib.request.urlopen(url, timeout=15) as reply:
        return reply.status, reply.read()


@pytest.fixture
def app_dir(tmp_path: Path) -> Path:
    (tmp_path / "hello.py").write_text(textwrap.dedent(APP))
    return tmp_path


def _commands_exist() -> None:
    for program in (TWIST, TWISTD):
        assert shutil.which(program), f"{program} is missing: pip install twisted (in the venv)"


@pytest.mark.single_reactor
@pytest.mark.timeout(90)
def test_twist_lists_the_plugin() -> None:
    _commands_exist()
    done = subprocess.run([TWIST, "--help"], capture_output=True, text=True, timeout=60)
    assert re.search(r"^\s+txgreen-web\s+Serve a WSGI application", done.stdout, re.MULTILINE)
    done = subprocess.run(
        [TWIST, "txgreen-web", "--help"], capture_output=True, text=True, timeout=60
    )
    assert "--wsgi=" in done.stdout
    assert "--listen=" in done.stdout


@pytest.mark.single_reactor
@pytest.mark.timeout(90)
def test_twist_serves_and_drains_on_sigterm(app_dir: Path) -> None:
    _commands_exist()
    process, (url,) = start_process(
        [TWIST, "--log-format=text", "txgreen-web", "--wsgi", "hello.app", "--listen", LOCAL],
        pattern=LISTENING,
        cwd=app_dir,
    )
    assert get(url + "/x") == (200, b"green /x")
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        slow = pool.submit(get, url + "/slow")
        # (twist logs what the application prints, to its own log: stdout here)
        assert wait_for_output(process, "slow: started", stream="stdout")
        process.send_signal(signal.SIGTERM)
        assert slow.result(timeout=30) == (200, b"green /slow")
    code, stdout, stderr = stop(process, None)
    # twist ends itself with the signal it got, once the reactor has stopped.
    assert code == -signal.SIGTERM, stderr
    assert '"GET /x HTTP/1.1" 200 8' in stdout
    assert '"GET /slow HTTP/1.1" 200 11' in stdout
    assert "Traceback" not in stdout + stderr


@pytest.mark.single_reactor
@pytest.mark.timeout(90)
def test_twist_with_an_app_that_cannot_be_imported(app_dir: Path) -> None:
    _commands_exist()
    done = subprocess.run(
        [TWIST, "txgreen-web", "--wsgi", "nosuch_module.app"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=app_dir,
    )
    assert done.returncode != 0
    assert (
        "Error: 'nosuch_module.app': no module named 'nosuch_module'" in done.stdout + done.stderr
    )


@pytest.mark.single_reactor
@pytest.mark.timeout(90)
def test_a_tac_file_under_twistd(app_dir: Path) -> None:
    _commands_exist()
    (app_dir / "hello.tac").write_text(textwrap.dedent(TAC))
    process, (url,) = start_process(
        [TWISTD, "-n", "--pidfile=", "-l", "-", "-y", "hello.tac"],
        pattern=LISTENING,
        cwd=app_dir,
        env={"PYTHONPATH": str(app_dir)},
    )
    assert get(url + "/tac") == (200, b"green /tac")
    code, stdout, stderr = stop(process, signal.SIGTERM)
    assert code == -signal.SIGTERM, stderr  # twistd ends itself with the signal, as twist
    assert '"GET /tac HTTP/1.1" 200 10' in stdout
    assert "Main loop terminated." in stdout


# -- in this process ------------------------------------------------------------------------------


def hello(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"in process"]


def test_wsgi_service_starts_and_stops_in_a_running_reactor() -> None:
    svc = WSGIService(hello, listen=[LOCAL, LOCAL], access_log=None)
    svc.startService()
    urls = txgreen.block_on(svc.when_started())
    assert len(urls) == 2
    assert isinstance(svc.server, WSGIServer)
    for url in urls:
        assert txgreen.call_in_thread(get, url) == (200, b"in process")
    txgreen.block_on(svc.stopService())
    assert svc.server.stopped
    assert not svc.running


def test_wsgi_service_with_a_bad_spec_fails_its_start_deferred(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from txgreen._hub import get_hub

    stops: list[bool] = []
    monkeypatch.setattr(get_hub(), "stop_reactor", lambda: stops.append(True))
    svc = WSGIService("nosuch_module_txgreen:app")
    svc.startService()
    with pytest.raises(txgreen.AppImportError, match="no module named 'nosuch_module_txgreen'"):
        txgreen.block_on(svc.when_started())
    assert stops == [True]  # under twist, the process ends
    txgreen.block_on(svc.stopService())

    svc = WSGIService(hello, listen=[LOCAL], access_log="/no/such/dir/access.log")
    svc.startService()
    with pytest.raises(FileNotFoundError):
        txgreen.block_on(svc.when_started())
    assert stops == [True, True]
    txgreen.block_on(svc.stopService())


def test_wsgi_service_stop_drains_the_requests_in_flight() -> None:
    started, release = txgreen.Event(), txgreen.Event()

    def slow(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        started.set()
        release.wait()
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"drained"]

    svc = WSGIService(slow, listen=[LOCAL], access_log=None, graceful_timeout=10)
    svc.startService()
    (url,) = txgreen.block_on(svc.when_started())
    reply = txgreen.spawn(txgreen.call_in_thread, get, url)
    assert started.wait(timeout=5)
    stopped = svc.stopService()
    txgreen.sleep(0.1)
    assert not stopped.called  # waits for the request
    release.set()
    assert reply.get(timeout=10) == (200, b"drained")
    txgreen.block_on(stopped, timeout=10)
    assert svc.server is not None
    assert svc.server.stopped


STOP_FROM_CODE = """
    import threading
    import urllib.request

    from twisted.internet import reactor

    import txgreen
    from txgreen.web import WSGIService

    started = []


    def app(environ, start_response):
        started.append(True)
        reactor.stop()  # as other code might, while this request is in flight
        txgreen.sleep(0.5)
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"finished"]


    svc = WSGIService(app, listen=["tcp:0:interface=127.0.0.1"], access_log=None)
    svc.startService()
    replies = []
    threads = []


    def client(urls):
        fetch = lambda: replies.append(urllib.request.urlopen(urls[0], timeout=10).read())
        threads.append(threading.Thread(target=fetch))
        threads[0].start()


    reactor.callWhenRunning(lambda: svc.when_started().addCallback(client))
    reactor.run()
    threads[0].join(timeout=10)
    print(replies, svc.server.stopped)
"""


@pytest.mark.single_reactor
@pytest.mark.timeout(90)
def test_a_reactor_stop_from_code_drains_too(tmp_path: Path) -> None:
    script = tmp_path / "stop_from_code.py"
    script.write_text(textwrap.dedent(STOP_FROM_CODE))
    done = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=60, cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == "[b'finished'] True\n", done.stderr
