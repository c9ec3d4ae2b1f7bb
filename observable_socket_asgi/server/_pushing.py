"""A push written in the publisher's task: the server's send stepped without a wrapper.

A publish hands one `websocket.send` message to every subscriber; for each, the connection
steps the server's `send` once, in the publisher's task, and only a send that has to wait
goes on in a task. Stepping a coroutine by hand costs either a StopIteration when it ends
(`coro.send(None)`) or an `__await__` wrapper to call `next()` on; counted on a fan-out,
either costs more per subscriber than the rest of the push. So each connection keeps one
generator from its first push on (`pushes_for`): resumed with a message, it writes it and
yields `DONE` when the server has taken it, or yields the server's future when the send
has to wait, and `finish_push` hands the rest to a task. It runs no user code: the server's
send only (no context copy, which a request's handler runs in).
It is made at the first push, not with the connection: on 3.11 a started generator is closed
by raising GeneratorExit in it, which would cost every handshake 5k instructions.
"""

from __future__ import annotations

import asyncio
import collections.abc
import inspect
import types
from collections.abc import Awaitable, Callable, Generator
from typing import Any

from .._concurrency import DONE

__all__ = ["Pushes", "finish_push", "pushes_for"]

#: a connection's push writer: send it a message; it yields DONE once the server took it
Pushes = Generator[Any, dict[str, Any], None]


@types.coroutine
def _push_writes(send: Callable[[dict[str, Any]], Awaitable[None]]) -> Pushes:
    """Write each message sent in, and yield DONE when the server has taken it.

    One per connection, resumed with `send(message)` for every push that finds the writer
    idle: a send the server takes at once comes back as DONE, without a StopIteration or an
    `__await__` wrapper per push; a send that has to wait yields the server's future, and
    `_RestOfPush` finishes it in a task, after which the generator waits for the next
    message again. A failed or cancelled send ends it; the connection starts a new one.
    This one takes any awaitable `send` returns.
    """
    message = yield DONE
    while True:
        awaitable = send(message)
        if type(awaitable) is not _Coroutine:  # a server's own awaitable, not an `async def`
            awaitable = awaitable.__await__()  # type: ignore[assignment]
        yield from awaitable  # type: ignore[misc]
        del awaitable  # not kept alive while waiting for the next message
        message = yield DONE


@types.coroutine
def _coroutine_writes(send: Callable[[dict[str, Any]], Awaitable[None]]) -> Pushes:
    """`_push_writes` for a `send` declared `async def`: every call returns a coroutine, so
    nothing is checked per push (servers' sends are; a wrapper may not be)."""
    message = yield DONE
    while True:
        yield from send(message)  # type: ignore[misc]
        message = yield DONE


_Coroutine = types.CoroutineType
_CO_COROUTINE = inspect.CO_COROUTINE


def pushes_for(send: Callable[[dict[str, Any]], Awaitable[None]]) -> Pushes:
    """A push writer over `send`, started: waiting for its first message."""
    code = getattr(send, "__code__", None)  # a function's, or a bound method's function's
    if code is not None and code.co_flags & _CO_COROUTINE:
        pushes = _coroutine_writes(send)
    else:
        pushes = _push_writes(send)
    next(pushes)
    return pushes


class _RestOfPush(collections.abc.Coroutine[Any, Any, None]):
    """The rest of a push whose send had to wait, for a Task to drive: it ends when the
    connection's `_push_writes` generator yields DONE (the server took the message).

    The first `send` hands the Task what the first step yielded; a `throw` before it (the
    task was cancelled before it ran) cancels that future and goes into the send, as in any
    task.
    """

    __slots__ = ("_pushes", "_started", "_yielded")

    def __init__(self, pushes: Pushes, yielded: Any) -> None:
        self._pushes = pushes
        self._yielded = yielded
        self._started = False

    def send(self, value: Any) -> Any:
        if not self._started:
            self._started = True
            return self._yielded
        return self._done(self._pushes.send(value))

    def throw(self, typ: Any, val: Any = None, tb: Any = None) -> Any:
        if not self._started:
            self._started = True
            if asyncio.isfuture(self._yielded):
                self._yielded.cancel()
        if val is None and tb is None:
            return self._done(self._pushes.throw(typ))
        return self._done(self._pushes.throw(typ, val, tb))  # pragma: no cover - asyncio throws one

    def close(self) -> None:
        self._pushes.close()

    def __await__(self) -> Generator[Any, Any, None]:
        raise TypeError("only a Task drives the rest of a push")  # pragma: no cover

    @staticmethod
    def _done(yielded: Any) -> Any:
        if yielded is DONE:  # the server took the message: the task is over
            raise StopIteration
        return yielded


def finish_push(
    pushes: Pushes, yielded: Any, loop: asyncio.AbstractEventLoop
) -> asyncio.Task[None]:
    """A task finishing the push `pushes` started, whose send yielded `yielded` (a future to
    wait for); the task ends when the server has taken the message."""
    return asyncio.Task(_RestOfPush(pushes, yielded), loop=loop)
