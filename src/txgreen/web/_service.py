"""``WSGIService``: the WSGI server as a ``twisted.application`` service (``.tac`` files), and
the options of the ``twist txgreen-web`` plugin (``src/twisted/plugins/txgreen_web.py``).

Under ``twist`` and ``twistd`` the reactor runs the classic way (``reactor.run()`` in the main
greenlet); txgreen's hub attaches to it the first time it is used from a reactor callback.  So
the service starts its server from ``callWhenRunning``, in a green thread.  Its stop drains
gracefully: the service registers a graceful stop with the hub (``Hub.add_graceful_stop``, as
``txgreen.GreenService`` does), which the hub runs first when the reactor begins to stop
(SIGTERM, Ctrl-C, any ``reactor.stop()``), while the requests in flight can still run, before
the green threads get ``ReactorStopped``.  A second signal exits at once.  ``stopService``
drains too when it is called while the reactor runs (a service removed from its parent).
"""

from __future__ import annotations

import sys
import traceback
from collections.abc import Callable, Iterable
from typing import IO, Any

from twisted.application import service
from twisted.internet.defer import Deferred, fail, succeed
from twisted.logger import Logger
from twisted.python import usage

from txgreen._hub import STOPPED, get_hub
from txgreen.errors import AppImportError
from txgreen.web._app import load_application
from txgreen.web._config import DEFAULT_LISTEN
from txgreen.web._server import Endpoint, ListenError, WSGIServer
from txgreen.web._site import Limits

__all__ = ["WSGIService", "WebOptions"]

log = Logger(namespace="txgreen.web")


class WSGIService(service.Service):
    """A ``twisted.application`` service that serves a WSGI application with a WSGIServer.

    ``app`` is the application, or a spec such as ``"module:app"`` imported when the service
    starts (with ``chdir`` as ``load_application`` takes it).  ``listen``, ``limits``,
    ``access_log`` and ``graceful_timeout`` are :class:`WSGIServer`'s.  ``server`` is the
    running :class:`WSGIServer` (None before the start).  If the application cannot be
    imported, an endpoint cannot be listened on or the access log cannot be opened, the error
    is logged and the reactor stopped.
    """

    def __init__(
        self,
        app: Callable[..., Any] | str,
        listen: Iterable[Endpoint] = (DEFAULT_LISTEN,),
        *,
        limits: Limits | None = None,
        access_log: str | IO[str] | None = "-",
        graceful_timeout: float = 30.0,
        chdir: str | None = None,
    ) -> None:
        self.app = app
        self.listen = list(listen)
        self.limits = limits
        self.access_log = access_log
        self.graceful_timeout = graceful_timeout
        self.chdir = chdir
        self.server: WSGIServer | None = None
        self._outcome: list[str] | Exception | None = None
        self._waiting: list[Deferred[list[str]]] = []

    def when_started(self) -> Deferred[list[str]]:
        """A Deferred that fires with the URLs once the server listens, or fails with why not."""
        outcome = self._outcome
        if isinstance(outcome, Exception):
            return fail(outcome)
        if outcome is not None:
            return succeed(outcome)
        d: Deferred[list[str]] = Deferred()
        self._waiting.append(d)
        return d

    def _settle(self, outcome: list[str] | Exception) -> None:
        self._outcome = outcome
        waiting, self._waiting = self._waiting, []
        for d in waiting:
            if isinstance(outcome, Exception):
                d.errback(outcome)
            else:
                d.callback(outcome)

    def startService(self) -> None:
        """Start the server in a green thread once the reactor runs."""
        super().startService()  # type: ignore[no-untyped-call]
        # The hub now, so that its shutdown trigger comes before the one twistd and twist add
        # for stopService: the graceful stop then runs before anything is stopped.
        reactor = get_hub().reactor
        reactor.callWhenRunning(self._spawn)

    def _spawn(self) -> None:
        from txgreen._greenthread import spawn

        spawn(self._serve)

    def _serve(self) -> None:
        if not self.running:
            return  # stopped before the reactor ran
        try:
            app = self.app
            if isinstance(app, str):
                app = load_application(app, self.chdir)
            server = WSGIServer(
                app,
                self.listen,
                limits=self.limits,
                access_log=self.access_log,
                graceful_timeout=self.graceful_timeout,
            )
            self.server = server
            urls = server.start()
        except (AppImportError, ListenError, OSError) as e:  # OSError: the access log file
            self._fail(e)
            return
        for url in urls:
            log.info("txgreen web: listening on {url}", url=url)
        get_hub().add_graceful_stop(self._graceful_stop)
        self._settle(urls)

    def _graceful_stop(self) -> Deferred[None]:
        # Run by the hub first when the reactor shuts down (see the module's docstring).
        from txgreen._greenthread import defer_to_green

        assert self.server is not None  # registered once the server started
        d: Deferred[None] = defer_to_green(self.server.stop)
        return d

    def _fail(self, error: Exception) -> None:
        log.critical("txgreen web: {error}", error=error)
        if isinstance(error, AppImportError) and error.in_app_code and error.__cause__:
            cause = error.__cause__
            log.critical(
                "{traceback}",
                traceback="".join(
                    traceback.format_exception(type(cause), cause, cause.__traceback__)
                ),
            )
        self._settle(error)
        get_hub().stop_reactor()

    def stopService(self) -> Deferred[None]:
        """Drain gracefully (while the reactor runs); a Deferred that fires once stopped."""
        super().stopService()  # type: ignore[no-untyped-call]
        get_hub().remove_graceful_stop(self._graceful_stop)
        server = self.server
        if server is None or server.stopped:
            return succeed(None)
        if get_hub().state == STOPPED:
            server.stop()  # the reactor is shutting down: only aborts, without waiting
            return succeed(None)
        from txgreen._greenthread import defer_to_green

        d: Deferred[None] = defer_to_green(server.stop)
        return d


class WebOptions(usage.Options):
    """The options of ``twist txgreen-web`` (and ``twistd txgreen-web``)."""

    synopsis = "--wsgi module.app [--listen ENDPOINT ...] [options]"
    longdesc = (
        "Serve a WSGI application on Twisted's web server, each request in a txgreen green "
        "thread. SIGTERM or Ctrl-C drains gracefully; a second one exits at once."
    )
    optParameters = [  # noqa: RUF012 (twisted.python.usage reads these class attributes)
        ["wsgi", None, None, "the application: module:name, module:factory() or module.name"],
        ["access-log", None, "-", "append the common log format to FILE; - for stdout"],
        ["max-concurrency", None, None, "serve at most N requests at once", int],
        ["graceful-timeout", None, 30.0, "seconds requests in flight get to finish", float],
        ["chdir", None, None, "change to DIR (first on sys.path) before importing the app"],
    ]
    optFlags = [  # noqa: RUF012
        ["patch", None, "call txgreen.patch() before importing the application"],
        ["no-access-log", None, "no access log"],
    ]

    def __init__(self) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self["listen"] = []

    def opt_listen(self, endpoint: str) -> None:
        """A Twisted endpoint to listen on, repeatable (default tcp:8000:interface=127.0.0.1)."""
        self["listen"].append(endpoint)

    opt_l = opt_listen

    def postOptions(self) -> None:
        """Check the options; patch if asked; import the application (errors as usage errors)."""
        if not self["wsgi"]:
            raise usage.UsageError("name the application with --wsgi module.app")
        if self["max-concurrency"] is not None and self["max-concurrency"] < 1:
            raise usage.UsageError("--max-concurrency: give 1 or more")
        if self["graceful-timeout"] < 0:
            raise usage.UsageError("--graceful-timeout: give 0 or more seconds")
        if self["patch"]:
            import txgreen

            txgreen.patch()
        try:
            self["application"] = load_application(self["wsgi"], self["chdir"])
        except AppImportError as e:
            if e.in_app_code and e.__cause__ is not None:
                cause = e.__cause__
                traceback.print_exception(type(cause), cause, cause.__traceback__, file=sys.stderr)
            raise usage.UsageError(str(e)) from None

    def service(self) -> WSGIService:
        """The :class:`WSGIService` these options describe."""
        import dataclasses

        limits = dataclasses.replace(Limits(), max_concurrency=self["max-concurrency"])
        return WSGIService(
            self["application"],
            self["listen"] or [DEFAULT_LISTEN],
            limits=limits,
            access_log=None if self["no-access-log"] else self["access-log"],
            graceful_timeout=self["graceful-timeout"],
        )
