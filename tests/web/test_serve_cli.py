"""``python -m txgreen serve``: real server processes, real sockets, real signals."""

from __future__ import annotations

import concurrent.futures
import http.client
import json
import re
import signal
import socket
import ssl
import subprocess
import sys
import textwrap
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from servers import LOCAL, start_serve, stop, urls, wait_for_output

from support import PROGRAM_TEST_MARKS

pytestmark = PROGRAM_TEST_MARKS

APP = """
    import json, os, sys, time

    from twisted.internet import reactor

    import txgreen


    def app(environ, start_response):
        path = environ["PATH_INFO"]
        if path == "/slow":
            # Said from the hub once this thread waits: a Ctrl-C that lands while a request's
            # code runs interrupts that request (txgreen's rule), and the tests must not race.
            reactor.callLater(0, print, "slow: started", file=sys.stderr, flush=True)
            txgreen.sleep(float(environ["QUERY_STRING"] or 1))
            print("slow: done", file=sys.stderr, flush=True)
        elif path == "/blocking":  # time.sleep: cooperative only under --patch
            start = time.monotonic()
            time.sleep(0.5)
            body = json.dumps([start, time.monotonic()]).encode()
            start_response("200 OK", [("Content-Type", "application/json")])
            return [body]
        elif path == "/boom":
            raise RuntimeError("the application failed")
        elif path == "/where":
            body = f"{os.getcwd()}|{environ['wsgi.url_scheme']}".encode()
            start_response("200 OK", [("Content-Type", "text/plain")])
            return [body]
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"hello " + path.encode() + b"\\n"]


    def make_app():
        return app
"""

CLF = re.compile(
    r'^(\S+) - - \[\d\d/[A-Z][a-z]{2}/\d{4}:\d\d:\d\d:\d\d \+0000\] "([^"]*)" (\d{3}) (\d+|-)$'
)


@pytest.fixture
def app_dir(tmp_path: Path) -> Path:
    (tmp_path / "hello.py").write_text(textwrap.dedent(APP))
    return tmp_path


def get(url: str, timeout: float = 15, context: ssl.SSLContext | None = None) -> tuple[int, bytes]:
    with urllib.request.urlopen(url, timeout=timeout, context=context) as reply:
        return reply.status, reply.read()


def serve_cli(
    *args: str, cwd: Path | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m txgreen serve ARGS`` to its end (for the ones that must fail)."""
    return subprocess.run(
        [sys.executable, "-m", "txgreen", "serve", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
        stdin=subprocess.DEVNULL,
    )


def refused_soon(port: int, within: float = 10) -> bool:
    """Does connecting to ``port`` get refused within ``within`` seconds?"""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=5).close()
        except ConnectionRefusedError:
            return True
        time.sleep(0.02)
    return False


# -- serving -------------------------------------------------------------------------------------


def test_serves_and_logs_each_request_in_the_common_log_format(app_dir: Path) -> None:
    process, url = start_serve(["hello:app", "--listen", LOCAL], cwd=app_dir)
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+", url)
    assert get(url + "/a?x=1") == (200, b"hello /a\n")
    assert get(url + "/b") == (200, b"hello /b\n")
    code, stdout, stderr = stop(process)
    assert code == 0, stderr
    lines = stdout.splitlines()
    assert len(lines) == 2, stdout
    first, second = (CLF.match(line) for line in lines)
    assert first is not None, lines
    assert second is not None, lines
    assert first.groups() == ("127.0.0.1", "GET /a?x=1 HTTP/1.1", "200", "9")
    assert second.groups() == ("127.0.0.1", "GET /b HTTP/1.1", "200", "9")
    assert f"txgreen serve: listening on {url}\n" in stderr
    assert "txgreen serve: SIGTERM: stopping" in stderr
    assert "Traceback" not in stderr


def test_the_applications_errors_are_logged_to_stderr(app_dir: Path) -> None:
    process, url = start_serve(["hello:app", "--listen", LOCAL], cwd=app_dir)
    with pytest.raises(urllib.error.HTTPError) as info:
        get(url + "/boom")
    assert info.value.code == 500
    info.value.close()
    code, stdout, stderr = stop(process)
    assert code == 0, stderr
    assert '"GET /boom HTTP/1.1" 500 26' in stdout  # stdout: the access log only
    assert "WSGI application failed on GET /boom; answering 500" in stderr
    assert "RuntimeError: the application failed" in stderr
    assert f'File "{app_dir / "hello.py"}"' in stderr  # the traceback
    assert "Starting factory" not in stderr  # info lines are not shown


def test_access_log_to_a_file_or_none_and_a_factory_in_another_directory(
    app_dir: Path, tmp_path: Path
) -> None:
    log = tmp_path / "access.log"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    process, url = start_serve(
        ["hello:make_app()", "--chdir", str(app_dir), "--access-log", str(log), "-l", LOCAL],
        cwd=elsewhere,
    )
    assert get(url + "/where") == (200, f"{app_dir}|http".encode())
    # One line per request, written when the request ends (flushed: readable at once).
    line = log.read_text()
    assert CLF.match(line.rstrip("\n")), line
    assert line.count("\n") == 1
    code, stdout, _ = stop(process)
    assert (code, stdout) == (0, "")

    process, url = start_serve(["hello:app", "--no-access-log", "-l", LOCAL], cwd=app_dir)
    assert get(url + "/") == (200, b"hello /\n")
    code, stdout, _ = stop(process)
    assert (code, stdout) == (0, "")


def test_two_endpoints_tcp_and_a_unix_socket(app_dir: Path) -> None:
    path = app_dir / "app.sock"
    process, url = start_serve(
        ["hello:app", "--listen", LOCAL, "--listen", f"unix:{path}"], cwd=app_dir
    )
    assert urls(process) == [url, f"unix:{path}"]
    assert get(url + "/tcp") == (200, b"hello /tcp\n")
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(15)
        s.connect(str(path))
        s.sendall(b"GET /unix HTTP/1.0\r\nHost: x\r\n\r\n")
        reply = b""
        while chunk := s.recv(65536):
            reply += chunk
    assert reply.startswith(b"HTTP/1.0 200 OK\r\n")
    assert reply.endswith(b"\r\n\r\nhello /unix\n")
    with socket.socket(socket.AF_UNIX) as s:  # no Host header: SERVER_NAME is "localhost"
        s.settimeout(15)
        s.connect(str(path))
        s.sendall(b"GET /nohost HTTP/1.0\r\n\r\n")
        reply = b""
        while chunk := s.recv(65536):
            reply += chunk
    assert reply.startswith(b"HTTP/1.0 200 OK\r\n"), reply
    code, stdout, _ = stop(process)
    assert code == 0
    unix_line = stdout.splitlines()[1]
    assert unix_line.startswith("- - - ["), unix_line
    assert unix_line.endswith('"GET /unix HTTP/1.0" 200 12'), unix_line
    assert stdout.splitlines()[2].endswith('"GET /nohost HTTP/1.0" 200 14')


def test_tls_with_a_certificate(app_dir: Path) -> None:
    sys.path.insert(0, str(Path(__file__).parent.parent / "green"))
    try:
        from certs import make_pki
    finally:
        sys.path.pop(0)
    pki = make_pki(app_dir)
    endpoint = f"ssl:0:interface=127.0.0.1:privateKey={pki.key_file}:certKey={pki.cert_file}"
    process, url = start_serve(["hello:app", "--listen", endpoint], cwd=app_dir)
    assert re.fullmatch(r"https://127\.0\.0\.1:\d+", url)
    context = ssl.create_default_context(cafile=str(pki.ca_file))
    assert get(url + "/where", context=context) == (200, f"{app_dir}|https".encode())
    code, _, stderr = stop(process)
    assert code == 0, stderr


def test_patch_makes_a_blocking_app_cooperative(app_dir: Path) -> None:
    def overlapping(args: list[str]) -> bool:
        process, url = start_serve([*args, "--listen", LOCAL], cwd=app_dir)
        try:
            with concurrent.futures.ThreadPoolExecutor(2) as pool:
                replies = list(pool.map(lambda _: get(url + "/blocking"), range(2)))
        finally:
            code, _, stderr = stop(process)
        assert code == 0, stderr
        (_, end1), (start2, _) = sorted(json.loads(body) for _, body in replies)
        return bool(start2 < end1)  # the second request started before the first one ended

    assert overlapping(["hello:app", "--patch"])
    assert not overlapping(["hello:app"])  # time.sleep blocks the reactor without --patch


# -- graceful shutdown ----------------------------------------------------------------------------


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_lets_the_request_in_flight_finish(app_dir: Path, sig: signal.Signals) -> None:
    process, url = start_serve(["hello:app", "--listen", LOCAL], cwd=app_dir)
    port = int(url.rsplit(":", 1)[1])
    # An idle keep-alive connection: closed at once by the stop.
    idle = http.client.HTTPConnection("127.0.0.1", port, timeout=15)
    idle.request("GET", "/")
    assert idle.getresponse().read() == b"hello /\n"
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        slow = pool.submit(get, url + "/slow?1.5")
        assert wait_for_output(process, "slow: started")
        process.send_signal(sig)
        assert wait_for_output(process, "stopping; requests in flight get up to 30 s")
        # No new connections (once the port has closed), and the idle one was closed.
        assert refused_soon(port)
        assert idle.sock is not None
        assert idle.sock.recv(10) == b""
        idle.close()
        assert slow.result(timeout=30) == (200, b"hello /slow\n")
    code, stdout, stderr = stop(process, None)
    assert code == 0, stderr
    assert stderr.index("slow: done") < stderr.index("txgreen serve: stopped")
    assert '"GET /slow?1.5 HTTP/1.1" 200 12' in stdout


def test_requests_still_running_after_the_graceful_timeout_are_aborted(app_dir: Path) -> None:
    process, url = start_serve(
        ["hello:app", "--listen", LOCAL, "--graceful-timeout", "0.5"], cwd=app_dir
    )
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        slow = pool.submit(get, url + "/slow?60")
        assert wait_for_output(process, "slow: started")
        start = time.monotonic()
        process.send_signal(signal.SIGTERM)
        with pytest.raises(
            (http.client.RemoteDisconnected, ConnectionError, urllib.error.URLError)
        ):
            slow.result(timeout=30)
    code, _, stderr = stop(process, None)
    assert time.monotonic() - start < 20  # not the request's 60 s
    assert code == 0, stderr
    assert "slow: done" not in stderr
    assert "Traceback" not in stderr


def test_a_second_signal_exits_at_once(app_dir: Path) -> None:
    process, url = start_serve(["hello:app", "--listen", LOCAL], cwd=app_dir)
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        slow = pool.submit(get, url + "/slow?60")
        assert wait_for_output(process, "slow: started")
        process.send_signal(signal.SIGTERM)
        assert wait_for_output(process, "stopping")
        code, _, stderr = stop(process, signal.SIGINT, timeout=20)
        assert code == 130, stderr
        with pytest.raises(
            (http.client.RemoteDisconnected, ConnectionError, urllib.error.URLError)
        ):
            slow.result(timeout=30)


# -- errors ---------------------------------------------------------------------------------------


def test_an_app_that_cannot_be_found_is_one_clear_line(app_dir: Path) -> None:
    done = serve_cli("nosuchmodule:app", cwd=app_dir)
    assert done.returncode == 1
    assert done.stderr.count("\n") == 1, done.stderr
    assert done.stderr.startswith(
        "txgreen serve: 'nosuchmodule:app': no module named 'nosuchmodule'"
    )
    assert "--chdir" in done.stderr

    done = serve_cli("hello:nothing", cwd=app_dir)
    assert done.returncode == 1
    assert done.stderr.count("\n") == 1, done.stderr
    assert "has no attribute 'nothing'" in done.stderr


def test_an_app_whose_import_raises_shows_its_own_traceback(app_dir: Path) -> None:
    (app_dir / "broken.py").write_text("import os\n\nvalue = 1 / 0\n")
    done = serve_cli("broken:app", cwd=app_dir)
    assert done.returncode == 1
    lines = done.stderr.splitlines()
    assert lines[0] == "Traceback (most recent call last):"
    assert f'File "{app_dir / "broken.py"}", line 3, in <module>' in done.stderr
    assert "importlib" not in done.stderr
    assert "txgreen" not in "\n".join(lines[:-1])
    assert lines[-2] == "ZeroDivisionError: division by zero"
    assert lines[-1].startswith(
        "txgreen serve: 'broken:app': importing the module 'broken' raised ZeroDivisionError"
    )


def test_a_port_taken_or_a_bad_endpoint_is_one_clear_line(app_dir: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        endpoint = f"tcp:{port}:interface=127.0.0.1"
        done = serve_cli("hello:app", "--listen", LOCAL, "--listen", endpoint, cwd=app_dir)
    assert done.returncode == 1
    assert done.stderr.splitlines()[-1] == (
        f"txgreen serve: cannot listen on {endpoint!r}: Address already in use"
    )
    assert "Traceback" not in done.stderr

    done = serve_cli("hello:app", "--listen", "tcpp:80", cwd=app_dir)
    assert done.returncode == 1
    assert done.stderr.count("\n") == 1, done.stderr
    assert done.stderr.startswith("txgreen serve: invalid endpoint 'tcpp:80': ")
    assert "tcp:8000:interface=127.0.0.1" in done.stderr  # how it should look


def test_an_access_log_that_cannot_be_opened(app_dir: Path) -> None:
    log = str(app_dir / "no" / "such" / "access.log")
    done = serve_cli("hello:app", "--listen", LOCAL, "--access-log", log, cwd=app_dir)
    assert done.returncode == 1
    assert done.stderr == (
        f"txgreen serve: cannot open the access log {log!r}: No such file or directory\n"
    )


def test_usage_errors_exit_2(app_dir: Path) -> None:
    for args in (
        [],
        ["hello:app", "--max-concurrency", "0"],
        ["hello:app", "--graceful-timeout", "x"],
    ):
        done = serve_cli(*args, cwd=app_dir)
        assert done.returncode == 2, (args, done.stderr)
        assert "usage: python -m txgreen serve" in done.stderr
    done = subprocess.run(
        [sys.executable, "-m", "txgreen", "--help"], capture_output=True, text=True, timeout=60
    )
    assert "serve   serve a WSGI application" in done.stdout


# -- in-process: the options -----------------------------------------------------------------------


def test_options_fill_the_serve_config() -> None:
    from txgreen.web import Limits
    from txgreen.web._cli import serve_config

    config = serve_config(["m:app"])
    assert config.listen == ["tcp:8000:interface=127.0.0.1"]
    assert (config.access_log, config.graceful_timeout, config.limits) == ("-", 30.0, Limits())
    config = serve_config(
        [
            *("m:f()", "-l", "tcp:1", "-l", "unix:/x", "--max-concurrency", "7"),
            *("--no-access-log", "--graceful-timeout", "2.5", "--chdir", "/tmp"),
            *("--patch", "--reactor", "poll"),
        ]
    )
    assert config.listen == ["tcp:1", "unix:/x"]
    assert config.limits.max_concurrency == 7
    assert config.limits.header_timeout == Limits().header_timeout
    assert (config.access_log, config.graceful_timeout, config.chdir) == (None, 2.5, "/tmp")
    assert (config.patch, config.reactor, config.app) == (True, "poll", "m:f()")


def test_workers_with_an_endpoint_gunicorn_cannot_bind_is_one_line(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from txgreen.web._cli import serve_command

    assert serve_command(["m:app", "--workers", "2", "--listen", "ssl:8443"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("txgreen serve: "), err
    assert "Traceback" not in err
    assert len(err.splitlines()) == 1, err


def test_workers_without_the_gunicorn_module_says_how_to_get_it(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from txgreen.web._cli import serve_command

    monkeypatch.setitem(sys.modules, "txgreen.web.gunicorn", None)  # import fails
    assert serve_command(["m:app", "--workers", "2"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("txgreen serve: --workers needs txgreen.web.gunicorn")
    assert "pip install 'txgreen[serve]'" in err
