"""Tests of CPython's suite that pass plain but not under ``txgreen.patch()``, and why.

A key is a test id, or a class id standing for all its tests.  tests/green/test_cpython_suite.py
checks that each entry still fails patched (remove it when it passes) and that nothing else
that passes plain fails patched.  Keep it short: fix what can be fixed.
"""

from __future__ import annotations

_SIGNAL = (
    "a signal handler's exception is meant to interrupt a blocking call; it is raised in the "
    "hub (the reactor's loop logs it), and the green thread waits on"
)

_O_NONBLOCK = (
    "checks the fd's O_NONBLOCK flag after setblocking(True)/settimeout(None): a green "
    "socket's fd is always non-blocking (the design); the timeout it reports is the stdlib's"
)

_OWN_POPEN = (
    "replaces subprocess.Popen with a recording subclass, then calls subprocess.call/run: the "
    "green functions use the green module's own Popen (never a name looked up on the patched "
    "stdlib module), so no instance is recorded"
)

KNOWN_FAILURES: dict[str, str] = {
    "test.test_subprocess.MiscTests.test_call_keyboardinterrupt_no_kill": _OWN_POPEN,
    "test.test_subprocess.MiscTests.test_run_keyboardinterrupt_no_kill": _OWN_POPEN,
    "test.test_socket.GeneralModuleTests.test_sendall_interrupted": _SIGNAL,
    "test.test_socket.GeneralModuleTests.test_sendall_interrupted_with_timeout": _SIGNAL,
    "test.test_socket.InterruptedRecvTimeoutTest": _SIGNAL,
    "test.test_socket.InterruptedSendTimeoutTest": _SIGNAL,
    "test.test_socket.TCPTimeoutTest.testInterruptedTimeout": _SIGNAL,
    "test.test_socket.NonBlockingTCPTests.testSetBlocking": _O_NONBLOCK,
    "test.test_socket.NonBlockingTCPTests.testSetBlocking_overflow": _O_NONBLOCK,
    "test.test_socket.NonblockConstantTest.test_SOCK_NONBLOCK": _O_NONBLOCK,
    "test.test_socket.NetworkConnectionNoServer.test_create_connection_timeout": (
        "replaces socket.socket with a mock that times out; the green create_connection "
        "makes its own green sockets, so it connects for real (and is refused)"
    ),
    "test.test_select.SelectTestCase.test_disallow_instantiation": (
        "the green poll object's type is a Python class, which can be instantiated directly "
        "(the stdlib's C type cannot)"
    ),
    "test.test_selectors.DefaultSelectorTestCase.test_select_interrupt_exc": _SIGNAL,
    "test.test_selectors.EpollSelectorTestCase.test_select_interrupt_exc": _SIGNAL,
    "test.test_selectors.PollSelectorTestCase.test_select_interrupt_exc": _SIGNAL,
    "test.test_selectors.SelectSelectorTestCase.test_select_interrupt_exc": _SIGNAL,
    "test.test_socket.GeneralModuleTests.testRefCountGetNameInfo": (
        "counts references to a bad argument while its TypeError is handled: the traceback "
        "holds the frame of the green getnameinfo, a Python function, and so the argument"
    ),
}


def known_failure(test_id: str) -> str | None:
    """The reason ``test_id`` is listed (itself or its class), None if it is not."""
    reason = KNOWN_FAILURES.get(test_id)
    if reason is None:
        reason = KNOWN_FAILURES.get(test_id.rpartition(".")[0])
    return reason
