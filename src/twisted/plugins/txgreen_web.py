"""The ``txgreen-web`` plugin of ``twist`` and ``twistd``: serve a WSGI application green.

``twist txgreen-web --wsgi module.app --listen tcp:8080`` (see ``twist txgreen-web --help``).
This module is found by Twisted's plugin system (``twisted/plugins`` holds no ``__init__.py``:
it is a namespace every installed distribution adds to); it stays small and imports txgreen
only when the plugin is used, so that listing plugins stays cheap.
"""

from __future__ import annotations

from typing import Any

from twisted.application.service import IServiceMaker
from twisted.plugin import IPlugin
from zope.interface import implementer  # type: ignore[import-untyped]


@implementer(IServiceMaker, IPlugin)
class _TxgreenWeb:
    tapname = "txgreen-web"
    description = "Serve a WSGI application, each request in a txgreen green thread."

    def options(self) -> Any:
        from txgreen.web._service import WebOptions

        return WebOptions()

    def makeService(self, options: Any) -> Any:
        return options.service()


serviceMaker = _TxgreenWeb()
