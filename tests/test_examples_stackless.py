"""examples/stackless_pingpong.py, run as a program."""

from __future__ import annotations

import pytest

from support import PROGRAM_TEST_MARKS, run_program

pytestmark = PROGRAM_TEST_MARKS


@pytest.mark.in_hub  # it only waits for a subprocess
def test_stackless_pingpong() -> None:
    proc = run_program("examples/stackless_pingpong.py")
    assert (proc.returncode, proc.stderr) == (0, "")
    assert proc.stdout.splitlines() == [
        "runnables before run(): 3",
        "ping 1",
        "  pong 1",
        "ping 2",
        "  pong 2",
        "ping 3",
        "  pong 3",
        "pong: game over",
        "runnables after run(): 1",
        "listener blocked on its channel: True",
        "timer sends 1",
        "listener got tick 1",
        "timer sends 2",
        "listener got tick 2",
        "timer sends 3",
        "listener got tick 3",
        "timer sends None",
        "sum of ticks: 6",
    ]


PLAIN_SCRIPT = """
import txgreen.stackless as stackless
from twisted.internet import reactor

log = []
ch = stackless.channel()
stackless.tasklet(lambda: [ch.send(i) for i in range(3)])()
stackless.tasklet(lambda: log.extend(ch.receive() for _ in range(3)))()
stackless.run()
ticks = stackless.channel()
reactor.callLater(0.01, ticks.send, "tick")
log.append(ticks.receive())
stuck = stackless.tasklet(stackless.channel().receive)()
stackless.run()
print(log, stuck.blocked)
"""


@pytest.mark.in_hub
def test_plain_script_without_txgreen_run() -> None:
    # Stackless style: module-level code, no txgreen.run(); the first wait starts the reactor,
    # which stops at exit, ending the tasklet still blocked then without a fuss.
    proc = run_program("-c", PLAIN_SCRIPT)
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, "[0, 1, 2, 'tick'] True\n", "")
