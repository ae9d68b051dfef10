"""txgreen's web serving: a green WSGI container for twisted.web and the servers around it.

- :class:`WSGIResource` (``_container.py``): a twisted.web resource that runs each WSGI
  request in a green thread.
- :class:`WSGIServer` and :func:`serve_wsgi` (``_server.py``): serve an application on
  several endpoints, with an access log and a graceful stop.
- :func:`load_application` (``_app.py``): the application a spec such as ``module:app`` names.
- :class:`WSGIService` (``_service.py``): the server as a ``twisted.application`` service,
  for ``.tac`` files and the ``twist txgreen-web`` plugin.
- :class:`GreenSite` and :class:`Limits` (``_site.py``): the ``Site`` every txgreen server
  uses, with the bounds that protect it from hostile clients.

``txgreen.WSGIResource`` and ``txgreen.serve_wsgi`` are the same objects.
"""

from __future__ import annotations

from txgreen.web._app import load_application
from txgreen.web._config import ServeConfig
from txgreen.web._container import WSGIResource
from txgreen.web._server import AccessLog, ListenError, WSGIServer, common_log_line, serve_wsgi
from txgreen.web._service import WSGIService
from txgreen.web._site import GreenSite, Limits

__all__ = [
    "AccessLog",
    "GreenSite",
    "Limits",
    "ListenError",
    "ServeConfig",
    "WSGIResource",
    "WSGIServer",
    "WSGIService",
    "common_log_line",
    "load_application",
    "serve_wsgi",
]
