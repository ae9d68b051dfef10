"""``python -m txgreen serve APP``: serve a WSGI application from the command line.

The options fill a :class:`ServeConfig`.  With ``--workers N`` the gunicorn master runs
(``txgreen.web.gunicorn.run_master``); otherwise this process serves: the reactor is installed,
``txgreen.patch()`` runs when asked, the application is imported in the main green thread and a
:class:`WSGIServer` listens on every ``--listen`` endpoint.  One line per endpoint on stderr says
where (``txgreen serve: listening on http://HOST:PORT``).  SIGTERM or Ctrl-C stops it
gracefully: the server registers a graceful stop with txgreen's hub, which runs it first when
the reactor begins to stop, before the green threads get ``ReactorStopped``; a second signal
exits at once (txgreen's own rule, see ``txgreen._interrupt``).  An application that cannot be
imported, or an endpoint that cannot be listened on, ends it with status 1 and one line saying
why.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import signal
import sys
import traceback
from collections.abc import Sequence
from typing import Any, cast

from txgreen.web._config import DEFAULT_LISTEN, ServeConfig
from txgreen.web._site import Limits

__all__ = ["serve_command", "serve_config"]

_REACTORS = ("default", "epoll", "poll", "select", "asyncio")
_PREFIX = "txgreen serve"
_SIGNALS: dict[int, str] = {signal.SIGINT: "Ctrl-C", signal.SIGTERM: "SIGTERM"}


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: give 1 or more")
    return value


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"{text!r}: give 0 or more seconds")
    return value


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m txgreen serve",
        description=(
            "Serve a WSGI application on Twisted's web server, each request in a green thread. "
            "SIGTERM or Ctrl-C stops it gracefully (no new connections, requests in flight "
            "finish within --graceful-timeout); a second one exits at once."
        ),
    )
    parser.add_argument(
        "app",
        metavar="APP",
        help="the application: module:name, module:factory() (called with no arguments) or "
        "module.name",
    )
    parser.add_argument(
        "--listen",
        "-l",
        action="append",
        metavar="ENDPOINT",
        help=f"a Twisted endpoint to listen on, repeatable (default: {DEFAULT_LISTEN}); e.g. "
        "tcp:8080, unix:/run/app.sock, ssl:8443:privateKey=key.pem:certKey=cert.pem",
    )
    parser.add_argument(
        "--patch",
        action="store_true",
        help="call txgreen.patch() before importing the application, so blocking libraries "
        "(socket, time.sleep, requests, ...) wait cooperatively",
    )
    log = parser.add_mutually_exclusive_group()
    log.add_argument(
        "--access-log",
        metavar="FILE",
        default="-",
        help="append one common-log-format line per request to FILE; - for stdout (default)",
    )
    log.add_argument("--no-access-log", action="store_true", help="no access log")
    parser.add_argument(
        "--max-concurrency",
        type=_positive_int,
        metavar="N",
        help="serve at most N requests at once (default: no limit)",
    )
    parser.add_argument(
        "--graceful-timeout",
        type=_seconds,
        default=ServeConfig.graceful_timeout,
        metavar="S",
        help="seconds requests in flight get to finish after SIGTERM/Ctrl-C before they are "
        "aborted (default: %(default)s)",
    )
    parser.add_argument(
        "--chdir",
        metavar="DIR",
        help="change to DIR and put it first on sys.path before importing the application",
    )
    parser.add_argument(
        "--workers",
        "-w",
        type=_positive_int,
        metavar="N",
        help="run a gunicorn master with N txgreen worker processes (needs txgreen[serve])",
    )
    parser.add_argument(
        "--reactor",
        choices=_REACTORS,
        default="default",
        help="the Twisted reactor to install (default: Twisted's default for the platform)",
    )
    return parser


def serve_config(argv: Sequence[str]) -> ServeConfig:
    """The :class:`ServeConfig` the command line ``argv`` (after ``serve``) asks for."""
    args = _parser().parse_args(list(argv))
    return ServeConfig(
        app=args.app,
        listen=list(args.listen) if args.listen else [DEFAULT_LISTEN],
        patch=args.patch,
        access_log=None if args.no_access_log else args.access_log,
        graceful_timeout=args.graceful_timeout,
        chdir=args.chdir,
        workers=args.workers,
        reactor=args.reactor,
        limits=dataclasses.replace(Limits(), max_concurrency=args.max_concurrency),
    )


def _say(text: str) -> None:
    print(f"{_PREFIX}: {text}", file=sys.stderr, flush=True)


def serve_command(argv: Sequence[str]) -> int:
    """``python -m txgreen serve ...``: the exit status."""
    config = serve_config(argv)
    try:
        if config.workers is not None:
            return _run_workers(config)
        return serve(config)
    except KeyboardInterrupt:  # Ctrl-C before the server was up
        _say("interrupted")
        return 130


def _run_workers(config: ServeConfig) -> int:
    try:
        gunicorn = importlib.import_module("txgreen.web.gunicorn")
    except ImportError as e:
        _say(
            f"--workers needs txgreen.web.gunicorn, which cannot be imported here ({e}); "
            "install gunicorn with pip install 'txgreen[serve]', or serve without --workers"
        )
        return 2
    try:
        status: int = gunicorn.run_master(config)
    except ValueError as e:  # an endpoint gunicorn cannot bind (UnsupportedEndpoint), ...
        _say(str(e))
        return 2
    return status


def _install_reactor(name: str) -> bool:
    if name == "default":
        return True
    if "twisted.internet.reactor" in sys.modules:
        _say(f"--reactor {name}: a reactor is already installed")
        return False
    from twisted.application.reactors import installReactor

    installReactor(name)
    return True


def _report_app_error(error: BaseException) -> None:
    from txgreen.errors import AppImportError

    if isinstance(error, AppImportError) and error.in_app_code and error.__cause__ is not None:
        cause = error.__cause__
        tb = cause.__traceback__
        # The application's frames only: drop txgreen's and importlib's on the way in.
        while tb is not None and _not_the_apps(tb.tb_frame.f_code.co_filename):
            tb = tb.tb_next
        traceback.print_exception(type(cause), cause, tb or cause.__traceback__, file=sys.stderr)
    _say(str(error))


def _not_the_apps(filename: str) -> bool:
    return (
        "importlib" in filename
        or filename.startswith("<frozen")
        or "/txgreen/web/" in filename.replace("\\", "/")
    )


def _log_warnings_to_stderr() -> None:
    """Twisted's log, warnings and errors only (an application's failures: the tracebacks of
    its 500 answers, what it writes to ``wsgi.errors``), to stderr; stdout stays the access
    log's."""
    from twisted.logger import (
        FilteringLogObserver,
        ILogFilterPredicate,
        ILogObserver,
        LogLevel,
        LogLevelFilterPredicate,
        globalLogBeginner,
        textFileLogObserver,
    )

    # (zope interfaces: mypy cannot see that these classes provide them)
    predicate = cast(ILogFilterPredicate, LogLevelFilterPredicate(defaultLogLevel=LogLevel.warn))
    to_stderr = cast(ILogObserver, textFileLogObserver(sys.stderr))
    observer = cast(ILogObserver, FilteringLogObserver(to_stderr, [predicate]))
    globalLogBeginner.beginLoggingTo([observer], redirectStandardIO=False)


def serve(config: ServeConfig) -> int:
    """Serve ``config`` in this process until SIGTERM/Ctrl-C; the exit status."""
    if not _install_reactor(config.reactor):
        return 2
    import txgreen
    from txgreen._hub import get_hub
    from txgreen.errors import AppImportError
    from txgreen.web._server import ListenError, WSGIServer

    if config.patch:
        txgreen.patch()
    _log_warnings_to_stderr()

    def main() -> int:
        try:
            application = txgreen.web.load_application(config.app, config.chdir)
        except AppImportError as e:
            _report_app_error(e)
            return 1
        server = WSGIServer(
            application,
            config.listen,
            limits=config.limits,
            access_log=config.access_log,
            graceful_timeout=config.graceful_timeout,
        )
        try:
            urls = server.start()
        except ListenError as e:
            _say(str(e))
            return 1
        except OSError as e:  # the access log file
            _say(f"cannot open the access log {config.access_log!r}: {e.strerror or e}")
            return 1
        for url in urls:
            _say(f"listening on {url}")

        hub = get_hub()

        def graceful() -> Any:
            # The reactor is stopping (SIGTERM, Ctrl-C): the hub runs this first, while the
            # requests in flight can still run, and wakes the green threads after it.
            signalled = hub.signals.signalled
            why = f"{_SIGNALS.get(signalled, 'a signal')}: " if signalled is not None else ""
            _say(
                f"{why}stopping; requests in flight get up to {config.graceful_timeout:g} s "
                "(Ctrl-C again exits at once)"
            )
            return txgreen.defer_to_green(server.stop)

        hub.add_graceful_stop(graceful)
        try:
            server.wait()
        finally:
            hub.remove_graceful_stop(graceful)
            server.close()
        _say("stopped")
        return 0

    import txgreen.web

    return txgreen.run(main)
