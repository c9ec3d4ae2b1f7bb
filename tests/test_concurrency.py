"""Running user code: coroutines stepped by hand, async detection, arity checks. Small loops,
no network."""

from __future__ import annotations

import asyncio
import contextvars
import functools
from types import SimpleNamespace
from typing import Any

import pytest

from observable_socket_asgi._concurrency import (
    Continuation,
    arity_accepts,
    cancel_lost,
    is_async_callable,
    raise_lost_cancel,
)
from observable_socket_asgi.pubsub._idempotency import Idempotency, MemoryIdempotencyStore
from observable_socket_asgi.pubsub._redis_stores import RedisPresence
from observable_socket_asgi.pubsub.redis_backplane import RedisBackplane
from tests.helpers import MS, TIMEOUT

current: contextvars.ContextVar[str] = contextvars.ContextVar("current", default="outside")


async def test_a_continuation_with_a_context_runs_every_step_in_it() -> None:
    """Given the context its first step ran in, the rest of the coroutine runs in it too:
    what it sets stays there, in the awaiting task's context nothing changes."""
    values: list[str] = []

    async def sets() -> None:
        current.set("inside")
        values.append(current.get())
        await asyncio.sleep(0)
        values.append(current.get())
        current.set("later")

    context = contextvars.copy_context()
    coro = sets()
    steps = coro.__await__()
    yielded = context.run(next, steps)
    assert current.get() == "outside"
    await Continuation(steps, yielded, context)
    assert values == ["inside", "inside"]
    assert current.get() == "outside" and context[current] == "later"


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


async def test_cancel_lost_tells_a_cancel_a_library_turned_into_its_own_error() -> None:
    """A cancel that a library's own timeout swallowed is still seen: the retry loops of the
    Redis renewer and listener ask `cancel_lost()` so that `stop()` does not wait forever."""
    seen: list[bool] = []
    started = asyncio.Event()

    async def library_call() -> None:
        started.set()
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            raise TimeoutError("read timed out") from None  # what the cancel became

    async def retrying() -> None:
        seen.append(cancel_lost())
        try:
            await library_call()
        except TimeoutError:
            seen.append(cancel_lost())

    task = asyncio.get_running_loop().create_task(retrying())
    await started.wait()
    task.cancel()
    await task
    assert seen == [False, True]


# Loops that a library's lost cancel must not keep alive


class Swallowing:
    """What redis-py was seen to do under load, once: a call whose task is cancelled while
    it waits for the answer returns as if nothing happened. Later calls wait, cancellably."""

    def __init__(self, answer: Any = None) -> None:
        self.answer = answer
        self.calls = 0
        self.waiting = asyncio.Event()

    async def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self.calls += 1
        if self.calls > 1:
            await asyncio.sleep(10)
        self.waiting.set()
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            pass
        return self.answer


async def test_raise_lost_cancel_raises_only_for_a_cancel_that_was_lost() -> None:
    """Outside a cancelled task it returns; after a swallowed cancel it raises, chained."""
    raise_lost_cancel()
    swallow = Swallowing()
    cause = KeyError("the library's own")

    async def caller() -> None:
        await swallow()
        raise_lost_cancel(cause)

    task = asyncio.get_running_loop().create_task(caller())
    await swallow.waiting.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert task.cancelled()


async def test_presence_renewer_stops_though_redis_answered_its_cancel() -> None:
    """`stop()` returns though the renewal it cancelled came back as a plain answer."""
    swallow = Swallowing(answer=[])
    pipeline = SimpleNamespace(
        set=lambda *a, **k: None, hset=lambda *a, **k: None, pexpire=lambda *a, **k: None,
        hdel=lambda *a, **k: None, delete=lambda *a, **k: None, execute=swallow,
    )  # fmt: skip
    presence = RedisPresence(
        lambda: SimpleNamespace(pipeline=lambda **k: pipeline), "x:", ttl=30 * MS
    )
    presence._renewer = asyncio.get_running_loop().create_task(presence._renew_forever())
    await swallow.waiting.wait()
    renewer = presence._renewer
    async with asyncio.timeout(TIMEOUT):
        await presence.stop()
    assert renewer.cancelled()


async def test_backplane_listener_stops_though_redis_answered_its_cancel() -> None:
    """A read that comes back empty after its cancel ends the listener's read loop."""
    swallow = Swallowing(answer=None)
    pubsub = SimpleNamespace(get_message=swallow, ping=swallow)
    backplane = RedisBackplane("redis://127.0.0.1:1", ping_interval=60.0)
    loop = asyncio.get_running_loop()
    reader = loop.create_task(backplane._read(pubsub, loop))
    await swallow.waiting.wait()
    reader.cancel()
    async with asyncio.timeout(TIMEOUT):
        with pytest.raises(asyncio.CancelledError):
            await reader
    assert swallow.calls == 1


async def test_idempotency_renewer_stops_though_the_store_answered_its_cancel() -> None:
    """The claim's renewer is cancelled, never awaited: a lost cancel must still end it."""
    swallow = Swallowing()
    store = MemoryIdempotencyStore()
    store.renew = swallow  # type: ignore[method-assign]
    idempotency = Idempotency(store, ttl=1.0, lease=30 * MS)
    renewer = asyncio.get_running_loop().create_task(idempotency._renew("key", "fp"))
    await swallow.waiting.wait()
    renewer.cancel()
    async with asyncio.timeout(TIMEOUT):
        with pytest.raises(asyncio.CancelledError):
            await renewer
    assert swallow.calls == 1
