"""txgreen.green.subprocess: real child processes, waited for on the reactor.

Every test runs as a green thread with the plugin's leak check (reactor readers, DelayedCalls,
green threads); the autouse fixture also checks that the fd registry is empty, that no fd of
this process was left open and that no child of this process is left as a zombie.  The waits
run twice: on a pidfd, and with the polling fallback (``waiting`` fixture).
"""

from __future__ import annotations

import io
import itertools
import os
import subprocess as std_subprocess
import sys
import threading
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from concurrency_proof import DELAY, concurrently
from twisted.internet import defer, protocol, reactor

import txgreen
from support import in_reactor_callback
from txgreen.green import _fdwait
from txgreen.green import subprocess as gsp

R: Any = reactor
PY = sys.executable


def zombies() -> list[int]:
    """This process's children that have exited and were never reaped."""
    me = str(os.getpid())
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat.rpartition(")")[2].split()
        if fields[1] == me and fields[0] == "Z":
            found.append(int(entry.name))
    return found


def open_fds() -> dict[int, str]:
    """fd -> what it is, for this process's open fds."""
    found = {}
    for name in os.listdir("/proc/self/fd"):
        try:
            found[int(name)] = os.readlink(f"/proc/self/fd/{name}")
        except OSError:
            continue  # the listing's own fd, closed by now
    return found


def wait_until(check: Any, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out waiting"
        txgreen.sleep(0.01)


@pytest.fixture(autouse=True)
def nothing_left() -> Iterator[None]:
    # The reactor's first start opens its signal waker's pipe: no fd count for that test.
    fds = open_fds() if R.running else None
    yield
    assert _fdwait.watched_fds() == {}
    assert gsp._reapers == set()
    assert zombies() == []
    if fds is not None:
        assert {fd: what for fd, what in open_fds().items() if fds.get(fd) != what} == {}


@pytest.fixture(params=["pidfd", "polling"])
def waiting(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Each wait test runs on a pidfd, and with the polling fallback."""
    if request.param == "polling":
        monkeypatch.setattr(gsp, "_pidfd_open", None)
    elif gsp._pidfd_open is None:
        pytest.fail("os.pidfd_open is missing or refused here: the pidfd path cannot be tested")
    return str(request.param)


def ticking() -> tuple[list[float], txgreen.Event, txgreen.GreenThread[None]]:
    """A green thread that records the time every 10 ms until the event is set."""
    ticks: list[float] = []
    stop = txgreen.Event()

    def tick() -> None:
        while not stop.is_set():
            ticks.append(time.monotonic())
            txgreen.sleep(0.01)

    return ticks, stop, txgreen.spawn(tick)


# -- the proof ---------------------------------------------------------------------------------


def test_fifty_sleeps_at_once(waiting: str) -> None:
    done, proof = concurrently(
        f"subprocess.run(['sleep', '{DELAY}']) ({waiting})",
        lambda i: gsp.run(["sleep", str(DELAY)]).returncode,
        n=50,
    )
    assert done == [0] * 50
    proof.check()
    assert proof.elapsed < 0.25 * 50 * DELAY


def test_fifty_sleeps_started_together(waiting: str) -> None:
    began = time.monotonic()
    runs = [txgreen.spawn(gsp.run, ["sleep", str(DELAY)]) for _ in range(50)]
    assert [r.get(timeout=10).returncode for r in runs] == [0] * 50
    elapsed = time.monotonic() - began
    print(f"\n50 x run(['sleep', '{DELAY}']) started together ({waiting}): {elapsed:.3f} s")
    assert elapsed < 0.1 * 50 * DELAY  # 1 s, against 10 s one after the other


def test_communicate_ten_megabytes_both_ways() -> None:
    data = os.urandom(10 * 1024 * 1024)
    ticks, stop, ticker = ticking()
    began = time.monotonic()
    with gsp.Popen(["cat"], stdin=gsp.PIPE, stdout=gsp.PIPE, stderr=gsp.PIPE) as p:
        out, err = p.communicate(data, timeout=20)
    ended = time.monotonic()
    stop.set()
    ticker.join(timeout=5)
    assert out == data
    assert err == b""
    assert p.returncode == 0
    # The ticker ran all along: no gap over 0.1 s between the start, its ticks and the end (a
    # fast transfer may end before its second tick).
    moments = sorted([began, *(t for t in ticks if t <= ended), ended])
    gap = max(b - a for a, b in itertools.pairwise(moments))
    print(f"\n10 MB through cat both ways: {ended - began:.3f} s, max tick gap {gap * 1000:.1f} ms")
    assert gap < 0.1


def test_file_objects_read_and_write_large_data() -> None:
    data = os.urandom(3 * 1024 * 1024)
    with gsp.Popen(["cat"], stdin=gsp.PIPE, stdout=gsp.PIPE) as p:
        assert p.stdin is not None
        assert p.stdout is not None
        writer = txgreen.spawn(lambda: (p.stdin.write(data), p.stdin.close()))  # type: ignore[union-attr]
        got = p.stdout.read()
        writer.get(timeout=10)
    assert got == data


# -- pipes -------------------------------------------------------------------------------------


def test_pipes_are_the_stdlibs_layers_over_green_raw_files() -> None:
    with gsp.Popen(["cat"], stdin=gsp.PIPE, stdout=gsp.PIPE, stderr=gsp.PIPE) as p:
        assert isinstance(p.stdin, io.BufferedWriter)
        assert isinstance(p.stdout, io.BufferedReader)
        assert isinstance(p.stdin.raw, gsp.PipeFile)
        assert isinstance(p.stdout.raw, gsp.PipeFile)
        p.communicate()
    with gsp.Popen(["cat"], stdin=gsp.PIPE, stdout=gsp.PIPE, bufsize=0) as p:
        assert isinstance(p.stdin, gsp.PipeFile)
        assert isinstance(p.stdout, gsp.PipeFile)
        p.stdin.write(b"raw")
        assert p.stdout.read(3) == b"raw"
        p.communicate()


def test_text_mode_encoding_and_universal_newlines() -> None:
    with gsp.Popen(
        ["cat"], stdin=gsp.PIPE, stdout=gsp.PIPE, text=True, encoding="latin-1", bufsize=1
    ) as p:
        assert isinstance(p.stdin, io.TextIOWrapper)
        assert p.stdin.line_buffering
        assert p.stdout is not None
        p.stdin.write("caf\xe9\r\n")  # line buffering: sent at the newline
        assert p.stdout.readline() == "caf\xe9\n"
        out, _ = p.communicate("a\rb\r\n")
    assert out == "a\nb\n"
    completed = gsp.run(
        [PY, "-c", "import sys; sys.stdout.buffer.write(b'x\\r\\ny\\xff')"],
        capture_output=True,
        encoding="utf-8",
        errors="replace",
    )
    assert completed.stdout == "x\ny\ufffd"


def test_binary_line_buffering_warns_as_the_stdlib() -> None:
    with pytest.warns(RuntimeWarning, match="line buffering"):
        p = gsp.Popen(["cat"], stdin=gsp.PIPE, stdout=gsp.PIPE, bufsize=1)
    with p:
        out, err = p.communicate(b"bytes")
    assert out == b"bytes"
    assert err is None


def test_readline_parks_only_the_green_thread() -> None:
    ticks, stop, ticker = ticking()
    with gsp.Popen(["sh", "-c", "sleep 0.3; echo late"], stdout=gsp.PIPE) as p:
        assert p.stdout is not None
        assert p.stdout.readline() == b"late\n"
    stop.set()
    ticker.join(timeout=5)
    assert len(ticks) >= 15  # ticked every 10 ms meanwhile


def test_a_pipe_handed_on_to_another_child_stays_blocking() -> None:
    with gsp.Popen([PY, "-c", "print('through')"], stdout=gsp.PIPE) as p1:
        assert p1.stdout is not None
        assert os.get_blocking(p1.stdout.fileno())
        with gsp.Popen(["cat"], stdin=p1.stdout, stdout=gsp.PIPE) as p2:
            p1.stdout.close()
            out, _ = p2.communicate(timeout=10)
    assert out == b"through\n"


def test_stdout_closed_by_another_green_thread_wakes_the_reader() -> None:
    with gsp.Popen(["sleep", "5"], stdout=gsp.PIPE) as p:
        assert p.stdout is not None
        raw = p.stdout.raw  # type: ignore[attr-defined]
        reader = txgreen.spawn(raw.read, 10)
        txgreen.sleep(0.05)
        raw.close()
        with pytest.raises(OSError):
            reader.get(timeout=5)
        p.kill()


# -- waiting -----------------------------------------------------------------------------------


def test_wait_timeout_then_wait(waiting: str) -> None:
    with gsp.Popen(["sleep", "0.3"]) as p:
        began = time.monotonic()
        with pytest.raises(gsp.TimeoutExpired) as info:
            p.wait(timeout=0.05)
        assert 0.04 < time.monotonic() - began < 0.25
        assert info.value.timeout == 0.05
        assert info.value.cmd == ["sleep", "0.3"]
        assert p.poll() is None
        assert p.wait(timeout=5) == 0
    assert p.returncode == 0


def test_exit_status_and_signals(waiting: str) -> None:
    assert gsp.call(["sh", "-c", "exit 7"]) == 7
    with gsp.Popen(["sleep", "5"]) as p:
        p.terminate()
        assert p.wait(timeout=5) == -15
    with gsp.Popen(["sleep", "5"]) as p:
        p.send_signal(9)
        assert p.wait(timeout=5) == -9
        p.kill()  # already reaped: a no-op, as in the stdlib


def test_run_timeout_kills_and_reaps_the_child(waiting: str) -> None:
    with pytest.raises(gsp.TimeoutExpired) as info:
        gsp.run(["sh", "-c", "echo $$; exec sleep 5"], capture_output=True, timeout=0.3)
    assert info.value.timeout == 0.3
    assert isinstance(info.value.stdout, bytes)
    pid = int(info.value.stdout)
    assert not Path(f"/proc/{pid}").exists()  # killed, and reaped (no zombie)


def test_communicate_timeout_then_again() -> None:
    with gsp.Popen(
        ["sh", "-c", "echo first; sleep 0.3; echo second"], stdout=gsp.PIPE, stderr=gsp.PIPE
    ) as p:
        with pytest.raises(gsp.TimeoutExpired) as info:
            p.communicate(timeout=0.1)
        assert info.value.stdout == b"first\n"
        out, err = p.communicate(timeout=5)
    assert (out, err) == (b"first\nsecond\n", b"")


@pytest.mark.parametrize("where", ["wait", "communicate", "with", "run"])
def test_killing_the_waiting_green_thread_leaves_no_zombie(waiting: str, where: str) -> None:
    popens: list[Any] = []
    command = ["sh", "-c", "sleep 0.3; echo done"]

    def waiter() -> None:
        if where == "run":
            gsp.run(command, capture_output=True)
            return
        p = gsp.Popen(command, stdout=gsp.PIPE)
        popens.append(p)
        if where == "wait":
            p.wait()
        elif where == "communicate":
            p.communicate()
        else:
            with p:
                p.wait()

    thread = txgreen.spawn(waiter)
    txgreen.sleep(0.1)
    began = time.monotonic()
    thread.kill(timeout=5)
    assert thread.dead
    assert time.monotonic() - began < 0.1  # the kill does not wait for the child
    for p in popens:
        wait_until(lambda p=p: p.returncode is not None)
        # (leaving the with block closed its stdout: "echo" then dies of SIGPIPE)
        assert p.returncode == (-13 if where == "with" else 0)
        if p.stdout is not None:
            p.stdout.close()
    wait_until(lambda: not gsp._reapers)
    assert zombies() == []


def test_wait_in_a_with_block_after_kill_is_prompt(waiting: str) -> None:
    def body() -> None:
        with gsp.Popen(["sleep", "5"]) as p:
            p.wait()

    thread = txgreen.spawn(body)
    txgreen.sleep(0.05)
    thread.kill(timeout=5)
    assert thread.dead
    (reaper,) = gsp._reapers
    reaper.popen.kill()
    wait_until(lambda: not gsp._reapers)
    assert reaper.popen.returncode == -9


# -- the functions -----------------------------------------------------------------------------


def test_the_convenience_functions() -> None:
    assert gsp.check_call(["true"]) == 0
    with pytest.raises(gsp.CalledProcessError) as info:
        gsp.check_call(["sh", "-c", "exit 3"])
    assert info.value.returncode == 3
    assert gsp.check_output(["echo", "out"]) == b"out\n"
    assert gsp.check_output(["cat"], input="in", text=True) == "in"
    assert gsp.check_output(["cat"], input=None) == b""
    with pytest.raises(gsp.CalledProcessError) as info2:
        gsp.check_output(["sh", "-c", "echo partial; exit 2"])
    assert (info2.value.returncode, info2.value.output) == (2, b"partial\n")
    assert gsp.getoutput("echo hello; echo err >&2") == "hello\nerr"
    assert gsp.getstatusoutput("echo bye; exit 4") == (4, "bye")
    completed = gsp.run(["sh", "-c", "echo o; echo e >&2; exit 1"], capture_output=True)
    assert (completed.returncode, completed.stdout, completed.stderr) == (1, b"o\n", b"e\n")
    with pytest.raises(gsp.CalledProcessError):
        gsp.run(["false"], check=True)
    with pytest.raises(gsp.TimeoutExpired):
        gsp.call(["sleep", "5"], timeout=0.1)
    assert gsp.TimeoutExpired is std_subprocess.TimeoutExpired
    assert gsp.CalledProcessError is std_subprocess.CalledProcessError
    assert gsp.CompletedProcess is std_subprocess.CompletedProcess


def test_bad_arguments_raise_the_stdlibs_errors() -> None:
    g: Any = gsp  # (typeshed would reject the bad calls)
    with pytest.raises(ValueError, match="stdin and input"):
        gsp.run(["cat"], input=b"x", stdin=gsp.PIPE)
    with pytest.raises(ValueError, match="capture_output"):
        gsp.run(["true"], capture_output=True, stdout=gsp.PIPE)
    with pytest.raises(ValueError, match="stdout argument not allowed"):
        g.check_output(["true"], stdout=gsp.PIPE)
    with pytest.raises(ValueError, match="check argument not allowed"):
        g.check_output(["true"], check=False)
    with pytest.raises(FileNotFoundError):
        gsp.run(["/nonexistent/program"])
    with pytest.raises(TypeError, match="bufsize"):
        g.Popen(["true"], bufsize="big")
    with pytest.raises(LookupError):
        gsp.Popen(["cat"], stdin=gsp.PIPE, stdout=gsp.PIPE, encoding="no-such-codec")
    with gsp.Popen(["cat"], stdin=gsp.PIPE, stdout=gsp.PIPE) as p:
        with pytest.raises(gsp.TimeoutExpired):
            p.communicate(b"x" * 10, timeout=0)
        with pytest.raises(ValueError, match="Cannot send input"):
            p.communicate(b"more")
        p.kill()
        p.communicate()


# -- thread-aware ------------------------------------------------------------------------------


def test_from_an_os_thread_it_is_the_stdlibs_blocking_call() -> None:
    def job() -> tuple[bytes, int]:
        with gsp.Popen(["cat"], stdin=gsp.PIPE, stdout=gsp.PIPE) as p:
            out, _ = p.communicate(b"in a thread", timeout=10)
        code = gsp.run(["sleep", "0.1"]).returncode
        return out, code

    assert txgreen.call_in_thread(job) == (b"in a thread", 0)


def test_from_the_hub_it_blocks_like_the_stdlib() -> None:
    def in_hub() -> defer.Deferred[bytes]:
        out: bytes = gsp.check_output(["echo", "hub"], timeout=10)
        return defer.succeed(out)

    assert txgreen.block_on(in_reactor_callback(in_hub)) == b"hub\n"


def test_from_a_plain_os_thread_with_threading() -> None:
    got: list[int] = []
    thread = threading.Thread(target=lambda: got.append(gsp.call(["sh", "-c", "exit 5"])))
    thread.start()
    wait_until(lambda: not thread.is_alive())
    assert got == [5]


# -- Twisted's own processes, side by side -----------------------------------------------------


class Collect(protocol.ProcessProtocol):
    def __init__(self) -> None:
        self.out = b""
        self.ended: defer.Deferred[int] = defer.Deferred()

    def outReceived(self, data: bytes) -> None:
        self.out += data

    def processEnded(self, reason: Any) -> None:
        self.ended.callback(reason.value.exitCode)


def test_twisteds_spawn_process_side_by_side(waiting: str) -> None:
    twisted_ones = []
    for i in range(5):
        proto = Collect()
        R.spawnProcess(proto, PY, [PY, "-c", f"import time; time.sleep(0.2); print({i})"])
        twisted_ones.append(proto)
    green = [
        txgreen.spawn(gsp.run, ["sh", "-c", f"sleep 0.1; echo {i}; exit {i}"], capture_output=True)
        for i in range(5)
    ]
    results = [g.get(timeout=10) for g in green]
    assert [(r.returncode, r.stdout) for r in results] == [(i, b"%d\n" % i) for i in range(5)]
    codes = [txgreen.block_on(p.ended) for p in twisted_ones]
    assert codes == [0] * 5
    assert [p.out for p in twisted_ones] == [b"%d\n" % i for i in range(5)]


# -- patch() -----------------------------------------------------------------------------------


def test_patch_makes_the_stdlibs_functions_green() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", txgreen.PatchWarning)
        txgreen.patch(socket=False, dns=False, ssl=False, select=False, selectors=False)
    try:
        assert "subprocess" in txgreen.patched()
        assert std_subprocess.Popen is gsp.Popen
        ticks, stop, ticker = ticking()
        assert std_subprocess.run(["sleep", "0.2"]).returncode == 0
        assert std_subprocess.check_output(["echo", "p"]) == b"p\n"
        stop.set()
        ticker.join(timeout=5)
        assert len(ticks) >= 10
    finally:
        txgreen.unpatch()
    assert std_subprocess.Popen is gsp._StdPopen


def test_patch_subprocess_false_leaves_it() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", txgreen.PatchWarning)
        txgreen.patch(subprocess=False)
    try:
        assert "subprocess" not in txgreen.patched()
        assert std_subprocess.Popen is gsp._StdPopen
    finally:
        txgreen.unpatch()
