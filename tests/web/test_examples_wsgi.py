"""examples/wsgi_app.py, run as a program: its self-test serves a WSGI app and queries it."""

from __future__ import annotations

import re

from support import PROGRAM_TEST_MARKS, run_program

# single_reactor (the program runs its own reactor) and a test timeout above the 60 s of the
# subprocess.
pytestmark = PROGRAM_TEST_MARKS


def test_wsgi_app_self_test() -> None:
    proc = run_program("examples/wsgi_app.py", "--self-test")
    assert (proc.returncode, proc.stderr) == (0, ""), proc.stderr
    lines = proc.stdout.splitlines()
    assert re.fullmatch(r"serving on 127\.0\.0\.1:\d+", lines[0]), lines[0]
    assert lines[1:] == [
        "GET /hello?name=alice -> 200 hello, alice",
        # The application made an HTTP request with Twisted's Agent, to the same server.
        "GET /relay?path=/hello%3Fname%3Dbob -> 200 relayed 200: hello, bob",
        "POST /count (100000 bytes) -> 200 got 100000 bytes",
        "GET /nowhere -> 404 not found: /nowhere",
        # Ten requests that each wait 0.2 s on a Twisted timer, served at once.
        "10 GET /slow at once took less than 1 s (one after another: 2 s)",
        "self-test done",
    ]
