"""``txgreen.patch()``: make the stdlib's blocking modules cooperative, process-wide.

What patching does, in order:

1. Pristine copies of ``socket``, ``select``, ``selectors`` and ``time`` are made
   (:mod:`txgreen.green._originals`) before anything changes.
2. For each module asked for, the names in its green module's ``__patched__`` list are set on
   the stdlib module (``socket.socket = txgreen.green.socket.socket``, ...).  Every library that
   looks them up at call time (``socket.socket(...)``, ``time.sleep(...)``) is cooperative from
   then on.  ``ssl`` also gets ``ssl.SSLContext.sslsocket_class`` set, so contexts created
   before patching make green SSL sockets too.
3. **Twisted keeps the originals.**  Every loaded module of Twisted, of asyncio (the asyncio
   reactor's loop) and of txgreen's core has its references to a patched stdlib module pointed at
   the pristine copy, and any green object it imported by name pointed back at the original.  A
   meta-path hook does the same for those modules when they are imported later.
4. Stdlib modules already imported that bound a patched name at import time (``ssl``'s
   ``create_connection``, ``socketserver``'s ``_ServerSelector``, ...) get the green object: the
   stdlib is what patching means to change.  Other modules that did so (``from time import sleep``
   in a library imported before ``patch()``) keep the blocking original, and ``patch()`` warns
   about them with :class:`~txgreen.errors.PatchWarning`: import them after ``patch()``.

The green objects are thread-aware: called from a green thread they park it on the reactor;
called from any other OS thread, or from the hub itself, they block like the originals.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.abc
import importlib.machinery
import sys
import threading
import types
import warnings
from collections.abc import Sequence
from typing import Any

from txgreen.errors import PatchWarning
from txgreen.green import _originals

__all__ = ["patch", "patched", "unpatch"]

# The flags patch() takes, in order; each names the stdlib module it changes and the green
# module's list of names ("__patched__" unless said).
_TARGETS: dict[str, tuple[str, str]] = {
    "socket": ("socket", "__patched__"),
    "dns": ("socket", "__patched_dns__"),
    "ssl": ("ssl", "__patched__"),
    "select": ("select", "__patched__"),
    "selectors": ("selectors", "__patched__"),
    "time": ("time", "__patched__"),
    "subprocess": ("subprocess", "__patched__"),
    "threading": ("threading", "__patched__"),
    "queue": ("queue", "__patched__"),
}
# Parts whose stdlib originals, when a module keeping originals imported them by name before
# patching (Twisted's thread pool: ``from queue import Queue``, ``from threading import
# current_thread``), are swapped for the pristine copy's: the originals look the patched names
# up at call time (``queue.Queue()`` builds ``threading.Lock()``), the copy's do not.
_SWAP_KEPT_ORIGINALS = frozenset({"threading", "queue"})

# Modules that must keep the blocking originals: the reactor's and the event loop's.
_KEEP_ORIGINALS = ("twisted", "asyncio", "txgreen")
# ... except txgreen's green modules, which hold green objects on purpose.
_GREEN_PACKAGE = "txgreen.green"

_lock = threading.RLock()
# flag -> [(stdlib module, attribute, original value)]
_applied: dict[str, list[tuple[types.ModuleType, str, Any]]] = {}
# (module dict, key, original, green) rebound in already-imported stdlib modules
_rebound: list[tuple[dict[str, Any], str, Any, Any]] = []
# id(object) -> (object, what a module keeping originals gets instead)
_to_original: dict[int, tuple[Any, Any]] = {}
_finder: _KeepOriginalsFinder | None = None


def _keeps_originals(name: str) -> bool:
    if name == _GREEN_PACKAGE or name.startswith(_GREEN_PACKAGE + "."):
        return False
    return any(name == p or name.startswith(p + ".") for p in _KEEP_ORIGINALS)


def _point_at_originals(module: types.ModuleType) -> None:
    """Point ``module``'s references to patched modules and green objects at the originals.

    txgreen's own modules only get their module references re-pointed: a green object one of
    them imported by name is there on purpose.
    """
    namespace = getattr(module, "__dict__", None)
    if not isinstance(namespace, dict):
        return
    modules_only = module.__name__ == "txgreen" or module.__name__.startswith("txgreen.")
    for key, value in list(namespace.items()):
        entry = _to_original.get(id(value))
        if entry is None or entry[0] is not value:
            continue
        if modules_only and not isinstance(value, types.ModuleType):
            continue
        namespace[key] = entry[1]


class _KeepOriginalsLoader(importlib.abc.Loader):
    """Runs a module of Twisted/asyncio/txgreen imported after ``patch()``, then re-points it."""

    def __init__(self, loader: Any) -> None:
        self.loader = loader

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType | None:
        created: types.ModuleType | None = self.loader.create_module(spec)
        return created

    def exec_module(self, module: types.ModuleType) -> None:
        # The module's own loader from now on (resources, reload, introspection).
        module.__loader__ = self.loader
        if module.__spec__ is not None:
            module.__spec__.loader = self.loader
        self.loader.exec_module(module)
        with _lock:
            if _applied:
                _point_at_originals(module)


class _KeepOriginalsFinder(importlib.abc.MetaPathFinder):
    """Wraps the loader of Twisted/asyncio/txgreen-core modules imported while patched."""

    def find_spec(
        self,
        fullname: str,
        path: Sequence[str] | None,
        target: types.ModuleType | None = None,
    ) -> importlib.machinery.ModuleSpec | None:
        if not _keeps_originals(fullname):
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                break
        else:
            return None
        loader = spec.loader
        if loader is not None and hasattr(loader, "exec_module"):
            spec.loader = _KeepOriginalsLoader(loader)
        return spec


def _green_module(name: str) -> types.ModuleType:
    return importlib.import_module(f"{_GREEN_PACKAGE}.{name}")


def _patch_ssl_contexts(green_ssl: types.ModuleType) -> list[tuple[Any, str, Any]]:
    import ssl

    old = ssl.SSLContext.sslsocket_class
    ssl.SSLContext.sslsocket_class = green_ssl.SSLSocket
    return [(ssl.SSLContext, "sslsocket_class", old)]


def _apply(flag: str) -> None:
    std_name, list_name = _TARGETS[flag]
    std = importlib.import_module(std_name)
    green = _green_module(std_name)
    names: list[str] = list(getattr(green, list_name))
    record: list[tuple[Any, str, Any]] = []
    copy = _originals.original(std_name) if std_name in _originals.COPIED else None
    for name in names:
        old = getattr(std, name)
        new = getattr(green, name)
        record.append((std, name, old))
        setattr(std, name, new)
        kept = getattr(copy, name) if copy is not None else old
        _to_original[id(new)] = (new, kept)
        if flag in _SWAP_KEPT_ORIGINALS and kept is not old:
            _to_original[id(old)] = (old, kept)
    if flag == "ssl":
        record.extend(_patch_ssl_contexts(green))
    _applied[flag] = record


def _originals_replaced() -> dict[int, tuple[Any, Any, str]]:
    """id(original) -> (original, green, "module.name") for every patched name."""
    out: dict[int, tuple[Any, Any, str]] = {}
    for record in _applied.values():
        for owner, name, old in record:
            if isinstance(owner, types.ModuleType):
                out[id(old)] = (old, getattr(owner, name), f"{owner.__name__}.{name}")
    return out


def _is_stdlib(name: str) -> bool:
    return name.partition(".")[0] in sys.stdlib_module_names


def _rebind_and_find_holders() -> list[str]:
    """Give already-imported stdlib modules the green objects; list other modules' holdings."""
    replaced = _originals_replaced()
    patched_modules = {_TARGETS[f][0] for f in _applied}
    holders: list[str] = []
    for mod_name, module in list(sys.modules.items()):
        namespace = getattr(module, "__dict__", None)
        if (
            not isinstance(namespace, dict)
            or mod_name in patched_modules
            or _keeps_originals(mod_name)
            or mod_name == _GREEN_PACKAGE
            or mod_name.startswith(_GREEN_PACKAGE + ".")
        ):
            continue
        stdlib = _is_stdlib(mod_name)
        for key, value in list(namespace.items()):
            entry = replaced.get(id(value))
            if entry is None or entry[0] is not value:
                continue
            if getattr(value, "__module__", None) == mod_name:
                continue  # the object's own home (``_socket.socket``), not an imported name
            if stdlib:
                namespace[key] = entry[1]
                _rebound.append((namespace, key, value, entry[1]))
            elif not key.startswith("__"):
                holders.append(f"{mod_name}.{key} ({entry[2]})")
    return holders


def patch(
    *,
    socket: bool = True,
    dns: bool = True,
    ssl: bool = True,
    select: bool = True,
    selectors: bool = True,
    time: bool = True,
    subprocess: bool = True,
    threading: bool = True,
    queue: bool = True,
) -> None:
    """Make the stdlib's blocking modules cooperative for green threads, process-wide.

    Each flag patches one part: ``socket`` (the socket class and the functions that make
    sockets), ``dns`` (``getaddrinfo`` and the other name-service functions, run in a resolver
    thread pool of their own), ``ssl`` (``SSLSocket``, and contexts made before patching),
    ``select`` (``select``, ``poll``, ``epoll``), ``selectors`` (the selector classes),
    ``time`` (``sleep`` only), ``subprocess`` (``Popen``, ``run``, ``call``, ``check_call``,
    ``check_output``, ``getoutput``, ``getstatusoutput``: pipes and waits park only the green
    thread), ``threading`` (thread-aware locks, conditions, semaphores, events
    and barriers; ``Thread`` and ``Timer`` run as green threads; ``local``, ``current_thread``
    and ``get_ident`` per green thread) and ``queue`` (thread-aware ``Queue``, ``LifoQueue``,
    ``PriorityQueue`` and ``SimpleQueue``).  ``False`` leaves that part as it is (it does not
    undo an earlier patch; :func:`unpatch` does).  Calling it again is harmless: parts already
    patched are kept.

    Call it first thing, before importing the libraries to make cooperative: a module that ran
    ``from socket import socket`` or ``from time import sleep`` before patching keeps the
    blocking original, and ``patch()`` warns about each such module with
    :class:`~txgreen.errors.PatchWarning`.  Twisted and asyncio keep the originals (the reactor
    is what green threads wait on); the patched functions are thread-aware, so OS threads
    (``call_in_thread`` jobs, Twisted's thread pool) and reactor callbacks get the blocking
    behaviour they expect; Twisted's thread pool keeps real OS threads and real locks.
    ``python -m txgreen run script.py`` patches, then runs a program.
    """
    wanted = {
        "socket": socket,
        "dns": dns,
        "ssl": ssl,
        "select": select,
        "selectors": selectors,
        "time": time,
        "subprocess": subprocess,
        "threading": threading,
        "queue": queue,
    }
    with _lock:
        todo = [flag for flag, on in wanted.items() if on and flag not in _applied]
        if not todo:
            return
        for flag in todo:  # import everything first: a failure changes nothing
            _green_module(_TARGETS[flag][0])
        _originals.prepare()
        for name in _originals.COPIED:
            real = sys.modules[name]
            _to_original[id(real)] = (real, _originals.original(name))
        for flag in todo:
            _apply(flag)
        for name, module in list(sys.modules.items()):
            if _keeps_originals(name):
                _point_at_originals(module)
        global _finder
        if _finder is None:
            _finder = _KeepOriginalsFinder()
            sys.meta_path.insert(0, _finder)
        holders = _rebind_and_find_holders()
    if holders:
        shown = ", ".join(holders[:8])
        more = f" and {len(holders) - 8} more" if len(holders) > 8 else ""
        warnings.warn(
            f"txgreen.patch(): modules imported before patching keep blocking originals: "
            f"{shown}{more}. Their calls through those names block every green thread; "
            "call txgreen.patch() before importing them (or run the program with "
            "`python -m txgreen run`).",
            PatchWarning,
            stacklevel=2,
        )


def unpatch() -> None:
    """Undo :func:`patch`: the stdlib modules get their original objects back (for tests).

    Twisted's and asyncio's modules stay pointed at the pristine copies, which behave exactly
    as the originals.
    """
    global _finder
    with _lock:
        for namespace, key, old, green in reversed(_rebound):
            if namespace.get(key) is green:
                namespace[key] = old
        _rebound.clear()
        for record in reversed(list(_applied.values())):
            for owner, name, old in reversed(record):
                setattr(owner, name, old)
        _applied.clear()
        _to_original.clear()
        if _finder is not None:
            with contextlib.suppress(ValueError):
                sys.meta_path.remove(_finder)
            _finder = None


def patched() -> frozenset[str]:
    """The parts :func:`patch` has patched (``{"socket", "dns", ...}``); empty if none."""
    with _lock:
        return frozenset(_applied)
