"""``python -m txgreen run``: an unmodified program, patched, in the main green thread."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from support import PROGRAM_TEST_MARKS

pytestmark = PROGRAM_TEST_MARKS


def txgreen_run(
    *args: str, cwd: Path | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "txgreen", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
    )


def write(path: Path, code: str) -> Path:
    path.write_text(textwrap.dedent(code))
    return path


PROBE = """
    import socket, sys, time
    import greenlet, txgreen
    from twisted.internet import reactor
    print("green thread:", isinstance(greenlet.getcurrent(), txgreen.GreenThread))
    print("socket:", socket.socket.__module__)
    print("reactor:", type(reactor).__name__)
    print("args:", sys.argv)
    print("main:", __name__)
    sys.exit(int(sys.argv[1]) if len(sys.argv) > 1 else 0)
"""


def test_a_script_runs_patched_in_a_green_thread_with_its_args_and_exit_status(
    tmp_path: Path,
) -> None:
    script = write(tmp_path / "probe.py", PROBE)
    done = txgreen_run("run", str(script), "3")
    assert done.returncode == 3, done.stderr
    assert done.stdout.splitlines() == [
        "green thread: True",
        "socket: txgreen.green.socket",
        "reactor: EPollReactor",
        f"args: [{str(script)!r}, '3']",
        "main: __main__",
    ]


def test_no_patch_and_reactor_options(tmp_path: Path) -> None:
    script = write(tmp_path / "probe.py", PROBE)
    done = txgreen_run("run", "--no-patch", "--reactor", "poll", str(script))
    assert done.returncode == 0, done.stderr
    assert "socket: socket" in done.stdout
    assert "reactor: PollReactor" in done.stdout


def test_a_module_runs_with_dash_m(tmp_path: Path) -> None:
    package = tmp_path / "app"
    package.mkdir()
    (package / "__init__.py").write_text("")
    write(package / "main.py", PROBE)
    done = txgreen_run("run", "-m", "app.main", "0", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "green thread: True" in done.stdout
    assert "main: __main__" in done.stdout
    assert "socket: txgreen.green.socket" in done.stdout


def test_an_uncaught_error_prints_a_traceback_of_the_programs_own_frames(tmp_path: Path) -> None:
    script = write(
        tmp_path / "fails.py",
        """
        def inner():
            raise ValueError("the program's own error")

        inner()
        """,
    )
    done = txgreen_run("run", str(script))
    assert done.returncode == 1
    lines = done.stderr.splitlines()
    assert lines[0] == "Traceback (most recent call last):"
    assert lines[1].startswith(f'  File "{script}", line 5')
    assert lines[-1] == "ValueError: the program's own error"
    assert "txgreen" not in done.stderr  # no frames of the machinery


def test_bad_command_lines_say_what_to_do(tmp_path: Path) -> None:
    missing = txgreen_run("run", str(tmp_path / "nope.py"))
    assert missing.returncode == 2
    assert "cannot open" in missing.stderr
    assert "nope.py" in missing.stderr
    nothing = txgreen_run("run")
    assert nothing.returncode == 2
    assert "name a script to run" in nothing.stderr
    unknown = txgreen_run("serve-me")
    assert unknown.returncode == 2
    assert "unknown command 'serve-me'" in unknown.stderr
    assert "usage: python -m txgreen" in unknown.stderr
    bare = txgreen_run()
    assert bare.returncode == 2
    assert "commands:" in bare.stderr


@pytest.mark.skipif(sys.platform == "win32", reason="SIGINT to a child")
def test_ctrl_c_interrupts_a_program_sleeping_in_a_patched_call(tmp_path: Path) -> None:
    script = write(
        tmp_path / "sleeper.py",
        """
        import time
        print("ready", flush=True)
        time.sleep(60)
        """,
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "txgreen", "run", str(script)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline() == "ready\n"
        os.kill(proc.pid, signal.SIGINT)
        _, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 130, err
    assert "KeyboardInterrupt" in err
