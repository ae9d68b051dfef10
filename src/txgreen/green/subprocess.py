"""A cooperative ``subprocess`` module: waiting for a child parks only the green thread.

:class:`Popen` is a subclass of the stdlib's: the child is started by CPython's own
``_execute_child`` (fork/exec, ``posix_spawn``, every argument as the stdlib takes it).  What
changes is how the parent *waits*:

- **Pipes.**  ``stdin``, ``stdout`` and ``stderr`` are the stdlib's buffered and text layers
  (``bufsize``, ``text``/``universal_newlines``, ``encoding``, ``errors``, line buffering) over
  a green raw file, :class:`PipeFile`.  Its fd stays *blocking* (so a pipe end handed on to
  another child, ``Popen(..., stdin=p1.stdout)``, is the ordinary blocking pipe the child
  expects); before each read or write the green thread parks until ``poll`` says the fd is
  ready, and a write sends at most ``PIPE_BUF`` bytes per system call (which a ready pipe takes
  without blocking), looping until all is written.
- **The child's exit.**  ``wait`` parks on a Linux pidfd (``os.pidfd_open``) registered with the
  reactor as a reader; where there is none, it polls ``waitpid(WNOHANG)`` with a backoff (1 ms
  doubling to 50 ms).  It never touches ``SIGCHLD`` or the reactor's wakeup fd, and only ever
  waits for its own child's pid, so Twisted's ``reactor.spawnProcess`` keeps working beside it.
- **communicate** serves stdin, stdout and stderr from the calling green thread, parking on
  all three fds at once (``_fdwait.wait_many``); timeouts have the stdlib's semantics (the
  output so far in :class:`TimeoutExpired`, a later call carries on).
- **No zombies.**  A green thread killed while it waits for its child (``wait``,
  ``communicate``, the end of a ``with`` block) hands the child to a background reaper, which
  collects it when it exits (same pidfd or polling wait, in the reactor), so nothing is left.

Everything is thread-aware: from another OS thread, or from the hub itself, each call is the
stdlib's blocking one.  :func:`run`, :func:`call`, :func:`check_call`, :func:`check_output`,
:func:`getoutput` and :func:`getstatusoutput` are the stdlib's functions over this
:class:`Popen`; every other name (``PIPE``, ``TimeoutExpired``, ``CalledProcessError``, ...)
is the stdlib's own object.
"""

from __future__ import annotations

import contextlib as _contextlib
import errno as _errno
import io as _io
import os as _os
import select as _select
import subprocess as _std
import warnings as _warnings
from subprocess import *  # noqa: F403 - the stdlib's whole surface, re-exported
from time import monotonic as _monotonic
from types import TracebackType
from typing import TYPE_CHECKING, Any

from greenlet import GreenletExit as _GreenletExit
from twisted.internet.interfaces import IReadDescriptor as _IReadDescriptor
from twisted.python.failure import Failure as _Failure
from zope.interface import implementer as _implementer  # type: ignore[import-untyped]

from txgreen._greenthread import sleep as _green_sleep
from txgreen._hub import get_hub as _get_hub
from txgreen.green import _fdwait

if TYPE_CHECKING:
    from _typeshed import ReadableBuffer, WriteableBuffer

__patched__: list[str] = [
    "Popen",
    "call",
    "check_call",
    "check_output",
    "getoutput",
    "getstatusoutput",
    "run",
]

__all__ = sorted(set(_std.__all__) | set(__patched__) | {"PipeFile"})

# The stdlib's originals, bound now: after patch() the subprocess module's names are ours.
_StdPopen: Any = _std.Popen
_std_poll = _select.poll
_POLLIN = _select.POLLIN
_POLLOUT = _select.POLLOUT
_PIPE_BUF: int = getattr(_select, "PIPE_BUF", 512)
_PIPE = _std.PIPE
_STDOUT = _std.STDOUT
_CalledProcessError = _std.CalledProcessError
_CompletedProcess = _std.CompletedProcess
_TimeoutExpired = _std.TimeoutExpired
_READ_SIZE = 65536  # bytes communicate() asks for per read (a pipe holds 64 KiB)
_BACKOFF_FIRST = 0.001  # seconds, the polling fallback's first wait; doubles up to:
_BACKOFF_MAX = 0.05

# os.pidfd_open, or None once we know pidfds do not work here (then: polling).
_pidfd_open: Any = getattr(_os, "pidfd_open", None)


def _open_pidfd(pid: int) -> int | None:
    """A pidfd for ``pid`` (readable once it exits), None if the polling fallback must do."""
    global _pidfd_open
    opener = _pidfd_open
    if opener is None:
        return None
    try:
        fd: int = opener(pid)
    except OSError as e:
        if e.errno in (_errno.ENOSYS, _errno.EPERM):  # an old kernel, or a seccomp filter
            _pidfd_open = None
        return None  # ESRCH (already reaped elsewhere), EMFILE, ...: poll this time
    return fd


def _poll_child(popen: Any) -> int | None:
    """The stdlib's ``Popen._internal_poll``: reap the child if it has exited (no wait)."""
    code: int | None = popen._internal_poll()
    return code


def _try_reap(popen: Any) -> int | None:
    """Reap the child if it has exited, as the stdlib's timed ``wait`` polls (no wait)."""
    if popen.returncode is None and popen._waitpid_lock.acquire(False):
        try:
            if popen.returncode is None:
                pid, status = popen._try_wait(_os.WNOHANG)
                if pid == popen.pid:
                    popen._handle_exitstatus(status)
        finally:
            popen._waitpid_lock.release()
    code: int | None = popen.returncode
    return code


def _close_pidfd(fd: int) -> None:
    _fdwait.before_close(fd)
    _os.close(fd)


def _ready_now(fd: int, write: bool) -> bool:
    """Is ``fd`` ready (or in error, or closed) right now?  One poll with no timeout."""
    poller = _std_poll()
    poller.register(fd, _POLLOUT if write else _POLLIN)
    return bool(poller.poll(0))


_SLICE = 0.005  # seconds of I/O without a wait after which a green thread lets others run


def _share(since: float) -> float:
    """Yield to the other green threads if the caller has run ``_SLICE`` s since ``since``.

    A pipe that is always ready (a fast child) never parks its reader or writer; without this
    a large transfer would hold the reactor for its whole length.  Returns the new start.
    """
    now = _monotonic()
    if now - since < _SLICE:
        return since
    _green_sleep(0)
    return _monotonic()


def _park_until_ready(fd: int, write: bool) -> None:
    """Park the calling green thread until ``fd`` is readable (writable)."""
    while not _ready_now(fd, write):
        _fdwait.wait(fd, write, None)


class PipeFile(_io.FileIO):
    """The green raw file over one of a :class:`Popen`'s pipe ends (a blocking fd).

    A read returns what the pipe holds (at least one byte, or ``b""`` at end of file) and a
    write writes everything, as the stdlib's ``FileIO`` on a blocking pipe does; in a green
    thread both park only that thread while the pipe is empty (full).  Elsewhere they are the
    stdlib's blocking calls.
    """

    def readinto(self, buffer: WriteableBuffer, /) -> int:
        """Read into ``buffer``; the byte count, 0 at end of file."""
        if _fdwait.green_caller() is not None:
            _park_until_ready(self.fileno(), False)
        got: int = super().readinto(buffer)
        return got

    def read(self, size: int | None = -1, /) -> bytes:
        """Up to ``size`` bytes (what the pipe holds); all until end of file if ``size`` < 0."""
        if size is None or size < 0:
            return self.readall()
        if _fdwait.green_caller() is not None:
            _park_until_ready(self.fileno(), False)
        data: bytes = super().read(size)
        return data

    def readall(self) -> bytes:
        """Everything until end of file."""
        if _fdwait.green_caller() is None:
            return super().readall()
        chunks: list[bytes] = []
        since = _monotonic()
        while True:
            since = _share(since)
            _park_until_ready(self.fileno(), False)
            chunk = super().read(_READ_SIZE)
            if not chunk:
                return b"".join(chunks)
            chunks.append(chunk)

    def write(self, data: ReadableBuffer, /) -> int:
        """Write all of ``data`` (``BrokenPipeError`` if the reader has gone); its length."""
        if _fdwait.green_caller() is None:
            written: int = super().write(data)
            return written
        view = memoryview(data).cast("B")
        done = 0
        fd = self.fileno()
        since = _monotonic()
        while done < len(view):
            since = _share(since)
            _park_until_ready(fd, True)
            done += super().write(view[done : done + _PIPE_BUF])
        return done

    def close(self) -> None:
        """Wake a green thread waiting on the fd (with ``EBADF``), then close it."""
        if not self.closed:
            _fdwait.before_close(self.fileno())
        super().close()


def _open_pipe(fd: int, mode: str, bufsize: int) -> _io.RawIOBase | _io.BufferedIOBase:
    """``io.open(fd, mode, bufsize)`` of the stdlib's Popen, over a :class:`PipeFile`."""
    raw = PipeFile(fd, mode)
    if bufsize == 0:
        return raw
    if bufsize == 1:
        _warnings.warn(
            "line buffering (buffering=1) isn't supported in binary mode, the default buffer "
            "size will be used",
            RuntimeWarning,
            stacklevel=4,
        )
        bufsize = -1
    if bufsize < 0:
        try:
            blksize = _os.fstat(fd).st_blksize
        except OSError:
            blksize = 0
        bufsize = blksize if blksize > 1 else _io.DEFAULT_BUFFER_SIZE
    if mode == "wb":
        return _io.BufferedWriter(raw, bufsize)
    return _io.BufferedReader(raw, bufsize)


# -- the background reaper ----------------------------------------------------------------------

_reapers: set[_Reaper] = set()


@_implementer(_IReadDescriptor)
class _Reaper:
    """Collects an abandoned child when it exits: a pidfd reader, or polling with a backoff."""

    def __init__(self, popen: Any, reactor: Any) -> None:
        self.popen = popen
        self.reactor = reactor
        self.pidfd = _open_pidfd(popen.pid)
        self.delay = _BACKOFF_FIRST
        self.call: Any = None
        _reapers.add(self)
        if self.pidfd is not None:
            reactor.addReader(self)
        else:
            self.call = reactor.callLater(self.delay, self.check)

    def fileno(self) -> int:
        """The pidfd watched."""
        return -1 if self.pidfd is None else self.pidfd

    def logPrefix(self) -> str:
        """What Twisted's log calls this descriptor."""
        return "txgreen-reaper"

    def doRead(self) -> None:
        """The child has exited: reap it."""
        self.check()

    def connectionLost(self, reason: _Failure) -> None:
        """The reactor dropped the pidfd: poll instead."""
        self._drop_pidfd()
        self.check()

    def _drop_pidfd(self) -> None:
        fd = self.pidfd
        if fd is not None:
            self.pidfd = None
            self.reactor.removeReader(self)
            _os.close(fd)

    def check(self) -> None:
        """Reap the child if it has exited; otherwise keep waiting."""
        self.call = None
        if _poll_child(self.popen) is not None:
            self._drop_pidfd()
            _reapers.discard(self)
            return
        if self.pidfd is not None:
            # Readable, yet not reaped: another thread holds the Popen's waitpid lock.
            self._drop_pidfd()
        self.delay = min(self.delay * 2, _BACKOFF_MAX)
        self.call = self.reactor.callLater(self.delay, self.check)


# -- Popen --------------------------------------------------------------------------------------


class Popen(_std.Popen[Any]):  # type: ignore[no-redef]
    """The stdlib's ``Popen`` whose waits park only the calling green thread.

    Same arguments, attributes and behaviour as ``subprocess.Popen``; see the module's
    docstring for what is green.  Called from another OS thread, or from the hub, every method
    behaves exactly like the stdlib's.
    """

    def __init__(self, args: Any, bufsize: int | None = -1, *more: Any, **kwargs: Any) -> None:
        self._green_bufsize = -1 if bufsize is None else bufsize
        self._green_ends = (-1, -1, -1)
        self._green_reaper: _Reaper | None = None
        super().__init__(args, self._green_bufsize, *more, **kwargs)

    # The stdlib's __init__ gets the handles, wraps the parent's ends with io.open, then starts
    # the child.  Here the parent's ends are wrapped green as soon as the handles are made, and
    # kept back from the stdlib's wrapping (it sees -1); _execute_child gets the real fds back.

    def _get_handles(self, stdin: Any, stdout: Any, stderr: Any) -> tuple[int, ...]:
        handles: tuple[int, ...] = _StdPopen._get_handles(self, stdin, stdout, stderr)
        p2cread, p2cwrite, c2pread, c2pwrite, errread, errwrite = handles
        self._green_ends = (p2cwrite, c2pread, errread)
        try:
            self._wrap_green_ends()
        except BaseException:
            # The stdlib's __init__ has not reached its own clean-up yet: close the pipes.
            for mine, theirs in ((p2cwrite, p2cread), (c2pread, c2pwrite), (errread, errwrite)):
                if mine != -1:
                    _os.close(theirs)
            raise
        return (p2cread, -1, -1, c2pwrite, -1, errwrite)

    def _wrap_green_ends(self) -> None:
        me: Any = self
        p2cwrite, c2pread, errread = me._green_ends
        bufsize = me._green_bufsize
        text = bool(me.text_mode)
        line_buffering = text and bufsize == 1
        if text and bufsize == 1:
            bufsize = -1
        wrapped: list[int] = []
        try:
            if p2cwrite != -1:
                stdin: Any = _open_pipe(p2cwrite, "wb", bufsize)
                wrapped.append(p2cwrite)
                me.stdin = stdin
                if text:
                    me.stdin = _io.TextIOWrapper(
                        stdin,
                        write_through=True,
                        line_buffering=line_buffering,
                        encoding=me.encoding,
                        errors=me.errors,
                    )
            for fd, name in ((c2pread, "stdout"), (errread, "stderr")):
                if fd != -1:
                    f: Any = _open_pipe(fd, "rb", bufsize)
                    wrapped.append(fd)
                    setattr(me, name, f)
                    if text:
                        setattr(
                            me,
                            name,
                            _io.TextIOWrapper(f, encoding=me.encoding, errors=me.errors),
                        )
        except BaseException:
            for f in (me.stdin, me.stdout, me.stderr):
                if f is not None:
                    f.close()
            me.stdin = me.stdout = me.stderr = None
            for fd in me._green_ends:
                if fd != -1 and fd not in wrapped:
                    _os.close(fd)
            raise

    def _execute_child(self, *args: Any) -> None:
        args_ = list(args)
        # (args, executable, preexec_fn, close_fds, pass_fds, cwd, env, startupinfo,
        #  creationflags, shell, p2cread, p2cwrite, c2pread, c2pwrite, errread, errwrite, ...)
        args_[11], args_[12], args_[14] = self._green_ends
        _StdPopen._execute_child(self, *args_)

    # -- waiting ----------------------------------------------------------------------------

    def _abandon(self) -> None:
        """The green thread waiting for the child is leaving: reap the child when it exits."""
        if self._green_reaper is not None or self.returncode is not None or self.pid is None:
            return
        if _poll_child(self) is None:
            self._green_reaper = _Reaper(self, _get_hub().reactor)

    def wait(self, timeout: float | None = None) -> int:
        """Wait for the child to exit (up to ``timeout`` s: ``TimeoutExpired``); its status.

        A green thread parks on the reactor; killed meanwhile, it leaves the child to the
        background reaper.
        """
        if _fdwait.green_caller() is None:
            code: int = super().wait(timeout)
            return code
        try:
            code = super().wait(timeout)
        except _TimeoutExpired:
            raise
        except BaseException:
            self._abandon()
            raise
        return code

    def _wait(self, timeout: float | None) -> int | None:
        if self.returncode is not None or _fdwait.green_caller() is None:
            code: int | None = _StdPopen._wait(self, timeout)
            return code
        deadline = None if timeout is None else _monotonic() + timeout
        self._green_wait(deadline, timeout)
        return self.returncode

    def _green_wait(self, deadline: float | None, timeout: float | None) -> None:
        pidfd = _open_pidfd(self.pid)
        delay = _BACKOFF_FIRST
        try:
            while _try_reap(self) is None:
                left = None if deadline is None else deadline - _monotonic()
                if left is not None and left <= 0:
                    raise _TimeoutExpired(self.args, timeout)  # type: ignore[arg-type]
                if pidfd is not None:
                    # Once it has exited, if another thread is reaping it meanwhile (its waitpid
                    # lock is taken), poll rather than wake on the readable pidfd again.
                    if _fdwait.wait(pidfd, False, left) and _try_reap(self) is None:
                        _close_pidfd(pidfd)
                        pidfd = None
                    continue
                _green_sleep(delay if left is None else min(delay, left))
                delay = min(delay * 2, _BACKOFF_MAX)
        finally:
            if pidfd is not None:
                _close_pidfd(pidfd)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if (
            exc_type is not None
            and issubclass(exc_type, _GreenletExit)
            and self.returncode is None
            and _fdwait.green_caller() is not None
        ):
            # The green thread is being killed: close the pipes, let the reaper wait.
            try:
                for f in (self.stdout, self.stderr, self.stdin):
                    if f:
                        with _contextlib.suppress(OSError):
                            f.close()
            finally:
                self._abandon()
            return
        _StdPopen.__exit__(self, exc_type, value, traceback)

    # -- communicate ------------------------------------------------------------------------

    def communicate(self, input: Any = None, timeout: float | None = None) -> tuple[Any, Any]:
        """Send ``input``, read stdout and stderr to their ends, wait for the child.

        The stdlib's semantics (``TimeoutExpired`` carries the output so far, and a later call
        carries on); a green thread parks on all the pipes at once, and killed meanwhile, it
        leaves the child to the background reaper.
        """
        if _fdwait.green_caller() is None:
            out: tuple[Any, Any] = super().communicate(input, timeout)
            return out
        try:
            out = super().communicate(input, timeout)
        except _TimeoutExpired:
            raise
        except BaseException:
            self._abandon()
            raise
        return out

    def _communicate(
        self, input: Any, endtime: float | None, orig_timeout: float | None
    ) -> tuple[Any, Any]:
        caller = _fdwait.green_caller()
        if caller is None:
            out: tuple[Any, Any] = _StdPopen._communicate(self, input, endtime, orig_timeout)
            return out
        return self._green_communicate(caller, input, endtime, orig_timeout)

    def _green_communicate(
        self, caller: Any, input: Any, endtime: float | None, orig_timeout: float | None
    ) -> tuple[Any, Any]:
        me: Any = self
        hub, greenlet = caller
        if me.stdin and not me._communication_started:
            with _contextlib.suppress(BrokenPipeError):  # the child has gone: ignored
                me.stdin.flush()
            if not input:
                with _contextlib.suppress(BrokenPipeError):
                    me.stdin.close()
        if not me._communication_started:
            me._fileobj2output = {}
            for f in (me.stdout, me.stderr):
                if f:
                    me._fileobj2output[f] = []
        stdout = me._fileobj2output[me.stdout] if me.stdout else None
        stderr = me._fileobj2output[me.stderr] if me.stderr else None
        me._save_input(input)
        view = memoryview(me._input) if me._input else None

        files: dict[int, Any] = {}  # fd -> its file object, while it is served
        poller = _std_poll()
        if me.stdin and input:
            fd = me.stdin.fileno()
            files[fd] = me.stdin
            poller.register(fd, _POLLOUT)
        for f in (me.stdout, me.stderr):
            if f and not f.closed:
                files[f.fileno()] = f
                poller.register(f.fileno(), _POLLIN)

        def done_with(fd: int) -> None:
            poller.unregister(fd)
            files.pop(fd).close()

        since = _monotonic()
        while files:
            since = _share(since)
            ready = poller.poll(0)
            if not ready:
                left = None if endtime is None else endtime - _monotonic()
                if left is not None and left <= 0:
                    me._check_timeout(endtime, orig_timeout, stdout, stderr, True)
                writers = [fd for fd, f in files.items() if f is me.stdin]
                readers = [fd for fd in files if fd not in writers]
                _fdwait.wait_many(hub, greenlet, readers, writers, left)
                ready = poller.poll(0)
            me._check_timeout(endtime, orig_timeout, stdout, stderr)
            for fd, _events in ready:
                f = files.get(fd)
                if f is None:
                    continue
                if f is me.stdin:
                    assert view is not None
                    chunk = view[me._input_offset : me._input_offset + _PIPE_BUF]
                    try:
                        me._input_offset += _os.write(fd, chunk)
                    except BrokenPipeError:
                        done_with(fd)
                    else:
                        if me._input_offset >= len(view):
                            done_with(fd)
                else:
                    data = _os.read(fd, _READ_SIZE)
                    if not data:
                        done_with(fd)
                    me._fileobj2output[f].append(data)

        me.wait(timeout=me._remaining_time(endtime))
        out = None if stdout is None else b"".join(stdout)
        err = None if stderr is None else b"".join(stderr)
        if me.text_mode:
            if out is not None:
                assert me.stdout is not None
                out = me._translate_newlines(out, me.stdout.encoding, me.stdout.errors)
            if err is not None:
                assert me.stderr is not None
                err = me._translate_newlines(err, me.stderr.encoding, me.stderr.errors)
        return out, err


# -- the convenience functions, over the green Popen ----------------------------------------------


def call(*popenargs: Any, timeout: float | None = None, **kwargs: Any) -> int:  # type: ignore[no-redef]
    """Run a command, wait for it (up to ``timeout`` s), return its exit status."""
    with Popen(*popenargs, **kwargs) as p:
        try:
            code: int = p.wait(timeout=timeout)
            return code
        except BaseException:
            p.kill()
            raise


def check_call(*popenargs: Any, **kwargs: Any) -> int:  # type: ignore[no-redef]
    """:func:`call`, raising ``CalledProcessError`` on a non-zero exit status; else 0."""
    code = call(*popenargs, **kwargs)
    if code:
        cmd = kwargs.get("args")
        if cmd is None:
            cmd = popenargs[0]
        raise _CalledProcessError(code, cmd)
    return 0


def run(  # type: ignore[no-redef]
    *popenargs: Any,
    input: Any = None,
    capture_output: bool = False,
    timeout: float | None = None,
    check: bool = False,
    **kwargs: Any,
) -> _std.CompletedProcess[Any]:
    """Run a command and wait for it; a ``CompletedProcess`` (the stdlib's ``run``).

    On a timeout the child is killed and reaped, then ``TimeoutExpired`` is raised; with
    ``check=True`` a non-zero exit status raises ``CalledProcessError``.
    """
    if input is not None:
        if kwargs.get("stdin") is not None:
            raise ValueError("stdin and input arguments may not both be used.")
        kwargs["stdin"] = _PIPE
    if capture_output:
        if kwargs.get("stdout") is not None or kwargs.get("stderr") is not None:
            raise ValueError("stdout and stderr arguments may not be used with capture_output.")
        kwargs["stdout"] = _PIPE
        kwargs["stderr"] = _PIPE
    with Popen(*popenargs, **kwargs) as process:
        try:
            stdout, stderr = process.communicate(input, timeout=timeout)
        except _TimeoutExpired:
            process.kill()
            process.wait()  # (the output so far is already in the exception)
            raise
        except BaseException:
            process.kill()  # __exit__ reaps it
            raise
        code = process.poll()
        if check and code:
            raise _CalledProcessError(code, process.args, output=stdout, stderr=stderr)
    return _CompletedProcess(process.args, code, stdout, stderr)  # type: ignore[arg-type]


def check_output(*popenargs: Any, timeout: float | None = None, **kwargs: Any) -> Any:  # type: ignore[no-redef]
    """A command's standard output; ``CalledProcessError`` on a non-zero exit status."""
    for name in ("stdout", "check"):
        if name in kwargs:
            raise ValueError(f"{name} argument not allowed, it will be overridden.")
    if "input" in kwargs and kwargs["input"] is None:
        text = any(kwargs.get(k) for k in ("universal_newlines", "text", "encoding", "errors"))
        kwargs["input"] = "" if text else b""
    green_run: Any = run
    completed: Any = green_run(*popenargs, stdout=_PIPE, timeout=timeout, check=True, **kwargs)
    return completed.stdout


def getstatusoutput(  # type: ignore[no-redef]
    cmd: str | bytes, *, encoding: str | None = None, errors: str | None = None
) -> tuple[int, str]:
    """(exit status, output) of ``cmd`` run by the shell, stderr included, last newline off."""
    try:
        data = check_output(
            cmd, shell=True, text=True, stderr=_STDOUT, encoding=encoding, errors=errors
        )
        status = 0
    except _CalledProcessError as ex:
        data = ex.output
        status = ex.returncode
    if data[-1:] == "\n":
        data = data[:-1]
    return status, data


def getoutput(  # type: ignore[no-redef]
    cmd: str | bytes, *, encoding: str | None = None, errors: str | None = None
) -> str:
    """The output of ``cmd`` run by the shell (:func:`getstatusoutput` without the status)."""
    status_output: Any = getstatusoutput
    return str(status_output(cmd, encoding=encoding, errors=errors)[1])
