"""``load_application``: find the WSGI application a spec such as ``module:app`` names.

The same spec forms as gunicorn's, so a command line moves between the two unchanged:

- ``module:name`` -- an attribute of the module, dotted attributes allowed (``pkg.mod:obj.app``);
- ``module:factory()`` -- call ``factory`` with no arguments and serve what it returns;
- ``module.name`` -- no colon: the longest importable prefix is the module, the rest attributes
  (the form of twisted.web's ``--wsgi``).

Every way this can go wrong raises :class:`txgreen.errors.AppImportError` with a message that
says what went wrong and how to fix it.  When the application's own code raised (importing the
module, calling the factory), that exception is chained as the cause, so its traceback stays
visible.
"""

from __future__ import annotations

import importlib
import os
import re
import sys
from collections.abc import Callable
from typing import Any

from txgreen.errors import AppImportError

__all__ = ["load_application", "use_directory"]

_IDENTIFIER = r"[A-Za-z_][A-Za-z0-9_]*"
_MODULE = re.compile(rf"{_IDENTIFIER}(?:\.{_IDENTIFIER})*")
_OBJECT = re.compile(rf"({_IDENTIFIER}(?:\.{_IDENTIFIER})*)(\(\s*\))?")
_FORMS = "module:name, module:factory() or module.name"


def use_directory(directory: str) -> str:
    """Change to ``directory`` and put it first on ``sys.path`` (gunicorn's ``--chdir``).

    Returns the absolute path; raises :class:`AppImportError` if it is not a directory.
    """
    path = os.path.abspath(directory)
    try:
        os.chdir(path)
    except OSError as e:
        raise AppImportError(
            f"cannot change to the directory {directory!r} (--chdir): {e.strerror or e}; "
            "give a directory that exists"
        ) from None
    if not sys.path or sys.path[0] != path:
        sys.path.insert(0, path)
    return path


def load_application(spec: str, chdir: str | None = None) -> Callable[..., Any]:
    """Import and return the WSGI application ``spec`` names.

    ``spec`` is ``module:name`` (dotted attributes allowed), ``module:factory()`` (called with
    no arguments; its result is served) or ``module.name``.  With ``chdir``, change to that
    directory first and put it first on ``sys.path`` (as gunicorn's ``--chdir``); without it,
    the current directory is put on ``sys.path`` if it is not there, so that an application
    next to where the server is started is found.

    Raises :class:`txgreen.errors.AppImportError` when the spec is malformed, the module
    cannot be found, importing it raises (chained as the cause), the attribute is missing,
    the factory raises (chained), or the object is not callable.
    """
    if not isinstance(spec, str):
        raise AppImportError(
            f"the application must be named by a string such as 'module:app', not "
            f"{type(spec).__name__!r}",
            spec=repr(spec),
        )
    if chdir is not None:
        use_directory(chdir)
    else:
        cwd = os.getcwd()
        if cwd not in sys.path and "" not in sys.path:
            sys.path.insert(0, cwd)
    text = spec.strip()
    if ":" in text:
        module_name, _, expression = text.partition(":")
        if not _MODULE.fullmatch(module_name):
            raise AppImportError(
                f"{spec!r}: {module_name!r} is not a module name; use {_FORMS} "
                "(for example 'myproject.wsgi:application')",
                spec=spec,
            )
        module = _import(module_name, spec)
        match = _OBJECT.fullmatch(expression.strip())
        if match is None:
            raise AppImportError(
                f"{spec!r}: {expression!r} is not an attribute name or a call without "
                f"arguments; use {_FORMS} (factory arguments are not supported: write a "
                "factory that takes none)",
                spec=spec,
            )
        attributes = match[1].split(".")
        call = match[2] is not None
    else:
        if not _MODULE.fullmatch(text) or "." not in text:
            raise AppImportError(
                f"{spec!r} does not name an application; use {_FORMS} "
                "(for example 'hello:app' for the object app in hello.py)",
                spec=spec,
            )
        module, attributes = _import_longest_prefix(text, spec)
        call = False
    obj = _resolve(module, attributes, spec)
    if call:
        if not callable(obj):
            raise AppImportError(
                f"{spec!r}: {module.__name__}:{'.'.join(attributes)} is a "
                f"{type(obj).__name__}, which cannot be called as a factory; drop the '()' "
                "if it is the application itself",
                spec=spec,
            )
        try:
            obj = obj()
        except Exception as e:
            raise AppImportError(
                f"{spec!r}: calling the factory {'.'.join(attributes)}() raised "
                f"{type(e).__name__}: {e} (see its traceback above)",
                spec=spec,
                in_app_code=True,
            ) from e
    if not callable(obj):
        what = "the factory returned" if call else f"{'.'.join(attributes)} is"
        raise AppImportError(
            f"{spec!r}: {what} a {type(obj).__name__} ({_short_repr(obj)}), not a WSGI "
            "application (a callable app(environ, start_response))",
            spec=spec,
        )
    return obj  # type: ignore[no-any-return]


def _short_repr(obj: object) -> str:
    text = repr(obj)
    return text if len(text) <= 60 else text[:57] + "..."


def _is_missing(error: ModuleNotFoundError, module_name: str) -> bool:
    """Is ``error`` about ``module_name`` (or a package above it) itself being absent?"""
    missing = error.name or ""
    return missing == module_name or module_name.startswith(missing + ".")


def _import(module_name: str, spec: str) -> Any:
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        if _is_missing(e, module_name):
            raise AppImportError(
                f"{spec!r}: no module named {e.name!r} (looked in the current directory "
                f"{os.getcwd()} and sys.path); start the server in the directory that holds "
                "it, or name that directory with --chdir DIR",
                spec=spec,
            ) from None
        raise _failed(module_name, spec, e) from e
    except Exception as e:
        raise _failed(module_name, spec, e) from e


def _failed(module_name: str, spec: str, error: BaseException) -> AppImportError:
    return AppImportError(
        f"{spec!r}: importing the module {module_name!r} raised {type(error).__name__}: "
        f"{error} (see its traceback above)",
        spec=spec,
        in_app_code=True,
    )


def _import_longest_prefix(text: str, spec: str) -> tuple[Any, list[str]]:
    """``a.b.c``: import ``a.b`` if it is a module (attribute ``c``), else ``a`` (``b.c``)."""
    parts = text.split(".")
    for cut in range(len(parts) - 1, 0, -1):
        module_name = ".".join(parts[:cut])
        try:
            return importlib.import_module(module_name), parts[cut:]
        except ModuleNotFoundError as e:
            if _is_missing(e, module_name):
                continue
            raise _failed(module_name, spec, e) from e
        except Exception as e:
            raise _failed(module_name, spec, e) from e
    raise AppImportError(
        f"{spec!r}: no module named {parts[0]!r} (looked in the current directory "
        f"{os.getcwd()} and sys.path); start the server in the directory that holds it, or "
        "name that directory with --chdir DIR",
        spec=spec,
    )


def _resolve(module: Any, attributes: list[str], spec: str) -> Any:
    obj = module
    where = module.__name__
    for name in attributes:
        try:
            obj = getattr(obj, name)
        except AttributeError:
            names = sorted(n for n in dir(obj) if not n.startswith("_"))
            hint = f" (it has: {', '.join(names[:12])}{', ...' if len(names) > 12 else ''})"
            raise AppImportError(
                f"{spec!r}: {where} has no attribute {name!r}{hint if names else ''}; "
                "name the object that holds the WSGI application",
                spec=spec,
            ) from None
        where = f"{where}.{name}" if where != module.__name__ else f"{where}:{name}"
    return obj
