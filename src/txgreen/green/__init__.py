"""Green versions of standard library modules, and the ``@txgreen.green`` decorator.

The package holds one module per stdlib module it mirrors: :mod:`txgreen.green.socket` (with the
name service in a thread pool of its own), :mod:`txgreen.green.ssl`, :mod:`txgreen.green.select`,
:mod:`txgreen.green.selectors` and :mod:`txgreen.green.time`, over one fd registry
(``_fdwait``).  ``txgreen.patch()`` (``_patch``) installs them in the stdlib's modules, keeping
Twisted on pristine copies (``_originals``); see docs/green.md.

Calling the package itself is calling the decorator (``txgreen.green`` named it first):
``@txgreen.green`` on a sync-style function makes each call run it in a new green thread and
return a Deferred of its result (see :func:`txgreen._greenthread.green`).
"""

import sys
import types
from collections.abc import Callable
from typing import Any

from txgreen._greenthread import green as _green_decorator


class _CallableModule(types.ModuleType):
    """This package is also the ``@txgreen.green`` decorator: calling it calls the decorator.

    ``txgreen.green`` named the decorator before the green standard library existed; a
    package of the same name would replace it as soon as one of its modules was imported.
    Making the package callable keeps both working: ``@txgreen.green`` and
    ``import txgreen.green.socket``.
    """

    def __call__(self, fn: Callable[..., Any]) -> Any:
        return _green_decorator(fn)


sys.modules[__name__].__class__ = _CallableModule
