from __future__ import annotations

import pytest
from twisted.internet import defer, reactor, task

import txgreen


def test_block_on_round_trip() -> None:
    assert txgreen.block_on(task.deferLater(reactor, 0, lambda: 7)) == 7


def test_spawn_join() -> None:
    gts = [txgreen.spawn(lambda i: i * 2, i) for i in range(3)]
    assert [g.get() for g in gts] == [0, 2, 4]


def test_timeout() -> None:
    d: defer.Deferred[None] = defer.Deferred()
    with pytest.raises(txgreen.Timeout):
        txgreen.block_on(d, timeout=0.01)
    assert d.called


@pytest.mark.in_hub
def test_in_hub_raises() -> None:
    with pytest.raises(txgreen.BlockingInHubError, match="spawn"):
        txgreen.block_on(defer.Deferred())


@pytest.mark.timeout(0.2)
@pytest.mark.xfail(raises=txgreen.TestDeadlineExceeded, strict=True)
def test_deadline() -> None:
    txgreen.block_on(defer.Deferred())
