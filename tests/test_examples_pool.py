"""examples/pipeline.py, run as a program: a Pool-bounded crawler over a loopback web site."""

from __future__ import annotations

import re

from support import PROGRAM_TEST_MARKS, run_program

pytestmark = PROGRAM_TEST_MARKS

EXPECTED_PAGES = [
    "  200 /              3 links",
    "  200 /about         2 links",
    "  200 /blog          3 links",
    "  200 /blog/1        1 links",
    "  200 /blog/2        2 links",
    "  200 /blog/3        1 links",
    "  404 /old-post      0 links",
    "  200 /shop          3 links",
    "  200 /shop/cart     0 links",
    "  200 /shop/item/1   1 links",
    "  200 /shop/item/2   2 links",
    "  404 /shop/item/3   0 links",
    "  200 /team          1 links",
]


def test_pipeline_crawls_every_page_with_bounded_concurrency() -> None:
    proc = run_program("examples/pipeline.py")
    assert (proc.returncode, proc.stderr) == (0, ""), proc.stderr
    lines = proc.stdout.splitlines()
    assert len(lines) == 16, lines
    assert re.fullmatch(
        r"pipeline: crawling http://127\.0\.0\.1:\d+/ with Pool\(size=4\), 50 ms per page",
        lines[0],
    ), lines[0]
    # Every reachable page once, each broken link reported; sorted by path.
    assert lines[1:14] == EXPECTED_PAGES
    m = re.fullmatch(
        r"crawled 13 pages in (\d+\.\d\d) s \(11 ok, 2 broken: /old-post, /shop/item/3\); "
        r"one at a time: 0\.65 s",
        lines[14],
    )
    assert m is not None, lines[14]
    # Four levels of links, the third one 7 pages wide (two rounds of 4): at least 5 x 50 ms,
    # and less than fetching the 13 pages one after another.
    assert 0.25 <= float(m[1]) < 0.65
    m = re.fullmatch(
        r"requests in flight at once: crawler (\d+), server (\d+) \(pool size 4\)", lines[15]
    )
    assert m is not None, lines[15]
    # The crawler's own count is exact: the widest level keeps the pool full.  The server sees
    # at most as many (connections may reach it a little apart).
    assert int(m[1]) == 4
    assert 2 <= int(m[2]) <= 4
