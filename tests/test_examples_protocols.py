"""examples/amp_sync.py and examples/http_get.py, each run as a program in a subprocess."""

from __future__ import annotations

from support import PROGRAM_TEST_MARKS, run_program

# single_reactor (each program runs its own reactor) and a test timeout above the 60 s of
# the subprocess.
pytestmark = PROGRAM_TEST_MARKS


def test_amp_sync() -> None:
    proc = run_program("examples/amp_sync.py")
    assert (proc.returncode, proc.stderr) == (0, "")
    assert proc.stdout.splitlines() == [
        "AMP server listening on 127.0.0.1",
        "sum(1, 2) = 3",
        "price(apple) = 3 cents",
        "price(pear) = 4 cents",
        "price(plum) = 2 cents",
        # The three lookups ran at once, each in its own green thread on the server.
        "three 0.2s lookups took less than 0.6s (one after another: 0.6s)",
        "price(durian) raised UnknownFruit: no price for 'durian'",
        "done",
    ]


def test_http_get() -> None:
    proc = run_program("examples/http_get.py")
    assert (proc.returncode, proc.stderr) == (0, "")
    assert proc.stdout.splitlines() == [
        "web server listening on 127.0.0.1",
        "GET /: 200 (text/plain; charset=utf-8) b'hello, world\\n'",
        "GET /alice: 200 (text/plain; charset=utf-8) b'hello, alice\\n'",
        "GET /bob: 200 (text/plain; charset=utf-8) b'hello, bob\\n'",
        "GET /carol: 200 (text/plain; charset=utf-8) b'hello, carol\\n'",
        # The three requests were served at once, each rendered in its own green thread.
        "three 0.2s requests at once took less than 0.6s (one after another: 0.6s)",
        "done",
    ]
