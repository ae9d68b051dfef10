"""Pristine copies of the stdlib modules that ``txgreen.patch()`` changes, for Twisted to keep.

``patch()`` replaces attributes of the stdlib's ``socket``, ``select``, ``selectors``,
``time``, ``threading`` and ``queue`` modules in place, so every library that looks them up at
call time becomes cooperative.  Twisted's reactor, its thread pool, its resolver and asyncio's
event loop (under the asyncio reactor) look the same attributes up at run time, and they must
keep the blocking originals: the reactor *is* what green threads wait on.

A copy of a C module (``select``, ``time``) is a new module object holding the original
objects, which do not depend on their module.  A copy of a Python module (``socket``,
``selectors``) is the stdlib's source executed again into a new module object, with its own
imports pointed at the other copies, so its functions and classes look their globals up in the
copy: an accepting socket of the copy makes copy sockets, not green ones, even after patching
(this is how eventlet's ``patcher.original`` works too).  The copies are made before anything
is patched, and kept for the life of the process.

``threading`` is copied as a snapshot of its namespace (its global state, the table of running
threads and the shutdown machinery, must stay one), in which ``get_ident`` and
``current_thread`` answer for the OS thread even inside a green thread: Twisted's
``isInIOThread`` and asyncio's main-thread checks ask them.  ``queue`` is executed again
against that snapshot, so the copy's queues (the ones Twisted's thread pool builds for its
workers) use real locks and conditions after ``threading`` is patched.

``ssl`` gets no copy: Twisted's TLS is pyOpenSSL's and asyncio's uses memory BIOs, neither of
which uses the socket classes that ``patch()`` changes.
"""

from __future__ import annotations

import _thread
import importlib
import importlib.util
import sys
import types
from typing import Any

__all__ = ["COPIED", "original", "prepare"]

# Copied in dependency order: a later module's copy imports the earlier ones' copies.
COPIED = ("time", "select", "socket", "selectors", "threading", "queue")
_C_MODULES = frozenset({"time", "select"})
_SNAPSHOTS = frozenset({"threading"})

_copies: dict[str, types.ModuleType] = {}


def _copy_c_module(real: types.ModuleType) -> types.ModuleType:
    copy = types.ModuleType(real.__name__, real.__doc__)
    copy.__dict__.update(real.__dict__)
    return copy


def _copy_threading(real: types.ModuleType) -> types.ModuleType:
    copy = _copy_c_module(real)
    active: dict[int, Any] = real._active
    dummy: Any = real._DummyThread

    def current_thread() -> Any:
        """The OS thread's ``Thread`` object (never a green thread's)."""
        try:
            return active[_thread.get_ident()]
        except KeyError:
            return dummy()

    copy.current_thread = current_thread  # type: ignore[attr-defined]
    copy.currentThread = current_thread  # type: ignore[attr-defined]
    copy.get_ident = _thread.get_ident  # type: ignore[attr-defined]
    return copy


def _copy_python_module(real: types.ModuleType) -> types.ModuleType:
    name = real.__name__
    origin = getattr(real, "__file__", None)
    if origin is None:  # pragma: no cover - a frozen or odd stdlib build
        raise ImportError(f"txgreen cannot copy the stdlib module {name!r}: it has no source")
    spec = importlib.util.spec_from_file_location(name, origin)
    if spec is None or spec.loader is None:  # pragma: no cover - defensive
        raise ImportError(f"txgreen cannot copy the stdlib module {name!r} from {origin}")
    copy = importlib.util.module_from_spec(spec)
    # While the source runs, ``import socket`` (and enum's _convert_, which looks the module up
    # in sys.modules) must find the copies; the real modules come back right after.
    names = [name, *(n for n in COPIED if n in _copies)]
    saved = {n: sys.modules.get(n) for n in names}
    try:
        for n in names:
            sys.modules[n] = copy if n == name else _copies[n]
        spec.loader.exec_module(copy)
    finally:
        for n, module in saved.items():
            if module is None:
                sys.modules.pop(n, None)
            else:
                sys.modules[n] = module
    return copy


def prepare() -> None:
    """Make every copy now (``patch()`` calls it before changing anything)."""
    for name in COPIED:
        if name not in _copies:
            real = importlib.import_module(name)
            if name in _SNAPSHOTS:
                _copies[name] = _copy_threading(real)
            elif name in _C_MODULES:
                _copies[name] = _copy_c_module(real)
            else:
                _copies[name] = _copy_python_module(real)


def original(name: str) -> types.ModuleType:
    """The pristine copy of the stdlib module ``name`` (one of :data:`COPIED`).

    Its attributes are the blocking originals whatever ``patch()`` did; use it where code must
    block in the OS, or to compare a patched behaviour with the stdlib's.
    """
    if name not in COPIED:
        raise ValueError(f"txgreen keeps no original copy of {name!r}; it copies {COPIED}")
    prepare()
    return _copies[name]
