"""Every core: a gunicorn worker class that serves WSGI applications with green threads.

``gunicorn -k txgreen.web.gunicorn.GreenWorker -w 4 module:app`` runs four worker processes,
each a Twisted reactor with txgreen's :class:`~txgreen.web.WSGIResource` serving every request
in a green thread.  gunicorn's master keeps doing what it does for its other workers: it binds
the sockets, forks the workers, restarts the ones that die or stop heartbeating, and replaces
them on SIGHUP.  :func:`run_master` starts such a master from a :class:`ServeConfig` (what
``python -m txgreen serve --workers N`` does).

What runs where:

- The gunicorn master imports this module (to find the worker class) but nothing of Twisted's
  reactor: the reactor is installed and started in each worker, after the fork (two processes
  must never share one epoll instance).
- :meth:`GreenWorker.init_process` (in the worker) installs the reactor named by
  ``TXGREEN_REACTOR``, calls ``txgreen.patch()`` when ``TXGREEN_PATCH`` is set, then lets
  gunicorn load the application; :meth:`GreenWorker.run` adopts gunicorn's listening sockets
  (``reactor.adoptStreamPort``) into a :class:`~txgreen.web.GreenSite`, keeps the heartbeat
  with a ``LoopingCall`` and waits for the signal to stop.
- Requests are logged through gunicorn's access log (``--access-logfile``, its
  ``--access-logformat``), and Twisted's and txgreen's log events go to gunicorn's error log.
- txgreen's blocking detector (docs/monitor.md) watches the reactor: an application that
  blocks it stops the heartbeat, and the master kills the worker after ``--timeout`` seconds;
  the detector's warning, logged before that, names the line that blocked.

The environment variables the worker reads (set them in gunicorn's environment or with its
``--env NAME=VALUE``; :func:`run_master` sets them from the :class:`ServeConfig`):

- ``TXGREEN_PATCH``: ``1`` (or ``true``, ``yes``, ``on``) calls ``txgreen.patch()`` in the
  worker before the application is imported.
- ``TXGREEN_REACTOR``: the reactor to install (``default``, ``epoll``, ``poll``, ``select``,
  ``asyncio``; Twisted's short names).
- ``TXGREEN_WATCH_BLOCKING``: the blocking detector's threshold in seconds (``0`` or ``off``
  turns it off); by default ``min(1, timeout / 4)``.
- ``TXGREEN_LIMITS``: a JSON object of :class:`~txgreen.web.Limits` fields;
  ``max_concurrency`` is gunicorn's ``--worker-connections`` unless given here.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import json
import math
import os
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Iterator
from types import FrameType
from typing import TYPE_CHECKING, Any, cast

from txgreen.errors import TxgreenError
from txgreen.web._config import ServeConfig
from txgreen.web._site import GreenSite, Limits

if TYPE_CHECKING:
    from twisted.logger import LogEvent

    from txgreen._event import Event
    from txgreen.web._container import WSGIResource

try:
    from gunicorn.workers.base import Worker

    _HAVE_GUNICORN = True
except ImportError:  # this module still imports: run_master says how to install gunicorn
    Worker = object
    _HAVE_GUNICORN = False

__all__ = ["GreenWorker", "UnsupportedEndpoint", "WorkerConfigError", "run_master"]

WORKER_CLASS = "txgreen.web.gunicorn.GreenWorker"
"""The worker class as gunicorn's ``-k`` option names it."""

PATCH_ENV = "TXGREEN_PATCH"
REACTOR_ENV = "TXGREEN_REACTOR"
LIMITS_ENV = "TXGREEN_LIMITS"
WATCH_ENV = "TXGREEN_WATCH_BLOCKING"

_INSTALL_ADVICE = (
    "gunicorn is not installed: pip install 'txgreen[serve]' (or pip install gunicorn) "
    "to serve with several worker processes"
)


class UnsupportedEndpoint(TxgreenError, ValueError):
    """A listen endpoint that gunicorn cannot bind (only TCP and UNIX sockets, no TLS)."""


class WorkerConfigError(TxgreenError):
    """The worker's environment (``TXGREEN_*`` variables) or process state is wrong.

    Raised in the worker when it starts, so gunicorn logs it and stops instead of serving with
    a configuration the user did not ask for.
    """


def _truthy(value: str) -> bool:
    return value.strip().lower() in ("1", "true", "yes", "on")


def _limits_from_env(raw: str | None, worker_connections: int) -> Limits:
    """The worker's :class:`Limits`: ``TXGREEN_LIMITS`` over the defaults, capped by
    ``worker_connections`` unless the variable sets ``max_concurrency``."""
    fields: dict[str, Any] = {}
    if raw:
        try:
            loaded = json.loads(raw)
        except ValueError as e:
            raise WorkerConfigError(f"{LIMITS_ENV}: not JSON ({e}): {raw!r}") from None
        if not isinstance(loaded, dict):
            raise WorkerConfigError(f"{LIMITS_ENV}: expected a JSON object, got {raw!r}")
        known = {f.name for f in dataclasses.fields(Limits)}
        unknown = sorted(set(loaded) - known)
        if unknown:
            raise WorkerConfigError(
                f"{LIMITS_ENV}: unknown field(s) {', '.join(unknown)}; "
                f"known: {', '.join(sorted(known))}"
            )
        fields.update(loaded)
    fields.setdefault("max_concurrency", worker_connections)
    try:
        return Limits(**fields)
    except (TypeError, ValueError) as e:  # Limits checks its values
        raise WorkerConfigError(f"{LIMITS_ENV}: {e}") from None


# -- the worker ----------------------------------------------------------------------------------


class _Access:
    """What gunicorn's access log reads from a response (``status``, ``headers``, ``sent``)."""

    __slots__ = ("headers", "sent", "status")

    def __init__(self, status: str, headers: list[tuple[str, str]], sent: int) -> None:
        self.status = status
        self.headers = headers
        self.sent = sent


def _decoded_headers(headers: Any) -> list[tuple[str, str]]:
    return [
        (name.decode("latin-1"), value.decode("latin-1"))
        for name, values in headers.getAllRawHeaders()
        for value in values
    ]


class _WorkerSite(GreenSite):
    """The worker's Site: counts finished requests (``max_requests``) and logs each one to
    gunicorn's access log."""

    noisy = False  # no "Starting factory" in the error log of every worker

    def __init__(
        self, resource: WSGIResource, reactor: Any, limits: Limits, worker: GreenWorker
    ) -> None:
        super().__init__(resource, reactor, limits)
        self.worker = worker

    def log(self, request: Any) -> None:  # called by twisted.web when a request finishes
        worker = self.worker
        try:
            worker.log_access(request)
        finally:
            worker.request_done()


def _adopt(reactor: Any, sock: Any, site: GreenSite, backlog: int) -> Any:
    """Listen with ``site`` on gunicorn's listening socket ``sock`` (a gunicorn.sock object)."""
    family = sock.sock.family
    if family != socket.AF_UNIX:
        return reactor.adoptStreamPort(sock.fileno(), family, site)
    # Twisted's own adoption of a UNIX socket would chmod its file to 0o666, listen again with
    # Twisted's backlog, and, when the worker stops listening, shut the socket down and delete
    # its file: the socket, its file and mode are the master's, and the other workers (and the
    # next ones) keep using them.
    from twisted.internet import tcp, unix

    class SharedUNIXPort(unix.Port):
        def connectionLost(self, reason: Any) -> None:
            tcp.Port.connectionLost(self, reason)  # type: ignore[no-untyped-call]

    port = SharedUNIXPort._fromListeningDescriptor(reactor, sock.fileno(), site)  # type: ignore[no-untyped-call]
    port.mode = stat.S_IMODE(os.stat(port._bindPath).st_mode)
    port.backlog = backlog
    port.startListening()
    port._shouldShutdown = False  # shutdown() would stop the socket for every process
    return port


_STOP_SIGNALS = {signal.SIGTERM, signal.SIGINT, signal.SIGQUIT}


def _accept_one_at_a_time(port: Any) -> None:
    """Make ``port`` accept one connection per wake-up (as gunicorn's gevent worker does with
    several workers): Twisted accepts up to a hundred at once, so one worker would take a
    whole burst of connections while its siblings, woken for the same burst, get none."""
    read = port.doRead

    def do_read() -> Any:
        port.numberAccepts = 1
        return read()

    port.doRead = do_read


class GreenWorker(Worker):  # type: ignore[misc]
    """A gunicorn worker that serves the application with txgreen's green WSGI container.

    Use it with ``gunicorn -k txgreen.web.gunicorn.GreenWorker``.  Each worker process runs a
    Twisted reactor; each request runs in a green thread, so a worker serves up to
    ``--worker-connections`` requests at once (its :class:`~txgreen.web.Limits`
    ``max_concurrency``).  gunicorn's settings that it honours: ``workers``, ``timeout``
    (heartbeat), ``graceful_timeout`` (SIGTERM and SIGHUP drain), ``max_requests`` and
    ``max_requests_jitter`` (recycling), ``worker_connections``, the access and error logs,
    and the server hooks (``post_worker_init``, ``worker_int``, ``worker_abort``,
    ``worker_exit``).  See the module's docstring for the ``TXGREEN_*`` variables it reads.
    """

    # Set in init_process/run (in the worker process).
    wsgi: Any
    _stop: Event | None = None
    _quick = False
    _resource: WSGIResource | None = None
    _site: _WorkerSite | None = None

    # -- start-up (in the worker, after the fork) ----------------------------------------------

    def init_process(self) -> None:
        """Install the reactor and patch (before the application is imported), then start."""
        for name, value in (self.cfg.env or {}).items():  # gunicorn's --env, applied early
            os.environ[name] = value
        if "twisted.internet.reactor" in sys.modules:
            raise WorkerConfigError(
                "txgreen GreenWorker: a Twisted reactor was installed before the worker "
                "started (in the gunicorn master: an application loaded with --preload, or "
                "a config file, imported twisted.internet.reactor). Each worker needs its "
                "own reactor: drop --preload, or do not import the reactor at import time"
            )
        reactor_name = os.environ.get(REACTOR_ENV, "default").strip() or "default"
        if reactor_name != "default":
            from twisted.application.reactors import NoSuchReactor, installReactor

            try:
                installReactor(reactor_name)
            except NoSuchReactor:
                raise WorkerConfigError(
                    f"{REACTOR_ENV}={reactor_name!r}: no such reactor "
                    "(use default, epoll, poll, select or asyncio)"
                ) from None
        if _truthy(os.environ.get(PATCH_ENV, "")):
            import txgreen

            txgreen.patch()
        self.limits = _limits_from_env(os.environ.get(LIMITS_ENV), self.cfg.worker_connections)
        if self.cfg.is_ssl:
            raise WorkerConfigError(
                "txgreen GreenWorker does not terminate TLS: drop --certfile/--keyfile and "
                "put a TLS proxy in front, or serve TLS with python -m txgreen serve"
            )
        super().init_process()

    def run(self) -> None:
        """Serve until told to stop (the worker's main loop: gunicorn calls it)."""
        import txgreen

        # From here until _serve has put the worker's handlers back over the reactor's, the
        # stop signals wait (blocked) instead of reaching Twisted's handlers.
        signal.pthread_sigmask(signal.SIG_BLOCK, _STOP_SIGNALS)
        try:
            txgreen.run(self._serve)
        finally:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, _STOP_SIGNALS)

    def _serve(self) -> None:
        from twisted.internet.task import LoopingCall

        import txgreen
        from txgreen._hub import get_hub
        from txgreen.web._container import WSGIResource

        reactor = get_hub().reactor
        self._stop = txgreen.Event()
        self._install_signals()
        signal.pthread_sigmask(signal.SIG_UNBLOCK, _STOP_SIGNALS)  # a pending one runs now
        self._log_to_gunicorn()
        watch = self._watch_blocking(reactor)
        resource = self._resource = WSGIResource(self._application)
        site = self._site = _WorkerSite(resource, reactor, self.limits, self)
        ports = [_adopt(reactor, sock, site, self.cfg.backlog) for sock in self.sockets]
        if self.cfg.workers > 1:
            for port in ports:
                _accept_one_at_a_time(port)
        interval = min(1.0, self.timeout / 2) if self.timeout else 1.0
        heartbeat = LoopingCall(self._heartbeat)
        heartbeat.start(max(interval, 0.05), now=True)
        try:
            if self.alive:
                self._stop.wait()
            for port in ports:
                with contextlib.suppress(Exception):
                    txgreen.block_on(port.stopListening())
            if not self._quick:
                self._drain(resource, site)
        finally:
            try:
                late = len(resource.threads)
                if late and self._quick:
                    self.log.info("Quick shutdown (pid:%s): aborting %d request(s)", self.pid, late)
                elif late:
                    self.log.warning(
                        "Worker graceful timeout (pid:%s): aborting %d request(s)", self.pid, late
                    )
                resource.threads.kill()
                site.abort_all()
            finally:
                if heartbeat.running:
                    heartbeat.stop()
                if watch is not None:
                    watch.stop()

    def _drain(self, resource: WSGIResource, site: GreenSite) -> None:
        """Let the requests in flight finish (``graceful_timeout`` at most); close idle
        keep-alive connections as they appear."""
        import txgreen

        # A moment before the master's own deadline (when it SIGKILLs the worker), so that the
        # worker aborts the late requests itself, logs it and exits through gunicorn's hooks.
        graceful = float(self.cfg.graceful_timeout)
        deadline = time.monotonic() + graceful - min(1.0, graceful / 2)
        while True:
            site.close_idle()
            if not len(resource.threads) and not site.transports:
                return
            if time.monotonic() >= deadline or self._quick:
                return
            txgreen.sleep(0.05)

    def _application(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        request = environ.get("twisted.request")
        if request is not None:
            if "RAW_URI" not in environ:  # gunicorn's access log format reads it
                environ["RAW_URI"] = request.uri.decode("latin-1")
            request.txgreen_access = (environ, time.time())
        result: Iterable[bytes] = self.wsgi(environ, start_response)
        return result

    # -- the heartbeat, stopping, recycling -------------------------------------------------------

    def _heartbeat(self) -> None:
        self.notify()
        if self.ppid != os.getppid():
            self.log.info("Parent changed, shutting down: %s", self)
            self.stop(quick=False)
        elif not self.alive:
            self.stop(quick=self._quick)

    def stop(self, quick: bool = False) -> None:
        """Stop serving (in the reactor's thread): stop accepting, then, unless ``quick``,
        let the requests in flight finish within ``graceful_timeout``."""
        self.alive = False
        if quick:
            self._quick = True
        if self._stop is not None:
            self._stop.set()

    def request_done(self) -> None:
        """One more request finished: recycle the worker after ``max_requests`` of them."""
        self.nr += 1
        if self.alive and self.nr >= self.max_requests:
            self.log.info("Autorestarting worker after current request.")
            self.stop()

    # -- signals --------------------------------------------------------------------------------

    def _install_signals(self) -> None:
        # Twisted's reactor has put its own SIGINT/SIGTERM handlers over gunicorn's: back to the
        # worker's (SIGCHLD stays Twisted's, for spawnProcess).
        signal.signal(signal.SIGTERM, self.handle_exit)
        signal.signal(signal.SIGINT, self.handle_quit)
        signal.signal(signal.SIGQUIT, self.handle_quit)
        signal.siginterrupt(signal.SIGTERM, False)

    def _from_signal(self, quick: bool) -> None:
        if self._stop is None:
            return  # not serving yet: _serve sees self.alive is False and stops at once
        from txgreen._hub import get_hub

        get_hub().reactor.callFromThread(self.stop, quick)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        """SIGTERM (shutdown, or replacement after SIGHUP): a graceful stop."""
        self.alive = False
        self._from_signal(quick=False)

    def handle_quit(self, sig: int, frame: FrameType | None) -> None:
        """SIGQUIT, SIGINT: a quick stop (requests in flight are aborted)."""
        self.alive = False
        self._quick = True
        self.cfg.worker_int(self)
        self._from_signal(quick=True)

    def handle_abort(self, sig: int, frame: FrameType | None) -> None:
        """SIGABRT, sent by the master to a worker that stopped heartbeating: exit at once.

        The reactor is most likely blocked (the blocking detector has logged where), so
        nothing can run on it any more: after the ``worker_abort`` hook the process ends here
        (``os._exit``; gunicorn's ``worker_exit`` hook does not run for an aborted worker).
        """
        self.alive = False
        try:
            self.cfg.worker_abort(self)
            self.log.error("Worker (pid:%s) aborted: it stopped heartbeating", self.pid)
            with contextlib.suppress(Exception):
                self.tmp.close()
            for stream in (sys.stdout, sys.stderr):
                with contextlib.suppress(Exception):
                    stream.flush()
            import logging

            logging.shutdown()
        finally:
            os._exit(1)

    # -- logs -----------------------------------------------------------------------------------

    def _log_to_gunicorn(self) -> None:
        """Send twisted.logger's events (Twisted's, txgreen's, the app's) to gunicorn's
        error log."""
        from twisted.logger import ILogObserver, globalLogBeginner

        observer = cast(ILogObserver, self._observe)
        globalLogBeginner.beginLoggingTo([observer], redirectStandardIO=False)

    def _observe(self, event: LogEvent) -> None:
        from twisted.logger import LogLevel, formatEvent

        level = event.get("log_level", LogLevel.info)
        text = formatEvent(event)
        failure = event.get("log_failure")
        if failure is not None:
            text = f"{text}\n{failure.getTraceback()}"
        namespace = str(event.get("log_namespace", ""))
        log = self.log
        if level >= LogLevel.critical:
            log.critical(text)
        elif level >= LogLevel.error:
            log.error(text)
        elif level >= LogLevel.warn:
            log.warning(text)
        elif level >= LogLevel.info and not namespace.startswith(("twisted.", "log_legacy")):
            log.info(text)
        else:  # Twisted's chatter (factory started, log opened) is debug for gunicorn
            log.debug(text)

    def log_access(self, request: Any) -> None:
        """Write ``request`` to gunicorn's access log, in its ``access_log_format``."""
        if not getattr(self.log, "access_log_enabled", True):
            return
        now = time.time()
        environ, started = getattr(request, "txgreen_access", (None, now))
        if environ is None:  # answered by twisted.web itself (a bad request)
            client = request.getClientAddress()
            environ = {
                "REMOTE_ADDR": str(getattr(client, "host", "-")),
                "REQUEST_METHOD": request.method.decode("latin-1"),
                "RAW_URI": request.uri.decode("latin-1"),
                "PATH_INFO": request.path.decode("latin-1"),
                "QUERY_STRING": request.uri.partition(b"?")[2].decode("latin-1"),
                "SERVER_PROTOCOL": request.clientproto.decode("latin-1"),
            }
        message = request.code_message
        status = f"{request.code} {message.decode('latin-1') if message else ''}".rstrip()
        response = _Access(
            status, _decoded_headers(request.responseHeaders), int(request.sentLength)
        )
        took = datetime.timedelta(seconds=max(now - started, 0.0))
        self.log.access(response, _decoded_headers(request.requestHeaders), environ, took)

    # -- the blocking detector ------------------------------------------------------------------

    def _watch_blocking(self, reactor: Any) -> Any:
        """Start the blocking detector (``TXGREEN_WATCH_BLOCKING``, else min(1, timeout / 4) s)."""
        from txgreen._monitor import watch_blocking, watch_blocking_from_env

        if os.environ.get(WATCH_ENV, "").strip():
            try:
                return watch_blocking_from_env(reactor=reactor)
            except ValueError as e:
                raise WorkerConfigError(str(e)) from None
        threshold = min(1.0, self.cfg.timeout / 4) if self.cfg.timeout else 1.0
        return watch_blocking(threshold, reactor=reactor)


# -- the master ----------------------------------------------------------------------------------


def _split_endpoint(description: str) -> list[str]:
    """Split a Twisted endpoint description on ``:``, honouring ``\\:`` escapes."""
    parts: list[str] = []
    current: list[str] = []
    chars: Iterator[str] = iter(description)
    for ch in chars:
        if ch == "\\":
            current.append(next(chars, ""))
        elif ch == ":":
            parts.append("".join(current))
            current = []
        else:
            current.append(ch)
    parts.append("".join(current))
    return parts


def gunicorn_bind(endpoint: str) -> str:
    """The gunicorn ``--bind`` address for a Twisted server endpoint description.

    ``tcp:PORT[:interface=HOST]`` becomes ``HOST:PORT`` (``0.0.0.0`` when no interface is
    given, as Twisted binds; ``[HOST]`` for IPv6), ``tcp6:`` likewise with ``::``, and
    ``unix:/path`` (or ``unix:address=/path``) becomes ``unix:/path``.  Raises
    :class:`UnsupportedEndpoint` for anything gunicorn cannot bind for this worker (TLS,
    other endpoint types, options such as ``backlog`` or ``mode``).
    """
    kind, *rest = _split_endpoint(endpoint.strip())
    kind = kind.lower()
    positional = [p for p in rest if "=" not in p]
    options = dict(p.split("=", 1) for p in rest if "=" in p)

    def unsupported(why: str) -> UnsupportedEndpoint:
        return UnsupportedEndpoint(f"cannot serve {endpoint!r} with gunicorn workers: {why}")

    if kind in ("tcp", "tcp6"):
        names = ["port", "interface"]
        if len(positional) > len(names):
            raise unsupported("expected tcp:PORT[:interface=HOST]")
        for name, value in zip(names, positional, strict=False):
            if name in options:
                raise unsupported(f"{name} given twice")
            options[name] = value
        extra = sorted(set(options) - set(names))
        if extra:
            raise unsupported(
                f"option(s) {', '.join(extra)} have no gunicorn equivalent per address "
                "(use gunicorn's own settings, e.g. --backlog)"
            )
        port = options.get("port", "")
        if not port.isdigit() or int(port) > 65535:
            raise unsupported(f"port {port!r} is not a number from 0 to 65535")
        host = options.get("interface", "0.0.0.0" if kind == "tcp" else "::")
        if not host:
            raise unsupported("empty interface")
        if ":" in host:
            host = f"[{host}]"
        return f"{host}:{int(port)}"
    if kind == "unix":
        if len(positional) > 1:
            raise unsupported("expected unix:/path")
        if positional:
            options.setdefault("address", positional[0])
        extra = sorted(set(options) - {"address"})
        if extra:
            raise unsupported(
                f"option(s) {', '.join(extra)} have no gunicorn equivalent (see gunicorn's --umask)"
            )
        path = options.get("address", "")
        if not path:
            raise unsupported("no socket path")
        return f"unix:{path}"
    if kind in ("ssl", "tls"):
        raise unsupported(
            "the gunicorn worker does not terminate TLS; put a TLS proxy in front, or serve "
            "TLS in one process (python -m txgreen serve without --workers)"
        )
    raise unsupported(f"{kind!r} endpoints are not supported (use tcp: or unix:)")


def _gunicorn_app(spec: str) -> str:
    """The application as gunicorn names it: ``module.name`` becomes ``module:name``."""
    if ":" in spec or "." not in spec:
        return spec
    module, _, name = spec.rpartition(".")
    return f"{module}:{name}"


def master_command(config: ServeConfig) -> tuple[list[str], dict[str, str]]:
    """The command line and the ``TXGREEN_*`` environment variables of the gunicorn master
    :func:`run_master` starts for ``config``.

    Raises :class:`UnsupportedEndpoint` for a listen endpoint gunicorn cannot bind and
    ``ValueError`` for a number of workers below 1.
    """
    workers = 1 if config.workers is None else config.workers
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers must be a whole number >= 1, not {config.workers!r}")
    binds = [gunicorn_bind(endpoint) for endpoint in config.listen]
    if not binds:
        raise UnsupportedEndpoint("nothing to listen on: give at least one endpoint")
    argv = [sys.executable, "-m", "gunicorn", "--worker-class", WORKER_CLASS]
    argv += ["--workers", str(workers)]
    for bind in binds:
        argv += ["--bind", bind]
    graceful = config.graceful_timeout
    if not (math.isfinite(graceful) and graceful >= 0):
        raise ValueError(f"graceful_timeout must be a number of seconds >= 0, not {graceful!r}")
    argv += ["--graceful-timeout", str(math.ceil(graceful))]
    if config.access_log is not None:
        argv += ["--access-logfile", config.access_log]
    if config.chdir is not None:
        argv += ["--chdir", config.chdir]
    limits = config.limits
    if limits.max_concurrency is not None:
        argv += ["--worker-connections", str(limits.max_concurrency)]
    argv.append(_gunicorn_app(config.app))
    env = {
        PATCH_ENV: "1" if config.patch else "0",
        REACTOR_ENV: config.reactor,
        LIMITS_ENV: json.dumps(dataclasses.asdict(limits)),
    }
    return argv, env


_FORWARDED = ("SIGTERM", "SIGINT", "SIGQUIT", "SIGHUP", "SIGUSR1", "SIGUSR2", "SIGTTIN", "SIGTTOU")


def run_master(config: ServeConfig) -> int:
    """Run a gunicorn master serving ``config`` with :class:`GreenWorker` workers; its status.

    The master runs in a child process (``python -m gunicorn``, a fresh interpreter, so that
    nothing this process imported, such as a Twisted reactor, reaches the workers).  Called from
    the main thread, the signals gunicorn understands (SIGTERM, SIGINT, SIGQUIT, SIGHUP, SIGUSR1,
    SIGUSR2, SIGTTIN, SIGTTOU) are passed on to it while it runs.  Returns the master's exit
    status (``128 + N`` if it was killed by signal N).

    Raises ``SystemExit`` with installation advice when gunicorn is not installed,
    :class:`UnsupportedEndpoint` for a listen endpoint gunicorn cannot bind.
    """
    if not _HAVE_GUNICORN:
        raise SystemExit(f"txgreen serve --workers: {_INSTALL_ADVICE}")
    argv, env = master_command(config)
    proc = subprocess.Popen(argv, env={**os.environ, **env})
    previous: dict[int, Any] = {}
    if threading.current_thread() is threading.main_thread():

        def forward(signum: int, frame: FrameType | None) -> None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signum)

        for name in _FORWARDED:
            signum = getattr(signal, name, None)
            if signum is not None:
                previous[signum] = signal.signal(signum, forward)
    try:
        while True:
            try:
                code = proc.wait()
                break
            except KeyboardInterrupt:  # pragma: no cover - only with a foreign SIGINT handler
                continue
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        if proc.poll() is None:  # pragma: no cover - an error above
            proc.kill()
            proc.wait()
    return 128 - code if code < 0 else code
