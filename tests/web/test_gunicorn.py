"""txgreen.web.gunicorn: a real gunicorn master with GreenWorker workers, driven over HTTP.

Each test starts ``python -m gunicorn -k txgreen.web.gunicorn.GreenWorker`` (or
``run_master``) in a subprocess serving tests/web/apps/gunicorn_app.py on 127.0.0.1, reads
the bound port from gunicorn's "Listening at:" line and talks to it with http.client from OS
threads.  The application answers each request with the worker's pid, which is how the tests
see which worker served what.  Process starts are slow, so each test checks several things
about one master.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from support import in_parallel
from txgreen.web import Limits, ServeConfig
from txgreen.web.gunicorn import (
    WORKER_CLASS,
    UnsupportedEndpoint,
    WorkerConfigError,
    _limits_from_env,
    gunicorn_bind,
    master_command,
)

# The gunicorn processes choose their own reactor (TXGREEN_REACTOR): the per-reactor runs of
# the suite skip these tests.
pytestmark = pytest.mark.single_reactor

APPS = Path(__file__).resolve().parent / "apps"
WAIT = 30.0  # seconds any one thing may take before the test gives up
LISTENING = re.compile(r"Listening at: http://127\.0\.0\.1:(\d+)[^ ]* \((\d+)\)")


class Master:
    """A gunicorn master in a subprocess; its error log, access log and stderr in files."""

    def __init__(self, tmp: Path, argv: list[str], env: dict[str, str] | None = None) -> None:
        self.error_log = tmp / "error.log"
        self.access_log = tmp / "access.log"
        self.stderr = tmp / "stderr.txt"
        for path in (self.error_log, self.access_log, self.stderr):
            path.write_text("")
        # gunicorn >= 24 opens a control socket in $XDG_RUNTIME_DIR: one per test, not shared.
        full_env = {**os.environ, "XDG_RUNTIME_DIR": str(tmp), **(env or {})}
        with self.stderr.open("w") as err:
            self.proc = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=err, stderr=err, env=full_env
            )
        self.port = 0
        self.pid = self.proc.pid

    @classmethod
    def gunicorn(
        cls,
        tmp: Path,
        *args: str,
        env: dict[str, str] | None = None,
        app: str = "gunicorn_app:app",
    ) -> Master:
        """``python -m gunicorn -k GreenWorker --bind 127.0.0.1:0 ARGS APP``."""
        argv = [sys.executable, "-m", "gunicorn", "--worker-class", WORKER_CLASS]
        argv += ["--bind", "127.0.0.1:0", "--chdir", str(APPS)]
        argv += ["--error-logfile", str(tmp / "error.log")]
        argv += ["--access-logfile", str(tmp / "access.log"), *args, app]
        master = cls(tmp, argv, env)
        match = master.wait_for(LISTENING, log=master.error_log)
        master.port = int(match.group(1))
        return master

    def log(self) -> str:
        return self.error_log.read_text() + self.stderr.read_text()

    def wait_for(self, pattern: re.Pattern[str] | str, log: Path | None = None) -> re.Match[str]:
        """Wait for ``pattern`` in the error log (or ``log``); fail with the log if it never
        comes or the master exits first."""
        regex = re.compile(pattern) if isinstance(pattern, str) else pattern
        deadline = time.monotonic() + WAIT
        while True:
            text = log.read_text() if log is not None else self.log()
            match = regex.search(text)
            if match is not None:
                return match
            if self.proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"no {regex.pattern!r} in gunicorn's log:\n{self.log()}")
            time.sleep(0.05)

    def count(self, text: str) -> int:
        return self.log().count(text)

    def get(self, path: str, timeout: float = WAIT) -> tuple[int, str]:
        """GET ``path`` on a new connection (closed after the response): (status, body)."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            conn.request("GET", path, headers={"Connection": "close", "User-Agent": "tests"})
            response = conn.getresponse()
            return response.status, response.read().decode()
        finally:
            conn.close()

    def pid_of(self, path: str = "/") -> int:
        status, body = self.get(path)
        assert status == 200, (status, body)
        return int(body.split()[0])

    def signal(self, signum: int) -> None:
        self.proc.send_signal(signum)

    def stop(self) -> int:
        """SIGTERM the master and wait for its exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=WAIT)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()  # its workers see the parent change and exit
        self.proc.wait(timeout=WAIT)


@contextmanager
def gunicorn(tmp: Path, *args: str, env: dict[str, str] | None = None) -> Iterator[Master]:
    master = Master.gunicorn(tmp, *args, env=env)
    try:
        yield master
    finally:
        master.kill()


def worker_pids(master: Master) -> set[int]:
    """The pids of the workers gunicorn says it booted."""
    return {int(pid) for pid in re.findall(r"Booting worker with pid: (\d+)", master.log())}


def answering(master: Master, workers: int, path: str = "/sleep?0.2") -> set[int]:
    """The pids of the workers that answer concurrent requests, once all ``workers`` have.

    A signal the master passes on to a worker that is still starting (before gunicorn has set
    its handlers) is lost: tests that signal wait for every worker to answer first.
    """
    seen: set[int] = set()
    for _ in range(20):
        seen |= set(in_parallel(lambda _: master.pid_of(path), range(4 * workers)).values())
        if len(seen) >= workers:
            break
    assert len(seen) == workers, (seen, master.log())
    return seen


def unix_get(path: Path, target: str) -> str:
    """GET ``target`` over the UNIX socket at ``path``: the body of a 200 response."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(WAIT)
        sock.connect(str(path))
        sock.sendall(f"GET {target} HTTP/1.0\r\nHost: app\r\n\r\n".encode())
        reply = b""
        while chunk := sock.recv(65536):
            reply += chunk
    head, _, body = reply.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.0 200 "), reply
    return body.decode()


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def wait_until(what: str, check: Any, timeout: float = WAIT) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting until {what}")
        time.sleep(0.05)


# -- with a real gunicorn master -----------------------------------------------------------------


@pytest.mark.timeout(90)
def test_two_workers_share_load_log_requests_and_drain_on_sigterm(tmp_path: Path) -> None:
    with gunicorn(tmp_path, "--workers", "2", "--graceful-timeout", "20") as master:
        # Concurrent requests reach both workers.
        seen = answering(master, 2)
        assert seen == worker_pids(master), master.log()

        # gunicorn's access log, in its default format.
        wait_until("the access log has lines", lambda: master.access_log.read_text())
        line = master.access_log.read_text().splitlines()[0]
        assert re.fullmatch(
            r'127\.0\.0\.1 - - \[[^]]+\] "GET /sleep\?0\.2 HTTP/1\.1" 200 \d+ "-" "tests"', line
        ), line

        # An application error: a 500 response, its traceback in gunicorn's error log.
        assert master.get("/fail")[0] == 500
        master.wait_for(r"(?s)Traceback.*RuntimeError: the application failed")

        # SIGTERM with requests in flight: they finish, then the workers and the master exit.
        results: dict[int, tuple[int, str]] = {}
        answered: dict[int, float] = {}

        def slow(i: int) -> None:
            results[i] = master.get("/sleep?3")
            answered[i] = time.monotonic()

        # And idle keep-alive connections, one to each worker: closed at once, not waited for.
        idle: list[tuple[int, http.client.HTTPConnection]] = []
        while len({pid for pid, _ in idle}) < 2:
            conn = http.client.HTTPConnection("127.0.0.1", master.port, timeout=WAIT)
            conn.request("GET", "/")
            idle.append((int(conn.getresponse().read()), conn))

        clients = [threading.Thread(target=slow, args=(i,)) for i in range(6)]
        for client in clients:
            client.start()
        time.sleep(1.0)  # the six slow requests are accepted and waiting in the application
        master.signal(signal.SIGTERM)
        terminated = time.monotonic()
        assert master.stop() == 0, master.log()
        assert time.monotonic() - terminated < 12  # the requests' 3 s, not --graceful-timeout
        for _, conn in idle:
            assert conn.sock is not None
            assert conn.sock.recv(1) == b""  # closed by the server
            conn.close()
        for client in clients:
            client.join(WAIT)
        assert sorted(results) == list(range(6))
        assert {status for status, _ in results.values()} == {200}, results
        assert min(answered.values()) > terminated  # they were in flight at the SIGTERM
        assert {int(body) for _, body in results.values()} <= seen
        assert "graceful timeout" not in master.log()
        assert not any(alive(pid) for pid in seen)


@pytest.mark.timeout(90)
def test_sighup_replaces_workers_without_a_failed_request(tmp_path: Path) -> None:
    with gunicorn(tmp_path, "--workers", "2") as master:
        old = answering(master, 2)
        stop = threading.Event()
        answers: list[tuple[int, str]] = []
        failures: list[BaseException] = []

        def client() -> None:  # one request after the other, as long as the test runs
            while not stop.is_set():
                try:
                    answers.append(master.get("/sleep?0.02"))
                except Exception as e:
                    failures.append(e)

        clients = [threading.Thread(target=client) for _ in range(3)]
        for thread in clients:
            thread.start()
        try:
            wait_until("requests are answered", lambda: len(answers) >= 10)
            master.signal(signal.SIGHUP)
            # Two new workers boot, the old ones finish what they had and exit.
            wait_until("two new workers", lambda: len(worker_pids(master) - old) == 2)
            new = worker_pids(master) - old
            wait_until("the old workers exit", lambda: not any(alive(pid) for pid in old))
            seen_before = len(answers)
            wait_until("the new workers answer", lambda: len(answers) >= seen_before + 20)
        finally:
            stop.set()
            for thread in clients:
                thread.join(WAIT)
        assert failures == []
        assert {status for status, _ in answers} == {200}
        last = {int(body) for _, body in answers[-10:]}
        assert last <= new, (last, new)

        # SIGINT is gunicorn's quick shutdown: a request in flight is aborted, not waited for.
        aborted: list[BaseException] = []

        def long_request() -> None:
            try:
                master.get("/sleep?30")
            except Exception as e:
                aborted.append(e)

        waiting = threading.Thread(target=long_request)
        waiting.start()
        time.sleep(1.0)  # accepted and waiting in the application
        started = time.monotonic()
        master.signal(signal.SIGINT)
        assert master.proc.wait(timeout=WAIT) == 0, master.log()
        waiting.join(WAIT)
        assert time.monotonic() - started < 10
        assert len(aborted) == 1
        assert isinstance(aborted[0], (http.client.RemoteDisconnected, ConnectionError))
        assert "Quick shutdown (pid:" in master.log()
        assert "aborting 1 request(s)" in master.log()


@pytest.mark.timeout(90)
def test_max_requests_recycles_killed_workers_are_replaced_orphans_exit(tmp_path: Path) -> None:
    sock = tmp_path / "app.sock"
    log_format = (
        "%(s)s %(m)s %(U)s q=%(q)s %(H)s %(B)s %(D)s %({connection}i)s %({content-type}o)s %(p)s"
    )
    args = ["--workers", "1", "--max-requests", "5", "--bind", f"unix:{sock}"]
    with gunicorn(tmp_path, *args, "--access-logformat", log_format) as master:
        mode = stat.S_IMODE(sock.stat().st_mode)
        pids = [master.pid_of("/?x=1") for _ in range(4)]
        pids.append(int(unix_get(sock, "/")))  # the worker serves the UNIX socket too
        assert len(set(pids)) == 1  # five requests, one worker
        first = pids[0]
        # gunicorn's access log atoms, in a format of one's own.
        wait_until(
            "five access log lines", lambda: len(master.access_log.read_text().splitlines()) >= 5
        )
        lines = master.access_log.read_text().splitlines()
        assert re.fullmatch(
            rf"200 GET / q=x=1 HTTP/1\.1 \d+ \d+ close text/plain <{first}>", lines[0]
        ), lines[0]
        assert re.fullmatch(rf"200 GET / q= HTTP/1\.0 \d+ \d+ - text/plain <{first}>", lines[4])
        wait_until("the worker recycled after 5 requests", lambda: not alive(first))
        assert "Autorestarting worker after current request." in master.log()
        second = master.pid_of()
        assert second != first
        # The UNIX socket is the master's: the worker that left kept its file and mode.
        assert int(unix_get(sock, "/")) == second
        assert stat.S_IMODE(sock.stat().st_mode) == mode

        # SIGKILL: the master notices and boots another worker.
        os.kill(second, signal.SIGKILL)
        wait_until("a third worker", lambda: len(worker_pids(master)) == 3)
        third = master.pid_of()
        assert third not in (first, second)
        assert third in worker_pids(master)

        # The master dies (SIGKILL, no goodbye): the worker sees its parent change and exits.
        master.kill()
        wait_until("the orphaned worker exits", lambda: not alive(third))
        assert f"Parent changed, shutting down: <Worker {third}>" in master.log()


@pytest.mark.timeout(90)
def test_heartbeat_outlives_waiting_requests_and_a_blocked_worker_is_killed(
    tmp_path: Path,
) -> None:
    args = ["--workers", "1", "--timeout", "2", "--graceful-timeout", "2"]
    with gunicorn(tmp_path, *args) as master:
        # Requests that wait (green, the reactor runs) for twice the timeout: the worker keeps
        # heartbeating, so the master leaves it alone.
        pid = master.pid_of()
        answers = in_parallel(lambda _: master.pid_of("/sleep?4"), range(3))
        assert set(answers.values()) == {pid}
        assert "WORKER TIMEOUT" not in master.log()

        # A request that blocks the reactor's thread longer than the timeout: no heartbeat, the
        # master kills the worker (the client sees its connection dropped) and boots another.
        with pytest.raises((http.client.RemoteDisconnected, ConnectionError)):
            master.get("/block?20")
        assert f"WORKER TIMEOUT (pid:{pid})" in master.log()
        replacement = master.pid_of()
        assert replacement != pid
        assert not alive(pid)
        # Before the kill, txgreen's blocking detector named the culprit in the error log.
        log = master.log()
        report = log.index("The reactor's thread has been blocked")
        assert report < log.index("WORKER TIMEOUT")
        assert "in blocking_call\n    time.sleep(seconds)" in log[report:]

        # SIGTERM with a request that outlasts --graceful-timeout: the worker aborts it (the
        # client sees the connection close) and exits by itself, before the master's SIGKILL.
        late: list[BaseException] = []

        def too_slow() -> None:
            try:
                master.get("/sleep?30")
            except Exception as e:
                late.append(e)

        client = threading.Thread(target=too_slow)
        client.start()
        time.sleep(1.0)  # accepted and waiting in the application
        started = time.monotonic()
        assert master.stop() == 0, master.log()
        client.join(WAIT)
        assert time.monotonic() - started < 10
        assert len(late) == 1
        assert isinstance(late[0], (http.client.RemoteDisconnected, ConnectionError)), late
        log = master.log()
        assert f"Worker graceful timeout (pid:{replacement}): aborting 1 request(s)" in log
        assert f"Worker (pid:{replacement}) was sent SIGKILL" not in log


@pytest.mark.timeout(90)
def test_worker_connections_caps_concurrent_requests(tmp_path: Path) -> None:
    with gunicorn(tmp_path, "--workers", "1", "--worker-connections", "2") as master:
        answers = in_parallel(lambda _: master.get("/sleep?0.5"), range(6))
        # Beyond the cap a request waits or gets 503 (docs/serving.md says which): never a
        # third one at once in the application.
        assert {status for status, _ in answers.values()} <= {200, 503}
        status, body = master.get("/busiest")
        assert status == 200
        assert int(body.split()[1]) == 2
        assert master.stop() == 0, master.log()


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        ([], {"TXGREEN_REACTOR": "nonsense"}, "TXGREEN_REACTOR='nonsense': no such reactor"),
        ([], {"TXGREEN_LIMITS": "{"}, "TXGREEN_LIMITS: not JSON"),
        # The master imports the application, and that installs a reactor before the fork.
        (["--preload"], {}, "a Twisted reactor was installed before the worker started"),
    ],
)
def test_a_bad_worker_setup_stops_gunicorn_with_the_reason(
    tmp_path: Path, args: list[str], env: dict[str, str], message: str
) -> None:
    app = "gunicorn_reactor_app:app" if "--preload" in args else "gunicorn_app:app"
    master = Master.gunicorn(tmp_path, "--workers", "1", *args, env=env, app=app)
    try:
        assert master.proc.wait(timeout=WAIT) != 0
    finally:
        master.kill()
    assert message in master.log()


# -- run_master, as python -m txgreen serve --workers N calls it ---------------------------------

RUN_MASTER = """
import sys
from txgreen.web import ServeConfig
from txgreen.web.gunicorn import run_master

config = ServeConfig(
    app="gunicorn_app.app",
    listen=["tcp:0:interface=127.0.0.1"],
    workers=2,
    patch=True,
    chdir=sys.argv[1],
    reactor="asyncio",
)
sys.exit(run_master(config))
"""


@pytest.mark.timeout(60)
def test_run_master_serves_a_serve_config_and_passes_signals_on(tmp_path: Path) -> None:
    master = Master(tmp_path, [sys.executable, "-c", RUN_MASTER, str(APPS)])
    try:
        match = master.wait_for(LISTENING, log=master.stderr)
        master.port = int(match.group(1))
        gunicorn_pid = int(match.group(2))
        assert gunicorn_pid != master.pid  # the master runs in a child process
        workers = answering(master, 2, "/info")
        status, body = master.get("/info")
        assert status == 200
        pid, reactor, patched = body.split()
        assert int(pid) in workers
        assert (reactor, patched) == ("AsyncioSelectorReactor", "patched")
        # The access log goes to stdout ("-"), here the same file as stderr.
        master.wait_for(r'"GET /info HTTP/1\.1" 200')
        # SIGTERM to run_master's process reaches the gunicorn master: a clean exit.
        assert master.stop() == 0, master.log()
        assert not alive(gunicorn_pid)
    finally:
        master.kill()


def test_run_master_without_gunicorn_says_how_to_install_it() -> None:
    script = (
        "import sys; sys.modules['gunicorn'] = None\n"
        "from txgreen.web import ServeConfig\n"
        "from txgreen.web.gunicorn import run_master\n"
        "run_master(ServeConfig(app='m:app', workers=2))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=WAIT
    )
    assert proc.returncode == 1
    assert "pip install 'txgreen[serve]'" in proc.stderr
    assert "Traceback" not in proc.stderr


# -- translating a ServeConfig (no processes) -----------------------------------------------------


@pytest.mark.parametrize(
    ("endpoint", "bind"),
    [
        ("tcp:8000", "0.0.0.0:8000"),
        ("tcp:8000:interface=127.0.0.1", "127.0.0.1:8000"),
        ("tcp:port=0:interface=10.0.0.1", "10.0.0.1:0"),
        ("tcp:8080:127.0.0.1", "127.0.0.1:8080"),
        ("tcp:8000:interface=\\:\\:1", "[::1]:8000"),
        ("tcp6:8000", "[::]:8000"),
        ("unix:/run/app.sock", "unix:/run/app.sock"),
        ("unix:address=/tmp/a.sock", "unix:/tmp/a.sock"),
    ],
)
def test_listen_endpoints_become_gunicorn_binds(endpoint: str, bind: str) -> None:
    assert gunicorn_bind(endpoint) == bind


@pytest.mark.parametrize(
    ("endpoint", "why"),
    [
        ("ssl:8443:privateKey=k.pem", "does not terminate TLS"),
        ("tcp:8000:backlog=10", "backlog have no gunicorn equivalent"),
        ("unix:/run/a.sock:mode=660", "mode have no gunicorn equivalent"),
        ("tcp:http", "port 'http' is not a number"),
        ("tcp:99999", "port '99999' is not a number"),
        ("tcp:", "port '' is not a number"),
        ("tcp:8000:interface=", "empty interface"),
        ("tcp:8000:port=9000", "port given twice"),
        ("unix:", "no socket path"),
        ("systemd:domain=INET:index=0", "'systemd' endpoints are not supported"),
    ],
)
def test_endpoints_gunicorn_cannot_bind_are_rejected(endpoint: str, why: str) -> None:
    with pytest.raises(UnsupportedEndpoint, match=r"cannot serve .* with gunicorn workers") as e:
        gunicorn_bind(endpoint)
    assert why in str(e.value)


def test_master_command_carries_every_option() -> None:
    config = ServeConfig(
        app="pkg.module:make_app()",
        listen=["tcp:8000:interface=127.0.0.1", "unix:/tmp/app.sock"],
        patch=True,
        access_log="/var/log/access.log",
        graceful_timeout=2.5,
        chdir="/srv/app",
        workers=4,
        reactor="poll",
        limits=Limits(max_concurrency=50, header_timeout=5.0),
    )
    argv, env = master_command(config)
    assert argv[:3] == [sys.executable, "-m", "gunicorn"]
    assert argv[3:] == [
        "--worker-class",
        "txgreen.web.gunicorn.GreenWorker",
        "--workers",
        "4",
        "--bind",
        "127.0.0.1:8000",
        "--bind",
        "unix:/tmp/app.sock",
        "--graceful-timeout",
        "3",
        "--access-logfile",
        "/var/log/access.log",
        "--chdir",
        "/srv/app",
        "--worker-connections",
        "50",
        "pkg.module:make_app()",
    ]
    assert env["TXGREEN_PATCH"] == "1"
    assert env["TXGREEN_REACTOR"] == "poll"
    assert json.loads(env["TXGREEN_LIMITS"])["header_timeout"] == 5.0
    # The worker rebuilds the same Limits.
    assert _limits_from_env(env["TXGREEN_LIMITS"], 1000) == config.limits


def test_master_command_defaults_and_app_spellings() -> None:
    argv, env = master_command(ServeConfig(app="module.app", access_log=None))
    assert argv[-1] == "module:app"  # ServeConfig's module.name, as gunicorn spells it
    assert "--access-logfile" not in argv
    assert argv[argv.index("--workers") + 1] == "1"
    assert argv[argv.index("--bind") + 1] == "127.0.0.1:8000"
    assert "--worker-connections" not in argv  # gunicorn's default (1000) caps each worker
    assert env["TXGREEN_PATCH"] == "0"
    assert master_command(ServeConfig(app="module"))[0][-1] == "module"


@pytest.mark.parametrize(
    ("config", "error", "message"),
    [
        (ServeConfig(app="m:app", workers=0), ValueError, "workers must be a whole number"),
        (ServeConfig(app="m:app", listen=[]), UnsupportedEndpoint, "nothing to listen on"),
        (
            ServeConfig(app="m:app", graceful_timeout=-1.0),
            ValueError,
            "graceful_timeout must be",
        ),
    ],
)
def test_master_command_rejects_bad_configs(
    config: ServeConfig, error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        master_command(config)


def test_worker_limits_from_the_environment() -> None:
    assert _limits_from_env(None, 1000) == Limits(max_concurrency=1000)
    assert _limits_from_env('{"max_body_size": 10}', 7) == Limits(
        max_body_size=10, max_concurrency=7
    )
    assert _limits_from_env('{"max_concurrency": null}', 7) == Limits(max_concurrency=None)
    with pytest.raises(WorkerConfigError, match="TXGREEN_LIMITS: not JSON"):
        _limits_from_env("{", 7)
    with pytest.raises(WorkerConfigError, match="expected a JSON object"):
        _limits_from_env("[1]", 7)
    with pytest.raises(WorkerConfigError, match="unknown field"):
        _limits_from_env('{"max_speed": 1}', 7)
