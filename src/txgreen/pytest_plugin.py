"""txgreen's pytest plugin: run sync-style test bodies as green threads.

pytest-twisted calls every test function inside the reactor's greenlet, the hub, where blocking
is an error.  This plugin runs a test in a green thread instead when it is marked
``@pytest.mark.green`` (or, with the ini option ``txgreen_mode = auto``, every plain sync test),
so the body can call ``block_on``, ``spawn`` and ``sleep`` directly.

- Deadline: a green test is killed with :class:`txgreen.TestDeadlineExceeded` by a reactor timer
  when it runs past pytest-timeout's ``timeout`` (ini setting or ``@pytest.mark.timeout(s)``);
  the traceback shows where it was blocked.  pytest-timeout itself is kept as a backstop a few
  seconds later, for a hub that is stuck in non-yielding code.
- Leak check (``txgreen_leak_check = true``, or ``@pytest.mark.green(leak_check=True)``): after
  the body, the test fails if green threads, DelayedCalls, reactor readers/writers, fds the
  green standard library still watches (``txgreen.green``'s fd registry) or (on Linux) socket
  file descriptors it started are still there once the reactor has had a short while to
  settle; the leftover threads and timers are cleaned up.
- ``--txgreen-reactor=NAME`` installs ``default``, ``epoll``, ``poll``, ``select`` or ``asyncio``
  before pytest-twisted starts it, to run a suite against each reactor.
- ``@pytest.mark.in_hub`` keeps a sync test in the hub even in auto mode.
- Failure reports show the user's frames: txgreen's own (the hub, ``block_on``, this plugin)
  are left out of the traceback (ini ``txgreen_hide_frames``, default true).

Without pytest-twisted, green tests still work: the body runs in a green thread on txgreen's own
hub, which starts the reactor on first use.
"""

from __future__ import annotations

import functools
import inspect
import os
import sys
from collections.abc import Callable
from typing import Any

import pytest
from twisted.internet.defer import Deferred

from txgreen import _util
from txgreen._util import failure_of

__all__ = ["LeakError"]

__tracebackhide__ = _util.hidden_in_reports  # this module's frames too (see _util)

_REACTORS = ("default", "epoll", "poll", "select", "asyncio")
_BACKSTOP_GRACE = 5.0
_SETTLE_SECONDS = 1.0


class LeakError(AssertionError):
    """A green test left green threads, DelayedCalls or reactor readers/writers behind."""


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("txgreen")
    group.addoption(
        "--txgreen-reactor",
        choices=_REACTORS,
        default=None,
        help="install this Twisted reactor before the tests run (default: Twisted's default)",
    )
    parser.addini(
        "txgreen_mode",
        "strict: only @pytest.mark.green tests run in green threads; auto: every sync test does",
        default="strict",
    )
    parser.addini(
        "txgreen_hide_frames",
        "leave txgreen's own frames (the hub, block_on, the plugin) out of failure tracebacks",
        type="bool",
        default=True,
    )
    parser.addini(
        "txgreen_leak_check",
        "fail green tests that leave green threads, DelayedCalls or readers behind",
        type="bool",
        default=False,
    )


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "green(enabled=True, leak_check=None): run this sync test body in a txgreen green thread",
    )
    config.addinivalue_line("markers", "in_hub: run this sync test in the hub even in auto mode")
    _util.hide_frames_in_reports(bool(config.getini("txgreen_hide_frames")))
    mode = config.getini("txgreen_mode")
    if mode not in ("strict", "auto"):
        raise pytest.UsageError(f"txgreen_mode must be 'strict' or 'auto', not {mode!r}")
    name = config.getoption("txgreen_reactor")
    if name:
        _install_reactor(config, name)


def _install_reactor(config: pytest.Config, name: str) -> None:
    if "twisted.internet.reactor" in sys.modules:
        raise pytest.UsageError(
            "--txgreen-reactor: a reactor is already installed (something imported "
            "twisted.internet.reactor before the plugin could choose one)"
        )
    if name == "asyncio":
        if config.pluginmanager.hasplugin("twisted"):
            config.option.reactor = "asyncio"  # pytest-twisted installs it
        else:
            from twisted.internet import asyncioreactor

            asyncioreactor.install()  # type: ignore[no-untyped-call]
        return
    if name == "default":
        return
    module = {
        "epoll": "twisted.internet.epollreactor",
        "poll": "twisted.internet.pollreactor",
        "select": "twisted.internet.selectreactor",
    }[name]
    __import__(module)
    sys.modules[module].install()
    if config.pluginmanager.hasplugin("twisted"):
        # pytest-twisted insists that its "default" reactor is Twisted's default class; tell
        # it to accept the one installed here.
        import pytest_twisted
        from twisted.internet import reactor

        reactor_type = type(reactor)
        installers = getattr(pytest_twisted, "reactor_installers", None)
        install = getattr(pytest_twisted, "_install_reactor", None)
        if installers is None or install is None:
            raise pytest.UsageError(
                "--txgreen-reactor cannot work with this pytest-twisted version"
            )
        installers["default"] = lambda: install(
            reactor_installer=lambda: None, reactor_type=reactor_type
        )


def _settings(item: pytest.Item) -> tuple[bool, bool]:
    """(run green?, check leaks?) for a test item."""
    if not isinstance(item, pytest.Function):
        return False, False
    leak_default = bool(item.config.getini("txgreen_leak_check"))
    marker = item.get_closest_marker("green")
    if marker is not None:
        enabled = bool(marker.args[0]) if marker.args else bool(marker.kwargs.get("enabled", True))
        leak = marker.kwargs.get("leak_check")
        return enabled, leak_default if leak is None else bool(leak)
    if item.config.getini("txgreen_mode") != "auto" or item.get_closest_marker("in_hub"):
        return False, False
    fn = item.obj
    inner = getattr(getattr(fn, "hypothesis", None), "inner_test", None)
    target = inner if inner is not None else fn
    if (
        inspect.iscoroutinefunction(target)
        or inspect.isgeneratorfunction(target)
        or inspect.isasyncgenfunction(target)
        or getattr(target, "_pytest_twisted_mark", None) is not None
    ):
        return False, False
    return True, leak_default


def _deadline(item: pytest.Item) -> float | None:
    marker = item.get_closest_marker("timeout")
    value: Any = None
    if marker is not None:
        value = marker.args[0] if marker.args else marker.kwargs.get("timeout")
    else:
        try:
            value = item.config.getini("timeout")
        except ValueError:  # pytest-timeout is not installed
            return None
    try:
        seconds = float(value) if value not in (None, "") else 0.0
    except (TypeError, ValueError):
        return None
    return seconds if seconds > 0 else None


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        green, _ = _settings(item)
        if not green:
            continue
        deadline = _deadline(item)
        if deadline is not None and item.config.pluginmanager.hasplugin("timeout"):
            # pytest-timeout becomes the backstop; the reactor enforces the real deadline.
            item.add_marker(pytest.mark.timeout(deadline + _BACKSTOP_GRACE), append=False)
            item.stash[_deadline_key] = deadline


_deadline_key = pytest.StashKey[float]()


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> bool | None:
    green, leak_check = _settings(pyfuncitem)
    if not green:
        return None
    deadline = pyfuncitem.stash.get(_deadline_key, None)
    if deadline is None:
        deadline = _deadline(pyfuncitem)
    under_pytest_twisted = pyfuncitem.config.pluginmanager.hasplugin("twisted")
    name = pyfuncitem.nodeid
    obj = pyfuncitem.obj
    hyp = getattr(obj, "hypothesis", None)
    if hyp is not None:
        inner = hyp.inner_test
        hyp.inner_test = _wrap(inner, name, deadline, leak_check, under_pytest_twisted)
        return None
    wrapper = _wrap(obj, name, deadline, leak_check, under_pytest_twisted)
    if under_pytest_twisted:
        pyfuncitem.obj = wrapper
        return None
    argnames = pyfuncitem._fixtureinfo.argnames
    wrapper(**{n: pyfuncitem.funcargs[n] for n in argnames})
    return True


def _wrap(
    fn: Callable[..., Any],
    name: str,
    deadline: float | None,
    leak_check: bool,
    under_pytest_twisted: bool,
) -> Callable[..., Any]:
    @functools.wraps(fn)
    def wrapper(**kwargs: Any) -> Any:
        if under_pytest_twisted:
            # pytest-twisted calls us in the hub and waits for the Deferred.
            return run_green_test(fn, kwargs, name=name, deadline=deadline, leak_check=leak_check)
        # Without pytest-twisted we are in the main greenlet and block on txgreen's own hub.
        # Start it (and so the reactor) before the test, so that the reactor's start-up (its
        # waker readers) is not counted as the test's leak.
        from twisted.internet import reactor, task

        from txgreen import block_on

        if not reactor.running:
            block_on(task.deferLater(reactor, 0, lambda: None))
        return block_on(
            run_green_test(fn, kwargs, name=name, deadline=deadline, leak_check=leak_check)
        )

    return wrapper


def run_green_test(
    fn: Callable[..., Any],
    kwargs: dict[str, Any],
    *,
    name: str = "test",
    deadline: float | None = None,
    leak_check: bool = False,
) -> Deferred[Any]:
    """Run ``fn(**kwargs)`` in a green thread, enforcing ``deadline``; a Deferred of the outcome."""
    from txgreen import spawn
    from txgreen._greenthread import _callable_name
    from txgreen._hub import get_hub
    from txgreen.errors import TestDeadlineExceeded

    hub = get_hub()
    reactor = hub.reactor
    before = _snapshot(hub) if leak_check else None
    result: Deferred[Any] = Deferred()
    gt = spawn(_call_and_wait, fn, kwargs)
    gt.name = _callable_name(fn)  # name the test, not the wrapper
    timer = None

    def fail(exc: BaseException) -> None:
        if not result.called:
            result.errback(failure_of(exc))

    if deadline is not None:

        def expire() -> None:
            exc = TestDeadlineExceeded(
                f"{name} ran past its {deadline:g} s deadline (pytest-timeout's 'timeout'); "
                "the traceback shows where it was blocked"
            )
            gt.kill(exc, block=False)
            if not gt.dead:
                fail(exc)  # it swallowed the kill: fail the test anyway

        timer = reactor.callLater(deadline, expire)

    def done(thread: Any) -> None:
        if timer is not None and timer.active():
            timer.cancel()
        if result.called:
            return
        exc = thread.exception
        if exc is not None:
            fail(exc)
            return
        if before is None:
            result.callback(thread.value)
            return
        checker = spawn(_check_leaks, hub, before, thread.value)
        checker.link(lambda c: fail(c.exception) if c.exception else result.callback(c.value))

    gt.link(done)
    return result


def _call_and_wait(fn: Callable[..., Any], kwargs: dict[str, Any]) -> Any:
    """The green test body: ``fn(**kwargs)``, waiting for a Deferred or coroutine it returns.

    pytest-twisted waits for a Deferred that a test returns; a test moved to a green thread
    (``txgreen_mode = auto``) keeps that meaning instead of silently not waiting.
    """
    value = fn(**kwargs)
    if isinstance(value, Deferred) or inspect.iscoroutine(value):
        from txgreen import block_on

        value = block_on(value)
    return value


def _open_sockets() -> set[tuple[int, str]]:
    """The process's open socket file descriptors as (fd, inode) pairs (Linux), else empty.

    A socket that is no longer a reactor reader or writer (a transport that forgot to close
    its socket, a ``socket.socket`` a test made itself) still shows up here.
    """
    try:
        fds = os.listdir("/proc/self/fd")
    except OSError:
        return set()
    found = set()
    for name in fds:
        try:
            target = os.readlink(f"/proc/self/fd/{name}")
        except OSError:
            continue  # closed meanwhile (or the directory's own descriptor)
        if target.startswith("socket:"):
            found.add((int(name), target))
    return found


def _snapshot(hub: Any) -> dict[str, set[Any]]:
    from txgreen.green import _fdwait

    reactor = hub.reactor
    return {
        "fd waits": set(_fdwait.watched_fds()),
        "threads": set(hub.threads),
        "calls": {c for c in reactor.getDelayedCalls() if c.active()},
        "readers": set(reactor.getReaders()),
        "writers": set(reactor.getWriters()),
        "sockets": _open_sockets(),
    }


def _leftovers(hub: Any, before: dict[str, set[Any]]) -> dict[str, list[Any]]:
    from greenlet import getcurrent

    now = _snapshot(hub)
    own = {hub._drain_call}
    found = {
        "green threads": [t for t in now["threads"] - before["threads"] if t is not getcurrent()],
        "DelayedCalls": [c for c in now["calls"] - before["calls"] if c not in own],
        "readers": list(now["readers"] - before["readers"]),
        "writers": list(now["writers"] - before["writers"]),
        "open sockets (fd, inode)": sorted(now["sockets"] - before["sockets"]),
        "green socket fds still watched": sorted(now["fd waits"] - before["fd waits"]),
    }
    return {k: v for k, v in found.items() if v}


def _check_leaks(hub: Any, before: dict[str, set[Any]], value: Any) -> Any:
    from txgreen import sleep

    loops = 0
    left = _leftovers(hub, before)
    while left and loops < 100:
        # Let connections finish closing and scheduled work drain.
        sleep(0 if loops < 10 else _SETTLE_SECONDS / 100)
        loops += 1
        left = _leftovers(hub, before)
    if not left:
        return value
    for t in left.get("green threads", []):
        t.kill(block=False)
    for c in left.get("DelayedCalls", []):
        if c.active():
            c.cancel()
    detail = "; ".join(f"{k}: {v!r}" for k, v in left.items())
    raise LeakError(f"the test left these behind: {detail}")
