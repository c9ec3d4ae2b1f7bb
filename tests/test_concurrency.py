"""Running user code: eager start, async detection, arity checks. Small loops, no network."""

from __future__ import annotations

import asyncio
import contextvars
import functools
import logging
import sys

import pytest

from observable_socket_asgi._concurrency import (
    Continuation,
    arity_accepts,
    finish_in_task,
    is_async_callable,
    start_eagerly,
)

current: contextvars.ContextVar[str] = contextvars.ContextVar("current", default="outside")


async def test_a_coroutine_that_never_suspends_runs_at_once_without_a_task() -> None:
    """It runs inside the call, before start_eagerly returns, and no task is made."""
    ran: list[bool] = []

    async def quick() -> None:
        ran.append(asyncio.current_task() is not None)

    before = len(asyncio.all_tasks())
    assert start_eagerly(quick(), asyncio.get_running_loop()) is None
    assert ran == [True]  # it saw a current task during its one step
    assert len(asyncio.all_tasks()) == before


async def test_a_coroutine_that_suspends_becomes_its_own_task() -> None:
    """Its first step runs at once; the rest runs as a task that is the current task throughout."""
    seen: list[asyncio.Task[object] | None] = []
    steps: list[str] = []

    async def slow() -> None:
        seen.append(asyncio.current_task())
        steps.append("first")
        await asyncio.sleep(0)
        seen.append(asyncio.current_task())
        steps.append("second")

    outer = asyncio.current_task()
    task = start_eagerly(slow(), asyncio.get_running_loop())
    assert steps == ["first"]
    assert task is not None and not task.done()
    assert asyncio.current_task() is outer  # restored after the first step
    await task
    assert steps == ["first", "second"]
    assert seen == [task, task]


async def test_timeout_works_inside_an_eagerly_started_coroutine() -> None:
    """asyncio.timeout() needs the right current task, from the first step on."""
    outcome: list[str] = []

    async def bounded() -> None:
        try:
            async with asyncio.timeout(0):
                await asyncio.sleep(3600)
        except TimeoutError:
            outcome.append("timed out")

    task = start_eagerly(bounded(), asyncio.get_running_loop())
    assert task is not None
    await task
    assert outcome == ["timed out"]


async def test_context_changes_stay_inside_the_coroutine() -> None:
    """The coroutine runs in a copy of the context, as a task would."""
    values: list[str] = []

    async def sets() -> None:
        current.set("inside")
        values.append(current.get())
        await asyncio.sleep(0)
        values.append(current.get())

    task = start_eagerly(sets(), asyncio.get_running_loop())
    assert current.get() == "outside"
    assert task is not None
    await task
    assert values == ["inside", "inside"] and current.get() == "outside"


async def test_cancelling_before_the_second_step_reaches_the_coroutine() -> None:
    """A task cancelled right after its eager first step sees CancelledError at its await."""
    cleaned: list[str] = []

    async def waits() -> None:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            cleaned.append("cancelled")
            raise

    task = start_eagerly(waits(), asyncio.get_running_loop())
    assert task is not None
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert cleaned == ["cancelled"]


@pytest.mark.skipif(sys.version_info >= (3, 12), reason="the shim is used on 3.11 only")
async def test_shim_logs_a_first_step_failure(caplog: pytest.LogCaptureFixture) -> None:
    """On 3.11 a coroutine that raises in its first step returns None and is logged."""

    async def fails() -> None:
        raise RuntimeError("boom")

    with caplog.at_level(logging.ERROR, logger="observable_socket_asgi"):
        assert start_eagerly(fails(), asyncio.get_running_loop()) is None
    assert "request coroutine failed in its first step" in caplog.text
    assert "boom" in caplog.text


def test_is_async_callable() -> None:
    """async functions, partials of them and objects with an async __call__ are async."""

    async def coro(x: int) -> int:
        return x

    def plain(x: int) -> int:
        return x

    class AsyncCall:
        async def __call__(self) -> None:
            return None

    assert is_async_callable(coro)
    assert is_async_callable(functools.partial(coro, 1))
    assert is_async_callable(AsyncCall())
    assert not is_async_callable(plain)
    assert not is_async_callable(functools.partial(plain, 1))
    assert not is_async_callable(AsyncCall)  # the class itself returns an instance
    assert not is_async_callable(42)


def test_arity_accepts() -> None:
    """Positional-argument counts are checked once, from the signature."""

    def two(a: int, b: int) -> None: ...

    def star(*args: int) -> None: ...

    def defaulted(a: int, b: int = 0) -> None: ...

    assert arity_accepts(two, 2) and not arity_accepts(two, 3) and not arity_accepts(two, 1)
    assert arity_accepts(star, 0) and arity_accepts(star, 5)
    assert arity_accepts(defaulted, 1) and arity_accepts(defaulted, 2)
    assert arity_accepts(max, 2)  # a builtin without a signature is assumed to fit


async def test_a_continuation_finishes_a_hand_stepped_coroutine_in_the_same_task() -> None:
    """After one send by hand, awaiting the continuation returns the coroutine's value, and
    every step runs in the awaiting task."""
    seen: list[asyncio.Task[object] | None] = []

    async def work() -> int:
        seen.append(asyncio.current_task())
        await asyncio.sleep(0)
        seen.append(asyncio.current_task())
        return 42

    coro = work()
    yielded = coro.send(None)
    assert await Continuation(coro, yielded) == 42
    assert seen == [asyncio.current_task()] * 2


async def test_a_continuation_passes_cancellation_and_errors_into_the_coroutine() -> None:
    """Cancelling the awaiting task cancels the coroutine (its cleanup runs); an error it
    raises after suspending reaches the awaiter."""
    cleaned: list[str] = []

    async def forever() -> None:
        try:
            await asyncio.sleep(3600)
        finally:
            cleaned.append("cleaned")

    async def outer() -> None:
        coro = forever()
        await Continuation(coro, coro.send(None))

    task = asyncio.ensure_future(outer())
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert cleaned == ["cleaned"]

    async def failing() -> None:
        await asyncio.sleep(0)
        raise KeyError("late")

    coro = failing()
    with pytest.raises(KeyError, match="late"):
        await Continuation(coro, coro.send(None))


async def test_finish_in_task_runs_the_rest_of_a_hand_stepped_coroutine() -> None:
    """The first step runs in the caller's task; the rest in the returned task, which waits
    on what the first step yielded and sees its cancellation."""
    outer = asyncio.current_task()
    seen: list[asyncio.Task[object] | None] = []
    gate = asyncio.Event()

    async def waits() -> None:
        seen.append(asyncio.current_task())
        await gate.wait()
        seen.append(asyncio.current_task())

    coro = waits()
    task = finish_in_task(coro, coro.send(None), asyncio.get_running_loop())
    assert seen == [outer] and not task.done()
    gate.set()
    await task
    assert seen[-1] is task

    cleaned: list[str] = []

    async def forever() -> None:
        try:
            await asyncio.Event().wait()
        finally:
            cleaned.append("cleaned")

    coro = forever()
    task = finish_in_task(coro, coro.send(None), asyncio.get_running_loop())
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert cleaned == ["cleaned"]
