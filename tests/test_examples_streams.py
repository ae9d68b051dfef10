"""examples/chat_server.py and examples/port_forward.py, run as programs: their demos' output."""

from __future__ import annotations

import re

from support import PROGRAM_TEST_MARKS, run_program

pytestmark = PROGRAM_TEST_MARKS

# The chat demo's transcript up to the slow client: every line is deterministic (the demo waits
# for each line to reach every listener before the next step).
CHAT_START = [
    "alice joins",
    "  alice | hello alice; here: nobody else",
    "bob joins",
    "  bob   | hello bob; here: alice",
    "  alice | * bob joined",
    "alice says 'hi bob'",
    "  bob   | <alice> hi bob",
    "carol joins",
    "  carol | hello carol; here: alice, bob",
    "  alice | * carol joined",
    "  bob   | * carol joined",
    "bob says 'welcome carol'",
    "  alice | <bob> welcome carol",
    "  carol | <bob> welcome carol",
    "carol says 'thanks! who else is coming?'",
    "  alice | <carol> thanks! who else is coming?",
    "  bob   | <carol> thanks! who else is coming?",
    "dave joins and hangs up at once",
    "  dave  | hello dave; here: alice, bob, carol",
    "  alice | * dave joined",
    "  bob   | * dave joined",
    "  carol | * dave joined",
    "  alice | * dave left",
    "  bob   | * dave left",
    "  carol | * dave left",
    "alice, bob and carol each send 20 lines at once",
    "  alice | got 40 lines, each sender's 20 in order",
    "  bob   | got 40 lines, each sender's 20 in order",
    "  carol | got 40 lines, each sender's 20 in order",
    "eve joins",
    "  eve   | hello eve; here: alice, bob, carol",
    "  alice | * eve joined",
    "  bob   | * eve joined",
    "  carol | * eve joined",
    "eve stops reading; alice sends 50,000-byte lines until the server drops eve",
]
CHAT_END = [
    "bob leaves",
    "  bob   | bye bob",
    "  alice | * bob left",
    "  carol | * bob left",
    "carol says 'bye alice'",
    "  alice | <carol> bye alice",
    "alice leaves",
    "  alice | bye alice",
    "  carol | * alice left",
    "carol leaves",
    "  carol | bye carol",
]


def test_chat_server_relays_between_clients_and_drops_a_slow_one() -> None:
    proc = run_program("examples/chat_server.py")
    assert (proc.returncode, proc.stderr) == (0, ""), proc.stderr
    lines = proc.stdout.splitlines()
    assert re.fullmatch(r"chat server listening on 127\.0\.0\.1:\d+", lines[0]), lines[0]
    assert lines[1 : 1 + len(CHAT_START)] == CHAT_START
    rest = lines[1 + len(CHAT_START) :]
    assert len(rest) == 4 + len(CHAT_END) + 1, rest
    assert rest[:3] == [
        "  alice | * eve was dropped (too slow)",
        "  bob   | got all of alice's long lines, and: * eve was dropped (too slow)",
        "  carol | got all of alice's long lines, and: * eve was dropped (too slow)",
    ]
    m = re.fullmatch(
        r"eve was dropped after (\d+) lines \(the server keeps 64 per member\)", rest[3]
    )
    assert m is not None, rest[3]
    sent = int(m[1])
    # Eve is dropped once her outbox holds 62 lines (of 64: two places stay free for "bye" and
    # the writer's stop signal): at least that many were sent.
    assert 62 <= sent < 1000
    assert rest[4:-1] == CHAT_END
    m = re.fullmatch(
        r"server: (\d+) messages relayed as (\d+) lines, 0 members left, 1 dropped", rest[-1]
    )
    assert m is not None, rest[-1]
    # 3 chat lines, 60 in the burst, the flood, "bye alice".
    assert int(m[1]) == 3 + 60 + sent + 1
    # Every line to the members that stayed (144 of them besides the flood, which bob and carol
    # get in full), plus the part of the flood eve was queued before she was dropped: at least
    # her outbox's worth, at most all of it.
    to_eve = int(m[2]) - 144 - 2 * sent
    assert 62 <= to_eve <= sent, to_eve


def test_port_forward_relays_both_ways_and_passes_half_closes_on() -> None:
    proc = run_program("examples/port_forward.py")
    assert (proc.returncode, proc.stderr) == (0, ""), proc.stderr
    lines = proc.stdout.splitlines()
    assert len(lines) == 7, lines
    m = re.fullmatch(r"upstream \(upper-casing echo\) on 127\.0\.0\.1:(\d+)", lines[0])
    assert m is not None, lines[0]
    upstream_port = m[1]
    assert re.fullmatch(
        rf"forwarder on 127\.0\.0\.1:\d+ -> 127\.0\.0\.1:{upstream_port}", lines[1]
    ), lines[1]
    # Each client's payload came back upper-cased, then the summary the upstream wrote after it
    # saw the EOF that the forwarder passed on, then the EOF passed back.
    sizes = [20 + n * 100 * 1024 for n in range(4)]
    assert lines[2:6] == [
        f"client {n}: sent {size:,} bytes + EOF, got them back upper-cased + "
        f"'upstream: {size} bytes, then EOF\\n'"
        for n, size in enumerate(sizes)
    ]
    back = sum(sizes) + sum(len(f"upstream: {size} bytes, then EOF\n") for size in sizes)
    assert lines[6] == (
        f"forwarder: 4 connections, {sum(sizes):,} bytes to upstream, {back:,} bytes back, "
        "8 half-closes passed on"
    )
