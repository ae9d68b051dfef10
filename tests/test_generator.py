"""txgreen.generator: greenlet-based generators, checked against native generators."""

from __future__ import annotations

import gc
import subprocess
import sys
import traceback
from collections.abc import Callable, Generator, Iterator
from typing import Any

import pytest
from twisted.internet import task
from twisted.internet.defer import Deferred

import txgreen
from support import Boom, log_events
from txgreen._generator import GreenGenerator, generator

Yield = Callable[[Any], Any]
Op = tuple[str, Any]


def outcomes(gen: Iterator[Any], ops: list[Op]) -> list[tuple[Any, ...]]:
    """Apply ``ops`` to a generator and record each outcome (value, StopIteration or error)."""
    out: list[tuple[Any, ...]] = []
    for op, arg in ops:
        try:
            if op == "next":
                r = next(gen)
            elif op == "send":
                r = gen.send(arg)  # type: ignore[attr-defined]
            elif op == "throw":
                r = gen.throw(arg)  # type: ignore[attr-defined]
            else:
                r = gen.close()  # type: ignore[attr-defined]
            out.append(("value", r))
        except StopIteration as e:
            out.append(("stop", e.value))
        except BaseException as e:
            out.append(("raise", type(e).__name__, str(e)))
    return out


# The same behaviour written as a native generator and as a txgreen.generator body.


def native_echo(log: list[str]) -> Generator[Any, Any, str]:
    try:
        x = yield 1
        while x != "stop":
            try:
                x = yield ("echo", x)
            except Boom as e:
                x = yield ("caught", str(e))
        return "returned"
    finally:
        log.append("finally")


def green_echo(yield_: Yield, log: list[str]) -> str:
    try:
        x = yield_(1)
        while x != "stop":
            try:
                x = yield_(("echo", x))
            except Boom as e:
                x = yield_(("caught", str(e)))
        return "returned"
    finally:
        log.append("finally")


SCRIPTS: dict[str, list[Op]] = {
    "next_send_return": [("next", None), ("send", "a"), ("send", "stop"), ("next", None)],
    "throw_handled": [("next", None), ("throw", Boom("b")), ("send", "c")],
    "throw_unhandled": [("next", None), ("throw", ValueError("v")), ("next", None)],
    "throw_class": [("next", None), ("throw", Boom)],
    "throw_before_start": [("throw", Boom("early")), ("next", None)],
    "send_before_start": [("send", "x"), ("next", None)],
    "close_pending": [("next", None), ("close", None), ("next", None), ("close", None)],
    "close_before_start": [("close", None), ("next", None)],
    "close_after_end": [("next", None), ("send", "stop"), ("close", None)],
    "exhausted": [("next", None), ("send", "stop"), ("next", None), ("send", 1)],
    "throw_after_end": [("next", None), ("send", "stop"), ("throw", Boom("late"))],
}


@pytest.mark.parametrize("script", sorted(SCRIPTS))
def test_behaves_like_a_native_generator(script: str) -> None:
    native_log: list[str] = []
    green_log: list[str] = []
    native = outcomes(native_echo(native_log), SCRIPTS[script])
    green = outcomes(generator(green_echo, green_log), SCRIPTS[script])
    assert green == native
    assert green_log == native_log


def test_yield_from_nested_calls() -> None:
    tree = [1, [2, [3, [4]], 5], [], 6]

    def native(t: Any) -> Iterator[int]:
        if isinstance(t, list):
            for c in t:
                yield from native(c)
        else:
            yield t

    def walk(yield_: Yield, t: Any) -> None:
        def rec(node: Any) -> None:
            if isinstance(node, list):
                for c in node:
                    rec(c)
            else:
                yield_(node)

        rec(t)

    assert list(generator(walk, tree)) == list(native(tree)) == [1, 2, 3, 4, 5, 6]
    assert [x * 10 for x in generator(walk, [7, [8]])] == [70, 80]


def test_body_starts_at_first_next_and_gets_args() -> None:
    log: list[Any] = []

    def body(yield_: Yield, a: int, *, b: int) -> None:
        log.append(("started", a, b))
        yield_(a + b)

    g = generator(body, 1, b=2)
    assert log == []
    assert isinstance(g, GreenGenerator)
    assert iter(g) is g
    assert next(g) == 3
    assert log == [("started", 1, 2)]
    assert list(g) == []


def test_ignoring_generator_exit_is_an_error() -> None:
    def native() -> Iterator[int]:
        try:
            yield 1
        except GeneratorExit:
            yield 2

    def green(yield_: Yield) -> None:
        try:
            yield_(1)
        except GeneratorExit:
            yield_(2)

    ops: list[Op] = [("next", None), ("close", None)]
    assert outcomes(generator(green), ops) == outcomes(native(), ops)
    assert outcomes(generator(green), ops)[1] == (
        "raise",
        "RuntimeError",
        "generator ignored GeneratorExit",
    )


def test_stop_iteration_in_body_becomes_runtime_error() -> None:
    def native() -> Iterator[int]:
        yield 1
        raise StopIteration("inner")

    def green(yield_: Yield) -> None:
        yield_(1)
        raise StopIteration("inner")

    ops: list[Op] = [("next", None), ("next", None), ("next", None)]
    assert outcomes(generator(green), ops) == outcomes(native(), ops)
    g = generator(green)
    next(g)
    with pytest.raises(RuntimeError, match="generator raised StopIteration") as info:
        next(g)
    assert isinstance(info.value.__cause__, StopIteration)


def test_exception_keeps_the_body_traceback() -> None:
    def deep() -> None:
        raise Boom("in body")

    def body(yield_: Yield) -> None:
        yield_(1)
        deep()

    g = generator(body)
    assert next(g) == 1
    with pytest.raises(Boom, match="in body") as info:
        next(g)
    names = [f.name for f in traceback.extract_tb(info.value.__traceback__)]
    assert names[0] == "test_exception_keeps_the_body_traceback"
    assert names[-2:] == ["body", "deep"]


def test_dropping_the_generator_closes_it() -> None:
    log: list[str] = []
    g = generator(green_echo, log)
    next(g)
    del g  # the last reference: closed at once, as CPython closes a native generator
    assert log == ["finally"]


def test_break_out_of_for_then_close() -> None:
    log: list[str] = []
    g = generator(green_echo, log)
    for x in g:
        assert x == 1
        break
    assert log == []
    g.close()
    assert log == ["finally"]


def test_yield_outside_the_body_is_an_error() -> None:
    kept: list[Yield] = []

    def body(yield_: Yield) -> None:
        kept.append(yield_)
        yield_(1)

    g = generator(body)
    next(g)
    with pytest.raises(RuntimeError, match=r"yield_\(\) of <txgreen.generator .*body> was called"):
        kept[0](2)  # from the consumer, while the body is suspended
    assert list(g) == []
    with pytest.raises(RuntimeError, match="outside that generator's body"):
        kept[0](3)  # after the end


def test_yield_of_an_outer_generator_from_an_inner_body() -> None:
    def inner(yield_: Yield, outer_yield: Yield) -> None:
        outer_yield("wrong")

    def outer(yield_: Yield) -> None:
        list(generator(inner, yield_))

    with pytest.raises(RuntimeError, match="outside that generator's body"):
        next(generator(outer))


def test_nested_generators() -> None:
    def numbers(yield_: Yield, n: int) -> None:
        for i in range(n):
            yield_(i)

    def pairs(yield_: Yield) -> None:
        for i in generator(numbers, 3):
            yield_((i, list(generator(numbers, i))))

    assert list(generator(pairs)) == [(0, []), (1, [0]), (2, [0, 1])]


def test_reentrant_next_is_refused() -> None:
    box: list[Iterator[Any]] = []

    def body(yield_: Yield) -> None:
        next(box[0])

    def native() -> Iterator[int]:
        next(box[0])
        yield 1

    for make in (lambda: generator(body), native):
        box[:] = [make()]
        with pytest.raises(ValueError, match="generator already executing"):
            next(box[0])


def test_throw_with_traceback_and_bad_arguments() -> None:
    def body(yield_: Yield) -> None:
        yield_(1)

    try:
        raise Boom("tb")
    except Boom as e:
        tb = e.__traceback__
    g = generator(body)
    next(g)
    with pytest.raises(Boom) as info:
        g.throw(Boom, Boom("x"), tb)
    names = [f.name for f in traceback.extract_tb(info.value.__traceback__)]
    assert "test_throw_with_traceback_and_bad_arguments" in names
    g = generator(body)
    with pytest.raises(TypeError, match="exceptions must be classes or instances"):
        g.throw(42)  # type: ignore[call-overload]
    with pytest.raises(TypeError, match="instance exception may not have a separate value"):
        g.throw(Boom("a"), "b")  # type: ignore[call-overload]


def test_repr() -> None:
    def body(yield_: Yield) -> None:
        yield_(1)

    g = generator(body)
    assert repr(g).startswith("<txgreen.generator ")
    assert "body" in repr(g)
    g.close()
    assert repr(g) == "<txgreen.generator (finished)>"


# -- with green threads and the reactor -------------------------------------------------------


def _reactor() -> Any:
    from twisted.internet import reactor

    return reactor


def test_body_may_block_while_other_green_threads_run() -> None:
    log: list[str] = []

    def body(yield_: Yield) -> None:
        d: Deferred[str] = task.deferLater(_reactor(), 0, lambda: "from the reactor")
        log.append("body waits")
        yield_(txgreen.block_on(d))
        txgreen.sleep(0)
        yield_("after sleep")

    other = txgreen.spawn(log.append, "other green thread ran")
    g = generator(body)
    assert next(g) == "from the reactor"
    assert log == ["body waits", "other green thread ran"]  # ran while the consumer waited
    assert list(g) == ["after sleep"]
    other.join()


def test_timeout_of_the_consumer_reaches_it_at_its_next_wait() -> None:
    # The body runs in a greenlet of its own: a Timeout (or kill) aimed at the consumer is not
    # raised inside the body's block_on, but at the consumer's next blocking call.
    def body(yield_: Yield) -> None:
        yield_(txgreen.block_on(task.deferLater(_reactor(), 0.05, lambda: "late value")))

    log: list[Any] = []
    g = generator(body)

    def consume() -> None:
        with txgreen.Timeout(0.01):
            log.append(next(g))
            txgreen.sleep(0)
            log.append("not reached")

    with pytest.raises(txgreen.Timeout):
        consume()
    assert log == ["late value"]
    g.close()


def test_bound_the_body_wait_with_its_own_timeout() -> None:
    d: Deferred[None] = Deferred()

    def body(yield_: Yield) -> None:
        yield_(txgreen.block_on(d, timeout=0.01))

    with pytest.raises(txgreen.Timeout):
        next(generator(body))
    assert d.called  # cancelled by block_on


@pytest.mark.in_hub
def test_in_the_hub_a_blocking_body_raises_blocking_in_hub_error() -> None:
    d: Deferred[None] = Deferred()
    log: list[str] = []

    def body(yield_: Yield) -> None:
        yield_("fine")
        try:
            txgreen.block_on(d)
        finally:
            log.append("finally")

    g = generator(body)
    assert next(g) == "fine"  # no blocking: works anywhere, the hub included
    with pytest.raises(txgreen.BlockingInHubError, match="consumed by the hub"):
        next(g)
    assert log == ["finally"]
    assert d.called  # block_on cancelled it
    d.addErrback(lambda f: None)
    assert list(g) == []


def test_error_while_closing_on_collection_is_logged() -> None:
    def body(yield_: Yield) -> None:
        try:
            yield_(1)
        finally:
            raise Boom("in finally")

    with log_events(
        lambda e: "Exception ignored while closing" in (e.get("log_format") or "")
    ) as events:
        g = generator(body)
        next(g)
        del g
        gc.collect()
    assert len(events) == 1
    assert isinstance(events[0]["log_failure"].value, Boom)


@pytest.mark.single_reactor
@pytest.mark.in_hub
def test_works_in_plain_code_without_a_reactor() -> None:
    code = (
        "import sys\n"
        "from txgreen._generator import generator\n"
        "def body(y, n):\n"
        "    def inner(i): return y(i * i)\n"
        "    return [inner(i) for i in range(n)]\n"
        "g = generator(body, 4)\n"
        "print(next(g), g.send('a'), list(g))\n"
        "print('twisted.internet.reactor' in sys.modules)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert (proc.returncode, proc.stderr) == (0, "")
    assert proc.stdout.splitlines() == ["0 1 [4, 9]", "False"]


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
@pytest.mark.parametrize("value", [None, "one", (1, 2), ValueError("given")])
def test_throw_builds_the_exception_like_a_native_generator(value: Any) -> None:
    def native() -> Generator[Any, None, None]:
        try:
            yield 1
        except ValueError as e:
            yield e.args

    def green(yield_: Yield) -> None:
        try:
            yield_(1)
        except ValueError as e:
            yield_(e.args)

    n = native()
    g = generator(green)
    assert next(n) == next(g) == 1
    assert g.throw(ValueError, value) == n.throw(ValueError, value)
