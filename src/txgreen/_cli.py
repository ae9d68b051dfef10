"""The command line, ``python -m txgreen COMMAND ...``.

``serve`` serves a WSGI application (see :mod:`txgreen.web._cli`).

``run`` runs an unmodified program green, as ``python -m gevent.monkey script.py`` does:
``txgreen.patch()`` first, then the reactor starts and the program's top level runs in the main
green thread; the command exits with the program's status.
"""

from __future__ import annotations

import argparse
import os
import runpy
import sys
import traceback
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import Any

__all__ = ["main"]

_REACTORS = ("default", "epoll", "poll", "select", "asyncio")

_USAGE = """\
usage: python -m txgreen COMMAND [...]

commands:
  run     run a program green: python -m txgreen run [--no-patch] script.py [args...]
                                python -m txgreen run [--no-patch] -m module [args...]
  serve   serve a WSGI application: python -m txgreen serve module:app [--listen ENDPOINT ...]
              [--patch] [--access-log FILE|-] [--graceful-timeout S] [--workers N] ...

`python -m txgreen COMMAND --help` tells more about one command.
"""


def _run_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m txgreen run",
        description=(
            "Run an unmodified program in a green thread on Twisted's reactor. The stdlib's "
            "socket, ssl, select, selectors, time, DNS, subprocess, threading and queue are "
            "patched first (txgreen.patch()), so blocking libraries the program uses wait "
            "cooperatively and its threads are green threads; the command exits with the "
            "program's status."
        ),
    )
    parser.add_argument(
        "--no-patch",
        action="store_true",
        help="do not call txgreen.patch() (the program patches, or uses txgreen's APIs only)",
    )
    parser.add_argument(
        "--reactor",
        choices=_REACTORS,
        default="default",
        help="the Twisted reactor to install first (default: Twisted's default for the platform)",
    )
    parser.add_argument("-m", dest="module", metavar="MODULE", help="run a module, as python -m")
    parser.add_argument(
        "program",
        nargs=argparse.REMAINDER,
        metavar="script.py [args...]",
        help="the script and its arguments (or, with -m, the module's arguments)",
    )
    return parser


def _install_reactor(name: str) -> None:
    if name == "default":
        return
    if "twisted.internet.reactor" in sys.modules:
        raise SystemExit(
            f"txgreen run: --reactor {name}: a reactor is already installed "
            "(something imported twisted.internet.reactor first)"
        )
    from twisted.application.reactors import installReactor

    installReactor(name)


def _user_traceback(tb: TracebackType | None, filename: str | None) -> TracebackType | None:
    """``tb`` from the program's first frame on (the frames of txgreen and runpy dropped)."""
    if filename is None:
        return tb
    first = tb
    while first is not None and first.tb_frame.f_code.co_filename != filename:
        first = first.tb_next
    return first if first is not None else tb


def run_command(argv: Sequence[str]) -> int:
    """``python -m txgreen run ...``: the program's exit status."""
    args = _run_parser().parse_args(list(argv))
    rest: list[str] = list(args.program)
    if args.module is None and not rest:
        _run_parser().error("name a script to run (or -m module)")
    _install_reactor(args.reactor)

    import txgreen

    if not args.no_patch:
        txgreen.patch()

    filename: str | None
    target: Callable[[], Any]
    if args.module is not None:
        module: str = args.module
        sys.argv = [module, *rest]
        filename = None

        def target() -> Any:
            return runpy.run_module(module, run_name="__main__", alter_sys=True)

    else:
        script, *script_args = rest
        if not os.path.exists(script):
            print(f"txgreen run: cannot open {script!r}: no such file", file=sys.stderr)
            return 2
        filename = os.path.abspath(script)
        sys.argv = [script, *script_args]
        sys.path[0] = os.path.dirname(filename)

        def target() -> Any:
            return runpy.run_path(filename, run_name="__main__")

    program = target

    def main_green_thread() -> Any:
        # With threading patched, the program's top level is its main thread, and its end
        # waits for the Threads that are not daemons, as the interpreter's shutdown would.
        if "threading" not in txgreen.patched():
            return program()
        from txgreen.green import threading as green_threading

        green_threading._as_main_thread()
        try:
            result = program()
        except (Exception, SystemExit):
            green_threading._join_non_daemon_green_threads()
            raise
        green_threading._join_non_daemon_green_threads()
        return result

    try:
        txgreen.run(main_green_thread)
    except SystemExit:
        raise
    except KeyboardInterrupt:
        print("KeyboardInterrupt", file=sys.stderr)
        return 130
    except BaseException as e:
        tb = _user_traceback(e.__traceback__, filename)
        traceback.print_exception(type(e), e, tb, file=sys.stderr)
        return 1
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Dispatch ``python -m txgreen COMMAND ...``; the exit status."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help", "help"):
        print(_USAGE, end="", file=sys.stdout if args else sys.stderr)
        return 0 if args else 2
    command, rest = args[0], args[1:]
    if command == "run":
        return run_command(rest)
    if command == "serve":
        from txgreen.web._cli import serve_command

        return serve_command(rest)
    print(f"txgreen: unknown command {command!r}\n\n{_USAGE}", end="", file=sys.stderr)
    return 2
