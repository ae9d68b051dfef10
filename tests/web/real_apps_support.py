"""Serving the real applications of tests/web/apps, and the real clients that talk to them.

The servers (``Served``, each a base URL while it runs):

- ``in-process``: :func:`txgreen.serve_wsgi` in a green thread of the test's own process, on
  ``tcp:0:interface=127.0.0.1`` (or a TLS endpoint, for HTTP/2), started and stopped by each
  test;
- ``serve``: ``python -m txgreen serve`` in a subprocess;
- ``gunicorn``: a gunicorn master in a subprocess, with txgreen's ``GreenWorker``.

The clients are real ones: ``requests`` and ``httpx`` (HTTP/2), and the ``curl`` program. They
block their OS thread, so a test (a green thread) calls them with :func:`txgreen.call_in_thread`:
the reactor, and the in-process server with it, goes on meanwhile.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import random
import re
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import txgreen
from txgreen.web import serve_wsgi

T = TypeVar("T")

WEB = Path(__file__).resolve().parent  # tests/web
APPS_DIR = WEB / "apps"  # the applications: top-level modules (a server gets --chdir there)

# The applications are imported from tests/web/apps; the TLS tests' certificates come from
# tests/green/certs.py, and pytest puts tests/green on sys.path only when it collects that
# folder, so a run of tests/web alone needs it there too.
for _folder in (APPS_DIR, WEB.parent / "green"):
    if str(_folder) not in sys.path:
        sys.path.append(str(_folder))
from certs import Pki, make_pki  # noqa: E402
from servers import output, start_process, start_serve, stop  # noqa: E402

__all__ = ["Pki", "make_pki"]  # and the rest, for the tests of tests/web

# The kinds of server that tests/web/test_real_apps.py and test_http2.py run every test against
# (this list is the one place to change):
# - "in-process": txgreen.serve_wsgi in the test's own process;
# - "serve": `python -m txgreen serve` in a subprocess;
# - "gunicorn": a gunicorn master with -k txgreen.web.gunicorn.GreenWorker in a subprocess
#   (plain HTTP only: the worker does not terminate TLS, so test_http2.py leaves it out).
KINDS = ["in-process", "serve", "gunicorn"]

# The applications, as a WSGI server names them (module:attribute, importable from tests/web).
APPS = {
    "flask": "flask_app:app",
    "django": "django_app.wsgi:application",
}
# The page each framework serves when a view raises (DEBUG off).
ERROR_PAGES = {"flask": b"Internal Server Error", "django": b"<h1>Server Error (500)</h1>"}

UPLOAD_SIZE = 20 * 1024 * 1024  # the 20 MB upload

CURL_INSTALL_HINT = (
    "curl is not installed: `apt-get install -y curl` on Debian/Ubuntu (the Makefile's "
    "`services` target does this when apt-get is available), `brew install curl` on macOS"
)


class ToolMissing(RuntimeError):
    """A program the tests need is not installed (the message says how to get it)."""


def load_app(name: str) -> Any:
    """The WSGI callable of application ``name`` (a key of :data:`APPS`), imported here."""
    import importlib

    module, _, attribute = APPS[name].partition(":")
    return getattr(importlib.import_module(module), attribute)


def in_thread(fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
    """``fn(*args, **kwargs)`` in the reactor's thread pool (a blocking client call)."""
    return txgreen.call_in_thread(functools.partial(fn, *args, **kwargs), timeout=120)


@contextlib.contextmanager
def in_process(app: Any, endpoint: str = "tcp:0:interface=127.0.0.1") -> Iterator[int]:
    """Serve ``app`` with ``serve_wsgi`` on ``endpoint`` in a green thread; yield its port.

    At the end the server is killed, and must stop cleanly: an error on its way out (closing
    its connections) is raised here.
    """
    ports: list[Any] = []
    listening = txgreen.Event()

    def on_listen(port: Any) -> None:
        ports.append(port)
        listening.set()

    server = txgreen.spawn(serve_wsgi, endpoint, app, on_listen=on_listen)
    try:
        with txgreen.Timeout(10):
            while not listening.is_set():
                if server.dead:
                    server.get()  # raises why it could not listen
                listening.wait(timeout=0.1)
        yield ports[0].getHost().port
    finally:
        server.kill()
    server.get(timeout=10)  # GreenletExit (the kill) or what the server raised on its way out


@dataclass
class Upload:
    """The 20 MB file a test uploads, written to disk (curl reads it from there)."""

    path: Path
    data: bytes

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()


def make_upload(directory: Path, size: int = UPLOAD_SIZE) -> Upload:
    """``size`` pseudo-random bytes (a fixed seed: the same every run) in ``directory``."""
    data = random.Random(12).randbytes(size)
    path = directory / "upload.bin"
    path.write_bytes(data)
    return Upload(path, data)


def curl_binary(path: str | None = None) -> str:
    """The path of ``curl`` (searched on ``path``, default ``PATH``), or :class:`ToolMissing`
    saying how to install it."""
    found = shutil.which("curl", path=path)
    if found is None:
        raise ToolMissing(CURL_INSTALL_HINT)
    return found


def curl_has(feature: str) -> bool:
    """Does this curl list ``feature`` (``HTTP2``, ``SSL``...) among its features?"""
    out = subprocess.run([curl_binary(), "--version"], capture_output=True, text=True, check=True)
    features = next((ln for ln in out.stdout.splitlines() if ln.startswith("Features:")), "")
    return feature.lower() in features.lower().split()


@dataclass(frozen=True)
class CurlReply:
    """What ``curl`` got: the status, the negotiated HTTP version and the body."""

    status: int
    http_version: str
    body: bytes


def curl(url: str, *args: str) -> CurlReply:
    """Run ``curl ARGS URL`` (in an OS thread); its status, HTTP version and body.

    ``-w`` appends the status and HTTP version after the body, on a line of its own
    that the body cannot end with.
    """
    marker = b"\n--txgreen-curl--"
    command = [
        curl_binary(),
        "--silent",
        "--show-error",
        "--max-time",
        "60",
        "--write-out",
        marker.decode() + " %{http_code} %{http_version}",
        *args,
        url,
    ]

    def run() -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(command, capture_output=True, check=False)

    done = in_thread(run)
    if done.returncode != 0:
        raise AssertionError(f"{command} failed ({done.returncode}): {done.stderr.decode()}")
    body, _, tail = done.stdout.rpartition(marker)
    status, version = tail.split()
    return CurlReply(int(status), version.decode(), body)


# -- servers in subprocesses (started with tests/web/servers.py's helpers) ---------------------

GUNICORN_LISTENING = re.compile(r".*Listening at: (https?://\S+) \(\d+\)$")


def start_txgreen_serve(
    app: str, *options: str, listen: str = "tcp:0:interface=127.0.0.1"
) -> tuple[subprocess.Popen[str], str]:
    """``python -m txgreen serve --chdir tests/web/apps APP`` listening on ``listen``: the
    process and its URL."""
    args = ["--chdir", str(APPS_DIR), "--listen", listen, *options, APPS[app]]
    return start_serve(args, cwd=APPS_DIR)


def start_gunicorn(app: str, *options: str) -> tuple[subprocess.Popen[str], str]:
    """A gunicorn master with txgreen's GreenWorker (one worker) on a free port of 127.0.0.1:
    the process and its URL."""
    command = [
        sys.executable,
        "-m",
        "gunicorn",
        "--worker-class",
        "txgreen.web.gunicorn.GreenWorker",
        "--workers",
        "1",
        "--bind",
        "127.0.0.1:0",
        "--chdir",
        str(APPS_DIR),
        *options,
        APPS[app],
    ]
    process, found = start_process(command, pattern=GUNICORN_LISTENING, cwd=APPS_DIR)
    return process, found[0]


# -- one kind of server serving one app -------------------------------------------------------


def tls_endpoint(pki: Pki) -> str:
    """The server endpoint string of a TLS port on 127.0.0.1 with the test certificate."""
    return f"ssl:0:interface=127.0.0.1:privateKey={pki.key_file}:certKey={pki.cert_file}"


@dataclass
class Target:
    """One kind of server serving one application, over TLS if ``tls`` is given."""

    kind: str
    app: str
    tls: Pki | None = None
    process: subprocess.Popen[str] | None = None
    url: str = ""

    @contextlib.contextmanager
    def running(self) -> Iterator[str]:
        """The server, running: its base URL (``http://127.0.0.1:PORT``, or ``https://``).

        An in-process server runs for the block; a subprocess one is only checked to be
        still running at its end.
        """
        if self.process is None:
            endpoint = "tcp:0:interface=127.0.0.1" if self.tls is None else tls_endpoint(self.tls)
            with in_process(load_app(self.app), endpoint) as port:
                scheme = "http" if self.tls is None else "https"
                yield f"{scheme}://127.0.0.1:{port}"
            return
        yield self.url
        assert self.process.poll() is None, (
            f"the {self.kind} server exited ({self.process.returncode}); its stderr:\n"
            f"{output(self.process)[1]}"
        )


@contextlib.contextmanager
def started(kind: str, app: str, tls: Pki | None = None) -> Iterator[Target]:
    """A :class:`Target`: a subprocess server is started here and stopped at the end."""
    if kind == "in-process":
        yield Target(kind, app, tls)
        return
    if kind == "serve":
        listen = "tcp:0:interface=127.0.0.1" if tls is None else tls_endpoint(tls)
        process, url = start_txgreen_serve(app, listen=listen)
    elif kind == "gunicorn" and tls is None:
        process, url = start_gunicorn(app)
    else:
        raise ValueError(f"no {kind!r} server{' over TLS' if tls else ''}")
    try:
        yield Target(kind, app, tls, process, url.rstrip("/"))
    finally:
        stop(process)
