"""txgreen's web serving: a green WSGI container for twisted.web and the servers around it.

- :class:`WSGIResource` (``_container.py``): a twisted.web resource that runs each WSGI
  request in a green thread.
- :func:`serve_wsgi` (``_server.py``): serve an application from a green thread.
- :class:`GreenSite` and :class:`Limits` (``_site.py``): the ``Site`` every txgreen server
  uses, with the bounds that protect it from hostile clients.

``txgreen.WSGIResource`` and ``txgreen.serve_wsgi`` are the same objects.
"""

from __future__ import annotations

from txgreen.web._config import ServeConfig
from txgreen.web._container import WSGIResource
from txgreen.web._server import serve_wsgi
from txgreen.web._site import GreenSite, Limits

__all__ = ["GreenSite", "Limits", "ServeConfig", "WSGIResource", "serve_wsgi"]
